//! The agent's configuration file (TOML).
//!
//! ```toml
//! [node]
//! name = "node-1"
//! data_dir = "/var/lib/warden"        # resource data under data_dir/resources/NAME
//! plugins_dir = "/etc/warden/plugins" # optional: extra .wasm resource types
//!
//! [runtime]
//! max_instances = 1024   # room in the instance pool
//! memory_limit_mib = 64  # default per-resource memory limit
//!
//! [plugins.process]      # grants to the plugin of type "process"
//! allow_programs = ["/usr/bin/sleep"]
//! env = { LANG = "C.UTF-8" }  # every program starts with these, nothing else
//! allow_env = []         # variables the plugin may set itself
//! user = "warden-svc"    # run the programs as this user (default: the agent's)
//! data_quota_mib = 256   # what each resource may keep in its /data: MiB ...
//! data_quota_files = 10000 # ... and files, directories and links
//! # source = "my-process.wasm" # optional: take the type from this file of
//! #                            # plugins_dir (replacing the built-in)
//!
//! [[group]]                # a virtual server: resources that move together
//! name = "web"
//! failover_threshold = 10    # failovers within failover_period_s, then Failed
//! failover_period_s = 21600
//! failback = "off"           # "off", "immediate" or a window of hours "22-6"
//! online = true              # bring the group online when the agent starts
//!
//! [[resource]]
//! name = "sleeper"
//! type = "process"
//! group = "web"              # default: a group of its own, named after it
//! depends_on = []            # resources of the same group
//! is_alive_interval_ms = 5000
//! properties = { program = "/usr/bin/sleep", args = "3600" }
//! restart = { action = "affect-group", threshold = 3, period_s = 900, delay_ms = 0, retry_period_s = 3600 }
//! ```
//!
//! Unknown keys are errors, reported with their line, so that a typo never
//! silently falls back to a default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::monitor::TimingOverrides;
use crate::runtime::{Grants, LaunchGrants, MAX_DATA_QUOTA_ENTRIES, QuotaLimits, RunAs};
use warden_policy::{Failback, Millis, RestartAction, RestartPolicy};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    pub node: NodeConfig,
    #[serde(default)]
    pub runtime: RuntimeSection,
    /// The admin API; none without this section.
    #[serde(default)]
    pub api: Option<ApiSection>,
    /// Several nodes on etcd; none: a single node on the embedded store.
    #[serde(default)]
    pub cluster: Option<ClusterSection>,
    /// Grants, by plugin type name.
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginGrants>,
    #[serde(default, rename = "group")]
    pub groups: Vec<GroupConfig>,
    #[serde(default, rename = "resource")]
    pub resources: Vec<ResourceConfig>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    pub name: String,
    /// Nodes in order of preference; default: this node.
    #[serde(default)]
    pub preferred_owners: Vec<String>,
    #[serde(default = "default_failover_threshold")]
    pub failover_threshold: u32,
    #[serde(default = "default_failover_period_s")]
    pub failover_period_s: u64,
    /// "off", "immediate", or a window of hours such as "22-6".
    #[serde(default = "default_failback")]
    pub failback: String,
    /// Bring the group online when the agent starts.
    #[serde(default = "yes")]
    pub online: bool,
}

impl GroupConfig {
    /// Check what a group definition can get wrong on its own. Its name
    /// becomes an etcd key and part of paths, so it follows the rule of
    /// resource names: no empty name, no `..`, no `/`, no control
    /// characters. Every way a group comes in (configuration file, API,
    /// cluster configuration) goes through here.
    pub fn check(&self) -> Result<()> {
        if !crate::monitor::valid_resource_name(&self.name) {
            bail!(
                "group {:?}: the name must be 1 to 64 characters of a-z, A-Z, 0-9, - and _ \
                 (the rule of resource names)",
                self.name
            );
        }
        parse_failback(&self.failback).with_context(|| format!("group {:?}", self.name))?;
        Ok(())
    }
}

fn default_failover_threshold() -> u32 {
    warden_policy::GroupConfig::new("").failover_threshold
}

fn default_failover_period_s() -> u64 {
    warden_policy::GroupConfig::new("").failover_period.0 / 1000
}

fn default_failback() -> String {
    "off".to_string()
}

/// Parse a failback setting: `off`, `immediate` or `START-END` hours.
pub fn parse_failback(text: &str) -> Result<Failback> {
    match text {
        "off" => Ok(Failback::Off),
        "immediate" => Ok(Failback::Immediate),
        window => {
            // Exactly `H-H` or `HH-HH`, no signs or spaces: what the API's
            // document says, so a value it refuses is never taken.
            let hour = |text: &str| {
                (matches!(text.len(), 1 | 2) && text.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| text.parse::<u8>().ok())
                    .flatten()
            };
            let hours = window
                .split_once('-')
                .and_then(|(a, b)| Some((hour(a)?, hour(b)?)));
            match hours {
                Some((start_hour, end_hour))
                    if start_hour < 24 && end_hour < 24 && start_hour != end_hour =>
                {
                    Ok(Failback::Window {
                        start_hour,
                        end_hour,
                    })
                }
                _ => bail!(
                    "failback {text:?}: expected \"off\", \"immediate\" or a window of hours such as \"22-6\" (two different hours, 0 to 23)"
                ),
            }
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub name: String,
    pub data_dir: PathBuf,
    #[serde(default)]
    pub plugins_dir: Option<PathBuf>,
    /// What SIGTERM does to the services: take every group offline in
    /// reverse dependency order ("offline", the default), or leave them
    /// running for the next agent to adopt ("leave-running": restart the
    /// agent alone).
    #[serde(default)]
    pub on_shutdown: OnShutdown,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnShutdown {
    #[default]
    Offline,
    LeaveRunning,
}

/// `[cluster]`: this node is one of several that share an etcd (see
/// `crate::cluster`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// Keys live under `/warden/NAME/`.
    pub name: String,
    /// etcd client URLs, e.g. `["http://127.0.0.1:2379"]`.
    pub endpoints: Vec<String>,
    /// Every node that may join, in the order that breaks ties.
    pub nodes: Vec<String>,
    /// The membership lease. A node cut off from etcd stops its groups
    /// within half of it (plus the time to terminate them); a dead node's
    /// groups move after it.
    #[serde(default = "default_lease_ttl_s")]
    pub lease_ttl_s: u64,
    /// Run a fence guard beside the agent (`crate::fence_guard`): a process
    /// of its own that kills this node's services when the agent stops
    /// vouching for its lease in time (the agent frozen or stalled).
    #[serde(default = "yes")]
    pub fence_guard: bool,
    /// The Linux watchdog device the fence guard arms while this node owns
    /// groups or runs services, and feeds only while the lease is vouched
    /// for (`crate::fence_guard::watchdog`): a node frozen whole is reset
    /// before its lease can expire. Off unless set; its timeout is a third
    /// of the lease TTL.
    #[serde(default)]
    pub watchdog_device: Option<PathBuf>,
    /// Fence devices (`crate::fencing`): a node one of them names is
    /// powered off through it before its groups move.
    #[serde(default)]
    pub fence_device: Vec<crate::fencing::FenceDeviceSection>,
}

fn default_lease_ttl_s() -> u64 {
    10
}

impl ClusterSection {
    pub fn lease_ttl(&self) -> Duration {
        Duration::from_secs(self.lease_ttl_s)
    }

    fn check(&self) -> Result<()> {
        if self.endpoints.is_empty() {
            bail!("[cluster] endpoints: name at least one etcd endpoint");
        }
        if self.nodes.is_empty() {
            bail!("[cluster] nodes: name every node of the cluster");
        }
        if self.lease_ttl_s < 2 {
            bail!(
                "[cluster] lease_ttl_s = {}: at least 2 seconds",
                self.lease_ttl_s
            );
        }
        // The fence guard takes a vouch of half the TTL at most.
        if self.lease_ttl_s > 2 * crate::fence_guard::MAX_VOUCH.as_secs() {
            bail!(
                "[cluster] lease_ttl_s = {}: at most {} seconds (two days)",
                self.lease_ttl_s,
                2 * crate::fence_guard::MAX_VOUCH.as_secs()
            );
        }
        if let Some(device) = &self.watchdog_device {
            if !self.fence_guard {
                bail!(
                    "[cluster] watchdog_device = {:?} needs fence_guard = true: the fence guard \
                     feeds the watchdog",
                    device.display().to_string()
                );
            }
            if self.watchdog_timeout_s().is_none() {
                bail!(
                    "[cluster] watchdog_device = {:?} needs lease_ttl_s of at least 3 (the \
                     watchdog's timeout is a third of the TTL, in whole seconds), not {}",
                    device.display().to_string(),
                    self.lease_ttl_s
                );
            }
        }
        crate::fencing::check(&self.fence_device, &self.nodes)
    }

    /// The watchdog's timeout for this lease TTL
    /// (`crate::fence_guard::watchdog::timeout_for`).
    pub fn watchdog_timeout_s(&self) -> Option<u32> {
        crate::fence_guard::watchdog::timeout_for(self.lease_ttl())
    }

    /// What the fence guard is to do with the watchdog, if one is set.
    pub fn watchdog(&self) -> Option<crate::fence_guard::guard::WatchdogSetup> {
        let device = self.watchdog_device.clone()?;
        Some(crate::fence_guard::guard::WatchdogSetup {
            device,
            timeout_s: self.watchdog_timeout_s()?,
        })
    }
}

/// Refuse a secret file that anyone but its owner may read or write.
fn check_owner_only(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .with_context(|| format!("reading the API token file {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        bail!(
            "the API token file {} has mode {:04o}: its group or others may use it; \
             make it owner-only with: chmod 600 {}",
            path.display(),
            mode & 0o7777,
            path.display()
        );
    }
    Ok(())
}

/// Write a token file that only its owner may read (mode 0600), replacing
/// any file there.
pub fn write_token_file(path: &Path, token: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating the API token file {}", path.display()))?;
    // `mode` applies only to a file it creates; an older file keeps its
    // own permissions unless they are set.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .and_then(|()| file.write_all(format!("{token}\n").as_bytes()))
        .with_context(|| format!("writing the API token file {}", path.display()))
}

/// Where the admin API listens and the token it wants.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// A loopback address, e.g. "127.0.0.1:7070".
    pub listen: std::net::SocketAddr,
    /// A file holding the bearer token (its first line).
    pub token_file: PathBuf,
}

impl ApiSection {
    /// The bearer token: the first line of the token file, which only its
    /// owner may read. A token others can read is as good as published,
    /// so a file with any group or other permission is refused, naming the
    /// fix.
    pub fn token(&self) -> Result<String> {
        check_owner_only(&self.token_file)?;
        let text = std::fs::read_to_string(&self.token_file)
            .with_context(|| format!("reading the API token file {}", self.token_file.display()))?;
        let token = text.lines().next().unwrap_or("").trim().to_string();
        if token.len() < 16 {
            bail!(
                "the API token in {} is shorter than 16 characters",
                self.token_file.display()
            );
        }
        Ok(token)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSection {
    #[serde(default = "default_max_instances")]
    pub max_instances: u32,
    #[serde(default = "default_memory_limit_mib")]
    pub memory_limit_mib: u64,
}

impl Default for RuntimeSection {
    fn default() -> Self {
        RuntimeSection {
            max_instances: default_max_instances(),
            memory_limit_mib: default_memory_limit_mib(),
        }
    }
}

fn default_max_instances() -> u32 {
    1024
}

fn default_memory_limit_mib() -> u64 {
    64
}

/// The largest memory limit, in MiB, that a resource may be given: what
/// the runtime's instance pool gives any one store.
pub fn max_memory_limit_mib() -> u64 {
    (crate::runtime::RuntimeConfig::default().max_memory_bytes >> 20) as u64
}

/// A memory limit in MiB is 1 to [`max_memory_limit_mib`]: 0 would let no
/// plugin instantiate, and more than the pool gives is never reached.
fn check_memory_limit_mib(mib: u64) -> Result<()> {
    let max = max_memory_limit_mib();
    if !(1..=max).contains(&mib) {
        bail!("{mib} is not a memory limit: give 1 to {max} (MiB)");
    }
    Ok(())
}

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

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceConfig {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
    /// The group it belongs to; default: a group of its own, named after it.
    #[serde(default)]
    pub group: Option<String>,
    /// Resources of the same group that must be online before this one.
    #[serde(default)]
    pub depends_on: Vec<String>,
    #[serde(default)]
    pub properties: BTreeMap<String, PropertyValue>,
    #[serde(default)]
    pub memory_limit_mib: Option<u64>,
    #[serde(default)]
    pub pending_timeout_ms: Option<u64>,
    #[serde(default)]
    pub looks_alive_interval_ms: Option<u64>,
    #[serde(default)]
    pub is_alive_interval_ms: Option<u64>,
    #[serde(default)]
    pub check_timeout_ms: Option<u64>,
    #[serde(default)]
    pub terminate_timeout_ms: Option<u64>,
    #[serde(default)]
    pub restart: RestartConfig,
}

fn yes() -> bool {
    true
}

/// A property value as written in TOML: text, a number or a boolean. The
/// plugin receives it as text and parses it by its schema.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum PropertyValue {
    Text(String),
    Integer(i64),
    Boolean(bool),
}

impl PropertyValue {
    pub fn as_text(&self) -> String {
        match self {
            PropertyValue::Text(t) => t.clone(),
            PropertyValue::Integer(i) => i.to_string(),
            PropertyValue::Boolean(b) => b.to_string(),
        }
    }
}

/// What to do when a resource fails (Windows: RestartAction and friends).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RestartConfig {
    /// "affect-group" (default), "no-affect-group" or "do-not-restart".
    #[serde(default = "default_action")]
    pub action: String,
    /// The failure that reaches this count within the period is final.
    #[serde(default = "default_threshold")]
    pub threshold: u32,
    #[serde(default = "default_period_s")]
    pub period_s: u64,
    #[serde(default)]
    pub delay_ms: u64,
    /// A resource left Failed is tried again after this long.
    #[serde(default = "default_retry_period_s")]
    pub retry_period_s: u64,
}

fn default_action() -> String {
    "affect-group".to_string()
}

fn default_threshold() -> u32 {
    RestartPolicy::default().threshold
}

fn default_period_s() -> u64 {
    RestartPolicy::default().period.0 / 1000
}

fn default_retry_period_s() -> u64 {
    RestartPolicy::default().retry_period.0 / 1000
}

impl Default for RestartConfig {
    fn default() -> Self {
        RestartConfig {
            action: default_action(),
            threshold: default_threshold(),
            period_s: default_period_s(),
            delay_ms: 0,
            retry_period_s: default_retry_period_s(),
        }
    }
}

impl ResourceConfig {
    pub fn timing(&self) -> TimingOverrides {
        let ms = |v: Option<u64>| v.map(Duration::from_millis);
        TimingOverrides {
            pending_timeout: ms(self.pending_timeout_ms),
            looks_alive_interval: ms(self.looks_alive_interval_ms),
            is_alive_interval: ms(self.is_alive_interval_ms),
            check_timeout: ms(self.check_timeout_ms),
            terminate_timeout: ms(self.terminate_timeout_ms),
        }
    }

    /// Check what a resource definition can get wrong on its own, before
    /// its plugin sees it: the restart policy and the memory limit (which
    /// becomes a byte count, so a huge one must not wrap around to a
    /// limit of nothing). Every way a resource comes in goes through here.
    pub fn check(&self) -> Result<()> {
        if let Some(mib) = self.memory_limit_mib {
            check_memory_limit_mib(mib)
                .with_context(|| format!("resource {:?}: memory_limit_mib", self.name))?;
        }
        self.restart_policy()?;
        Ok(())
    }

    pub fn restart_policy(&self) -> Result<RestartPolicy> {
        let action = match self.restart.action.as_str() {
            "affect-group" => RestartAction::RestartAffectGroup,
            "no-affect-group" => RestartAction::RestartNoAffectGroup,
            "do-not-restart" => RestartAction::DoNotRestart,
            other => bail!(
                "resource {:?}: restart action {other:?}: expected \"affect-group\", \"no-affect-group\" or \"do-not-restart\"",
                self.name
            ),
        };
        Ok(RestartPolicy {
            action,
            threshold: self.restart.threshold,
            period: Millis::from_secs(self.restart.period_s),
            delay: Millis(self.restart.delay_ms),
            retry_period: Millis::from_secs(self.restart.retry_period_s),
        })
    }

    /// The group this resource belongs to.
    pub fn group_name(&self) -> &str {
        self.group.as_deref().unwrap_or(&self.name)
    }

    pub fn properties(&self) -> Vec<(String, String)> {
        self.properties
            .iter()
            .map(|(k, v)| (k.clone(), v.as_text()))
            .collect()
    }
}

impl AgentConfig {
    /// Read and check a configuration file. Relative paths in it are taken
    /// relative to the file's folder.
    pub fn load(path: &Path) -> Result<AgentConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the configuration {}", path.display()))?;
        let mut config = AgentConfig::parse(&text)
            .with_context(|| format!("in the configuration {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.node.data_dir = base.join(&config.node.data_dir);
        if let Some(dir) = &config.node.plugins_dir {
            config.node.plugins_dir = Some(base.join(dir));
        }
        if let Some(api) = &mut config.api {
            api.token_file = base.join(&api.token_file);
        }
        Ok(config)
    }

    /// Parse and check configuration text.
    pub fn parse(text: &str) -> Result<AgentConfig> {
        let config: AgentConfig = toml::from_str(text)?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<()> {
        if self.node.name.trim().is_empty() {
            bail!("[node] name must not be empty");
        }
        if let Some(cluster) = &self.cluster {
            cluster.check()?;
            if self.node.on_shutdown == OnShutdown::LeaveRunning {
                bail!(
                    "[node] on_shutdown = \"leave-running\" cannot be used with [cluster]: \
                     the cluster moves a stopped node's groups elsewhere, so its services \
                     must stop with it"
                );
            }
            if !cluster.nodes.contains(&self.node.name) {
                bail!(
                    "[cluster] nodes ({}) does not name this node, {:?}",
                    cluster.nodes.join(", "),
                    self.node.name
                );
            }
        }
        if let Some(api) = &self.api
            && !api.listen.ip().is_loopback()
        {
            bail!(
                "[api] listen = {}: the admin API only listens on a loopback address",
                api.listen
            );
        }
        if self.runtime.max_instances == 0 {
            bail!("[runtime] max_instances must be above 0");
        }
        check_memory_limit_mib(self.runtime.memory_limit_mib)
            .context("[runtime] memory_limit_mib")?;
        let mut seen = std::collections::HashSet::new();
        for resource in &self.resources {
            if !seen.insert(resource.name.as_str()) {
                bail!("resource {:?} is configured twice", resource.name);
            }
            resource.check()?;
        }
        let mut groups = std::collections::HashSet::new();
        for group in &self.groups {
            if !groups.insert(group.name.as_str()) {
                bail!("group {:?} is configured twice", group.name);
            }
            group.check()?;
        }
        for resource in &self.resources {
            if let Some(group) = &resource.group
                && !groups.contains(group.as_str())
            {
                bail!(
                    "resource {:?}: group {group:?} is not configured (add a [[group]] named {group:?})",
                    resource.name
                );
            }
        }
        for (plugin, grants) in &self.plugins {
            if let Some(source) = &grants.source {
                crate::type_sources::check_source_name(source)
                    .with_context(|| format!("[plugins.{plugin}] source"))?;
            }
            grants.resolve(plugin)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        [node]
        name = "n1"
        data_dir = "data"

        [plugins.process]
        allow_programs = ["/usr/bin/sleep"]

        [[resource]]
        name = "s"
        type = "process"
        properties = { program = "/usr/bin/sleep", args = "100", startup-ms = 10 }
        restart = { threshold = 5 }
    "#;

    #[test]
    fn parses_a_full_configuration() {
        let config = AgentConfig::parse(GOOD).expect("valid");
        let r = &config.resources[0];
        let policy = r.restart_policy().expect("valid");
        assert_eq!(policy.threshold, 5);
        assert_eq!(policy.period, Millis::from_secs(900));
        assert!(
            r.properties()
                .contains(&("startup-ms".to_string(), "10".to_string()))
        );
        assert_eq!(r.group_name(), "s");
    }

    #[test]
    fn unknown_keys_are_named_with_their_line() {
        let text = GOOD.replace("restart = {", "restrat = {");
        let err = AgentConfig::parse(&text).expect_err("typo").to_string();
        assert!(err.contains("unknown field `restrat`"), "{err}");
        assert!(err.contains("line 13"), "{err}");
    }

    #[test]
    fn duplicate_resources_and_relative_programs_are_refused() {
        let twice = format!("{GOOD}\n[[resource]]\nname = \"s\"\ntype = \"process\"\n");
        let err = AgentConfig::parse(&twice).expect_err("dup").to_string();
        assert_eq!(err, "resource \"s\" is configured twice");
        let relative = GOOD.replace("\"/usr/bin/sleep\"]", "\"sleep\"]");
        let err = AgentConfig::parse(&relative)
            .expect_err("relative")
            .to_string();
        assert!(err.contains("must be an absolute path"), "{err}");
    }

    #[test]
    fn launch_grants_are_checked_and_users_looked_up() {
        let with = |grants: &str| {
            AgentConfig::parse(&GOOD.replace(
                "allow_programs = [\"/usr/bin/sleep\"]",
                &format!("allow_programs = [\"/usr/bin/sleep\"]\n{grants}"),
            ))
        };
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
        let with = |grants: &str| {
            AgentConfig::parse(&GOOD.replace(
                "allow_programs = [\"/usr/bin/sleep\"]",
                &format!("allow_programs = [\"/usr/bin/sleep\"]\n{grants}"),
            ))
        };
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
    fn group_names_follow_the_rule_of_resource_names() {
        for bad in ["", "..", "a/b", "a\nb", "x\u{1b}[2J", &"g".repeat(65)] {
            // A JSON string is a TOML basic string, escapes included.
            let quoted = serde_json::to_string(bad).expect("a string");
            let text = format!("{GOOD}\n[[group]]\nname = {quoted}\n");
            let err = AgentConfig::parse(&text).expect_err(bad).to_string();
            assert!(
                err.starts_with(&format!(
                    "group {bad:?}: the name must be 1 to 64 characters"
                )),
                "{bad:?}: {err}"
            );
        }
        let good = format!("{GOOD}\n[[group]]\nname = \"web-1_a\"\n");
        assert_eq!(
            AgentConfig::parse(&good).expect("valid").groups[0].name,
            "web-1_a"
        );
    }

    #[test]
    fn the_cluster_configuration_refuses_a_bad_group_name_too() {
        let mut desired = crate::desired::Desired::default();
        desired.groups.push(GroupConfig {
            name: "../etc".to_string(),
            preferred_owners: Vec::new(),
            failover_threshold: default_failover_threshold(),
            failover_period_s: default_failover_period_s(),
            failback: default_failback(),
            online: true,
        });
        let err = desired
            .cluster_config("n1", &BTreeMap::new())
            .expect_err("bad name")
            .to_string();
        assert!(
            err.starts_with("group \"../etc\": the name must be"),
            "{err}"
        );
    }

    #[test]
    fn a_token_file_others_can_read_is_refused_naming_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        let api = ApiSection {
            listen: "127.0.0.1:7070".parse().expect("address"),
            token_file: path.clone(),
        };
        write_token_file(&path, "a-token-of-twenty-chars").expect("write");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(api.token().expect("owner-only"), "a-token-of-twenty-chars");
        for loose in [0o644, 0o640, 0o604, 0o620] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(loose)).expect("chmod");
            let err = api.token().expect_err("loose mode").to_string();
            assert_eq!(
                err,
                format!(
                    "the API token file {p} has mode {loose:04o}: its group or others may use \
                     it; make it owner-only with: chmod 600 {p}",
                    p = path.display()
                )
            );
        }
        // Writing again makes an existing loose file owner-only.
        write_token_file(&path, "another-token-of-twenty").expect("rewrite");
        assert_eq!(
            api.token().expect("owner-only again"),
            "another-token-of-twenty"
        );
    }

    #[test]
    fn a_source_is_a_wasm_file_name_of_the_plugins_directory() {
        let with = |source: &str| {
            GOOD.replace(
                "allow_programs = [\"/usr/bin/sleep\"]",
                &format!("allow_programs = [\"/usr/bin/sleep\"]\nsource = {source:?}"),
            )
        };
        let config = AgentConfig::parse(&with("my-process.wasm")).expect("valid");
        assert_eq!(
            config.plugins["process"].source.as_deref(),
            Some("my-process.wasm")
        );
        for bad in ["../evil.wasm", "/tmp/evil.wasm", "evil", ".hidden.wasm", ""] {
            let err = AgentConfig::parse(&with(bad)).expect_err(bad);
            let text = format!("{err:#}");
            assert!(text.contains("[plugins.process] source"), "{bad}: {text}");
        }
        let typo = GOOD.replace("allow_programs =", "sourse = \"x.wasm\"\nallow_programs =");
        let err = AgentConfig::parse(&typo).expect_err("typo").to_string();
        assert!(err.contains("unknown field `sourse`"), "{err}");
        assert!(err.contains("line 7"), "{err}");
    }
}
