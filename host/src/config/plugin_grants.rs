//! `[plugins.TYPE]`: what the operator grants the plugin of one type
//! (programs, environment, user, `/data` quota, the file it comes from),
//! and `resolve`, which turns it into the runtime's `Grants`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::runtime::{Grants, LaunchGrants, MAX_DATA_QUOTA_ENTRIES, QuotaLimits, RunAs};

/// What the operator grants the plugin of one type (`[plugins.TYPE]`).
/// A program the plugin starts never inherits the agent's environment.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginGrants {
    /// Programs the plugin may start, by absolute path.
    #[serde(default)]
    pub allow_programs: Vec<PathBuf>,
    /// Variables every program of the plugin starts with.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Names of variables the plugin may set itself (the `process` type's
    /// `env` property, for one); any other is refused at spawn.
    #[serde(default)]
    pub allow_env: Vec<String>,
    /// Run the programs as this user (a name or a numeric uid) instead of
    /// the agent's own; the resource's data directory is given to it.
    #[serde(default)]
    pub user: Option<String>,
    /// The group to run them as; default: the user's primary group.
    #[serde(default)]
    pub group: Option<String>,
    /// The file of the plugins directory this type is taken from (a file
    /// name, such as `my-process.wasm`): the operator's word that this file
    /// may provide the type, even over a built-in one. Without it a type
    /// comes from the built-in of its name or the file named after it; see
    /// `crate::type_sources`.
    #[serde(default)]
    pub source: Option<String>,
    /// How many MiB each resource of the type may keep in its `/data`
    /// (default 256). Past it the plugin's writes fail with ENOSPC.
    #[serde(default)]
    pub data_quota_mib: Option<u64>,
    /// How many files, directories and links each resource of the type
    /// may keep in its `/data` (default 10 000).
    #[serde(default)]
    pub data_quota_files: Option<u64>,
    /// `[plugins.TYPE.ip]`: the interfaces and address ranges the type may
    /// claim virtual addresses in on this node (contract 0.2.0's `network`
    /// import); without it every address call is refused.
    #[serde(default)]
    pub ip: Option<crate::virtual_ip::IpGrant>,
    /// `[plugins.TYPE.dns]`: the one DNS server, zone and TSIG key the type
    /// may update names in; without it every name call is refused.
    #[serde(default)]
    pub dns: Option<crate::dns_update::DnsGrant>,
}

/// The largest `data_quota_mib`: 16 TiB, well within a byte count.
const MAX_DATA_QUOTA_MIB: u64 = 16 << 20;

impl PluginGrants {
    /// The grants as the runtime applies them, with the user and group
    /// looked up now: an unknown name is an error, never a silent root.
    pub fn resolve(&self, plugin: &str) -> Result<Grants> {
        let section = || format!("[plugins.{plugin}]");
        for program in &self.allow_programs {
            if !program.is_absolute() {
                bail!(
                    "{} allow_programs: {} must be an absolute path",
                    section(),
                    program.display()
                );
            }
        }
        let valid_name =
            |name: &str| !name.is_empty() && !name.contains('=') && !name.contains('\0');
        for name in self.env.keys().chain(&self.allow_env) {
            if !valid_name(name) {
                bail!(
                    "{}: {name:?} is not a valid environment variable name",
                    section()
                );
            }
        }
        if let Some((name, _)) = self.env.iter().find(|(_, v)| v.contains('\0')) {
            bail!("{} env: the value of {name} holds a NUL byte", section());
        }
        let run_as = match &self.user {
            Some(user) => Some(resolve_run_as(user, self.group.as_deref()).with_context(section)?),
            None if self.group.is_some() => {
                bail!("{} group is set without user: set both", section())
            }
            None => None,
        };
        let data_quota = self.data_quota().with_context(section)?;
        let ip = match &self.ip {
            Some(grant) => Some(Arc::new(grant.resolve(&format!("plugins.{plugin}.ip"))?)),
            None => None,
        };
        let dns = match &self.dns {
            Some(grant) => Some(Arc::new(grant.resolve(&format!("[plugins.{plugin}.dns]"))?)),
            None => None,
        };
        Ok(Grants {
            allow_programs: self.allow_programs.clone(),
            launch: LaunchGrants {
                env: self.env.clone().into_iter().collect(),
                allow_env: self.allow_env.clone(),
                run_as,
            },
            configured: Vec::new(),
            data_quota,
            ip,
            dns,
        })
    }

    /// The `/data` quota: the defaults, or what the operator set. Zero is
    /// refused (it would forbid every write, and reads like "unlimited",
    /// which no value means).
    fn data_quota(&self) -> Result<QuotaLimits> {
        let mut limits = QuotaLimits::default();
        if let Some(mib) = self.data_quota_mib {
            if mib == 0 || mib > MAX_DATA_QUOTA_MIB {
                bail!("data_quota_mib = {mib}: must be 1 to {MAX_DATA_QUOTA_MIB} (MiB)");
            }
            limits.bytes = mib << 20;
        }
        if let Some(files) = self.data_quota_files {
            if files == 0 || files > MAX_DATA_QUOTA_ENTRIES {
                bail!("data_quota_files = {files}: must be 1 to {MAX_DATA_QUOTA_ENTRIES}");
            }
            limits.entries = files;
        }
        Ok(limits)
    }
}

/// Look up `user` (and `group`, else the user's primary group).
fn resolve_run_as(user: &str, group: Option<&str>) -> Result<RunAs> {
    use nix::unistd::{Gid, Group, Uid, User};
    let found = match user.parse::<u32>() {
        Ok(uid) => User::from_uid(Uid::from_raw(uid)),
        Err(_) => User::from_name(user),
    }
    .with_context(|| format!("looking up user {user:?}"))?
    .ok_or_else(|| anyhow::anyhow!("user {user:?} does not exist on this machine"))?;
    let gid = match group {
        None => found.gid.as_raw(),
        Some(group) => match group.parse::<u32>() {
            Ok(gid) => Group::from_gid(Gid::from_raw(gid)),
            Err(_) => Group::from_name(group),
        }
        .with_context(|| format!("looking up group {group:?}"))?
        .ok_or_else(|| anyhow::anyhow!("group {group:?} does not exist on this machine"))?
        .gid
        .as_raw(),
    };
    Ok(RunAs {
        user: found.name,
        uid: found.uid.as_raw(),
        gid,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{GOOD, with_process_grants};
    use super::*;
    use crate::config::AgentConfig;

    #[test]
    fn launch_grants_are_checked_and_users_looked_up() {
        let with = with_process_grants;
        let config =
            with("env = { LANG = \"C\" }\nallow_env = [\"X\"]\nuser = \"nobody\"").expect("valid");
        let grants = config.plugins["process"].resolve("process").expect("valid");
        assert_eq!(grants.launch.env, [("LANG".to_string(), "C".to_string())]);
        assert_eq!(grants.launch.allow_env, ["X"]);
        let run_as = grants.launch.run_as.expect("a user");
        assert_eq!(run_as.user, "nobody");
        assert_ne!(run_as.uid, 0);

        let err = with("user = \"no-such-user-here\"").unwrap_err();
        assert!(
            format!("{err:#}").contains("user \"no-such-user-here\" does not exist"),
            "{err:#}"
        );
        let err = with("group = \"nogroup\"").unwrap_err();
        assert!(
            format!("{err:#}").contains("group is set without user"),
            "{err:#}"
        );
        let err = with("allow_env = [\"A=B\"]").unwrap_err();
        assert!(
            format!("{err:#}").contains("not a valid environment variable name"),
            "{err:#}"
        );
    }

    #[test]
    fn data_quotas_have_defaults_and_bounds() {
        let with = with_process_grants;
        let default = with("").expect("valid");
        assert_eq!(
            default.plugins["process"]
                .resolve("process")
                .expect("valid")
                .data_quota,
            QuotaLimits::default()
        );
        let set = with("data_quota_mib = 3\ndata_quota_files = 40").expect("valid");
        assert_eq!(
            set.plugins["process"]
                .resolve("process")
                .expect("valid")
                .data_quota,
            QuotaLimits {
                bytes: 3 << 20,
                entries: 40
            }
        );
        for (bad, named) in [
            (
                "data_quota_mib = 0",
                "[plugins.process]: data_quota_mib = 0: must be 1 to",
            ),
            (
                "data_quota_mib = 99999999999",
                "[plugins.process]: data_quota_mib = 99999999999: must be 1 to",
            ),
            (
                "data_quota_files = 0",
                "[plugins.process]: data_quota_files = 0: must be 1 to",
            ),
            ("data_quota_mib = -1", "data_quota_mib"),
            ("data_quota_files = \"many\"", "data_quota_files"),
        ] {
            let err = format!("{:#}", with(bad).expect_err(bad));
            assert!(err.contains(named), "{bad}: {err}");
        }
        let err = format!("{:#}", with("data_quota_bytes = 1").expect_err("unknown"));
        assert!(err.contains("unknown field `data_quota_bytes`"), "{err}");
    }

    #[test]
    fn a_source_is_a_wasm_file_name_of_the_plugins_directory() {
        let with = |source: &str| with_process_grants(&format!("source = {source:?}"));
        let config = with("my-process.wasm").expect("valid");
        assert_eq!(
            config.plugins["process"].source.as_deref(),
            Some("my-process.wasm")
        );
        for bad in ["../evil.wasm", "/tmp/evil.wasm", "evil", ".hidden.wasm", ""] {
            let err = with(bad).expect_err(bad);
            let text = format!("{err:#}");
            assert!(text.contains("[plugins.process] source"), "{bad}: {text}");
        }
        let typo = GOOD.replace("allow_programs =", "sourse = \"x.wasm\"\nallow_programs =");
        let err = AgentConfig::parse(&typo).expect_err("typo").to_string();
        assert!(err.contains("unknown field `sourse`"), "{err}");
        assert!(err.contains("line 7"), "{err}");
    }
}
