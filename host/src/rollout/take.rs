//! Taking a build another node announced: fetched, checked, written
//! into this node's plugins directory for its watcher to take.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::Rollout;
use crate::cluster::plugins::{Announcement, check_shape, sha256_hex, verify};
use crate::monitor::{Event, EventKind};
use crate::plugin_versions::compare_versions;

impl Rollout {
    /// Mark `sha256` dealt with; false if it was already.
    pub(super) fn first_look(&self, sha256: &str) -> bool {
        self.done
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(sha256.to_string())
    }

    /// Take an announced build, if this node should.
    pub(super) async fn take(&self, announcement: &Announcement) {
        let sha = &announcement.sha256;
        if self
            .done
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(sha)
        {
            return;
        }
        if let Err(err) = check_shape(announcement) {
            // Its fields are not fit for a file name, an event's subject
            // or a log line: only the error, which quotes them, is logged.
            self.first_look(sha);
            tracing::error!("a rollout was not taken: {err:#}");
            return;
        }
        if self.runs_it_or_newer(announcement).await {
            return;
        }
        let Some((dir, file)) = self.file_to_write(announcement) else {
            return;
        };
        let bytes = match self.plugins.fetch(announcement).await {
            Ok(bytes) => bytes,
            Err(err) => {
                // etcd did not answer, or the chunks are gone (replaced by
                // a newer build): looked at again next time.
                tracing::warn!(
                    "fetching {} {} from etcd: {err:#}",
                    announcement.type_name,
                    announcement.version
                );
                return;
            }
        };
        self.first_look(sha);
        if let Err(err) = verify(announcement, &bytes) {
            self.refuse(announcement, format!("{err:#}"));
            return;
        }
        self.written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(sha.clone());
        if let Err(err) = write_atomically(&dir, &file, &bytes) {
            self.refuse(announcement, format!("{err:#}"));
            return;
        }
        let note = format!(
            "from {}, SHA-256 {sha}, written to {}; the plugins directory takes it from there",
            announcement.from,
            file.display()
        );
        tracing::info!("rollout of {}: {note}", announcement.type_name);
        self.record(announcement, "fetched", note);
    }

    /// Whether this node runs the announced build already, or a newer
    /// version of its type (then it is dealt with), or cannot tell now
    /// (the node loop did not answer: looked at again next time).
    async fn runs_it_or_newer(&self, announcement: &Announcement) -> bool {
        let Ok(running) = self.node.plugins().await else {
            return true;
        };
        let Some(current) = running.iter().find(|p| p.name() == announcement.type_name) else {
            return false;
        };
        let sha = &announcement.sha256;
        if current.source_sha256().as_ref() == Some(sha) {
            self.first_look(sha);
            return true;
        }
        if compare_versions(&current.info().version, &announcement.version).is_gt() {
            self.first_look(sha);
            tracing::info!(
                "not taking {} {} from {}: this node runs {}",
                announcement.type_name,
                announcement.version,
                announcement.from,
                current.info().version
            );
            return true;
        }
        false
    }

    /// The plugins directory and the file of it the announced build is to
    /// be written to; `None` (the build dealt with, refused or not) when
    /// there is no directory, or the file is there already: with the same
    /// content (written before a restart) or with other content, which is
    /// never overwritten.
    fn file_to_write(&self, announcement: &Announcement) -> Option<(PathBuf, PathBuf)> {
        let sha = &announcement.sha256;
        let Some(dir) = &self.dir else {
            self.first_look(sha);
            self.refuse(
                announcement,
                "this node has no plugins_dir to write it to".to_string(),
            );
            return None;
        };
        let file = dir.join(
            self.sources
                .file_for(&announcement.type_name, announcement.short_sha()),
        );
        match std::fs::read(&file) {
            Ok(bytes) if sha256_hex(&bytes) == *sha => {
                // Written before (a restart): the directory has taken it,
                // or refused it, already.
                self.first_look(sha);
                None
            }
            Ok(_) => {
                self.first_look(sha);
                self.refuse(
                    announcement,
                    format!(
                        "{} already holds other content; it was not overwritten",
                        file.display()
                    ),
                );
                None
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Some((dir.clone(), file)),
            Err(err) => {
                self.first_look(sha);
                self.refuse(
                    announcement,
                    format!("could not read {}: {err}", file.display()),
                );
                None
            }
        }
    }

    /// Log and record why this node does not take a build. Nothing
    /// running changed.
    fn refuse(&self, announcement: &Announcement, reason: String) {
        let reason = format!(
            "rollout of {} {} from {} not taken: {reason}",
            announcement.type_name, announcement.version, announcement.from
        );
        tracing::error!("{reason}");
        self.record(announcement, "rollout-refused", reason);
    }

    fn record(&self, announcement: &Announcement, action: &str, reason: String) {
        self.node.record(Event::now(
            &announcement.type_name,
            EventKind::Plugin {
                action: action.to_string(),
                version: Some(announcement.version.clone()),
                reason: Some(reason),
            },
        ));
    }
}

/// Write `bytes` to `file` in `dir` as a careful operator would: a hidden
/// file (the watcher ignores those), synced, then renamed into place, so
/// the watcher never reads it half-written. A file already at the name is
/// never replaced.
fn write_atomically(dir: &Path, file: &Path, bytes: &[u8]) -> Result<()> {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.rollout"));
    let _ = std::fs::remove_file(&temp);
    let written = (|| -> std::io::Result<()> {
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        out.write_all(bytes)?;
        out.sync_all()?;
        // No replace: hard-link into place (fails if the name is taken).
        std::fs::hard_link(&temp, file)?;
        std::fs::remove_file(&temp)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written.with_context(|| {
        format!(
            "writing {} into the plugins directory {}",
            file.display(),
            dir.display()
        )
    })
}
