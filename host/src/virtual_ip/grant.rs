//! The per-node grant of virtual addresses: which interfaces a resource
//! type may put addresses on and which address ranges it may claim.
//!
//! `IpGrant` is what the operator writes (`[plugins.TYPE.ip]`);
//! `AddressGrant` is the same resolved (ranges parsed and checked) once,
//! when the configuration is read, so that every operation only compares.

use std::fmt;
use std::net::IpAddr;

use anyhow::{Context, bail};
use serde::Deserialize;

use super::AddressSpec;
use super::error::AddressError;

/// `[plugins.TYPE.ip]`: which interfaces and address ranges a resource
/// type may claim on this node. A plugin cannot touch interfaces itself;
/// the agent does it for it, and only within this.
///
/// ```toml
/// [plugins.ip-address.ip]
/// interfaces = ["eth0"]
/// ranges = ["198.18.0.0/24", "fd00:1::/64"]
/// ```
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IpGrant {
    /// Interface names (as `ip link` shows them) the type may add
    /// addresses to.
    pub interfaces: Vec<String>,
    /// Address ranges in CIDR notation (`198.18.0.0/24`, `fd00:1::/64`,
    /// `198.18.0.100/32` for one address) the type may claim.
    pub ranges: Vec<String>,
}

/// Longest interface name Linux accepts (IFNAMSIZ less the terminator).
const MAX_INTERFACE_NAME: usize = 15;

impl IpGrant {
    /// The grant resolved: every range parsed, every interface name
    /// checked. `section` names the grant in errors (`plugins.TYPE.ip`),
    /// and each error names the entry at fault.
    pub fn resolve(&self, section: &str) -> anyhow::Result<AddressGrant> {
        if self.interfaces.is_empty() {
            bail!(
                "[{section}] interfaces is empty: it would grant nothing (remove the section instead)"
            );
        }
        if self.ranges.is_empty() {
            bail!(
                "[{section}] ranges is empty: it would grant nothing (remove the section instead)"
            );
        }
        for (k, name) in self.interfaces.iter().enumerate() {
            check_interface_name(name)
                .with_context(|| format!("[{section}] interfaces[{k}] {name:?}"))?;
        }
        let ranges = self
            .ranges
            .iter()
            .enumerate()
            .map(|(k, text)| {
                text.parse::<IpRange>()
                    .with_context(|| format!("[{section}] ranges[{k}] {text:?}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(AddressGrant {
            section: section.to_string(),
            interfaces: self.interfaces.clone(),
            ranges,
        })
    }
}

fn check_interface_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty() || name.len() > MAX_INTERFACE_NAME {
        bail!("an interface name is 1 to {MAX_INTERFACE_NAME} bytes long");
    }
    if name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        bail!("not an interface name Linux accepts (no '/', ':' or white space, not . or ..)");
    }
    Ok(())
}

/// A resolved [`IpGrant`]: what every virtual address operation checks
/// first. An address outside it, or an interface it does not name, is
/// refused before anything on the node is looked at or changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressGrant {
    pub(crate) section: String,
    pub(crate) interfaces: Vec<String>,
    pub(crate) ranges: Vec<IpRange>,
}

impl AddressGrant {
    /// A grant of exactly `spec`: its interface and its own subnet. The
    /// fence guard takes a held address off through it, so that removal
    /// goes through the same checks as a plugin's call. `None` if the spec
    /// is not an address a grant could hold (a prefix that does not fit).
    pub fn exactly(spec: &AddressSpec, section: &str) -> Option<AddressGrant> {
        let max = if spec.address.is_ipv4() { 32 } else { 128 };
        (1..=max).contains(&spec.prefix_len).then(|| AddressGrant {
            section: section.to_string(),
            interfaces: vec![spec.interface.clone()],
            ranges: vec![IpRange {
                network: network_of(spec.address, spec.prefix_len),
                prefix_len: spec.prefix_len,
            }],
        })
    }

    /// The configuration section the grant came from, as errors name it.
    pub fn section(&self) -> &str {
        &self.section
    }

    /// Whether `spec` is within the grant: a prefix length that fits its
    /// family, an address a host can hold, a granted interface, an address
    /// in a granted range whose subnet (address/prefix) lies inside that
    /// range too. Whether the interface exists is the node's
    /// business, asked later.
    pub fn check(&self, spec: &AddressSpec) -> Result<(), AddressError> {
        let max = match spec.address {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        if spec.prefix_len == 0 || spec.prefix_len > max {
            return Err(AddressError::PrefixLength {
                address: spec.address,
                prefix_len: spec.prefix_len,
                max,
            });
        }
        if let Some(why) = not_assignable(spec.address) {
            return Err(AddressError::NotAssignable {
                address: spec.address,
                why,
            });
        }
        if !self.interfaces.contains(&spec.interface) {
            return Err(AddressError::InterfaceNotGranted {
                interface: spec.interface.clone(),
                section: self.section.clone(),
                granted: self.interfaces.join(", "),
            });
        }
        let containing: Vec<&IpRange> = self
            .ranges
            .iter()
            .filter(|r| r.contains(spec.address))
            .collect();
        // The subnet the address brings with it must lie in the grant too:
        // a /8 on a /24 grant would route a whole /8 through the interface.
        if let Some(widest) = containing.iter().min_by_key(|r| r.prefix_len)
            && !containing.iter().any(|r| spec.prefix_len >= r.prefix_len)
        {
            return Err(AddressError::SubnetOutsideGrant {
                address: spec.address,
                prefix_len: spec.prefix_len,
                section: self.section.clone(),
                range: widest.to_string(),
                shortest: widest.prefix_len,
            });
        }
        if containing.is_empty() {
            return Err(AddressError::OutsideGrant {
                address: spec.address,
                section: self.section.clone(),
                ranges: self
                    .ranges
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        Ok(())
    }
}

/// Why `address` cannot be a virtual server's address, if it cannot.
fn not_assignable(address: IpAddr) -> Option<&'static str> {
    match address {
        IpAddr::V4(a) if a.is_unspecified() => Some("unspecified"),
        IpAddr::V4(a) if a.is_loopback() => Some("loopback"),
        IpAddr::V4(a) if a.is_multicast() => Some("multicast"),
        IpAddr::V4(a) if a.is_broadcast() => Some("broadcast"),
        IpAddr::V4(a) if a.is_link_local() => Some("link-local"),
        IpAddr::V6(a) if a.is_unspecified() => Some("unspecified"),
        IpAddr::V6(a) if a.is_loopback() => Some("loopback"),
        IpAddr::V6(a) if a.is_multicast() => Some("multicast"),
        IpAddr::V6(a) if a.is_unicast_link_local() => Some("link-local"),
        IpAddr::V6(a) if a.to_ipv4_mapped().is_some() => Some("IPv4-mapped"),
        _ => None,
    }
}

/// An address range in CIDR notation: a network address and its prefix
/// length, host bits zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    network: IpAddr,
    prefix_len: u8,
}

impl IpRange {
    /// Whether `address` is in the range (never across families).
    pub fn contains(&self, address: IpAddr) -> bool {
        match (self.network, address) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let mask = mask_u32(self.prefix_len);
                u32::from(a) & mask == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let mask = mask_u128(self.prefix_len);
                u128::from(a) & mask == u128::from(net)
            }
            _ => false,
        }
    }
}

/// The network address of `address`'s subnet of `prefix_len` (host bits
/// zero).
fn network_of(address: IpAddr, prefix_len: u8) -> IpAddr {
    match address {
        IpAddr::V4(a) => IpAddr::V4((u32::from(a) & mask_u32(prefix_len)).into()),
        IpAddr::V6(a) => IpAddr::V6((u128::from(a) & mask_u128(prefix_len)).into()),
    }
}

fn mask_u32(prefix_len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix_len))
        .unwrap_or(0)
}

fn mask_u128(prefix_len: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(prefix_len))
        .unwrap_or(0)
}

impl std::str::FromStr for IpRange {
    type Err = anyhow::Error;

    /// `ADDRESS/PREFIX`; the prefix is required (a bare address is not
    /// taken to mean /32, so a forgotten prefix is not a silent single
    /// address), and host bits must be zero (`198.18.0.1/24` is refused,
    /// naming `198.18.0.0/24`: the grant says exactly what it grants).
    fn from_str(text: &str) -> anyhow::Result<IpRange> {
        let Some((address, prefix)) = text.split_once('/') else {
            bail!("not in CIDR notation (ADDRESS/PREFIX, e.g. 198.18.0.0/24 or fd00:1::/64)");
        };
        let network: IpAddr = address
            .parse()
            .with_context(|| format!("{address:?} is not an IPv4 or IPv6 address"))?;
        let max: u8 = if network.is_ipv4() { 32 } else { 128 };
        let prefix_len: u8 =
            prefix.parse().ok().filter(|p| *p <= max).with_context(|| {
                format!("prefix length {prefix:?} is not a number from 0 to {max}")
            })?;
        let masked = network_of(network, prefix_len);
        if masked != network {
            bail!("host bits are set: the range is written {masked}/{prefix_len}");
        }
        Ok(IpRange {
            network,
            prefix_len,
        })
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(interfaces: &[&str], ranges: &[&str]) -> anyhow::Result<AddressGrant> {
        IpGrant {
            interfaces: interfaces.iter().map(|s| s.to_string()).collect(),
            ranges: ranges.iter().map(|s| s.to_string()).collect(),
        }
        .resolve("plugins.ip-address.ip")
    }

    fn spec(address: &str, prefix_len: u8, interface: &str) -> AddressSpec {
        AddressSpec {
            address: address.parse().expect("test address"),
            prefix_len,
            interface: interface.to_string(),
        }
    }

    fn error_of(result: anyhow::Result<AddressGrant>) -> String {
        format!("{:#}", result.expect_err("refused"))
    }

    #[test]
    fn ranges_contain_their_addresses_and_no_others() {
        let g = grant(
            &["eth0"],
            &["198.18.0.0/24", "fd00:1::/64", "198.18.1.7/32"],
        )
        .expect("grant");
        for ok in [
            "198.18.0.1",
            "198.18.0.254",
            "fd00:1::1",
            "fd00:1::ffff:1",
            "198.18.1.7",
        ] {
            // A single address: its subnet is itself.
            let one = if ok.contains(':') { 128 } else { 32 };
            g.check(&spec(ok, one, "eth0"))
                .unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for outside in [
            "198.18.1.1",
            "198.18.1.8",
            "10.0.0.1",
            "fd00:2::1",
            "fd00:1:0:1::1",
        ] {
            let e = g
                .check(&spec(outside, 24, "eth0"))
                .expect_err(outside)
                .to_string();
            assert!(
                e.contains("outside the grant [plugins.ip-address.ip]")
                    && e.contains("198.18.0.0/24, fd00:1::/64, 198.18.1.7/32"),
                "{e}"
            );
        }
        let all = grant(&["eth0"], &["0.0.0.0/0"]).expect("everything");
        all.check(&spec("203.0.113.9", 32, "eth0"))
            .expect("in 0.0.0.0/0");
        let e = all
            .check(&spec("fd00::1", 64, "eth0"))
            .expect_err("other family");
        assert!(matches!(e, AddressError::OutsideGrant { .. }), "{e}");
    }

    #[test]
    fn a_grant_of_exactly_one_spec_admits_it_and_nothing_wider_or_elsewhere() {
        for (address, prefix) in [
            ("198.18.0.200", 24),
            ("198.18.0.200", 32),
            ("fd00:1::5", 64),
        ] {
            let spec = spec(address, prefix, "eth0");
            let g = AddressGrant::exactly(&spec, "fence guard").expect("a grant");
            g.check(&spec)
                .unwrap_or_else(|e| panic!("{address}/{prefix}: {e}"));
            let wider = AddressSpec {
                prefix_len: prefix - 1,
                ..spec.clone()
            };
            assert!(g.check(&wider).is_err(), "{address}/{}", prefix - 1);
            let elsewhere = AddressSpec {
                interface: "eth1".to_string(),
                ..spec.clone()
            };
            assert!(g.check(&elsewhere).is_err(), "{address} on eth1");
        }
        assert!(AddressGrant::exactly(&spec("198.18.0.1", 33, "eth0"), "x").is_none());
        assert!(AddressGrant::exactly(&spec("198.18.0.1", 0, "eth0"), "x").is_none());
    }

    #[test]
    fn an_address_may_not_bring_a_subnet_wider_than_its_range() {
        let g = grant(
            &["eth0"],
            &["198.18.0.192/26", "198.18.0.0/24", "fd00:1::/64"],
        )
        .expect("grant");
        for (ok, prefix) in [
            ("198.18.0.200", 24),
            ("198.18.0.200", 26),
            ("198.18.0.200", 32),
            ("198.18.0.5", 24),
            ("fd00:1::1", 64),
            ("fd00:1::1", 128),
        ] {
            g.check(&spec(ok, prefix, "eth0"))
                .unwrap_or_else(|e| panic!("{ok}/{prefix}: {e}"));
        }
        for (wide, prefix, range) in [
            ("198.18.0.200", 8, "198.18.0.0/24"),
            ("198.18.0.5", 23, "198.18.0.0/24"),
            ("fd00:1::1", 48, "fd00:1::/64"),
        ] {
            let e = g.check(&spec(wide, prefix, "eth0")).expect_err(wide);
            assert!(
                matches!(e, AddressError::SubnetOutsideGrant { .. })
                    && e.to_string()
                        .contains(&format!("{wide}/{prefix} is a wider subnet"))
                    && e.to_string().contains(range),
                "{e}"
            );
        }
        let single = grant(&["eth0"], &["198.18.0.200/32"]).expect("grant");
        let e = single
            .check(&spec("198.18.0.200", 24, "eth0"))
            .expect_err("a /24 on a /32 grant");
        assert!(
            e.to_string().contains("prefix lengths of 32 or more"),
            "{e}"
        );
    }

    #[test]
    fn prefix_lengths_interfaces_and_unassignable_addresses_are_refused() {
        let g = grant(&["eth0", "eth1"], &["0.0.0.0/0", "::/0"]).expect("grant");
        for (address, prefix) in [
            ("198.18.0.1", 33),
            ("198.18.0.1", 0),
            ("fd00::1", 129),
            ("fd00::1", 255),
        ] {
            let e = g.check(&spec(address, prefix, "eth0")).expect_err("prefix");
            assert!(matches!(e, AddressError::PrefixLength { .. }), "{e}");
            assert!(e.to_string().contains(&format!("/{prefix}")), "{e}");
        }
        for bad in [
            "0.0.0.0",
            "127.0.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "169.254.1.1",
            "::",
            "::1",
            "ff02::1",
            "fe80::1",
            "::ffff:198.18.0.1",
        ] {
            let e = g.check(&spec(bad, 24, "eth0")).expect_err(bad);
            assert!(
                matches!(e, AddressError::NotAssignable { .. }),
                "{bad}: {e}"
            );
        }
        let e = g
            .check(&spec("198.18.0.1", 24, "wlan0"))
            .expect_err("interface")
            .to_string();
        assert!(
            e.contains("\"wlan0\" is not granted") && e.contains("eth0, eth1"),
            "{e}"
        );
    }

    #[test]
    fn bad_grants_name_the_section_and_the_entry() {
        let e = error_of(grant(&["eth0"], &["198.18.0.0/24", "198.18.0.1/24"]));
        assert!(
            e.contains("[plugins.ip-address.ip] ranges[1] \"198.18.0.1/24\"")
                && e.contains("198.18.0.0/24"),
            "{e}"
        );
        for (range, says) in [
            ("198.18.0.0", "CIDR"),
            ("198.18.0.0/33", "0 to 32"),
            ("fd00::/129", "0 to 128"),
            ("fd00::/-1", "0 to 128"),
            ("example.com/24", "not an IPv4 or IPv6 address"),
            ("", "CIDR"),
        ] {
            let e = error_of(grant(&["eth0"], &[range]));
            assert!(e.contains("ranges[0]") && e.contains(says), "{range}: {e}");
        }
        for name in ["", "a/b", "eth0:1", "x y", "..", "sixteen-chars-xx"] {
            let e = error_of(grant(&["eth0", name], &["198.18.0.0/24"]));
            assert!(e.contains("interfaces[1]"), "{name:?}: {e}");
        }
        assert!(error_of(grant(&[], &["198.18.0.0/24"])).contains("interfaces is empty"));
        assert!(error_of(grant(&["eth0"], &[])).contains("ranges is empty"));
        let huge = "9".repeat(100_000);
        let e = error_of(grant(&["eth0"], &[&format!("198.18.0.0/{huge}")]));
        assert!(e.contains("ranges[0]"));
    }

    #[test]
    fn unknown_fields_in_the_section_are_refused() {
        let e = toml::from_str::<IpGrant>("interfaces = [\"eth0\"]\nranges = []\nrange = \"x\"\n")
            .expect_err("unknown field");
        assert!(e.to_string().contains("range"), "{e}");
    }
}
