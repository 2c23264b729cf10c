//! Start-up's choice of each type's version: rank, skip rejected builds,
//! check the rest in order with a swap's checks, and say what was passed
//! over (`choose`).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Candidate, Origin, VersionRecord, compare_versions, rank};
use crate::config::ResourceConfig;
use crate::node::NodeSettings;
use crate::runtime::Plugin;

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
    use std::path::PathBuf;

    use super::*;

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
