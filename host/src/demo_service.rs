//! A small real service for `agent --dev` and the tests to supervise: an
//! HTTP server that answers every request with its name, pid and working
//! directory.
//!
//! It is the warden binary itself (`warden demo-service`), so the dev mode
//! needs nothing else installed.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serve until killed.
pub async fn serve(name: &str, addr: SocketAddr) -> Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    eprintln!(
        "demo service {name} listening on http://{addr}/ as pid {}",
        std::process::id()
    );
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
