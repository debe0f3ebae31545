//! The ISO 8583 codec's throughput on one core: pack + unpack of a typical `0200` (a
//! purchase with PAN, amount, STAN, MCC 7995, terminal and merchant ids) under the default
//! dialect, in messages per second. Issue 20 asks for it beside jPOS's published ~10,900/s.

use std::hint::black_box;
use std::time::{Duration, Instant};

use kassa_iso8583::{pack_into, unpack, Message, Spec};

use crate::bench::stats::{self, Median, RunStats};
use crate::bench::Cell;

/// Messages per timed batch: the latency columns are the time of one batch, since one
/// message (~1 µs) is below the histogram's resolution.
const BATCH_MESSAGES: u64 = 1_000;

/// The codec cell: `runs` runs of `duration` each, on a blocking thread.
pub async fn cell(duration: Duration, runs: usize) -> anyhow::Result<Cell> {
    one_core_cell("codec", "iso8583", duration, runs, run).await
}

/// A cell of `runs` runs of `duration` each of `run`, one after another on a blocking
/// thread: a measure of code on one core, no server involved.
pub async fn one_core_cell(
    backend: &str,
    system: &'static str,
    duration: Duration,
    runs: usize,
    run: fn(Duration) -> anyhow::Result<RunStats>,
) -> anyhow::Result<Cell> {
    let mut measured = Vec::new();
    for _ in 0..runs {
        measured.push(tokio::task::spawn_blocking(move || run(duration)).await??);
    }
    Ok(Cell {
        backend: backend.into(),
        system,
        players: 0,
        clients: 1,
        median: Median::of(&measured),
        runs: measured,
    })
}

/// Packs and unpacks the purchase for `duration`, checking each unpacked message.
fn run(duration: Duration) -> anyhow::Result<RunStats> {
    let spec = Spec::default_ascii();
    let message = purchase()?;
    let mut buffer = Vec::with_capacity(256);
    let mut histogram = stats::new_histogram();
    let mut messages = 0u64;
    let started = Instant::now();
    while started.elapsed() < duration {
        let batch_started = Instant::now();
        for _ in 0..BATCH_MESSAGES {
            buffer.clear();
            pack_into(spec, black_box(&message), &mut buffer)?;
            black_box(unpack(spec, black_box(&buffer))?);
        }
        stats::record(&mut histogram, batch_started.elapsed());
        messages += BATCH_MESSAGES;
    }
    let mut stats = RunStats::new(messages, 0, started.elapsed(), &histogram);
    let unpacked = unpack(spec, &buffer)?;
    stats.checks_ok = unpacked == message;
    stats.checks.push(format!(
        "pack + unpack of a {}-byte 0200 on one core; latency columns are per batch of \
         {BATCH_MESSAGES} messages; the last message unpacked {} what was packed",
        buffer.len(),
        if stats.checks_ok {
            "equals"
        } else {
            "DIFFERS from"
        }
    ));
    Ok(stats)
}

/// A purchase as an acquirer connector would send it (test card, MCC 7995 for betting).
fn purchase() -> anyhow::Result<Message> {
    let mut message = Message::new("0200".parse()?);
    for (field, value) in [
        (2, "4000000000000002"),
        (3, "000000"),
        (4, "000000001000"),
        (7, "1205143015"),
        (11, "000123"),
        (12, "143015"),
        (13, "1205"),
        (18, "7995"),
        (22, "812"),
        (37, "533912000123"),
        (41, "TERM0001"),
        (42, "KASSA-MERCHANT1"),
        (49, "978"),
    ] {
        message.set(field, value);
    }
    Ok(message)
}
