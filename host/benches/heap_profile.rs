//! Where the agent's heap goes per resource: a real agent, in this
//! process, under dhat's heap profiler (`dhat::Alloc` as the global
//! allocator), with N `chaos` resources (the startup bench's: each in a
//! group of its own, is-alive every second).
//!
//! The agent is started once to fill the compile cache and stopped (dhat
//! records nothing until a profiler exists), then started again under the
//! profiler; once every resource is Online and a few checks have run, the
//! profiler is dropped, which writes `dhat-heap.json` with every live block
//! and the stack that allocated it. The bench then groups those bytes:
//! each allocation site is put in the first category of [`CATEGORIES`]
//! whose pattern one of its frames names, and it prints a table of bytes
//! and blocks per resource, then the largest sites.
//!
//! Run: `cargo bench -p warden --bench heap_profile` (release; its
//! line tables name the frames). `WARDEN_BENCH_RESOURCES` (default 1000)
//! sets N; `WARDEN_BENCH_SITES` how many sites to list (default 25);
//! `WARDEN_BENCH_KEEP=DIR` copies the profile there (open it in dhat's
//! viewer, `dh_view.html`).
//!
//! The bytes are what the program asked for, not what malloc keeps
//! resident for them (its headers, rounding, free lists): the startup
//! bench's anonymous RSS per resource is the other half of the picture.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use warden::agent::Agent;
use warden::config::AgentConfig;
use warden::monitor::ResourceState;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const CHAOS: &str = env!("WARDEN_PLUGIN_CHAOS");

/// What holds a live block, by a pattern in the frames that allocated it
/// (a frame is "ADDRESS: NAME (FILE:LINE:COLUMN)"; a release build's names
/// carry their generic arguments, so a channel's block is named after its
/// message type). The first category of this list that any frame matches
/// wins, so the specific ones (a channel's file, a wasmtime structure) come
/// before the general ones (wasmtime, then the agent's modules, whose
/// frames also appear outwards of every allocation they cause).
const CATEGORIES: &[(&str, &str)] = &[
    // `tokio::runtime::task::new_task`: a task's cell, its future inside.
    ("new_task<", "tokio tasks (a future each)"),
    ("redb", "embedded store"),
    ("sync/mpsc/", "mpsc channels"),
    ("sync/broadcast", "broadcast channels (fixed)"),
    ("sync/watch", "watch channels"),
    ("StoreInner", "store"),
    ("vm::instance::Instance>", "core instances (vmctx)"),
    (
        "vm::component::ComponentInstance>",
        "component instance (vmctx)",
    ),
    ("module::registry", "store's module registry"),
    ("alloc_dynamic_table_elements", "tables"),
    ("wasmtime_wasi", "WASI context"),
    ("ResourceTable", "resource table"),
    ("vm::instance::allocator", "core instances (other)"),
    ("wasmtime::runtime::component", "component instance (other)"),
    ("wasmtime", "wasmtime (other)"),
    ("ResourceContext", "resource context"),
    ("host_state", "resource context"),
    ("guest_output", "resource context"),
    ("fiber_stacks", "fiber stack slot"),
    ("warden::runtime::instance", "runtime::Instance"),
    ("warden_policy", "policy engine"),
    ("warden::history", "history (fixed)"),
    ("warden::monitor", "monitor"),
    ("warden::node", "node"),
    ("warden::metrics", "metrics"),
    ("warden::desired", "desired (configuration)"),
    ("warden::config", "configuration"),
    ("warden::store", "embedded store"),
    ("warden::agent", "agent start"),
    ("tokio", "tokio (other)"),
];

/// A frame of the standard library or of the profiler: not where the
/// program chose to allocate.
fn plumbing(frame: &str) -> bool {
    [
        "alloc/src/",
        "core/src/",
        "std/src/",
        "src/raw_vec",
        "src/alloc/",
        "dhat",
        "heap_profile.rs",
    ]
    .iter()
    .any(|p| frame.contains(p))
}

fn config_text(resources: usize, data_dir: &Path, plugins_dir: &Path) -> String {
    let mut text = format!(
        "[node]\nname = \"bench\"\ndata_dir = \"{}\"\nplugins_dir = \"{}\"\n",
        data_dir.display(),
        plugins_dir.display()
    );
    for i in 0..resources {
        text.push_str(&format!(
            "[[resource]]\nname = \"r{i}\"\ntype = \"chaos\"\nis_alive_interval_ms = 1000\nlooks_alive_interval_ms = 0\n"
        ));
    }
    text
}

/// Start the agent and wait until every resource is Online.
async fn start_online(config: &Path, resources: usize) -> Agent {
    let config = AgentConfig::load(config).expect("the bench's configuration");
    let agent = Agent::start(config).await.expect("the agent starts");
    let started = Instant::now();
    loop {
        let status = agent.node.status().await.expect("the node answers");
        let online = status
            .groups
            .iter()
            .flat_map(|g| &g.resources)
            .filter(|r| r.state == ResourceState::Online)
            .count();
        if online >= resources {
            return agent;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "only {online} of {resources} resources Online after 600 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One allocation site of the profile: its live bytes and blocks at the
/// end, and its frames, innermost first.
struct Site {
    bytes: u64,
    blocks: u64,
    frames: Vec<String>,
}

fn sites(profile: &serde_json::Value) -> Vec<Site> {
    let table: Vec<String> = profile["ftbl"]
        .as_array()
        .expect("dhat's frame table")
        .iter()
        .map(|f| f.as_str().unwrap_or_default().to_string())
        .collect();
    profile["pps"]
        .as_array()
        .expect("dhat's program points")
        .iter()
        .map(|pp| Site {
            bytes: pp["eb"].as_u64().unwrap_or(0),
            blocks: pp["ebk"].as_u64().unwrap_or(0),
            frames: pp["fs"]
                .as_array()
                .map(|fs| {
                    fs.iter()
                        .filter_map(|i| table.get(i.as_u64()? as usize).cloned())
                        .collect()
                })
                .unwrap_or_default(),
        })
        .filter(|s| s.bytes > 0)
        .collect()
}

fn category(site: &Site) -> &'static str {
    CATEGORIES
        .iter()
        .find(|(pattern, _)| site.frames.iter().any(|f| f.contains(pattern)))
        .map_or("other", |(_, name)| name)
}

/// The frames worth reading: the first few of the program's own.
fn short_stack(site: &Site) -> String {
    site.frames
        .iter()
        .filter(|f| !plumbing(f))
        .take(3)
        .map(|f| {
            // "0x1234: name (file:line:column)": the name and the file.
            let f = f.split_once(": ").map_or(f.as_str(), |(_, rest)| rest);
            let (name, place) = f.split_once(" (").unwrap_or((f, ""));
            let name: String = name.chars().take(80).collect();
            let place = place.trim_end_matches(')');
            let place = place.rsplit('/').next().unwrap_or(place);
            format!("`{name}` ({place})")
        })
        .collect::<Vec<_>>()
        .join(" ← ")
}

fn main() {
    let resources: usize = std::env::var("WARDEN_BENCH_RESOURCES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    let listed: usize = std::env::var("WARDEN_BENCH_SITES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(25);
    let dir = tempfile::tempdir().expect("tempdir");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).expect("plugins dir");
    std::fs::copy(CHAOS, plugins.join("chaos.wasm")).expect("copy chaos");
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        config_text(resources, &dir.path().join("data"), &plugins),
    )
    .expect("config");
    let profile = dir.path().join("dhat-heap.json");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .event_interval(8)
        .build()
        .expect("tokio");
    let (live, total_blocks) = runtime.block_on(async {
        // The compile cache filled, outside the profile.
        start_online(&config, resources).await.shutdown().await;
        let profiler = dhat::Profiler::builder()
            .file_name(&profile)
            .trim_backtraces(Some(40))
            .build();
        let before = dhat::HeapStats::get();
        let agent = start_online(&config, resources).await;
        // A few checks of every resource.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let after = dhat::HeapStats::get();
        drop(profiler);
        agent.shutdown().await;
        (
            after.curr_bytes.saturating_sub(before.curr_bytes),
            after.curr_blocks.saturating_sub(before.curr_blocks),
        )
    });
    let text = std::fs::read_to_string(&profile).expect("dhat wrote its profile");
    if let Ok(keep) = std::env::var("WARDEN_BENCH_KEEP") {
        std::fs::copy(&profile, Path::new(&keep).join("dhat-heap.json")).expect("keep the profile");
    }
    let profile: serde_json::Value = serde_json::from_str(&text).expect("dhat's JSON");
    let sites = sites(&profile);
    let n = resources as f64;
    println!(
        "{resources} resources: {:.1} KiB and {:.1} blocks live per resource, \
         counting everything the second start allocated and still holds",
        live as f64 / 1024.0 / n,
        total_blocks as f64 / n
    );
    println!();
    let mut by_category: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for site in &sites {
        let entry = by_category.entry(category(site)).or_default();
        entry.0 += site.bytes;
        entry.1 += site.blocks;
    }
    let mut rows: Vec<_> = by_category.into_iter().collect();
    rows.sort_by_key(|row| std::cmp::Reverse(row.1.0));
    println!("| holder (first matching frame) | bytes per resource | blocks per resource |");
    println!("|---|---:|---:|");
    for (name, (bytes, blocks)) in rows {
        println!(
            "| {name} | {:.2} KiB | {:.1} |",
            bytes as f64 / 1024.0 / n,
            blocks as f64 / n
        );
    }
    println!();
    let mut sorted: Vec<&Site> = sites.iter().collect();
    sorted.sort_by_key(|site| std::cmp::Reverse(site.bytes));
    println!("| bytes per resource | blocks per resource | holder | where (innermost first) |");
    println!("|---:|---:|---|---|");
    for site in sorted.into_iter().take(listed) {
        println!(
            "| {:.0} | {:.1} | {} | {} |",
            site.bytes as f64 / n,
            site.blocks as f64 / n,
            category(site),
            short_stack(site)
        );
    }
}
