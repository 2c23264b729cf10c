//! No browser needed: the console's files as the agent serves them (types,
//! policy, revalidation) and what it answers for paths a client makes up.

use std::time::Duration;

use serde_json::Value;

use super::dev_agent;

/// One raw HTTP/1.1 GET to the agent: status, lower-cased headers, body.
fn raw_get(addr: &str, path: &str, extra: &str) -> (u16, Vec<(String, String)>, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the agent");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n{extra}\r\n"
    )
    .expect("send");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("the answer");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_default()
}

/// No browser needed: what the agent answers for the console's files, and
/// for paths a hostile client makes up.
#[test]
fn the_console_files_are_served_with_their_types_and_a_strict_policy() {
    let agent = dev_agent();
    let addr = agent.api.trim_start_matches("http://").to_string();
    for (path, kind) in [
        ("/ui", "text/html"),
        ("/ui/", "text/html"),
        ("/ui/main.js", "text/javascript"),
        ("/ui/console.css", "text/css"),
        ("/ui/favicon.svg", "image/svg+xml"),
    ] {
        let (status, headers, body) = raw_get(&addr, path, "");
        assert_eq!(status, 200, "{path}");
        assert!(
            header(&headers, "content-type").starts_with(kind),
            "{path}: {headers:?}"
        );
        let csp = header(&headers, "content-security-policy");
        assert!(
            csp.contains("script-src 'self'") && csp.contains("default-src 'none'"),
            "{path}: {csp}"
        );
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
        assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
        assert_eq!(header(&headers, "cache-control"), "no-cache");
        assert!(!body.is_empty(), "{path}");
        // Asked again with its ETag: 304, nothing sent again.
        let etag = header(&headers, "etag").to_string();
        assert!(etag.starts_with('"'), "{path}: no ETag in {headers:?}");
        let (again, _, body) = raw_get(&addr, path, &format!("if-none-match: {etag}\r\n"));
        assert_eq!((again, body.as_str()), (304, ""), "{path}");
    }
    // The pages need no token; the data still does.
    let (status, _, body) = raw_get(&addr, "/v1/status", "");
    assert_eq!(status, 401, "{body}");

    // Made-up paths: a JSON refusal, never a file from elsewhere.
    let long = format!("/ui/{}", "a".repeat(60_000));
    for path in [
        "/ui/nothing.js",
        "/ui/../v1/status",
        "/ui/%2e%2e%2fCargo.toml",
        "/ui/main.js%00.html",
        "/ui/sub/main.js",
        long.as_str(),
    ] {
        let (status, headers, body) = raw_get(&addr, path, "");
        assert!(
            (400..500).contains(&status) && status != 401,
            "{}: {status} {body}",
            &path[..path.len().min(40)]
        );
        if status == 404 {
            let answer: Value = serde_json::from_str(&body).expect("a JSON refusal");
            assert!(answer["error"].is_string(), "{body}");
            assert!(header(&headers, "content-type").starts_with("application/json"));
        }
    }
}
