//! A small real service for `agent --dev` and the tests to supervise: an
//! HTTP server that answers every request with its name, pid and working
//! directory.
//!
//! It is the warden binary itself (`warden demo-service`), so the dev mode
//! needs nothing else installed.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// How often a service with a record file says it is still alive.
const RECORD_EVERY: Duration = Duration::from_millis(50);

/// Serve until killed. With `record`, append `start DIR PID MS` once the
/// port is bound and `alive DIR PID MS` every 50 ms to that file (DIR the
/// working directory, MS wall-clock milliseconds), and `stop DIR PID MS`
/// at SIGTERM before exiting: the cluster tests judge from these lines when
/// each node's service ran (a run that ends with `stop` ended exactly
/// then; one killed otherwise, up to 50 ms after its last line).
pub(crate) async fn serve(name: &str, addr: SocketAddr, record: Option<PathBuf>) -> Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let bound = listener.local_addr().unwrap_or(addr);
    eprintln!(
        "demo service {name} listening on http://{bound}/ as pid {}",
        std::process::id()
    );
    if let Some(record) = record {
        append_record(&record, "start")?;
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .context("handling SIGTERM")?;
        let stopping = record.clone();
        tokio::spawn(async move {
            terminate.recv().await;
            if let Err(err) = append_record(&stopping, "stop") {
                eprintln!("{err:#}");
            }
            std::process::exit(0);
        });
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RECORD_EVERY).await;
                if let Err(err) = append_record(&record, "alive") {
                    eprintln!("{err:#}");
                }
            }
        });
    }
    loop {
        let (mut stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                eprintln!("accept failed: {err}");
                continue;
            }
        };
        // The working directory tells which node runs it (each agent has
        // its own data directory): the cluster tests read it.
        let here = std::env::current_dir().unwrap_or_default();
        let body = format!(
            "{name} is up (pid {}) in {}\n",
            std::process::id(),
            here.display()
        );
        tokio::spawn(async move {
            let mut request = [0u8; 1024];
            // One read is enough for the request line; the answer does not
            // depend on the request.
            let _ = stream.read(&mut request).await;
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}

/// One line of the record file, in one write (appends of a short line are
/// not interleaved with other writers').
fn append_record(record: &Path, what: &str) -> Result<()> {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let here = std::env::current_dir().unwrap_or_default();
    let line = format!("{what} {} {} {ms}\n", here.display(), std::process::id());
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(record)
        .and_then(|mut file| file.write_all(line.as_bytes()))
        .with_context(|| format!("recording in {}", record.display()))
}
