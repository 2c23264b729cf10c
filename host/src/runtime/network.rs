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

use crate::contract::{PropertyKind, TypeInfo};

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
    allowed: Vec<(SocketAddr, String)>,
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
            let named = format!("{}={text}", spec.name);
            allowed.extend(addrs.into_iter().map(|a| (a, named.clone())));
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
            SocketAddrUse::TcpConnect => self.allowed.iter().any(|(a, _)| *a == addr),
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
            let allowed = self.allows(addr, use_);
            if !allowed {
                let what = match use_ {
                    SocketAddrUse::TcpConnect => "connect to",
                    SocketAddrUse::TcpBind => "bind",
                    SocketAddrUse::TcpListen => "listen on",
                    SocketAddrUse::TcpAccept => "accept from",
                    _ => "use UDP with",
                };
                tracing::warn!(
                    resource = %resource,
                    "denied: resource {resource} may not {what} {addr} (it may connect to: {})",
                    self.describe()
                );
            }
            Box::pin(std::future::ready(allowed))
        }
    }

    fn describe(&self) -> String {
        if self.allowed.is_empty() {
            return "no address; name one in an address property".to_string();
        }
        self.allowed
            .iter()
            .map(|(addr, named)| format!("{addr} ({named})"))
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
            allowed: vec![(ok, "port=127.0.0.1:25".to_string())],
        };
        assert!(grant.allows(ok, SocketAddrUse::TcpConnect));
        assert!(!grant.allows("127.0.0.1:26".parse().unwrap(), SocketAddrUse::TcpConnect));
        assert!(grant.allows("0.0.0.0:0".parse().unwrap(), SocketAddrUse::TcpBind));
        assert!(!grant.allows("0.0.0.0:25".parse().unwrap(), SocketAddrUse::TcpBind));
        assert!(!grant.allows(ok, SocketAddrUse::TcpListen));
        assert!(!grant.allows(ok, SocketAddrUse::UdpSend));
    }
}
