//! Where a resource's events and the policy's decisions go: a broadcast for
//! whoever listens live (metrics, the agent's subscribers), which a slow
//! listener may fall behind on, and the record, which loses nothing.
//!
//! The record is the event history's queue (`history.rs`). It used to be
//! one more broadcast subscriber, and under load (10 000 resources starting)
//! it fell behind the broadcast's buffer and wrote "history-lagged" lines in
//! place of 173 898 events. Now every non-routine event is queued for it on
//! a channel that never drops; the publishers (the node loop, which must
//! never wait, and the actors, from synchronous code) cannot wait either,
//! so the queue is not bounded by blocking them but kept short by the
//! writer, which takes everything queued at once and writes it in one
//! write. Routine events (passing checks) are not recorded, so the queue
//! grows only with real changes.
//!
//! The metrics are counted here too, as each event is published
//! (`counters.rs`): no listener to wake, none to fall behind. A passing
//! check is counted by its actor and, when nobody listens live (an agent's
//! usual case: only tests and benches subscribe), not even built as an
//! event ([`EventBus::listened`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{broadcast, mpsc};

use super::Event;
use super::counters::Counters;

/// How many events a slow live subscriber may fall behind before it misses
/// some (the record misses none).
const LIVE_BUFFER: usize = 16 * 1024;

/// The sending side, cloned into every actor.
#[derive(Clone)]
pub struct EventBus {
    live: broadcast::Sender<Event>,
    record: mpsc::UnboundedSender<Event>,
    /// How many events were queued for the record, for shutdown to wait
    /// until the writer has taken them all (`Record::taken`).
    queued: Arc<AtomicU64>,
    /// What the metrics count, counted as each event is published.
    counters: Arc<Counters>,
}

/// The receiving side of the record: the history writer's.
pub struct Record {
    /// Every non-routine event, in order, none dropped.
    pub events: mpsc::UnboundedReceiver<Event>,
    /// How many are queued and not yet taken (a metric).
    pub queued: Arc<AtomicU64>,
}

impl EventBus {
    /// A bus and its record's receiving side; every event published is
    /// counted in `counters` (the metrics).
    pub fn new(counters: Arc<Counters>) -> (EventBus, Record) {
        let (live, _) = broadcast::channel(LIVE_BUFFER);
        let (record, events) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicU64::new(0));
        let bus = EventBus {
            live,
            record,
            queued: queued.clone(),
            counters,
        };
        (bus, Record { events, queued })
    }

    /// Publishes `event`: queued for the record unless routine, and sent to
    /// the live subscribers (none is not an error: events are for whoever
    /// listens).
    pub fn send(&self, event: Event) {
        self.counters.events.count(&event);
        if !event.is_routine() {
            // Counted first, so a waiter never sees the writer ahead of it.
            self.queued.fetch_add(1, Ordering::SeqCst);
            if self.record.send(event.clone()).is_err() {
                // The writer is gone (the agent is stopping): nothing to wait for.
                self.queued.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let _ = self.live.send(event);
    }

    /// Every event from now on, routine ones included, for as long as the
    /// subscriber keeps up.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.live.subscribe()
    }

    /// Whether anyone listens live: a routine event nobody listens to need
    /// not be built (it is neither recorded nor counted from the stream).
    pub fn listened(&self) -> bool {
        self.live.receiver_count() > 0
    }

    /// A way to subscribe later that does not keep the stream open (the
    /// agent's, for [`crate::agent::Agent::subscribe`]): a held receiver
    /// would count as a listener for ever.
    pub fn subscriber(&self) -> Subscriber {
        Subscriber(self.live.downgrade())
    }
}

/// Subscribes to a bus's live stream without listening meanwhile.
#[derive(Clone)]
pub struct Subscriber(broadcast::WeakSender<Event>);

impl Subscriber {
    /// Every event from now on; closed at once if the bus is gone.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        match self.0.upgrade() {
            Some(live) => live.subscribe(),
            None => broadcast::channel(1).1,
        }
    }
}
