//! Which source may provide a resource type's name.
//!
//! A type's name is what its resources, grants (`[plugins.NAME]`), data
//! and managed processes are filed under, and a plugin names itself in its
//! own `describe`. Taking that word for it would let any file dropped into
//! the plugins directory describe itself as `process` and be swapped in
//! under every `process` resource, inheriting its grants, data directories
//! and running services. So a name is bound to one source, decided by the
//! operator, never by the plugin:
//!
//! 1. `[plugins.NAME] source = "FILE.wasm"` in the node configuration: only
//!    that file of the plugins directory provides NAME (over the built-in
//!    of that name, if there is one, once the file loads);
//! 2. otherwise a built-in type's name is the built-in's alone;
//! 3. otherwise NAME comes only from the file `NAME.wasm`.
//!
//! A file `STEM@LABEL.wasm` holds what `STEM.wasm` holds: several versions
//! of one type can sit side by side (`chaos.wasm`, `chaos@0.2.0.wasm`),
//! and at start the agent chooses among them by version
//! ([`crate::plugin_versions`]), not by name. The label is the operator's;
//! the version is always the one the component describes. Type names
//! cannot contain `@`, so the holder of such a file is never ambiguous.
//!
//! A file that describes a type whose name it does not hold is refused
//! with a reason naming the file, the type and the name's owner, and
//! changes nothing. A new version from the file that holds the name is an
//! ordinary hot swap. The rule depends on nothing but names the operator
//! chose (the configuration and the file names), so it is the same at
//! start-up, for files dropped in later, and after a restart, whatever the
//! order in which files appear.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Result, bail};

use crate::config::PluginGrants;

/// Extension of the plugin files in the plugins directory.
const EXTENSION: &str = ".wasm";

/// Separates the holder's stem from a label in `STEM@LABEL.wasm`.
const LABEL: char = '@';

/// The file name whose names `file_name` holds: `STEM.wasm` for
/// `STEM@LABEL.wasm` (a non-empty label), else the name itself.
fn holder_file(file_name: &str) -> String {
    let Some(stem) = file_name.strip_suffix(EXTENSION) else {
        return file_name.to_string();
    };
    match stem.split_once(LABEL) {
        Some((holder, label)) if !holder.is_empty() && !label.is_empty() => {
            format!("{holder}{EXTENSION}")
        }
        _ => file_name.to_string(),
    }
}

/// The sources the names of types are bound to. See the module
/// documentation.
#[derive(Debug, Clone, Default)]
pub struct TypeSources {
    /// Type name to the file the configuration takes it from.
    configured: BTreeMap<String, String>,
    /// The names of the built-in types.
    builtins: BTreeSet<String>,
}

impl TypeSources {
    /// The bindings of the configuration's `[plugins.NAME] source` entries
    /// and of the built-in types' names.
    pub fn new(
        plugins: &BTreeMap<String, PluginGrants>,
        builtins: impl IntoIterator<Item = String>,
    ) -> Self {
        let configured = plugins
            .iter()
            .filter_map(|(name, grants)| Some((name.clone(), grants.source.clone()?)))
            .collect();
        TypeSources {
            configured,
            builtins: builtins.into_iter().collect(),
        }
    }

    /// May the plugins directory's `file` provide the type `type_name`?
    /// The error says who holds the name and how the operator can give it
    /// to this file.
    pub fn check(&self, file: &Path, type_name: &str) -> Result<(), String> {
        let file_name = file
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let holds = holder_file(&file_name);
        let holder = match self.configured.get(type_name) {
            Some(source) if *source == holds => return Ok(()),
            Some(source) => format!(
                "the node configuration takes it from {source} ([plugins.{type_name}] source)"
            ),
            None if self.builtins.contains(type_name) => {
                format!("it is the built-in type {type_name}")
            }
            None if holds == format!("{type_name}{EXTENSION}") => return Ok(()),
            None => format!(
                "a file provides only the type it is named after, {type_name}{EXTENSION} \
                 (or {type_name}{LABEL}LABEL{EXTENSION})"
            ),
        };
        Err(format!(
            "{} describes itself as type {type_name:?}, a name it does not hold: {holder}. \
             Nothing was changed. To take {type_name} from this file, set \
             [plugins.{type_name}] source = {file_name:?} in the node configuration",
            file.display()
        ))
    }
}

impl TypeSources {
    /// The name of a file labelled `label` that may provide `type_name`:
    /// `STEM@LABEL.wasm`, where `STEM.wasm` is the file that holds the
    /// name (the configured `source`, else `TYPE.wasm`). A built-in's name
    /// without a configured source has no such file; the name returned is
    /// then `TYPE@LABEL.wasm`, which the directory refuses with the usual
    /// reason.
    pub fn file_for(&self, type_name: &str, label: &str) -> String {
        let holder = self
            .configured
            .get(type_name)
            .cloned()
            .unwrap_or_else(|| format!("{type_name}{EXTENSION}"));
        let stem = holder.strip_suffix(EXTENSION).unwrap_or(&holder);
        format!("{stem}{LABEL}{label}{EXTENSION}")
    }
}

/// A `source` must name a `.wasm` file directly in the plugins directory:
/// no path, no hidden file (the directory watcher ignores those).
pub(crate) fn check_source_name(source: &str) -> Result<()> {
    if source.contains('/') || source.starts_with('.') {
        bail!("{source:?} must be the name of a file in plugins_dir, not a path");
    }
    if source.len() <= EXTENSION.len() || !source.ends_with(EXTENSION) {
        bail!("{source:?} must be the name of a {EXTENSION} file in plugins_dir");
    }
    if source.contains(LABEL) {
        bail!(
            "{source:?} must not contain {LABEL:?}: it separates a label \
             (STEM{LABEL}LABEL{EXTENSION} holds what STEM{EXTENSION} holds)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(configured: &[(&str, &str)]) -> TypeSources {
        let plugins = configured
            .iter()
            .map(|(name, source)| {
                (
                    name.to_string(),
                    PluginGrants {
                        source: Some(source.to_string()),
                        ..PluginGrants::default()
                    },
                )
            })
            .collect();
        TypeSources::new(&plugins, ["process".to_string()])
    }

    #[test]
    fn a_file_holds_only_its_own_name() {
        let s = sources(&[]);
        assert_eq!(s.check(Path::new("/p/redis.wasm"), "redis"), Ok(()));
        let err = s
            .check(Path::new("/p/foo.wasm"), "redis")
            .expect_err("not its name");
        assert!(err.contains("/p/foo.wasm"), "{err}");
        assert!(err.contains("redis.wasm"), "{err}");
        assert!(
            err.contains("[plugins.redis] source = \"foo.wasm\""),
            "{err}"
        );
    }

    #[test]
    fn a_built_in_name_needs_the_operators_word() {
        let s = sources(&[]);
        for file in ["/p/foo.wasm", "/p/process.wasm"] {
            let err = s.check(Path::new(file), "process").expect_err(file);
            assert!(err.contains(file), "{err}");
            assert!(err.contains("built-in type process"), "{err}");
        }
        let s = sources(&[("process", "my-process.wasm")]);
        assert_eq!(s.check(Path::new("/p/my-process.wasm"), "process"), Ok(()));
        let err = s
            .check(Path::new("/p/process.wasm"), "process")
            .expect_err("the configuration named another file");
        assert!(err.contains("takes it from my-process.wasm"), "{err}");
    }

    #[test]
    fn a_configured_source_holds_a_name_against_its_namesake_file() {
        let s = sources(&[("redis", "vendor-redis.wasm")]);
        assert_eq!(s.check(Path::new("/p/vendor-redis.wasm"), "redis"), Ok(()));
        assert!(s.check(Path::new("/p/redis.wasm"), "redis").is_err());
        // Naming a file for one type gives it no other.
        assert!(
            s.check(Path::new("/p/vendor-redis.wasm"), "process")
                .is_err()
        );
    }

    #[test]
    fn a_labelled_file_holds_what_its_stem_holds() {
        let s = sources(&[("redis", "vendor-redis.wasm")]);
        for (file, name) in [
            ("/p/chaos@0.2.0.wasm", "chaos"),
            ("/p/chaos@new.wasm", "chaos"),
            ("/p/vendor-redis@2.wasm", "redis"),
        ] {
            assert_eq!(s.check(Path::new(file), name), Ok(()), "{file}");
        }
        for (file, name) in [
            // No label, or no stem: not a labelled file.
            ("/p/chaos@.wasm", "chaos"),
            ("/p/@0.2.0.wasm", "chaos"),
            // A label gives no name its stem does not hold.
            ("/p/chaos@process.wasm", "process"),
            ("/p/process@1.wasm", "process"),
            ("/p/redis@1.wasm", "redis"),
            ("/p/chaos-next@1.wasm", "chaos"),
        ] {
            assert!(s.check(Path::new(file), name).is_err(), "{file}");
        }
    }

    #[test]
    fn source_names_are_plain_wasm_file_names() {
        assert!(check_source_name("my-process.wasm").is_ok());
        for bad in [
            "",
            ".wasm",
            ".x.wasm",
            "a/b.wasm",
            "../x.wasm",
            "x.wat",
            "x@1.wasm",
        ] {
            assert!(check_source_name(bad).is_err(), "{bad}");
        }
    }
}
