//! A bare WebSocket client, for tests that must send what a library would refuse to build
//! (oversized, unmasked-bit, reserved-bit frames) to the node's WebSocket listeners.

use std::io::{Read, Write};
use std::net::TcpStream;

/// The headers of a client's upgrade request after its request line and host (RFC 6455's
/// sample key).
pub const UPGRADE_HEADERS: &str = "upgrade: websocket\r\nconnection: upgrade\r\n\
     sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

/// Sends `GET path` asking for an upgrade, with `extra` headers (each ending in `\r\n`).
pub fn request_upgrade(stream: &mut TcpStream, host: &str, path: &str, extra: &str) {
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: {host}\r\n{extra}{UPGRADE_HEADERS}"
    )
    .unwrap();
}

/// The response head, up to the blank line (or what came before the connection closed).
pub fn response_head(stream: &mut TcpStream) -> Vec<u8> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).unwrap_or(0) == 0 {
            break;
        }
        head.push(byte[0]);
    }
    head
}

/// A masked client frame whose first byte is `first` (FIN, RSV bits, opcode).
pub fn masked_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len < 65536 {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    let mask = [9, 8, 7, 6];
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Reads until the node closes the connection; true if it did (never answering with anything
/// but a close) before the read timeout.
pub fn closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}
