//! The event history under a flood: far more events at once than any buffer
//! holds (ten thousand resources starting), from many publishers at the same
//! time, with a live subscriber that never reads. Every non-routine event
//! must be in `events.jsonl`, each once, in each publisher's order, and no
//! "history-lagged" line: a record that drops events is not a record.

use std::collections::HashMap;
use std::time::Duration;

use warden::history::{self, Filter};
use warden::monitor::{Event, EventBus, EventKind};

const PUBLISHERS: usize = 8;
const EACH: usize = 25_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_events_is_recorded_whole_and_in_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (bus, record) = EventBus::new(Default::default());
    // Subscribed and never read: it falls behind at once, and must not make
    // the record fall behind with it.
    let _idle_listener = bus.subscribe();
    let (writer, history) = history::spawn_writer(record, dir.path())
        .await
        .expect("the writer starts");

    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let bus = bus.clone();
            tokio::spawn(async move {
                for i in 0..EACH {
                    bus.send(Event::now(
                        &format!("r{p}"),
                        EventKind::Policy {
                            action: "decision".to_string(),
                            reason: format!("{i}"),
                        },
                    ));
                    // Routine events are published too but never recorded.
                    bus.send(Event::now(
                        &format!("r{p}"),
                        EventKind::Check {
                            check: "is-alive",
                            healthy: true,
                            latency_us: 1,
                            reason: None,
                        },
                    ));
                    if i % 1000 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    for publisher in publishers {
        publisher.await.expect("a publisher finishes");
    }
    writer.finish(Duration::from_secs(60)).await;

    let text = std::fs::read_to_string(history.path()).expect("the history is readable");
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        !text.contains("history-lagged"),
        "the history dropped events: {}",
        lines
            .iter()
            .find(|line| line.contains("history-lagged"))
            .unwrap_or(&"")
    );
    assert_eq!(
        lines.len(),
        PUBLISHERS * EACH,
        "every non-routine event once, no routine one"
    );
    let mut next: HashMap<String, usize> = HashMap::new();
    for (n, line) in lines.iter().enumerate() {
        let event: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("line {} is not JSON ({e}): {line}", n + 1));
        assert_eq!(event["event"], "policy", "line {}: {line}", n + 1);
        let resource = event["resource"].as_str().expect("a resource").to_string();
        let seen: usize = event["reason"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .expect("a number");
        let expected = next.entry(resource.clone()).or_default();
        assert_eq!(
            seen,
            *expected,
            "line {}: {resource}'s events out of order or missing",
            n + 1
        );
        *expected += 1;
    }
    // What the API reads agrees: each publisher's newest event is its last.
    for p in 0..PUBLISHERS {
        let filter = Filter {
            resource: Some(format!("r{p}")),
            ..Filter::default()
        };
        let newest = history
            .matching(&filter, 1)
            .await
            .expect("the history reads");
        assert_eq!(newest.len(), 1, "r{p}");
        assert_eq!(newest[0]["reason"], format!("{}", EACH - 1), "r{p}");
    }
}
