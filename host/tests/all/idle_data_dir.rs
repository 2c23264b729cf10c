//! An idle resource holds no descriptor of its `/data` (issue #19: one
//! open file per live resource capped a node at its open-file limit), and
//! its plugin still finds `/data` as it left it at its next call: the
//! handle wasi-libc keeps is pointed back at the directory, opened again by
//! the same path (`runtime/data_preopen.rs`). That reopening is a new path
//! to the disk, so the abuse: a directory swapped for another (a link to
//! one outside) between two calls is not followed.

use std::path::Path;

use crate::common::*;
use warden::monitor::{Monitor, ResourceHandle};

const HOSTILE: &str = env!("WARDEN_PLUGIN_HOSTILE_HOST");

async fn ask(handle: &ResourceHandle, code: &str, payload: &str) -> Result<String, String> {
    handle.control(code, payload).await.expect("actor runs")
}

/// How many of this process's descriptors are open on `path` itself.
fn descriptors_on(path: &Path) -> usize {
    let path = path.canonicalize().expect("the data directory exists");
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| *target == path)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_resource_holds_no_descriptor_of_its_data() {
    let mut monitor = Monitor::default();
    let spec = spec("idle-data", &[]);
    let data = spec.dirs.data.clone();
    let handle = online_resource(&mut monitor, HOSTILE, spec).await;
    assert_eq!(descriptors_on(&data), 0, "opened and online, then idle");

    assert_eq!(
        ask(&handle, "write-file", "/data/note=kept across calls").await,
        Ok("wrote 17 bytes".to_string())
    );
    assert_eq!(
        descriptors_on(&data),
        0,
        "idle after a call that used /data"
    );
    // The guest's handle on /data, parked in between, works again.
    assert_eq!(
        ask(&handle, "read-file", "/data/note").await,
        Ok("kept across calls".to_string())
    );
    assert_eq!(descriptors_on(&data), 0);

    // What the plugin opens itself stays open across calls (its own
    // descriptors, counted against its handle cap), /data's does not.
    assert_eq!(
        ask(&handle, "hoard-files", "3").await,
        Ok("holding 3 files".to_string())
    );
    assert_eq!(descriptors_on(&data.join("hoard-0")), 1);
    assert_eq!(descriptors_on(&data), 0);
    assert_eq!(
        ask(&handle, "read-file", "/data/note").await,
        Ok("kept across calls".to_string())
    );
    assert_eq!(
        std::fs::read_to_string(data.join("note")).unwrap(),
        "kept across calls"
    );
    monitor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_swapped_between_calls_is_not_followed() {
    let mut monitor = Monitor::default();
    let spec = spec("swapped-data", &[]);
    let data = spec.dirs.data.clone();
    let handle = online_resource(&mut monitor, HOSTILE, spec).await;
    assert_eq!(
        ask(&handle, "write-file", "/data/note=mine").await,
        Ok("wrote 4 bytes".to_string())
    );

    // Between two calls, /data's path becomes a link to a directory
    // outside, which holds a secret.
    let outside = tempfile::tempdir().expect("tempdir");
    std::fs::write(outside.path().join("secret"), "outside").expect("secret");
    let moved = data.with_extension("moved");
    std::fs::rename(&data, &moved).expect("move /data aside");
    std::os::unix::fs::symlink(outside.path(), &data).expect("link");

    let read = ask(&handle, "read-file", "/data/secret").await;
    assert!(read.is_err(), "the link was followed: {read:?}");
    let wrote = ask(&handle, "write-file", "/data/planted=x").await;
    assert!(wrote.is_err(), "the link was followed: {wrote:?}");
    assert!(!outside.path().join("planted").exists());
    assert_eq!(descriptors_on(outside.path()), 0);

    // The same directory back under its path: found again, as it was.
    std::fs::remove_file(&data).expect("unlink");
    std::fs::rename(&moved, &data).expect("move /data back");
    assert_eq!(
        ask(&handle, "read-file", "/data/note").await,
        Ok("mine".to_string())
    );
    assert_eq!(descriptors_on(&data), 0);
    monitor.shutdown().await;
}
