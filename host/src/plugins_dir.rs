//! The plugins directory of a running agent: drop a `.wasm` file in to add
//! a resource type, replace it to upgrade the type under running resources.
//!
//! The directory is polled (every [`POLL`]) rather than watched through
//! inotify: polling sees the same thing whatever the editor or copy tool
//! does (write in place, write and rename, several renames), and costs a
//! `stat` per file per poll. A file is taken only once it is *settled*: its
//! size and modification time unchanged across two polls, so a copy in
//! progress is not read half-written. Names that do not end in `.wasm`, or
//! start with a dot (editors' and copiers' temporary files), are ignored.
//!
//! A file that fails to load, or that describes a type whose name it does
//! not hold ([`TypeSources`]: a file `foo.wasm` calling itself `process`),
//! is reported (event `rejected`, with the reason) and changes nothing. Removing a file changes nothing either: the
//! type stays loaded, with its resources, until the agent restarts; the
//! event `removed` says so.
//!
//! In a cluster, a file the directory installed is handed to
//! [`crate::rollout`], which stores it in etcd and announces it to every
//! node; other nodes' builds arrive here as files the rollout wrote.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::task::JoinHandle;

use crate::monitor::{Event, EventKind};
use crate::node::Node;
use crate::rollout::Rollout;
use crate::runtime::{CompileCache, Runtime};
use crate::type_sources::TypeSources;

/// How often the directory is looked at.
pub(crate) const POLL: Duration = Duration::from_millis(250);

/// What a file looked like at one poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    len: u64,
    modified: Option<SystemTime>,
}

/// Per file: what the last poll saw, and the content last taken (a hash).
#[derive(Default)]
struct Tracked {
    last: Option<Seen>,
    taken: Option<(Seen, u64)>,
}

/// Watch `dir` until the task is aborted. `loaded_at_start` are the files
/// (and content hashes) the agent read at start, which are not read again;
/// `sources` says which file may provide which type; `rollout`, in a
/// cluster, takes every file installed.
pub(crate) fn spawn(
    dir: PathBuf,
    runtime: Arc<Runtime>,
    node: Node,
    cache: CompileCache,
    sources: TypeSources,
    loaded_at_start: Vec<(PathBuf, u64)>,
    rollout: Option<Arc<Rollout>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut files: HashMap<PathBuf, Tracked> = HashMap::new();
        // What start-up read (same path, same content) is taken already;
        // a file that appeared or changed since is taken at the next poll.
        for (path, seen) in scan(&dir) {
            let hash = std::fs::read(&path).map(|b| content_hash(&b)).unwrap_or(0);
            let taken = loaded_at_start.contains(&(path.clone(), hash));
            files.insert(
                path,
                Tracked {
                    last: Some(seen),
                    taken: taken.then_some((seen, hash)),
                },
            );
        }
        let watched = Watched {
            dir: &dir,
            runtime: &runtime,
            node: &node,
            cache: &cache,
            sources: &sources,
            rollout: rollout.as_ref(),
        };
        loop {
            tokio::time::sleep(POLL).await;
            poll(&watched, &mut files).await;
        }
    })
}

/// What a poll works with.
struct Watched<'a> {
    dir: &'a Path,
    runtime: &'a Arc<Runtime>,
    node: &'a Node,
    cache: &'a CompileCache,
    sources: &'a TypeSources,
    rollout: Option<&'a Arc<Rollout>>,
}

async fn poll(watched: &Watched<'_>, files: &mut HashMap<PathBuf, Tracked>) {
    let node = watched.node;
    let now = scan(watched.dir);
    for (path, tracked) in files.iter_mut() {
        if !now.iter().any(|(p, _)| p == path) && tracked.taken.is_some() {
            tracked.taken = None;
            tracked.last = None;
            record(
                node,
                path,
                "removed",
                "the file is gone; the type stays loaded, and its resources keep running, until the agent restarts",
            );
        }
    }
    for (path, seen) in now {
        let tracked = files.entry(path.clone()).or_default();
        let settled = tracked.last == Some(seen);
        tracked.last = Some(seen);
        if !settled || tracked.taken.is_some_and(|(taken, _)| taken == seen) {
            continue;
        }
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(err) => {
                record(
                    node,
                    &path,
                    "rejected",
                    &format!("could not read it: {err}"),
                );
                continue;
            }
        };
        let hash = content_hash(&bytes);
        if tracked.taken.is_some_and(|(_, h)| h == hash) {
            // Touched, not changed.
            tracked.taken = Some((seen, hash));
            continue;
        }
        tracked.taken = Some((seen, hash));
        match watched.cache.load(watched.runtime, &bytes).await {
            Ok((plugin, _)) => match watched.sources.check(&path, plugin.name()) {
                Ok(()) => {
                    let plugin = Arc::new(plugin);
                    match node.install(plugin.clone()).await {
                        Ok(_) => {
                            if let Some(rollout) = watched.rollout {
                                rollout.offer(&path, bytes, plugin);
                            }
                        }
                        Err(err) => tracing::warn!("{}: {err:#}", path.display()),
                    }
                }
                Err(reason) => record(node, &path, "rejected", &reason),
            },
            Err(err) => record(node, &path, "rejected", &err.to_string()),
        }
    }
}

/// The `.wasm` files of `dir` and what they look like now.
fn scan(dir: &Path) -> Vec<(PathBuf, Seen)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok())
        .filter(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name.ends_with(".wasm") && !name.starts_with('.')
        })
        .filter_map(|entry| {
            let meta = entry.metadata().ok()?;
            meta.is_file().then(|| {
                (
                    entry.path(),
                    Seen {
                        len: meta.len(),
                        modified: meta.modified().ok(),
                    },
                )
            })
        })
        .collect()
}

/// A hash of a file's content, to tell a changed file from a touched one.
pub(crate) fn content_hash(bytes: &[u8]) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

fn record(node: &Node, path: &Path, action: &str, reason: &str) {
    tracing::warn!("plugin file {}: {action}: {reason}", path.display());
    node.record(Event::now(
        &path.display().to_string(),
        EventKind::Plugin {
            action: action.to_string(),
            version: None,
            reason: Some(reason.to_string()),
        },
    ));
}
