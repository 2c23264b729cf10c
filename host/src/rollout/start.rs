//! What this node runs since it started, offered as if just installed.
//!
//! The operator's most common upgrade is: stop the agent, put the new
//! build in its plugins directory, start it. Start-up runs the new build
//! (`crate::plugin_versions`), but the directory's watcher never sees it
//! as a new file, so without this the other nodes would never take it and
//! a failover would land on the old build.
//!
//! Only a build of the operator's is offered: not a built-in, and not a
//! file the rollout wrote in an earlier run. The rollout keeps no record
//! of its files across restarts; it does not need one, since it names
//! each `STEM@SHA12.wasm` after the first 12 hex digits of the file's own
//! SHA-256, which a file whose content is that build matches. A build
//! found at start replaces only a lower announced version, never another
//! build of its own version: two nodes holding different builds of one
//! version would otherwise hand it back and forth at each restart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Offered, Rollout, lock};
use crate::cluster::plugins::sha256_hex;
use crate::runtime::Plugin;

impl Rollout {
    /// Offer every type in `running` that this node runs from a file of
    /// the operator's. `files` are the files start-up loaded, by the
    /// SHA-256 of their content.
    pub fn offer_running<'a>(
        self: &Arc<Self>,
        running: impl IntoIterator<Item = &'a Arc<Plugin>>,
        files: &BTreeMap<String, Vec<PathBuf>>,
    ) {
        for plugin in running {
            let Some(sha) = plugin.source_sha256() else {
                continue;
            };
            if self.builtins.contains(&sha) {
                continue;
            }
            let Some(paths) = files.get(&sha) else {
                continue;
            };
            // The operator's if any file holding it is theirs.
            let Some(path) = paths.iter().find(|p| !written_by_rollout(p, &sha)) else {
                lock(&self.written).insert(sha);
                continue;
            };
            // Read again: start-up keeps no component bytes. A file
            // changed since is the watcher's to take (and offer).
            match std::fs::read(path) {
                Ok(bytes) if sha256_hex(&bytes) == sha => {
                    self.offer_as(path, bytes, plugin.clone(), Offered::AtStart);
                }
                Ok(_) => tracing::debug!(
                    "{} changed since start; the plugins directory takes it",
                    path.display()
                ),
                Err(err) => tracing::warn!(
                    "{} {} is not announced: reading {}: {err}",
                    plugin.name(),
                    plugin.info().version,
                    path.display()
                ),
            }
        }
    }
}

/// Whether `path`, whose content has SHA-256 `sha256`, is named as the
/// rollout names what it writes: `STEM@SHA12.wasm`, SHA12 the first 12
/// hex digits of `sha256`.
fn written_by_rollout(path: &Path, sha256: &str) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let Some(label) = name
        .strip_suffix(".wasm")
        .and_then(|stem| stem.rsplit_once('@'))
        .map(|(_, label)| label)
    else {
        return false;
    };
    label.len() == 12 && sha256.get(..12) == Some(label)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn only_the_rollouts_own_name_for_this_content_counts_as_written_by_it() {
        let written = |name: &str| written_by_rollout(Path::new(&format!("/p/{name}")), SHA);
        assert!(written("chaos@0123456789ab.wasm"));
        assert!(written("vendor-chaos@0123456789ab.wasm"));
        // The operator's names: no label, a version, another content's
        // digits, a longer or shorter prefix.
        assert!(!written("chaos.wasm"));
        assert!(!written("chaos@0.2.0.wasm"));
        assert!(!written("chaos@ffffffffffff.wasm"));
        assert!(!written("chaos@0123456789abc.wasm"));
        assert!(!written("chaos@0123456789a.wasm"));
        assert!(!written("chaos@0123456789ab.wasm.bak"));
    }
}
