//! The network a resource may reach: TCP connections to the addresses named
//! by its `address` properties, and nothing else.
//!
//! The plugin declares in its schema which properties hold addresses
//! (`property-kind::address`); the operator writes them in the resource's
//! configuration. The agent resolves them when it opens the resource (the
//! plugin itself may not look names up: a lookup is traffic the operator
//! did not name), and every WASI socket use is checked against the result.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use wasmtime_wasi::sockets::SocketAddrUse;

use super::plugin_text;
use crate::contract::{PropertyKind, TypeInfo};

/// The longest address text a denial quotes.
const MAX_DENIED_ADDRESS: usize = 300;

/// Split `host:port` (or `[v6]:port`) and check both halves, without any
/// lookup. Used to validate `address` properties.
pub fn parse_address(text: &str) -> Result<(&str, u16), String> {
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| "has no port (expected host:port)".to_string())?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("has port {port:?}, which is not a number from 0 to 65535"))?;
    let host = match host.strip_prefix('[') {
        Some(v6) => {
            let v6 = v6
                .strip_suffix(']')
                .ok_or_else(|| format!("has an unclosed [ in {host:?}"))?;
            if v6.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(format!("has [{v6}], which is not an IPv6 address"));
            }
            v6
        }
        None if host.contains(':') => {
            return Err(format!(
                "has host {host:?}: write an IPv6 address in brackets, as [::1]:80"
            ));
        }
        None => host,
    };
    if host.is_empty() {
        return Err("has no host (expected host:port)".to_string());
    }
    Ok((host, port))
}

/// The TCP addresses one resource may connect to.
#[derive(Debug, Default, Clone)]
pub struct NetworkGrant {
    /// Resolved addresses, with the property and text that named each.
    allowed: Vec<Granted>,
}

/// One address a resource may connect to, and what named it.
#[derive(Debug, Clone)]
struct Granted {
    addr: SocketAddr,
    /// The property that named it.
    property: String,
    /// The property's value as the operator wrote it (`localhost:6379`).
    text: String,
}

/// A connection the grant does not allow, as the resource and the log are
/// told: the address, and what the resource may reach instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("resource {resource} may not {what} {addr} (it may connect to: {granted})")]
pub struct Denied {
    resource: String,
    what: &'static str,
    addr: String,
    granted: String,
}

impl NetworkGrant {
    /// Resolve every non-empty `address` property of `configured` (the
    /// properties as the operator set them, without the plugin's defaults)
    /// according to `info`'s schema. A name that does not resolve is an
    /// error naming the property: the resource cannot work, so it must not
    /// open.
    pub async fn resolve(
        info: &TypeInfo,
        configured: &[(String, String)],
    ) -> Result<NetworkGrant, (String, String)> {
        let mut allowed = Vec::new();
        for spec in info
            .properties
            .iter()
            .filter(|p| p.kind == PropertyKind::Address)
        {
            let Some((_, text)) = configured.iter().find(|(k, _)| *k == spec.name) else {
                continue;
            };
            if text.is_empty() {
                continue;
            }
            let refuse = |why: String| (spec.name.clone(), format!("address {text:?} {why}"));
            let (host, port) = parse_address(text).map_err(refuse)?;
            let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
                Ok(ip) => vec![SocketAddr::new(ip, port)],
                Err(_) => tokio::net::lookup_host((host, port))
                    .await
                    .map_err(|e| refuse(format!("does not resolve: {e}")))?
                    .collect(),
            };
            if addrs.is_empty() {
                return Err(refuse("resolves to no address".to_string()));
            }
            allowed.extend(addrs.into_iter().map(|addr| Granted {
                addr,
                property: spec.name.clone(),
                text: text.clone(),
            }));
        }
        Ok(NetworkGrant { allowed })
    }

    /// Whether any TCP use is granted at all.
    pub fn is_empty(&self) -> bool {
        self.allowed.is_empty()
    }

    /// Whether `use_` of `addr` is allowed: a connect to a granted address,
    /// and the implicit bind to the wildcard address that a connect does.
    /// Listening, accepting and explicit binds are never allowed.
    pub fn allows(&self, addr: SocketAddr, use_: SocketAddrUse) -> bool {
        match use_ {
            SocketAddrUse::TcpConnect => self.allowed.iter().any(|g| g.addr == addr),
            SocketAddrUse::TcpBind => addr.ip().is_unspecified() && addr.port() == 0,
            _ => false,
        }
    }

    /// The check handed to WASI: allow or deny, and log every denial with
    /// the resource and the address, so an operator sees what a plugin
    /// tried.
    pub fn into_check(
        self: Arc<Self>,
        resource: Arc<str>,
    ) -> impl Fn(SocketAddr, SocketAddrUse) -> Pin<Box<dyn Future<Output = bool> + Send + Sync>>
    + Send
    + Sync
    + 'static {
        move |addr, use_| {
            Box::pin(std::future::ready(
                self.permit(&resource, addr, use_).is_ok(),
            ))
        }
    }

    /// The sockets' check: [`NetworkGrant::allows`], and a denial logged
    /// with the resource and the address, so an operator sees what a
    /// plugin tried.
    pub fn permit(
        &self,
        resource: &str,
        addr: SocketAddr,
        use_: SocketAddrUse,
    ) -> Result<(), Denied> {
        if self.allows(addr, use_) {
            return Ok(());
        }
        let what = match use_ {
            SocketAddrUse::TcpConnect => "connect to",
            SocketAddrUse::TcpBind => "bind",
            SocketAddrUse::TcpListen => "listen on",
            SocketAddrUse::TcpAccept => "accept from",
            _ => "use UDP with",
        };
        let denied = self.denial(resource, what, addr.to_string());
        tracing::warn!(resource = %resource, "denied: {denied}");
        Err(denied)
    }

    /// The addresses `text` (`host:port`, as in an `address` property) may
    /// be connected to, by the sockets' rule ([`NetworkGrant::allows`]): an
    /// IP address and port when granted; a name only when an `address`
    /// property holds exactly that text, and then the addresses it was
    /// resolved to when the resource was opened. No name is looked up here:
    /// a lookup is traffic the operator did not name. The caller logs a
    /// denial (the `probe` import within the plugin's output budget).
    pub fn connect_targets(&self, resource: &str, text: &str) -> Result<Vec<SocketAddr>, Denied> {
        let targets: Vec<SocketAddr> = match text.parse::<SocketAddr>() {
            Ok(addr) => vec![addr],
            Err(_) => self
                .allowed
                .iter()
                .filter(|g| g.text == text)
                .map(|g| g.addr)
                .collect(),
        };
        if targets.is_empty()
            || !targets
                .iter()
                .all(|addr| self.allows(*addr, SocketAddrUse::TcpConnect))
        {
            return Err(self.denial(resource, "connect to", text.to_string()));
        }
        Ok(targets)
    }

    /// A denial of `what` to `addr` (cut: a plugin's text may be huge).
    fn denial(&self, resource: &str, what: &'static str, addr: String) -> Denied {
        Denied {
            resource: resource.to_string(),
            what,
            addr: plugin_text::one_line(addr, MAX_DENIED_ADDRESS),
            granted: self.describe(),
        }
    }

    fn describe(&self) -> String {
        if self.allowed.is_empty() {
            return "no address; name one in an address property".to_string();
        }
        self.allowed
            .iter()
            .map(|g| format!("{} ({}={})", g.addr, g.property, g.text))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked_without_lookups() {
        assert_eq!(parse_address("localhost:25"), Ok(("localhost", 25)));
        assert_eq!(parse_address("[::1]:80"), Ok(("::1", 80)));
        assert_eq!(parse_address("10.0.0.1:8080"), Ok(("10.0.0.1", 8080)));
        assert!(parse_address("localhost").unwrap_err().contains("no port"));
        assert!(parse_address("h:99999").unwrap_err().contains("99999"));
        assert!(parse_address(":80").unwrap_err().contains("no host"));
        assert!(parse_address("::1:80").is_err());
    }

    #[test]
    fn only_granted_connects_pass() {
        let ok: SocketAddr = "127.0.0.1:25".parse().unwrap();
        let grant = NetworkGrant {
            allowed: vec![Granted {
                addr: ok,
                property: "port".to_string(),
                text: "127.0.0.1:25".to_string(),
            }],
        };
        assert!(grant.allows(ok, SocketAddrUse::TcpConnect));
        assert!(!grant.allows("127.0.0.1:26".parse().unwrap(), SocketAddrUse::TcpConnect));
        assert!(grant.allows("0.0.0.0:0".parse().unwrap(), SocketAddrUse::TcpBind));
        assert!(!grant.allows("0.0.0.0:25".parse().unwrap(), SocketAddrUse::TcpBind));
        assert!(!grant.allows(ok, SocketAddrUse::TcpListen));
        assert!(!grant.allows(ok, SocketAddrUse::UdpSend));
    }

    #[test]
    fn probes_reach_granted_addresses_and_named_properties_only() {
        let grant = NetworkGrant {
            allowed: vec![
                Granted {
                    addr: "127.0.0.1:6379".parse().unwrap(),
                    property: "address".to_string(),
                    text: "localhost:6379".to_string(),
                },
                Granted {
                    addr: "[::1]:6379".parse().unwrap(),
                    property: "address".to_string(),
                    text: "localhost:6379".to_string(),
                },
            ],
        };
        assert_eq!(
            grant.connect_targets("r", "localhost:6379").unwrap().len(),
            2
        );
        assert_eq!(
            grant.connect_targets("r", "[::1]:6379").unwrap(),
            vec!["[::1]:6379".parse::<SocketAddr>().unwrap()]
        );
        for denied in [
            "localhost:6380",
            "127.0.0.1:6380",
            "0.0.0.0:6379",
            "example.com:6379",
        ] {
            let why = grant.connect_targets("r", denied).unwrap_err().to_string();
            assert!(
                why.contains(denied) && why.contains("localhost:6379"),
                "{why}"
            );
        }
    }
}
