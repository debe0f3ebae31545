"""pyiso8583 as an independent peer for Kassa's ISO 8583 tests (driven by pyiso8583_interop.rs).

    python pyiso8583_peer.py pack    < [{"t": "0200", "2": "4111...", ...}, ...]  -> ["<hex>", ...]
    python pyiso8583_peer.py unpack  < ["<hex>", ...]                             -> [{"t": ..., "p": ..., ...}, ...]
    python pyiso8583_peer.py client HOST PORT < [{"t": "0800", ...}, ...]        -> [{"t": "0810", ...}, ...]
    python pyiso8583_peer.py spec            < null                              -> the default_ascii dict

All with pyiso8583's `default_ascii` spec. `client` sends each message over one TCP connection
framed with a 2-byte big-endian length and reads one answer per message. A message that fails
to encode or decode becomes {"error": "<pyiso8583's message>"}.
"""

import json
import socket
import struct
import sys

import iso8583
from iso8583.specs import default_ascii as SPEC

EXPECTED_VERSION = "4.0.1"


def pack(doc):
    try:
        packed, _ = iso8583.encode(dict(doc), SPEC)
        return bytes(packed).hex()
    except iso8583.EncodeError as error:
        return {"error": str(error)}


def unpack(data):
    try:
        decoded, _ = iso8583.decode(data, SPEC)
        return decoded
    except iso8583.DecodeError as error:
        return {"error": str(error)}


def read_exactly(conn, count):
    chunks = []
    while count > 0:
        chunk = conn.recv(count)
        if not chunk:
            raise ConnectionError("connection closed inside a frame")
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


def client(host, port, docs):
    answers = []
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        for doc in docs:
            packed, _ = iso8583.encode(dict(doc), SPEC)
            conn.sendall(struct.pack(">H", len(packed)) + bytes(packed))
            (length,) = struct.unpack(">H", read_exactly(conn, 2))
            answers.append(unpack(read_exactly(conn, length)))
    return answers


def main():
    if iso8583.__version__ != EXPECTED_VERSION:
        sys.exit(f"pyiso8583 {iso8583.__version__} found, {EXPECTED_VERSION} expected")
    command, args = sys.argv[1], sys.argv[2:]
    docs = json.load(sys.stdin)
    if command == "pack":
        result = [pack(doc) for doc in docs]
    elif command == "unpack":
        result = [unpack(bytes.fromhex(data)) for data in docs]
    elif command == "spec":
        result = SPEC
    elif command == "client":
        result = client(args[0], args[1], docs)
    else:
        sys.exit(f"unknown command {command}")
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
