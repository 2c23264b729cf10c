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
use std::sync::Arc;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::config::ResourceConfig;
use crate::node::NodeSettings;
use crate::runtime::Plugin;
use crate::store::Store;

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

/// Semver precedence; a version that is not semver is below every one
/// that is, and such versions compare as text.
pub(crate) fn compare_versions(a: &str, b: &str) -> Ordering {
    match (Semver::parse(a), Semver::parse(b)) {
        (Some(a), Some(b)) => a.cmp(&b),
        (Some(_), None) => Ordering::Greater,
        (None, Some(_)) => Ordering::Less,
        (None, None) => a.cmp(b),
    }
}

/// `MAJOR.MINOR.PATCH[-PRE][+BUILD]`, ordered by semver precedence (build
/// metadata ignored). Small enough not to need a crate (one with other
/// features than wasmtime's would rebuild wasmtime).
#[derive(Debug, PartialEq, Eq)]
struct Semver<'a> {
    core: [u64; 3],
    pre: Vec<Identifier<'a>>,
}

/// A pre-release identifier: numeric ones rank below alphanumeric ones.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Identifier<'a> {
    Numeric(u64),
    Text(&'a str),
}

impl<'a> Semver<'a> {
    fn parse(text: &'a str) -> Option<Semver<'a>> {
        let text = text.split_once('+').map_or(text, |(version, _)| version);
        let (core, pre) = match text.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (text, None),
        };
        let number = |part: &str| {
            let leading_zero = part.len() > 1 && part.starts_with('0');
            let digits = !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
            (digits && !leading_zero).then(|| part.parse::<u64>().ok())?
        };
        let mut parts = core.split('.');
        let core = [
            number(parts.next()?)?,
            number(parts.next()?)?,
            number(parts.next()?)?,
        ];
        if parts.next().is_some() {
            return None;
        }
        let pre = match pre {
            None => Vec::new(),
            Some(pre) => pre
                .split('.')
                .map(|id| match number(id) {
                    Some(n) => Some(Identifier::Numeric(n)),
                    None => (!id.is_empty()
                        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
                    .then_some(Identifier::Text(id)),
                })
                .collect::<Option<Vec<_>>>()?,
        };
        Some(Semver { core, pre })
    }
}

impl Ord for Semver<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.core.cmp(&other.core).then_with(|| {
            match (self.pre.is_empty(), other.pre.is_empty()) {
                // A release is above its pre-releases.
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => self.pre.cmp(&other.pre),
            }
        })
    }
}

impl PartialOrd for Semver<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Why a candidate did not run: skipped or failed its checks.
#[derive(Debug, Clone)]
pub(crate) struct PassedOver {
    pub origin: Origin,
    pub version: String,
    pub reason: String,
}

/// The one sentence that says a type started on another version than the
/// one it would have preferred, and why.
pub(crate) fn fallback_note(
    type_name: &str,
    chosen_version: &str,
    chosen_origin: &Origin,
    passed_over: &[PassedOver],
) -> String {
    let why: Vec<String> = passed_over
        .iter()
        .map(|p| format!("{} from {}: {}", p.version, p.origin, p.reason))
        .collect();
    format!(
        "type {type_name} runs {chosen_version} from {chosen_origin}, not the version it \
         would have preferred; passed over: {}",
        why.join("; ")
    )
}

/// What start-up chose for every type.
#[derive(Default)]
pub(crate) struct Chosen {
    /// The version each type runs.
    pub plugins: BTreeMap<String, Arc<Plugin>>,
    /// The other versions that may run (not rejected, not tried), for `pin`
    /// and roll-back; a swap to one checks it as any swap does.
    pub alternatives: BTreeMap<String, Vec<Arc<Plugin>>>,
    /// What the event history must say about the choice (the log has said
    /// it already).
    pub notes: Vec<Note>,
}

/// One thing start-up says about a type's versions: a plugin event.
#[derive(Debug, Clone)]
pub(crate) struct Note {
    /// The type's name.
    pub subject: String,
    /// `chosen`, `rejected` (passed over at start), `fallback` (runs
    /// another version than the preferred one) or `unavailable`.
    pub action: &'static str,
    pub version: Option<String>,
    pub reason: String,
}

/// Choose the version of every type in `candidates` (see the module
/// documentation): rank them, skip rejected builds, and check the rest in
/// order against `resources` (those of the type) until one passes.
pub(crate) async fn choose(
    candidates: BTreeMap<String, Vec<Candidate<Arc<Plugin>>>>,
    record: &VersionRecord,
    resources: &[ResourceConfig],
    settings: &NodeSettings,
) -> Chosen {
    let mut chosen = Chosen::default();
    for (type_name, of_type) in candidates {
        let count = of_type.len();
        let FirstPassing {
            running,
            passed_over,
            alternatives,
        } = first_passing(&type_name, of_type, record, resources, settings).await;
        if !alternatives.is_empty() {
            chosen.alternatives.insert(type_name.clone(), alternatives);
        }
        for passed in &passed_over {
            let reason = format!("{} not run: {}", passed.origin, passed.reason);
            tracing::warn!(plugin = %type_name, version = %passed.version, "passed over at start: {reason}");
            chosen.notes.push(Note {
                subject: type_name.clone(),
                action: "rejected",
                version: Some(passed.version.clone()),
                reason,
            });
        }
        let Some(running) = running else {
            let reason = format!(
                "no version of type {type_name} passed its checks at start; its resources \
                 cannot be built until a good one is in the plugins directory"
            );
            tracing::error!(plugin = %type_name, "{reason}");
            chosen.notes.push(Note {
                subject: type_name,
                action: "unavailable",
                version: None,
                reason,
            });
            continue;
        };
        let pin = record.pins.get(&type_name);
        if let Some(note) = choice_note(&type_name, &running, &passed_over, count, pin) {
            chosen.notes.push(note);
        }
        chosen.plugins.insert(type_name, running.plugin);
    }
    for versions in chosen.alternatives.values_mut() {
        versions.sort_by(|a, b| compare_versions(&a.info().version, &b.info().version));
    }
    chosen
}

/// What [`first_passing`] found among one type's versions.
struct FirstPassing {
    /// The version that runs, if any.
    running: Option<Candidate<Arc<Plugin>>>,
    /// The versions ranked above it that did not pass, and why.
    passed_over: Vec<PassedOver>,
    /// The versions ranked below it that a swap may still choose.
    alternatives: Vec<Arc<Plugin>>,
}

/// The first of one type's versions, in rank order, that is not a rejected
/// build and passes a swap's checks against `resources`.
async fn first_passing(
    type_name: &str,
    of_type: Vec<Candidate<Arc<Plugin>>>,
    record: &VersionRecord,
    resources: &[ResourceConfig],
    settings: &NodeSettings,
) -> FirstPassing {
    let mut passed_over: Vec<PassedOver> = Vec::new();
    let mut running: Option<Candidate<Arc<Plugin>>> = None;
    let mut alternatives = Vec::new();
    // The best version that only the configuration's check refused (not a
    // record of a rejected swap): if every version refuses the
    // configuration, the configuration is what is wrong, and this one runs
    // so that its errors are reported resource by resource.
    let mut best_refusing_config: Option<Candidate<Arc<Plugin>>> = None;
    for ranked in rank(type_name, of_type, record) {
        let candidate = ranked.candidate;
        if running.is_some() {
            if ranked.skip.is_none() {
                alternatives.push(candidate.plugin);
            }
            continue;
        }
        let (refusal, by_config) = match ranked.skip {
            Some(skip) => (Some(skip), false),
            None => (
                check(&candidate.plugin, resources, settings).await.err(),
                true,
            ),
        };
        match refusal {
            Some(reason) => {
                if by_config && best_refusing_config.is_none() {
                    best_refusing_config = Some(candidate.clone());
                }
                passed_over.push(PassedOver {
                    origin: candidate.origin,
                    version: candidate.version,
                    reason,
                });
            }
            None => running = Some(candidate),
        }
    }
    if running.is_none()
        && let Some(best) = best_refusing_config
    {
        passed_over.retain(|p| p.origin != best.origin);
        running = Some(best);
    }
    FirstPassing {
        running,
        passed_over,
        alternatives,
    }
}

/// What start-up says about the version that runs: a fallback when better
/// ones were passed over, the choice when there was one (several versions,
/// or a pin), nothing otherwise. Logged here, recorded by the caller.
fn choice_note(
    type_name: &str,
    running: &Candidate<Arc<Plugin>>,
    passed_over: &[PassedOver],
    count: usize,
    pin: Option<&String>,
) -> Option<Note> {
    if !passed_over.is_empty() {
        let reason = fallback_note(type_name, &running.version, &running.origin, passed_over);
        tracing::warn!(plugin = %type_name, version = %running.version, "{reason}");
        return Some(Note {
            subject: type_name.to_string(),
            action: "fallback",
            version: Some(running.version.clone()),
            reason,
        });
    }
    if count <= 1 && pin.is_none() {
        return None;
    }
    let why = match pin {
        Some(pin) if *pin == running.version => "the pinned version".to_string(),
        Some(pin) => format!(
            "the highest of {count}; the pinned version {pin} is in no file, and the pin stays"
        ),
        None => format!("the highest of {count}"),
    };
    let reason = format!("from {}: {why}", running.origin);
    tracing::info!(plugin = %type_name, version = %running.version, "chosen at start {reason}");
    Some(Note {
        subject: type_name.to_string(),
        action: "chosen",
        version: Some(running.version.clone()),
        reason,
    })
}

/// The checks a swap makes before anything moves: every configured
/// resource of the type valid for this version (schema and the plugin's
/// own `validate`, bounded by its fixed deadline).
async fn check(
    plugin: &Arc<Plugin>,
    resources: &[ResourceConfig],
    settings: &NodeSettings,
) -> Result<(), String> {
    for resource in resources.iter().filter(|r| r.type_name == plugin.name()) {
        let spec = crate::node::spec_of(settings, resource);
        if let Err(err) = crate::monitor::validate_spec(&spec, plugin).await {
            return Err(format!("not valid for resource {}: {err}", resource.name));
        }
    }
    Ok(())
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
    fn versions_compare_by_semver_precedence() {
        // The order semver.org gives, lowest first.
        let ordered = [
            "not-a-version",
            "0.9.0",
            "0.10.0",
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.1",
            "2.0.0",
        ];
        for (i, a) in ordered.iter().enumerate() {
            for (j, b) in ordered.iter().enumerate() {
                assert_eq!(compare_versions(a, b), i.cmp(&j), "{a} against {b}");
            }
        }
        assert_eq!(compare_versions("1.0.0+build.5", "1.0.0"), Ordering::Equal);
        for bad in ["1.0", "1.0.0.0", "01.0.0", "1.0.0-", "1.0.0-a..b", "v1.0.0"] {
            assert_eq!(
                compare_versions(bad, "0.0.1"),
                Ordering::Less,
                "{bad} is not semver"
            );
        }
    }

    #[test]
    fn the_record_reads_back_what_older_agents_wrote() {
        let record: VersionRecord = serde_json::from_str("{}").expect("empty record");
        assert_eq!(record, VersionRecord::default());
    }

    #[test]
    fn the_fallback_note_names_what_was_passed_over_and_why() {
        let note = fallback_note(
            "chaos",
            "0.1.0",
            &Origin::File(PathBuf::from("/p/chaos.wasm")),
            &[PassedOver {
                origin: Origin::File(PathBuf::from("/p/chaos@0.3.0.wasm")),
                version: "0.3.0".into(),
                reason: "a swap rejected this build".into(),
            }],
        );
        for part in [
            "chaos",
            "0.1.0 from /p/chaos.wasm",
            "0.3.0 from /p/chaos@0.3.0.wasm: a swap rejected this build",
        ] {
            assert!(note.contains(part), "{note} lacks {part}");
        }
    }
}
