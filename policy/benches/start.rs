//! The engine's share of an agent's start: one node comes up, N groups of
//! one resource each are asked online, and every resource reports Online.
//! The same events go through the engine as it is (reconciling the groups an
//! event touches, deadlines in an index) and through
//! `Engine::reconciling_everything` (every group reconciled on every event,
//! every group scanned for the next deadline, as before), timing the whole
//! sequence with `next_deadline` asked after each event as the agent's loop
//! does. Prints a markdown table.
//!
//! Run: `cargo bench -p warden-policy --bench start`;
//! `WARDEN_BENCH_SIZES=100,1000` chooses the sizes (default 100, 1 000,
//! 5 000, 10 000; the old way is skipped above 10 000).

use std::time::{Duration, Instant};

use warden_policy::{Action, ClusterConfig, Engine, Event, GroupConfig, Millis, ResourceConfig};

fn config(groups: usize) -> ClusterConfig {
    ClusterConfig {
        nodes: vec!["n1".to_string()],
        singleton_types: Vec::new(),
        groups: (0..groups)
            .map(|g| {
                let mut group = GroupConfig::new(format!("g{g}"));
                group
                    .resources
                    .push(ResourceConfig::new(format!("r{g}"), "chaos".to_string()));
                group
            })
            .collect(),
    }
}

/// Node up, every group online, every resource confirmed; how long that
/// took and how many actions it produced.
fn start(mut engine: Engine, groups: usize) -> (Duration, usize) {
    let mut actions = 0;
    let mut step = |engine: &mut Engine, event: Event, at: u64| {
        let out: Vec<Action> = engine.handle(event, Millis(at));
        actions += out.len();
        std::hint::black_box(engine.next_deadline());
    };
    let started = Instant::now();
    step(&mut engine, Event::NodeUp("n1".to_string()), 0);
    for g in 0..groups {
        step(&mut engine, Event::GroupOnlineRequested(format!("g{g}")), 1);
    }
    for g in 0..groups {
        let online = Event::ResourceOnline {
            resource: format!("r{g}"),
            node: "n1".to_string(),
        };
        step(&mut engine, online, 2);
    }
    (started.elapsed(), actions)
}

fn main() {
    let sizes: Vec<usize> = std::env::var("WARDEN_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![100, 1000, 5000, 10_000]);
    println!("| groups | events | touched groups only | every group (before) |");
    println!("|---:|---:|---:|---:|");
    for groups in sizes {
        let engine = Engine::new(config(groups)).expect("a valid configuration");
        let (new, new_actions) = start(engine.clone(), groups);
        let old = (groups <= 10_000).then(|| start(engine.reconciling_everything(), groups));
        if let Some((_, old_actions)) = old {
            assert_eq!(new_actions, old_actions, "both decide the same");
        }
        let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
        println!(
            "| {groups} | {} | {} | {} |",
            2 * groups + 1,
            ms(new),
            old.map_or("-".to_string(), |(d, _)| ms(d))
        );
    }
}
