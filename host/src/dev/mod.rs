//! `warden agent --dev`: a whole node from one command, nothing to install.
//!
//! The data directory is a fresh temporary folder, the resource types are
//! the built-in ones, and the resources supervise real processes: two demo
//! HTTP services run by the warden binary itself; or, with `--example
//! exchange`, the whole Exchange virtual server ([`exchange`]).

pub(crate) mod exchange;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::config::AgentConfig;

/// A configuration for a dev node in `dir`, running `exe` as the services.
pub(crate) fn config(dir: &Path, exe: &Path) -> Result<(AgentConfig, Vec<(String, SocketAddr)>)> {
    let token_file = dir.join("api-token");
    crate::config::write_token_file(&token_file, &random_token()?)?;
    let mut services = Vec::new();
    let mut resources = String::new();
    // The front end depends on the API: it comes online after it and goes
    // offline before it.
    for (name, depends_on) in [("web-frontend", "[\"mail-api\"]"), ("mail-api", "[]")] {
        let addr = free_port()?;
        resources.push_str(&format!(
            r#"
[[resource]]
name = "{name}"
type = "process"
group = "demo"
depends_on = {depends_on}
is_alive_interval_ms = 2000
restart = {{ threshold = 3, period_s = 900, delay_ms = 500 }}
properties = {{ program = {exe:?}, args = "demo-service --name {name} --listen {addr}", stop-grace-ms = 2000 }}
"#
        ));
        services.push((name.to_string(), addr));
    }
    let text = format!(
        r#"
{node_and_api}
# The demo services, and the program of the README's example resource.
[plugins.process]
allow_programs = [{exe:?}, "/usr/bin/sleep"]

[[group]]
name = "demo"
{resources}"#,
        node_and_api = node_and_api(dir, &token_file)?,
        exe = exe.display().to_string(),
    );
    std::fs::write(dir.join("warden.toml"), &text).context("writing the dev configuration")?;
    Ok((AgentConfig::parse(&text)?, services))
}

/// The `[node]` and `[api]` sections of a dev node in `dir`: node `dev`,
/// the admin API on a free loopback port with the token in `token_file`.
pub(crate) fn node_and_api(dir: &Path, token_file: &Path) -> Result<String> {
    Ok(format!(
        r#"[node]
name = "dev"
data_dir = {dir:?}

[api]
listen = "{api}"
token_file = {token_file:?}
"#,
        dir = dir.display().to_string(),
        api = free_port()?,
        token_file = token_file.display().to_string(),
    ))
}

/// A fresh folder for a dev node's data: a name nobody can guess, created
/// here (never one that exists already, which another local user could
/// have planted) and readable by this user alone.
pub(crate) fn data_dir() -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = std::env::temp_dir().join(format!(
        "warden-dev-{}-{}",
        std::process::id(),
        &random_token()?[..12]
    ));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

pub(crate) fn free_port() -> Result<SocketAddr> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
    Ok(listener.local_addr()?)
}

/// 32 hex digits from the kernel's random source.
pub(crate) fn random_token() -> Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom for the API token")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
