//! Codec throughput on one core: pack + unpack of a typical `0200` under the default dialect,
//! in messages per second. A measurement, not a test (DESIGN.md §9.10); until `kassa bench`
//! reports it, run it in release mode:
//!
//! ```sh
//! cargo run --release -p kassa-iso8583 --example codec_throughput
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use kassa_iso8583::{pack_into, unpack, Message, Spec};

const MEASURE_FOR: Duration = Duration::from_secs(3);
const BATCH: u32 = 10_000;

fn purchase() -> Message {
    let mut message = Message::new("0200".parse().expect("a valid MTI"));
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
    message
}

fn main() {
    let spec = Spec::default_ascii();
    let message = purchase();
    let mut buffer = Vec::with_capacity(256);
    let started = Instant::now();
    let mut messages: u64 = 0;
    while started.elapsed() < MEASURE_FOR {
        for _ in 0..BATCH {
            buffer.clear();
            pack_into(spec, black_box(&message), &mut buffer).expect("the purchase packs");
            let unpacked = unpack(spec, black_box(&buffer)).expect("the purchase unpacks");
            black_box(unpacked);
        }
        messages += u64::from(BATCH);
    }
    let elapsed_s = started.elapsed().as_secs_f64();
    println!(
        "pack+unpack of a {}-byte 0200: {:.0} messages/s on one core ({messages} in {elapsed_s:.1} s)",
        buffer.len(),
        messages as f64 / elapsed_s
    );
}
