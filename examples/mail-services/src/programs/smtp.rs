//! mail-smtp: the SMTP instance. Accepts mail over SMTP and writes each
//! message through to the store (one PUT per recipient) before saying 250.

use std::sync::Arc;
use std::time::Duration;

use crate::args::{Args, Spec};
use crate::log;
use crate::smtp::{self, Config, Deliver, DeliveryError, Envelope};
use crate::store_client::{ClientError, StoreClient};

const USAGE: &str = "\
usage: mail-smtp --listen ADDR --store ADDR [--hostname NAME]

Accepts SMTP on ADDR and stores each message in the mail store at --store.
";

const SPEC: Spec = Spec {
    program: "mail-smtp",
    usage: USAGE,
    flags: &[("--listen", true), ("--store", true), ("--hostname", true)],
};

struct WriteThrough {
    store: StoreClient,
}

impl Deliver for WriteThrough {
    fn deliver(&self, env: &Envelope) -> Result<String, DeliveryError> {
        let map = |e: ClientError| {
            log!("delivery to the store failed: {e}");
            if e.is_temporary() {
                DeliveryError::Temporary("store unavailable".into())
            } else {
                DeliveryError::Permanent(e.to_string())
            }
        };
        let mut conn = self.store.connect().map_err(map)?;
        let mut seqs = Vec::new();
        for mbox in &env.mailboxes {
            seqs.push(conn.put(mbox, &env.body).map_err(map)?.to_string());
        }
        Ok(seqs.join(","))
    }
}

pub fn main(argv: impl IntoIterator<Item = String>) {
    log::init("mail-smtp");
    let args = Args::from_iter_or_exit(&SPEC, argv);
    let listen = args.need_addr("--listen");
    let store = args.need_addr("--store");
    let hostname = args.hostname("--hostname");
    let listener = super::listen_or_exit(listen);
    super::exit_on_terminate();
    let local = listener.local_addr().map_or(listen, |a| a);
    log!("listening on {local} as {hostname}, storing to {store}");
    let deliver = Arc::new(WriteThrough {
        store: StoreClient::new(store, Duration::from_secs(10)),
    });
    smtp::serve(listener, Config::new(hostname, "warden-mail"), deliver)
}
