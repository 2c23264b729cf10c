//! mail-attendant: the System Attendant of a virtual server. In Exchange it
//! is the root of the virtual server's resources: everything else depends
//! on it. Here it keeps the virtual server's name and watches its
//! services: `GET /` answers, one line each, whether every watched
//! service accepts a TCP connection now, so one page says what the
//! virtual server is made of and what of it is up. It holds no state.

use std::io::{BufReader, BufWriter};
use std::net::{SocketAddr, TcpStream};
use std::process;
use std::time::Duration;

use crate::args::{self, Args, Spec};
use crate::http::{self, Request, RequestError, Response};
use crate::{lineio, log, server};

const USAGE: &str = "\
usage: mail-attendant --server NAME --listen ADDR [--watch NAME=ADDR,NAME=ADDR,...]

The System Attendant of the virtual server NAME: serves on ADDR (HTTP) a
page saying whether each watched service accepts connections.
";

const SPEC: Spec = Spec {
    program: "mail-attendant",
    usage: USAGE,
    flags: &[("--server", true), ("--listen", true), ("--watch", true)],
};

/// How long a watched service has to accept a connection to count as up.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// The services the attendant watches, by name.
#[derive(Debug)]
struct Watched(Vec<(String, SocketAddr)>);

/// `NAME=ADDR,NAME=ADDR,...`; the error names the part that is wrong.
fn parse_watch(list: &str) -> Result<Watched, String> {
    let mut watched = Vec::new();
    for part in list.split(',').filter(|p| !p.is_empty()) {
        let (name, addr) = part
            .split_once('=')
            .ok_or_else(|| format!("--watch: {part:?} is not NAME=ADDR"))?;
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(format!(
                "--watch: {name:?} is not a name (letters, digits, -)"
            ));
        }
        let addr = args::resolve(addr).map_err(|e| format!("--watch {name}: {e}"))?;
        watched.push((name.to_string(), addr));
    }
    Ok(Watched(watched))
}

pub fn main(argv: impl IntoIterator<Item = String>) {
    log::init("mail-attendant");
    let args = Args::from_iter_or_exit(&SPEC, argv);
    let server = args
        .required("--server")
        .unwrap_or_else(|e| args.fail(&e.to_string()))
        .to_string();
    let listen = args.need_addr("--listen");
    let watched =
        parse_watch(args.value("--watch").unwrap_or("")).unwrap_or_else(|why| args.fail(&why));
    let listener = super::listen_or_exit(listen);
    super::exit_on_terminate();
    let local = listener.local_addr().map_or(listen, |a| a);
    log!(
        "listening on {local}, system attendant of {server}, watching {} services",
        watched.0.len()
    );
    server::serve(
        listener,
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        move |stream, peer| handle(stream, peer, &server, &watched),
    )
}

fn handle(stream: TcpStream, peer: SocketAddr, server: &str, watched: &Watched) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let Ok(reader) = stream.try_clone() else {
        return;
    };
    let mut r = BufReader::new(reader);
    let mut w = BufWriter::new(stream);
    let (resp, head_only) = match http::read_request(&mut r) {
        Ok(req) => (route(&req, server, watched), req.method == "HEAD"),
        Err(RequestError::Eof) => return,
        Err(RequestError::Io(e)) => {
            if !lineio::is_disconnect(&e) && !lineio::is_timeout(&e) {
                log!("{peer}: {e}");
            }
            return;
        }
        Err(RequestError::TooLarge) => (Response::text(431, "request head too large"), false),
        Err(RequestError::Malformed(why)) => (Response::text(400, why), false),
    };
    if let Err(e) = http::write_response(&mut w, &resp, !head_only)
        && !lineio::is_disconnect(&e)
    {
        log!("{peer}: writing the response: {e}");
    }
}

fn route(req: &Request, server: &str, watched: &Watched) -> Response {
    let path = req.path();
    if path != "/" && path != "/health" {
        return Response::text(404, "not found");
    }
    if req.method != "GET" && req.method != "HEAD" {
        return Response::text(405, "method not allowed").with_header("Allow", "GET, HEAD");
    }
    if path == "/health" {
        return Response::text(200, "ok");
    }
    let mut page = format!(
        "virtual server {server}: system attendant up (pid {})",
        process::id()
    );
    for (name, addr) in &watched.0 {
        let state = match TcpStream::connect_timeout(addr, PROBE_TIMEOUT) {
            Ok(_) => "up".to_string(),
            Err(e) => format!("down ({e})"),
        };
        page.push_str(&format!("\n{name} {addr} {state}"));
    }
    Response::text(200, &page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_lists_parse_and_bad_ones_are_named() {
        let w = parse_watch("store=127.0.0.1:7100,smtp=127.0.0.1:25").unwrap();
        assert_eq!(w.0.len(), 2);
        assert_eq!(w.0[0].0, "store");
        assert!(parse_watch("").unwrap().0.is_empty());
        assert!(parse_watch("store").unwrap_err().contains("\"store\""));
        assert!(
            parse_watch("st ore=127.0.0.1:1")
                .unwrap_err()
                .contains("not a name")
        );
        assert!(
            parse_watch("store=nowhere")
                .unwrap_err()
                .contains("--watch store")
        );
    }
}
