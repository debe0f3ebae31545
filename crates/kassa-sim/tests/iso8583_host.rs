//! The ISO 8583 host simulator over real TCP: Kassa's own framing and codec as the client, and
//! pyiso8583 (an independent implementation) sending an `0800` and a `0200`.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use kassa_iso8583::framing::{Frame, FrameCodec, FrameHeader, Tpdu};
use kassa_iso8583::{pack, unpack, Message, Spec};
use kassa_sim::iso8583::{start, Iso8583HostConfig, Iso8583HostHandle};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

#[allow(dead_code)]
#[path = "../../kassa-iso8583/tests/common/pyiso8583.rs"]
mod pyiso8583;

const SLOW_DELAY_MS: u64 = 300;
/// Longest wait for any answer that is not deliberately slow.
const ANSWER_WAIT: Duration = Duration::from_secs(5);

type Client = Framed<TcpStream, FrameCodec>;

async fn host(header: FrameHeader) -> Iso8583HostHandle {
    let config = Iso8583HostConfig {
        listen: "127.0.0.1:0".into(),
        header,
        slow_delay_ms: SLOW_DELAY_MS,
        ..Iso8583HostConfig::default()
    };
    start(config).await.unwrap()
}

async fn connect(host: &Iso8583HostHandle, header: FrameHeader) -> Client {
    let stream = TcpStream::connect(host.local_addr()).await.unwrap();
    Framed::new(stream, FrameCodec::new(header, 8192))
}

fn message(mti: &str, fields: &[(u8, &str)]) -> Message {
    let mut message = Message::new(mti.parse().unwrap());
    for (field, value) in fields {
        message.set(*field, value.as_bytes());
    }
    message
}

fn purchase(pan: &str, stan: &str) -> Message {
    let fields = [
        (2, pan),
        (3, "000000"),
        (4, "000000001000"),
        (11, stan),
        (41, "TERM0001"),
    ];
    message("0200", &fields)
}

async fn send(client: &mut Client, request: &Message) {
    let bytes = pack(Spec::default_ascii(), request).unwrap();
    client.send(Frame::new(bytes)).await.unwrap();
}

/// The next answer, or `None` if the host closed the connection.
async fn receive(client: &mut Client) -> Option<Message> {
    let frame = tokio::time::timeout(ANSWER_WAIT, client.next())
        .await
        .expect("an answer in time")?;
    Some(unpack(Spec::default_ascii(), &frame.unwrap().message).unwrap())
}

async fn exchange(client: &mut Client, request: &Message) -> Message {
    send(client, request).await;
    receive(client).await.expect("an answer")
}

#[tokio::test]
async fn sign_on_purchase_decline_and_reversal_over_tcp() {
    let host = host(FrameHeader::BinaryLength2).await;
    let mut client = connect(&host, FrameHeader::BinaryLength2).await;
    let sign_on = exchange(
        &mut client,
        &message("0800", &[(11, "000001"), (70, "001")]),
    )
    .await;
    assert_eq!(
        (sign_on.mti().as_str(), sign_on.get_text(39)),
        ("0810", Some("00"))
    );

    let approved = exchange(&mut client, &purchase("4000000000000002", "000002")).await;
    assert_eq!(
        (approved.mti().as_str(), approved.get_text(39)),
        ("0210", Some("00"))
    );
    assert_eq!(approved.get_text(11), Some("000002"));
    assert!(approved.has(38) && approved.has(37));

    let declined = exchange(&mut client, &purchase("4000000000000051", "000003")).await;
    assert_eq!(declined.get_text(39), Some("51"));

    // Another connection (a reconnecting connector) reverses the approved purchase.
    let mut second = connect(&host, FrameHeader::BinaryLength2).await;
    let reversal = message(
        "0420",
        &[(11, "000004"), (41, "TERM0001"), (90, &original("000002"))],
    );
    let answer = exchange(&mut second, &reversal).await;
    assert_eq!(
        (answer.mti().as_str(), answer.get_text(39)),
        ("0430", Some("00"))
    );
}

/// Field 90 for an original `0200` with this STAN.
fn original(stan: &str) -> String {
    format!("0200{stan}1205143015{}", "0".repeat(22))
}

#[tokio::test]
async fn a_slow_answer_does_not_hold_up_the_next_one() {
    let host = host(FrameHeader::BinaryLength2).await;
    let mut client = connect(&host, FrameHeader::BinaryLength2).await;
    let started = Instant::now();
    send(&mut client, &purchase("4000000000000077", "000010")).await;
    send(
        &mut client,
        &message("0800", &[(11, "000011"), (70, "301")]),
    )
    .await;
    let first = receive(&mut client).await.unwrap();
    assert_eq!(
        first.get_text(11),
        Some("000011"),
        "the echo overtakes the slow purchase"
    );
    let second = receive(&mut client).await.unwrap();
    assert_eq!(
        (second.get_text(11), second.get_text(39)),
        (Some("000010"), Some("00"))
    );
    assert!(started.elapsed() >= Duration::from_millis(SLOW_DELAY_MS));
}

#[tokio::test]
async fn the_dropping_card_and_garbage_close_the_connection() {
    let host = host(FrameHeader::BinaryLength2).await;
    let mut client = connect(&host, FrameHeader::BinaryLength2).await;
    send(&mut client, &purchase("4000000000000099", "000020")).await;
    assert!(
        receive(&mut client).await.is_none(),
        "closed without an answer"
    );

    let mut client = connect(&host, FrameHeader::BinaryLength2).await;
    client
        .send(Frame::new(&b"0200 not a message"[..]))
        .await
        .unwrap();
    let answer = receive(&mut client).await.unwrap();
    assert_eq!(
        (answer.mti().as_str(), answer.get_text(39)),
        ("0210", Some("30"))
    );
    client.send(Frame::new(&b"\x00garbage"[..])).await.unwrap();
    assert!(
        receive(&mut client).await.is_none(),
        "closed on bytes without an MTI"
    );
}

#[tokio::test]
async fn the_tpdu_header_is_answered_with_addresses_swapped() {
    let host = host(FrameHeader::Tpdu).await;
    let mut client = connect(&host, FrameHeader::Tpdu).await;
    let bytes = pack(
        Spec::default_ascii(),
        &message("0800", &[(11, "000030"), (70, "301")]),
    );
    let tpdu = Tpdu([0x60, 0x00, 0x01, 0x00, 0x02]);
    let frame = Frame {
        tpdu: Some(tpdu),
        message: bytes.unwrap().into(),
    };
    client.send(frame).await.unwrap();
    let answer = tokio::time::timeout(ANSWER_WAIT, client.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(answer.tpdu, Some(tpdu.reply()));
    let answer = unpack(Spec::default_ascii(), &answer.message).unwrap();
    assert_eq!(answer.get_text(39), Some("00"));
}

#[tokio::test]
async fn a_pyiso8583_client_gets_a_well_formed_0810_and_0210() {
    let Some(peer) = pyiso8583::Peer::find() else {
        return;
    };
    let host = host(FrameHeader::BinaryLength2).await;
    let address = host.local_addr();
    let requests = json!([
        {"t": "0800", "7": "1205143015", "11": "000101", "70": "001"},
        {"t": "0200", "2": "4000000000000002", "3": "000000", "4": "000000001000",
         "7": "1205143015", "11": "000102", "18": "7995", "41": "TERM0001",
         "42": "KASSA-MERCHANT1", "49": "978"},
    ]);
    let (ip, port) = (address.ip().to_string(), address.port().to_string());
    // The Python client blocks; run it off the runtime the host lives on.
    let answers = tokio::task::spawn_blocking(move || peer.run("client", &[&ip, &port], &requests))
        .await
        .unwrap();
    let answers = answers.as_array().unwrap();
    assert_eq!(answers.len(), 2, "{answers:?}");
    let sign_on = &answers[0];
    assert_eq!(field(sign_on, "t"), "0810");
    assert_eq!((field(sign_on, "39"), field(sign_on, "70")), ("00", "001"));
    assert_eq!(field(sign_on, "11"), "000101");
    let purchase = &answers[1];
    assert_eq!(
        (field(purchase, "t"), field(purchase, "39")),
        ("0210", "00")
    );
    for (key, value) in [
        ("3", "000000"),
        ("4", "000000001000"),
        ("11", "000102"),
        ("49", "978"),
    ] {
        assert_eq!(field(purchase, key), value, "field {key} echoed");
    }
    assert_eq!(
        (field(purchase, "37").len(), field(purchase, "38").len()),
        (12, 6)
    );
    assert!(purchase.get("2").is_none(), "the PAN is not echoed");
}

fn field<'a>(doc: &'a Value, key: &str) -> &'a str {
    assert!(
        doc.get("error").is_none(),
        "pyiso8583 could not decode the answer: {doc}"
    );
    doc[key]
        .as_str()
        .unwrap_or_else(|| panic!("no field {key} in {doc}"))
}
