//! `DnsGrant`: the `[plugins.TYPE.dns]` section, the one server, zone and
//! key a resource type may update, checked and turned into a
//! [`DnsUpdater`] when the agent starts, so that a bad grant stops the
//! agent with a message instead of failing the first online.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_proto::rr::{Name, TSigner};
use serde::Deserialize;

use super::names::GrantedZone;
use super::{DnsUpdater, key_file};

/// The default `key_algorithm`.
pub const DEFAULT_KEY_ALGORITHM: &str = "hmac-sha256";
/// The default `timeout_ms`: how long one register, remove or lookup may take.
pub const DEFAULT_TIMEOUT_MS: u64 = 5_000;
/// The largest `timeout_ms`: a minute, well within any call's pending timeout.
pub const MAX_TIMEOUT_MS: u64 = 60_000;
/// The TSIG fudge: how far the server's clock may be from ours (RFC 8945
/// recommends 300 s).
const FUDGE_S: u16 = 300;

/// `[plugins.TYPE.dns]` in the node configuration: the one server and zone
/// a type may update, and the TSIG key it signs with. The operator writes
/// it, so it is trusted; what a plugin asks within it is not.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsGrant {
    /// The zone's primary server, an address and port: `"198.18.0.53:53"`
    /// or `"[fd00::35]:53"` (no host name: the agent resolves nothing).
    pub server: String,
    /// The zone the type may update, e.g. `"warden.test"`; names outside it
    /// are refused before anything is sent.
    pub zone: String,
    /// The TSIG key's name, as the server knows it.
    pub key_name: String,
    /// `hmac-sha256` (default), `hmac-sha384` or `hmac-sha512`.
    #[serde(default = "default_key_algorithm")]
    pub key_algorithm: String,
    /// The file with the key's secret (an absolute path): the base64
    /// secret alone, or a BIND or knot key statement (`key_file.rs`).
    pub key_file: PathBuf,
    /// How long one register, remove or lookup may take, in milliseconds
    /// (default 5 000, at most 60 000).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

fn default_key_algorithm() -> String {
    DEFAULT_KEY_ALGORITHM.to_string()
}

impl DnsGrant {
    /// Check the grant and read its key. `section` names it in every
    /// error, e.g. `[plugins.network-name.dns]`.
    pub fn resolve(&self, section: &str) -> Result<DnsUpdater> {
        let server = self.server().with_context(|| format!("{section} server"))?;
        let zone = GrantedZone::new(&self.zone, section)?;
        let key = format!("{section} key {}", self.key_name);
        if self.key_name.trim_end_matches('.').is_empty() {
            bail!("{section} key_name is empty");
        }
        let mut key_name = Name::from_ascii(self.key_name.trim_end_matches('.'))
            .with_context(|| format!("{key}: not a DNS name"))?;
        key_name.set_fqdn(true);
        let algorithm =
            algorithm(&self.key_algorithm).with_context(|| format!("{key}: key_algorithm"))?;
        if !self.key_file.is_absolute() {
            bail!(
                "{key}: key_file {} must be an absolute path",
                self.key_file.display()
            );
        }
        let file = key_file::read(&self.key_file).with_context(|| key.clone())?;
        if let Some(named) = &file.name
            && !named.eq_ignore_ascii_case(self.key_name.trim_end_matches('.'))
        {
            bail!(
                "{key}: key_file {} holds the key {named:?}, not {:?}",
                self.key_file.display(),
                self.key_name
            );
        }
        if let Some(named) = &file.algorithm
            && !named.eq_ignore_ascii_case(&self.key_algorithm)
        {
            bail!(
                "{key}: key_file {} says its algorithm is {named}, the grant's key_algorithm {}",
                self.key_file.display(),
                self.key_algorithm
            );
        }
        let signer = TSigner::new(file.secret, algorithm, key_name, FUDGE_S)
            .map_err(|e| anyhow::anyhow!("{key}: {e}"))?;
        let timeout_ms = self.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
        if !(1..=MAX_TIMEOUT_MS).contains(&timeout_ms) {
            bail!("{section} timeout_ms = {timeout_ms}: give 1 to {MAX_TIMEOUT_MS}");
        }
        Ok(DnsUpdater::new(
            server,
            zone,
            signer,
            format!(
                "{} ({})",
                self.key_name,
                self.key_algorithm.to_ascii_lowercase()
            ),
            Duration::from_millis(timeout_ms),
        ))
    }

    fn server(&self) -> Result<SocketAddr> {
        let server: SocketAddr = self.server.parse().map_err(|_| {
            anyhow::anyhow!(
                "{:?} is not an address and port such as \"198.18.0.53:53\" or \"[fd00::35]:53\"",
                self.server
            )
        })?;
        if server.port() == 0 {
            bail!("{:?}: port 0 is no server's port", self.server);
        }
        if server.ip().is_unspecified() || server.ip().is_multicast() {
            bail!("{:?} is no server's address", self.server);
        }
        Ok(server)
    }
}

/// The TSIG algorithms the host signs with.
fn algorithm(name: &str) -> Result<TsigAlgorithm> {
    match name.to_ascii_lowercase().trim_end_matches('.') {
        "hmac-sha256" => Ok(TsigAlgorithm::HmacSha256),
        "hmac-sha384" => Ok(TsigAlgorithm::HmacSha384),
        "hmac-sha512" => Ok(TsigAlgorithm::HmacSha512),
        _ => bail!("{name:?} is not supported: use hmac-sha256, hmac-sha384 or hmac-sha512"),
    }
}
