//! mail-mta: the MTA. Speaks the same SMTP as mail-smtp, but accepts into
//! an fsync'ed on-disk queue and delivers to the store in the background,
//! retrying while the store is down. So it accepts mail even when the store
//! is offline, and loses none of it to a crash after the 250.

use std::path::PathBuf;
use std::process;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use crate::args::{Args, Spec};
use crate::log;
use crate::queue::Queue;
use crate::smtp::{self, Config, Deliver, DeliveryError, Envelope};
use crate::store_client::{ClientError, StoreClient};

const USAGE: &str = "\
usage: mail-mta --listen ADDR --store ADDR --data DIR [--hostname NAME] [--retry-ms N]

Accepts SMTP on ADDR into a queue in DIR and delivers it to the mail store at
--store, retrying every N ms (default 1000) while the store is unreachable.
";

const SPEC: Spec = Spec {
    program: "mail-mta",
    usage: USAGE,
    flags: &[
        ("--listen", true),
        ("--store", true),
        ("--data", true),
        ("--hostname", true),
        ("--retry-ms", true),
    ],
};

/// Wakes the delivery thread when something is queued.
#[derive(Default)]
struct Wake {
    pending: Mutex<bool>,
    cv: Condvar,
}

impl Wake {
    fn notify(&self) {
        *self.pending.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.cv.notify_one();
    }

    fn wait(&self, timeout: Duration) {
        let guard = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let (mut guard, _) = self
            .cv
            .wait_timeout_while(guard, timeout, |pending| !*pending)
            .unwrap_or_else(|p| p.into_inner());
        *guard = false;
    }
}

struct Enqueue {
    queue: Arc<Queue>,
    wake: Arc<Wake>,
}

impl Deliver for Enqueue {
    fn deliver(&self, env: &Envelope) -> Result<String, DeliveryError> {
        match self.queue.enqueue(&env.from, &env.mailboxes, &env.body) {
            Ok(id) => {
                self.wake.notify();
                Ok(id)
            }
            Err(e) => {
                log!("cannot queue a message: {e}");
                Err(DeliveryError::Temporary("queue write failed".into()))
            }
        }
    }
}

pub fn main(argv: impl IntoIterator<Item = String>) {
    log::init("mail-mta");
    let args = Args::from_iter_or_exit(&SPEC, argv);
    let listen = args.need_addr("--listen");
    let store = args.need_addr("--store");
    let data: PathBuf = args.need_path("--data");
    let hostname = args.hostname("--hostname");
    let retry = Duration::from_millis(args.number_or("--retry-ms", 1000, 10));

    let queue = Arc::new(Queue::open(&data).unwrap_or_else(|e| {
        log!("cannot open the queue in {}: {e}", data.display());
        process::exit(1)
    }));
    let listener = super::listen_or_exit(listen);
    // Everything acknowledged is already durable in the queue.
    super::exit_on_terminate();
    let waiting = queue.pending().map_or(0, |p| p.len());
    let local = listener.local_addr().map_or(listen, |a| a);
    log!("listening on {local} as {hostname}, delivering to {store}, {waiting} queued");

    let wake = Arc::new(Wake::default());
    let client = StoreClient::new(store, Duration::from_secs(5));
    let (q, w) = (Arc::clone(&queue), Arc::clone(&wake));
    thread::Builder::new()
        .name("delivery".into())
        .spawn(move || deliver_forever(&q, &client, &w, retry))
        .unwrap_or_else(|e| {
            log!("cannot start the delivery thread: {e}");
            process::exit(1)
        });
    smtp::serve(
        listener,
        Config::new(hostname, "warden-mta"),
        Arc::new(Enqueue { queue, wake }),
    )
}

fn deliver_forever(queue: &Queue, client: &StoreClient, wake: &Wake, retry: Duration) -> ! {
    let mut store_down = false;
    loop {
        match deliver_pass(queue, client) {
            Ok(()) => {
                if store_down {
                    log!("store {} reachable again", client.addr());
                    store_down = false;
                }
            }
            Err(e) => {
                if !store_down {
                    log!("{e}; will retry every {} ms", retry.as_millis());
                    store_down = true;
                }
            }
        }
        wake.wait(retry);
    }
}

/// Delivers everything queued, oldest first. `Err` when the store is
/// unreachable (the rest stays queued).
fn deliver_pass(queue: &Queue, client: &StoreClient) -> Result<(), ClientError> {
    let files = match queue.pending() {
        Ok(f) => f,
        Err(e) => {
            log!("cannot list the queue: {e}");
            return Ok(());
        }
    };
    if files.is_empty() {
        return Ok(());
    }
    let mut conn = client.connect()?;
    for path in files {
        let entry = match queue.load(&path) {
            Ok(e) => e,
            Err(why) => {
                match queue.quarantine(&path) {
                    Ok(to) => log!("unreadable queue file moved to {}: {why}", to.display()),
                    Err(e) => log!(
                        "unreadable queue file {}: {why}; cannot move it: {e}",
                        path.display()
                    ),
                }
                continue;
            }
        };
        match conn.put(&entry.mailbox, &entry.body) {
            Ok(seq) => {
                log!("delivered {} to {} as seq {seq}", entry.name, entry.mailbox);
                if let Err(e) = queue.remove(&path) {
                    // It will be delivered again: a duplicate, never a loss.
                    log!("cannot remove delivered {}: {e}", entry.name);
                }
            }
            Err(ClientError::Rejected(why)) => match queue.quarantine(&path) {
                Ok(to) => log!(
                    "store refused {} for good ({why}); moved to {}",
                    entry.name,
                    to.display()
                ),
                Err(e) => log!("store refused {} ({why}); cannot move it: {e}", entry.name),
            },
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
