//! An HTTP/1.1 server of the test's own on 127.0.0.1 that counts what it
//! sees: the connections it accepted and every request's head. The tests of
//! `probe.http-check` use it to tell a kept connection from a new one per
//! check (nginx's stub status says the same, but needs nginx), and to
//! answer as a hostile server would (closing, stalling, chunking).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// What the server saw: connections accepted and the requests' heads, in
/// order.
#[derive(Default)]
pub struct Seen {
    connections: AtomicUsize,
    requests: Mutex<Vec<String>>,
}

impl Seen {
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("requests").clone()
    }
}

/// The server: for each request, `answer` gets the connection and the
/// request's number on it (0 first) and says whether to go on reading
/// requests on it. Its address (`127.0.0.1:PORT`) and what it sees.
pub fn http_server(
    answer: impl Fn(&mut TcpStream, usize) -> bool + Send + Sync + Clone + 'static,
) -> (String, Arc<Seen>) {
    http_server_by_head(move |stream, nth, _| answer(stream, nth))
}

/// [`http_server`] whose `answer` also gets the request's head (its
/// request line first).
pub fn http_server_by_head(
    answer: impl Fn(&mut TcpStream, usize, &str) -> bool + Send + Sync + Clone + 'static,
) -> (String, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let counted = seen.clone();
    let address = super::tcp_server(move |mut stream| {
        counted.connections.fetch_add(1, Ordering::SeqCst);
        for nth in 0.. {
            let Some(head) = read_head(&mut stream) else {
                return;
            };
            counted
                .requests
                .lock()
                .expect("requests")
                .push(head.clone());
            if !answer(&mut stream, nth, &head) {
                return;
            }
        }
    });
    (address.to_string(), seen)
}

/// One request's head, or `None` when the peer closed first.
pub fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// `HTTP/1.1 200` with a body of `body` and its length.
pub fn ok_with_length(stream: &mut TcpStream, body: &str) -> bool {
    answer_with_length(stream, 200, body)
}

/// `HTTP/1.1 STATUS` with a body of `body` and its length: an answer whose
/// connection a client may keep.
pub fn answer_with_length(stream: &mut TcpStream, status: u16, body: &str) -> bool {
    let reason = match status {
        200 => "OK",
        204 => "No Content",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let answer = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(answer.as_bytes()).is_ok()
}
