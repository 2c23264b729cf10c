//! The quota on a resource's `/data`: a hostile plugin (`plugins/hostile-host`,
//! control code `disk`) fills its directory by every WASI path that grows
//! it, and each attempt stops at the quota with `insufficient-space`
//! (ENOSPC) while the resource, the agent and a neighbour go on; a plugin
//! under its quota writes and rewrites freely; the node configuration's
//! `[plugins.TYPE] data_quota_mib` is what the real agent enforces.

use std::path::Path;
use std::time::Duration;

use crate::common::agent_process::AgentProcess;
use crate::common::*;
use warden::monitor::{Monitor, ResourceHandle, ResourceState};
use warden::runtime::{Grants, QuotaLimits};

const HOSTILE: &str = env!("WARDEN_PLUGIN_HOSTILE_HOST");

const MIB: u64 = 1 << 20;

/// The quota of these tests: 1 MiB and 64 entries.
const SMALL: QuotaLimits = QuotaLimits {
    bytes: MIB,
    entries: 64,
};

/// A hostile-host resource online with the quota `limits`; its data
/// directory.
async fn resource(
    monitor: &mut Monitor,
    name: &str,
    limits: QuotaLimits,
) -> (ResourceHandle, std::path::PathBuf) {
    let mut spec = spec(name, &[]);
    spec.grants = Grants {
        data_quota: limits,
        ..Grants::default()
    };
    let data = spec.dirs.data.clone();
    (online_resource(monitor, HOSTILE, spec).await, data)
}

async fn disk(handle: &ResourceHandle, attack: &str) -> Result<String, String> {
    handle.control("disk", attack).await.expect("actor runs")
}

/// Bytes (files and links, apparent size) and entries under `dir`, as
/// the test sees them: its own walk, not the agent's.
fn usage(dir: &Path) -> (u64, u64) {
    let (mut bytes, mut entries) = (0, 0);
    let mut todo = vec![dir.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let entry = entry.expect("entry");
            let meta = entry.path().symlink_metadata().expect("lstat");
            entries += 1;
            if meta.is_dir() {
                todo.push(entry.path());
            } else {
                bytes += meta.len();
            }
        }
    }
    (bytes, entries)
}

/// Each way a plugin grows `/data`, past the quota: the call fails with
/// insufficient-space (raw WASI; EIO through std's streams), the
/// directory stays within the quota (streams are cut at the byte; a single
/// write is refused whole), and the resource keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_way_of_growing_data_stops_at_the_quota() {
    let mut monitor = Monitor::default();
    let (neighbour, neighbour_data) = resource(&mut monitor, "neighbour", SMALL).await;
    let attacks = [
        ("write", "write f 2000000", "insufficient-space"),
        ("stream", "stream f 3000000", "insufficient-space"),
        ("append", "append f 3000000", "insufficient-space"),
        // Through std, wasi-libc reports a failed stream write as EIO
        // without asking for its error code: the write still fails.
        ("std", "std f 3000000", "(os error 29)"),
        ("grow", "grow f 5000000", "insufficient-space"),
        ("files", "files f 100000 1000", "(os error 29)"),
        ("dirs", "dirs d 0 1000", "insufficient-space"),
        ("symlinks", "symlinks l 10 1000", "insufficient-space"),
        ("hardlinks", "hardlinks h 0 1000", "insufficient-space"),
    ];
    for (name, attack, error) in attacks {
        let (handle, data) = resource(&mut monitor, name, SMALL).await;
        let err = disk(&handle, attack)
            .await
            .expect_err(&format!("{attack}: past the quota"));
        assert!(err.contains(error), "{attack}: {err}");
        let (bytes, entries) = usage(&data);
        assert!(bytes <= SMALL.bytes, "{attack}: {bytes} bytes in /data");
        assert!(entries <= SMALL.entries, "{attack}: {entries} entries");
        // The refusal broke nothing: the same instance answers, and
        // writes that fit still go through once there is room.
        assert_eq!(
            handle.control("checkpoint-set", "k=v").await.expect("runs"),
            Ok("stored".to_string()),
            "{attack}"
        );
        assert_eq!(
            handle.status().state,
            ResourceState::Online,
            "{attack}: {:?}",
            handle.status()
        );
    }
    // The neighbour has its own quota, untouched by the others.
    assert_eq!(
        disk(&neighbour, "stream n 900000").await.as_deref(),
        Ok("streamed 900000 bytes")
    );
    assert_eq!(usage(&neighbour_data), (900_000, 1));
    monitor.shutdown().await;
}

/// A stream cut at the quota wrote exactly up to it; a sparse file counts
/// at its length; removing files makes room again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_directory_fills_to_the_byte_and_frees_when_emptied() {
    let mut monitor = Monitor::default();
    let (handle, data) = resource(&mut monitor, "full", SMALL).await;
    let err = disk(&handle, "stream f 2000000").await.expect_err("past");
    assert!(err.contains("insufficient-space"), "{err}");
    assert_eq!(usage(&data), (MIB, 1), "the stream stopped at the quota");
    // Full: even one byte more is refused, by every path.
    for attack in ["write g 1", "append f 1", "std g 1", "grow f 1048577"] {
        assert!(disk(&handle, attack).await.is_err(), "{attack}");
    }
    assert_eq!(usage(&data).0, MIB);

    assert_eq!(
        disk(&handle, "remove f 0").await.as_deref(),
        Ok("removed f")
    );
    // A sparse file of 600 KiB takes no disk but counts at its length.
    assert_eq!(
        disk(&handle, "grow s 600000").await.as_deref(),
        Ok("s is 600000 bytes long")
    );
    let err = disk(&handle, "write w 600000")
        .await
        .expect_err("600 + 600 KB");
    assert!(err.contains("insufficient-space"), "{err}");
    assert_eq!(
        disk(&handle, "write w 400000").await.as_deref(),
        Ok("wrote 400000 bytes")
    );
    monitor.shutdown().await;
}

/// Overwrites count as growth until the estimate says full; then a walk
/// finds the truth and the plugin goes on. Writing and rewriting within
/// the quota never runs into it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewriting_within_the_quota_never_exhausts_it() {
    let mut monitor = Monitor::default();
    let (handle, data) = resource(&mut monitor, "rewriter", SMALL).await;
    // 100 times 300 KB through std (create, truncate, stream): 30 MB
    // written, never more than 300 KB kept.
    assert_eq!(
        disk(&handle, "rewrite r 300000 100").await.as_deref(),
        Ok("rewrote 100 times")
    );
    // The same through the raw calls: one write and a stream at offset 0.
    for _ in 0..20 {
        assert_eq!(
            disk(&handle, "write w 300000").await.as_deref(),
            Ok("wrote 300000 bytes")
        );
        assert_eq!(
            disk(&handle, "stream s 300000").await.as_deref(),
            Ok("streamed 300000 bytes")
        );
    }
    // Creating the same files again and again: 40 names, 50 times.
    for _ in 0..50 {
        assert_eq!(
            disk(&handle, "files f 10 40").await.as_deref(),
            Ok("40 files")
        );
    }
    assert_eq!(usage(&data), (900_400, 43));
    monitor.shutdown().await;
}

/// The real agent enforces `[plugins.TYPE] data_quota_mib` and
/// `data_quota_files`, logs the refusal naming the resource, and refuses
/// to start on an invalid value, naming the key.
#[test]
fn the_node_configuration_sets_the_quota() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).expect("plugins dir");
    std::fs::copy(HOSTILE, plugins.join("hostile-host.wasm")).expect("copy");
    let config = |quota: &str| {
        format!(
            r#"
[node]
name = "n"
data_dir = "data"
plugins_dir = "plugins"

[plugins.hostile-host]
{quota}

[[resource]]
name = "filler"
type = "hostile-host"

[[resource]]
name = "quiet"
type = "hostile-host"
"#
        )
    };

    // An invalid value: the agent does not start, and says which key.
    std::fs::write(dir.path().join("bad.toml"), config("data_quota_mib = 0")).expect("config");
    let out = std::process::Command::new(agent_process::WARDEN)
        .args(["agent", "--config"])
        .arg(dir.path().join("bad.toml"))
        .output()
        .expect("run the agent");
    assert!(!out.status.success(), "started with data_quota_mib = 0");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("[plugins.hostile-host]") && stderr.contains("data_quota_mib = 0"),
        "{stderr}"
    );

    let agent = AgentProcess::start(
        dir.path(),
        &config("data_quota_mib = 2\ndata_quota_files = 20"),
    );
    wait_until("both resources online", Duration::from_secs(30), || {
        ["filler", "quiet"]
            .iter()
            .all(|r| agent.resource(r).is_some_and(|s| s["state"] == "Online"))
            .then_some(())
    });
    let control = |resource: &str, payload: &str| {
        agent.cli(&["resource", "control", resource, "disk", payload])
    };
    // 2 MiB, not the default 256: three of them do not fit.
    let out = control("filler", "stream big 3000000");
    assert!(!out.status.success(), "3 MB written under a 2 MiB quota");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("insufficient-space"), "{err}");
    // 20 entries, not the default 10 000.
    let out = control("filler", "dirs d 0 30");
    assert!(!out.status.success(), "30 directories under a quota of 20");
    let data = dir.path().join("data/resources/filler");
    let (bytes, entries) = usage(&data);
    assert!(
        bytes <= 2 * MIB && entries <= 20,
        "{bytes} bytes, {entries} entries"
    );
    let log = wait_until("the refusal in the log", Duration::from_secs(10), || {
        let log = agent.log();
        log.contains("the data directory is full").then_some(log)
    });
    let line = log
        .lines()
        .find(|l| l.contains("the data directory is full"))
        .expect("a line");
    assert!(
        line.contains("filler") && line.contains("of 2097152 bytes"),
        "{line}"
    );

    // The agent and the neighbour go on.
    let out = control("quiet", "write q 1000000");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(agent.resource("filler").expect("filler")["state"], "Online");
    agent.stop();
}
