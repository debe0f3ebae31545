//! pyiso8583 (PyPI, 4.0.1) as an independent peer, run as `interop/pyiso8583_peer.py`.
//! Shared by this crate's interop test and the host simulator's (kassa-sim), which includes
//! this file by path.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use kassa_iso8583::Message;
use serde_json::{Map, Value};

/// The Python interpreter with pyiso8583, from `KASSA_PYISO8583_PYTHON`.
pub struct Peer {
    python: PathBuf,
}

impl Peer {
    /// The peer, or `None` after printing why the test is skipped. Under `CI=true` a missing
    /// interpreter is a failure: CI must never pass without having run the interop.
    pub fn find() -> Option<Peer> {
        match std::env::var_os("KASSA_PYISO8583_PYTHON") {
            Some(python) if !python.is_empty() => Some(Peer {
                python: python.into(),
            }),
            _ if std::env::var("CI").as_deref() == Ok("true") => {
                panic!("CI=true but KASSA_PYISO8583_PYTHON is unset; .ci/run makes that venv")
            }
            _ => {
                eprintln!(
                    "skipped: KASSA_PYISO8583_PYTHON is unset (a python with pyiso8583==4.0.1; \
                     .ci/run makes one)"
                );
                None
            }
        }
    }

    /// Runs `pyiso8583_peer.py COMMAND ARGS` with `input` as JSON on stdin; returns its JSON.
    pub fn run(&self, command: &str, args: &[&str], input: &Value) -> Value {
        // Relative to the crate under test: kassa-iso8583, or kassa-sim beside it.
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../kassa-iso8583/tests/interop/pyiso8583_peer.py"
        );
        let mut child = Command::new(&self.python)
            .arg(script)
            .arg(command)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.python.display()));
        let input = serde_json::to_vec(input).unwrap();
        child.stdin.take().unwrap().write_all(&input).unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "pyiso8583_peer.py {command} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    }
}

/// A message as pyiso8583 takes it: `{"t": MTI, "<field>": text}` (default_ascii is all text).
pub fn to_doc(message: &Message) -> Value {
    let mut doc = Map::new();
    doc.insert("t".into(), message.mti().to_string().into());
    for (field, value) in message.fields() {
        let text = std::str::from_utf8(value).expect("default_ascii values are ASCII");
        doc.insert(field.to_string(), text.into());
    }
    Value::Object(doc)
}

/// A decoded pyiso8583 document as a message: `t` and the numbered fields, without the bitmaps
/// (`p`, `1`), which the caller compares separately.
pub fn from_doc(doc: &Value) -> Message {
    let doc = doc.as_object().expect("a decoded document is an object");
    assert!(!doc.contains_key("error"), "pyiso8583 refused it: {doc:?}");
    let mti = doc["t"].as_str().unwrap().parse().unwrap();
    let mut message = Message::new(mti);
    for (key, value) in doc {
        if let Ok(field @ 2..=128) = key.parse::<u8>() {
            message.set(field, value.as_str().unwrap());
        }
    }
    message
}
