//! Hot-swap and start-up benchmark: prints a markdown table.
//!
//! - swap time: how long `Node::install` of a new version of `chaos` takes
//!   under 10, 100 and 1 000 Online resources of the type (every resource
//!   validated against the new version, moved to a fresh instance, and
//!   checked with an is-alive before it takes over);
//! - agent start time, with a cold compile cache (an empty data directory)
//!   and a warm one (the same directory again): `Agent::start` until it
//!   returns, i.e. plugins loaded and every resource validated.
//!
//! Run: `cargo bench -p warden --bench swap`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use warden::agent::Agent;
use warden::config::AgentConfig;
use warden::monitor::ResourceState;
use warden::runtime::Plugin;

const CHAOS: &str = env!("WARDEN_PLUGIN_CHAOS");
const CHAOS_NEXT: &str = env!("WARDEN_PLUGIN_CHAOS_NEXT");

fn config(dir: &Path, resources: usize) -> AgentConfig {
    let mut text = format!(
        "[node]\nname = \"bench\"\ndata_dir = \"data\"\nplugins_dir = \"plugins\"\n[runtime]\nmax_instances = {}\n",
        resources * 2 + 64
    );
    for i in 0..resources {
        text.push_str(&format!(
            "[[resource]]\nname = \"r{i}\"\ntype = \"chaos\"\nis_alive_interval_ms = 10000\nlooks_alive_interval_ms = 0\n"
        ));
    }
    let path = dir.join("node.toml");
    std::fs::write(&path, text).expect("config");
    AgentConfig::load(&path).expect("config")
}

async fn all_online(agent: &Agent, resources: usize) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let status = agent.node.status().await.expect("status");
        let online = status
            .groups
            .iter()
            .flat_map(|g| g.resources.iter())
            .filter(|r| r.state == ResourceState::Online)
            .count();
        if online == resources {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {online} of {resources} online"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

async fn swap_row(resources: usize) -> (Duration, Duration, Duration) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("plugins")).expect("mkdir");
    std::fs::copy(CHAOS, dir.path().join("plugins/chaos.wasm")).expect("copy");

    let started = Instant::now();
    let agent = Agent::start(config(dir.path(), resources))
        .await
        .expect("start");
    let cold = started.elapsed();
    all_online(&agent, resources).await;

    let bytes = std::fs::read(CHAOS_NEXT).expect("next");
    let next = Arc::new(Plugin::load(&agent.runtime, &bytes).await.expect("load"));
    let swapping = Instant::now();
    let done = agent.node.install(next).await.expect("swap");
    let swap = swapping.elapsed();
    assert!(
        done.contains(&format!("{resources} resource(s) moved")),
        "{done}"
    );
    agent.shutdown().await;

    // The same data directory again: the compile cache is warm.
    let started = Instant::now();
    let agent = Agent::start(config(dir.path(), resources))
        .await
        .expect("restart");
    let warm = started.elapsed();
    agent.shutdown().await;
    (swap, cold, warm)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .event_interval(8)
        .enable_all()
        .build()
        .expect("tokio");
    runtime.block_on(async {
        println!("| resources | swap (install of a new version) | agent start, cold cache | agent start, warm cache |");
        println!("|---:|---:|---:|---:|");
        for resources in [10, 100, 1000] {
            let (swap, cold, warm) = swap_row(resources).await;
            println!("| {resources} | {} | {} | {} |", ms(swap), ms(cold), ms(warm));
        }
    });
}
