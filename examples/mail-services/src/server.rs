//! A thread-per-connection accept loop with a cap on open connections.
//!
//! Why threads and not an async runtime: each service handles a handful of
//! connections from a test, a supervisor or another service; a thread each
//! is the simplest thing that is obviously right. The cap keeps a flood of
//! connections from exhausting threads: over it, a connection gets the
//! service's "busy" reply and is closed at once.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

/// Most connections one service serves at once.
pub const MAX_CONNECTIONS: usize = 256;

struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Accepts connections forever, running `handler` for each on its own thread.
pub fn serve<F>(listener: TcpListener, busy_reply: &'static [u8], handler: F) -> !
where
    F: Fn(TcpStream, SocketAddr) + Send + Sync + 'static,
{
    let handler = Arc::new(handler);
    let active = Arc::new(AtomicUsize::new(0));
    loop {
        let (mut stream, peer) = match listener.accept() {
            Ok(c) => c,
            Err(e) => {
                // EMFILE, ECONNABORTED and friends pass; don't spin on them.
                log!("accept failed: {e}");
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::SeqCst);
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = stream.write_all(busy_reply);
            log!("refused {peer}: {MAX_CONNECTIONS} connections already open");
            continue;
        }
        let slot = Slot(Arc::clone(&active));
        let handler = Arc::clone(&handler);
        let spawned = thread::Builder::new()
            .name(format!("conn-{peer}"))
            .spawn(move || {
                let _slot = slot;
                handler(stream, peer);
            });
        if let Err(e) = spawned {
            log!("cannot start a thread for {peer}: {e}");
        }
    }
}
