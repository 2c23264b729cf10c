//! mail-http: the HTTP instance. A read-only front end: `GET /health` and
//! `GET /mailbox/<name>` (the mailbox's messages as JSON, read from the store).

use std::io::{BufReader, BufWriter};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::args::{Args, Spec};
use crate::http::{self, Request, RequestError, Response};
use crate::store_client::{ClientError, StoreClient};
use crate::{lineio, log, mailbox, server};

const USAGE: &str = "\
usage: mail-http --listen ADDR --store ADDR

Serves GET /health and GET /mailbox/<name> on ADDR, reading from the mail
store at --store.
";

const SPEC: Spec = Spec {
    program: "mail-http",
    usage: USAGE,
    flags: &[("--listen", true), ("--store", true)],
};

pub fn main(argv: impl IntoIterator<Item = String>) {
    log::init("mail-http");
    let args = Args::from_iter_or_exit(&SPEC, argv);
    let listen = args.need_addr("--listen");
    let store = args.need_addr("--store");
    let listener = super::listen_or_exit(listen);
    super::exit_on_terminate();
    let local = listener.local_addr().map_or(listen, |a| a);
    log!("listening on {local}, reading from {store}");
    let client = StoreClient::new(store, Duration::from_secs(5));
    server::serve(
        listener,
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        move |stream, peer| handle(stream, peer, &client),
    )
}

fn handle(stream: TcpStream, peer: SocketAddr, client: &StoreClient) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let Ok(reader) = stream.try_clone() else {
        return;
    };
    let mut r = BufReader::new(reader);
    let mut w = BufWriter::new(stream);
    let (resp, head_only, what) = match http::read_request(&mut r) {
        Ok(req) => {
            let head_only = req.method == "HEAD";
            let what = format!("{} {}", req.method, req.target);
            (route(&req, client), head_only, what)
        }
        Err(RequestError::Eof) => return,
        Err(RequestError::Io(e)) => {
            if !lineio::is_disconnect(&e) && !lineio::is_timeout(&e) {
                log!("{peer}: {e}");
            }
            return;
        }
        Err(RequestError::TooLarge) => (
            Response::text(431, "request head too large"),
            false,
            "-".into(),
        ),
        Err(RequestError::Malformed(why)) => (Response::text(400, why), false, "-".into()),
    };
    log!("{peer} {what} {}", resp.status);
    if let Err(e) = http::write_response(&mut w, &resp, !head_only)
        && !lineio::is_disconnect(&e)
    {
        log!("{peer}: writing the response: {e}");
    }
}

fn route(req: &Request, client: &StoreClient) -> Response {
    let path = req.path();
    let known = path == "/health" || path.starts_with("/mailbox/");
    if !known {
        return Response::text(404, "not found");
    }
    if req.method != "GET" && req.method != "HEAD" {
        return Response::text(405, "method not allowed").with_header("Allow", "GET, HEAD");
    }
    if path == "/health" {
        return Response::text(200, "ok");
    }
    let raw = &path["/mailbox/".len()..];
    let Some(name) = http::percent_decode(raw).map(|n| n.to_ascii_lowercase()) else {
        return Response::text(400, "bad percent-encoding in the mailbox name");
    };
    if !mailbox::is_valid(&name) {
        return Response::text(400, "invalid mailbox name (1-64 of a-z 0-9 . _ + -)");
    }
    let messages = client.connect().and_then(|mut c| c.get(&name));
    match messages {
        Ok(msgs) => {
            let mut out = String::from("{\"mailbox\":");
            http::json_string(&name, &mut out);
            out.push_str(",\"messages\":[");
            for (i, m) in msgs.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&format!("{{\"seq\":{},\"body\":", m.seq));
                http::json_string(&String::from_utf8_lossy(&m.body), &mut out);
                out.push('}');
            }
            out.push_str("]}");
            Response::json(200, out)
        }
        Err(e @ ClientError::Rejected(_)) => {
            log!("store refused GET {name}: {e}");
            Response::text(502, "store refused the request")
        }
        Err(e) => {
            log!("GET {name}: {e}");
            Response::text(502, "store unavailable")
        }
    }
}
