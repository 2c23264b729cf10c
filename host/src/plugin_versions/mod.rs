//! Which version of a resource type runs when the agent starts, and what
//! the agent remembers about versions across restarts.
//!
//! A type may have several files in the plugins directory (`NAME.wasm` and
//! `NAME@LABEL.wasm`, see [`crate::type_sources`]) and, for a built-in
//! name, the built-in. Start-up must end where a swap would have: so the
//! files are not taken in name order, the last one winning. Instead they
//! are ranked ([`rank`]):
//!
//! 1. the version the type is pinned to (`warden plugin pin`), if a file
//!    has it;
//! 2. the other files, highest version first (semver; a version that is
//!    not semver ranks below every one that is); equal versions by file
//!    name;
//! 3. the built-in last: a file for a built-in's name is there because the
//!    operator said so (`[plugins.NAME] source`), so the built-in is only
//!    what is left when no file passes.
//!
//! A build that a swap rejected is skipped ([`VersionRecord::rejection`]).
//! The rest are tried in that order through the checks a swap makes before
//! anything moves (every configured resource of the type validated against
//! the version, `validate` included; the contract, `describe` and the
//! schema were checked at load), and the first that passes runs. Anything
//! passed over on the way is said in the event history and the log.
//!
//! What is remembered ([`VersionRecord`], in the node's store): the pins,
//! and the builds a swap rejected, keyed by type, version *and* the
//! component's SHA-256. The hash is in the key so that a fixed build that
//! keeps the version number is not refused for its predecessor's fault; the
//! version is in it so the record reads well. A rejection is forgotten when
//! a swap to that very build succeeds: moving the file out of the plugins
//! directory and back in while the agent runs tries it again.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::runtime::Plugin;
use crate::store::Store;

mod choose;
mod semver;

pub(crate) use choose::{Note, choose};
pub(crate) use semver::compare_versions;

/// The most rejected builds remembered; the oldest are forgotten first
/// (each is a few hundred bytes, and the list must not grow without end).
pub(crate) const MAX_REJECTED: usize = 256;

/// What the node remembers about its types' versions across restarts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VersionRecord {
    /// Type name to the version it is pinned to.
    #[serde(default)]
    pub pins: BTreeMap<String, String>,
    /// Builds a swap rejected, oldest first.
    #[serde(default)]
    pub rejected: Vec<RejectedBuild>,
}

/// One build of a type that a swap rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedBuild {
    pub type_name: String,
    pub version: String,
    /// SHA-256 (hex) of the component; `None` only for a plugin whose
    /// source was not known (never one read from a file).
    pub sha256: Option<String>,
    /// Why the swap rejected it.
    pub reason: String,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// Which build: a type's name, a version, a component's hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Build<'a> {
    pub type_name: &'a str,
    pub version: &'a str,
    pub sha256: Option<&'a str>,
}

impl Build<'_> {
    fn is(&self, rejected: &RejectedBuild) -> bool {
        rejected.type_name == self.type_name
            && rejected.version == self.version
            && rejected.sha256.as_deref() == self.sha256
    }
}

impl VersionRecord {
    /// The rejection of this very build, if a swap rejected it.
    pub fn rejection(&self, build: Build<'_>) -> Option<&RejectedBuild> {
        self.rejected.iter().rev().find(|r| build.is(r))
    }

    /// Remember that a swap rejected `build`, replacing an earlier record
    /// of it and forgetting the oldest past [`MAX_REJECTED`].
    pub fn reject(&mut self, build: Build<'_>, reason: &str, at_ms: u64) {
        self.rejected.retain(|r| !build.is(r));
        self.rejected.push(RejectedBuild {
            type_name: build.type_name.to_string(),
            version: build.version.to_string(),
            sha256: build.sha256.map(str::to_string),
            reason: reason.to_string(),
            at_ms,
        });
        let excess = self.rejected.len().saturating_sub(MAX_REJECTED);
        self.rejected.drain(..excess);
    }

    /// Forget a rejection of `build` (a swap to it has now succeeded).
    /// Returns whether there was one.
    pub fn forgive(&mut self, build: Build<'_>) -> bool {
        let before = self.rejected.len();
        self.rejected.retain(|r| !build.is(r));
        before != self.rejected.len()
    }
}

impl<'a> Build<'a> {
    /// The build a loaded plugin is; `sha256` holds its hash's text.
    pub fn of(plugin: &'a Plugin, sha256: &'a Option<String>) -> Build<'a> {
        Build {
            type_name: plugin.name(),
            version: &plugin.info().version,
            sha256: sha256.as_deref(),
        }
    }
}

/// Keep `type_name`'s pin (to `version`, or none) in the store, so that
/// the agent starts on the pinned version after a restart.
pub(crate) fn save_pin(store: &Store, type_name: &str, version: Option<&str>) -> Result<()> {
    let mut record = store.load_versions()?;
    match version {
        Some(version) => record
            .pins
            .insert(type_name.to_string(), version.to_string()),
        None => record.pins.remove(type_name),
    };
    store
        .save_versions(&record)
        .with_context(|| format!("saving the pin of type {type_name}"))
}

/// Remember across restarts that a swap rejected this build, so that
/// start-up does not run it. A store that fails is logged: the swap's
/// outcome stands regardless.
pub(crate) fn remember_rejection(store: &Store, plugin: &Plugin, reason: &str, at_ms: u64) {
    let sha256 = plugin.source_sha256();
    let saved = store.load_versions().and_then(|mut record| {
        record.reject(Build::of(plugin, &sha256), reason, at_ms);
        store.save_versions(&record)
    });
    if let Err(err) = saved {
        tracing::error!(
            plugin = plugin.name(),
            version = plugin.info().version,
            "could not record the rejected version in the store; a restart may try it: {err:#}"
        );
    }
}

/// A swap to this build succeeded: forget that an earlier one rejected it.
pub(crate) fn forget_rejection(store: &Store, plugin: &Plugin) {
    let sha256 = plugin.source_sha256();
    let forgotten = store.load_versions().and_then(|mut record| {
        if record.forgive(Build::of(plugin, &sha256)) {
            store.save_versions(&record)?;
        }
        Ok(())
    });
    if let Err(err) = forgotten {
        tracing::error!(
            plugin = plugin.name(),
            version = plugin.info().version,
            "could not clear the version's earlier rejection in the store: {err:#}"
        );
    }
}

/// Where a candidate version comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File(PathBuf),
    BuiltIn,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::BuiltIn => f.write_str("the built-in"),
        }
    }
}

/// One loaded version of a type that could run. `P` is the plugin (generic
/// so the ranking is tested without compiling components).
#[derive(Debug, Clone)]
pub struct Candidate<P> {
    pub origin: Origin,
    pub version: String,
    pub sha256: Option<String>,
    pub plugin: P,
}

/// A candidate in its place in the order of preference, with the reason it
/// is not even tried, if so.
#[derive(Debug, Clone)]
pub(crate) struct Ranked<P> {
    pub candidate: Candidate<P>,
    pub skip: Option<String>,
}

/// Order `candidates` of `type_name` by preference (see the module
/// documentation) and mark the builds a swap rejected.
pub(crate) fn rank<P>(
    type_name: &str,
    mut candidates: Vec<Candidate<P>>,
    record: &VersionRecord,
) -> Vec<Ranked<P>> {
    let pin = record.pins.get(type_name).map(String::as_str);
    candidates.sort_by(|a, b| preference(a, b, pin));
    candidates
        .into_iter()
        .map(|candidate| {
            let build = Build {
                type_name,
                version: &candidate.version,
                sha256: candidate.sha256.as_deref(),
            };
            let skip = record.rejection(build).map(|r| {
                format!(
                    "a swap rejected this build (sha256 {}) at {} ms since the epoch: {}",
                    r.sha256.as_deref().unwrap_or("unknown"),
                    r.at_ms,
                    r.reason
                )
            });
            Ranked { candidate, skip }
        })
        .collect()
}

/// `Less` when `a` is preferred to `b`.
fn preference<P>(a: &Candidate<P>, b: &Candidate<P>, pin: Option<&str>) -> Ordering {
    let pinned = |c: &Candidate<P>| Some(c.version.as_str()) == pin;
    let built_in = |c: &Candidate<P>| c.origin == Origin::BuiltIn;
    pinned(b)
        .cmp(&pinned(a))
        .then_with(|| built_in(a).cmp(&built_in(b)))
        .then_with(|| compare_versions(&b.version, &a.version))
        .then_with(|| origin_name(a).cmp(&origin_name(b)))
}

fn origin_name<P>(c: &Candidate<P>) -> String {
    c.origin.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, version: &str) -> Candidate<&'static str> {
        Candidate {
            origin: Origin::File(PathBuf::from(format!("/p/{name}"))),
            version: version.to_string(),
            sha256: Some(format!("hash-of-{name}")),
            plugin: "",
        }
    }

    fn built_in(version: &str) -> Candidate<&'static str> {
        Candidate {
            origin: Origin::BuiltIn,
            version: version.to_string(),
            sha256: Some("built-in".to_string()),
            plugin: "",
        }
    }

    fn order(ranked: &[Ranked<&str>]) -> Vec<String> {
        ranked
            .iter()
            .map(|r| format!("{}@{}", r.candidate.origin, r.candidate.version))
            .collect()
    }

    #[test]
    fn the_highest_version_comes_first_whatever_the_file_names() {
        // Name order is the opposite of version order on purpose.
        let ranked = rank(
            "chaos",
            vec![
                file("chaos.wasm", "0.2.0"),
                file("chaos@a.wasm", "0.10.0"),
                file("chaos@b.wasm", "0.9.1"),
            ],
            &VersionRecord::default(),
        );
        assert_eq!(
            order(&ranked),
            [
                "/p/chaos@a.wasm@0.10.0",
                "/p/chaos@b.wasm@0.9.1",
                "/p/chaos.wasm@0.2.0"
            ]
        );
        assert!(ranked.iter().all(|r| r.skip.is_none()));
    }

    #[test]
    fn a_pin_comes_first_and_the_built_in_last() {
        let mut record = VersionRecord::default();
        record.pins.insert("chaos".into(), "0.1.0".into());
        let ranked = rank(
            "chaos",
            vec![
                built_in("9.0.0"),
                file("chaos@new.wasm", "0.2.0"),
                file("chaos.wasm", "0.1.0"),
            ],
            &record,
        );
        assert_eq!(
            order(&ranked),
            [
                "/p/chaos.wasm@0.1.0",
                "/p/chaos@new.wasm@0.2.0",
                "the built-in@9.0.0"
            ]
        );
        // A pin to a version no file has changes nothing else.
        record.pins.insert("chaos".into(), "7.0.0".into());
        let ranked = rank(
            "chaos",
            vec![file("chaos.wasm", "0.1.0"), file("chaos@new.wasm", "0.2.0")],
            &record,
        );
        assert_eq!(
            order(&ranked),
            ["/p/chaos@new.wasm@0.2.0", "/p/chaos.wasm@0.1.0"]
        );
    }

    #[test]
    fn versions_that_are_not_semver_rank_last_and_ties_go_by_name() {
        let ranked = rank(
            "t",
            vec![
                file("t@x.wasm", "latest"),
                file("t@b.wasm", "1.0.0"),
                file("t@a.wasm", "1.0.0"),
                file("t@c.wasm", "1.0.0-rc.1"),
            ],
            &VersionRecord::default(),
        );
        assert_eq!(
            order(&ranked),
            [
                "/p/t@a.wasm@1.0.0",
                "/p/t@b.wasm@1.0.0",
                "/p/t@c.wasm@1.0.0-rc.1",
                "/p/t@x.wasm@latest"
            ]
        );
    }

    #[test]
    fn a_rejected_build_is_skipped_but_a_fixed_build_of_its_version_is_not() {
        let mut record = VersionRecord::default();
        record.reject(
            Build {
                type_name: "chaos",
                version: "0.3.0",
                sha256: Some("hash-of-chaos@broken.wasm"),
            },
            "is-alive trapped",
            42,
        );
        let mut fixed = file("chaos@fixed.wasm", "0.3.0");
        fixed.sha256 = Some("another hash".into());
        let ranked = rank(
            "chaos",
            vec![
                file("chaos.wasm", "0.1.0"),
                file("chaos@broken.wasm", "0.3.0"),
                fixed,
            ],
            &record,
        );
        let skips: Vec<(String, bool)> = ranked
            .iter()
            .map(|r| (r.candidate.origin.to_string(), r.skip.is_some()))
            .collect();
        assert_eq!(
            skips,
            [
                ("/p/chaos@broken.wasm".to_string(), true),
                ("/p/chaos@fixed.wasm".to_string(), false),
                ("/p/chaos.wasm".to_string(), false),
            ]
        );
        let reason = ranked[0].skip.as_deref().unwrap_or_default();
        assert!(reason.contains("is-alive trapped"), "{reason}");
        assert!(reason.contains("hash-of-chaos@broken.wasm"), "{reason}");
        // Another type's build of the same version and hash is not touched.
        assert!(
            record
                .rejection(Build {
                    type_name: "other",
                    version: "0.3.0",
                    sha256: Some("hash-of-chaos@broken.wasm"),
                })
                .is_none()
        );
    }

    #[test]
    fn a_successful_swap_forgives_and_the_record_stays_bounded() {
        let mut record = VersionRecord::default();
        let build = Build {
            type_name: "t",
            version: "1.0.0",
            sha256: Some("h"),
        };
        record.reject(build, "first", 1);
        record.reject(build, "again", 2);
        assert_eq!(record.rejected.len(), 1, "one record per build");
        assert_eq!(record.rejection(build).map(|r| r.at_ms), Some(2));
        assert!(record.forgive(build));
        assert!(!record.forgive(build));
        assert!(record.rejection(build).is_none());

        for i in 0..MAX_REJECTED + 10 {
            let version = format!("0.0.{i}");
            record.reject(
                Build {
                    type_name: "t",
                    version: &version,
                    sha256: None,
                },
                "bad",
                i as u64,
            );
        }
        assert_eq!(record.rejected.len(), MAX_REJECTED);
        assert_eq!(record.rejected[0].version, "0.0.10", "the oldest go first");
    }

    #[test]
    fn the_record_reads_back_what_older_agents_wrote() {
        let record: VersionRecord = serde_json::from_str("{}").expect("empty record");
        assert_eq!(record, VersionRecord::default());
    }
}
