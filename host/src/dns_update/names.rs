//! The zone a grant names, and the checks every name and address a plugin
//! gives pass before anything is sent: a plugin chose every byte of them.

use std::net::IpAddr;

use anyhow::{Context, Result, bail};
use hickory_proto::rr::Name;

use super::DnsError;

/// The longest name accepted, as text: 253 characters (255 bytes on the
/// wire) plus the final dot.
pub const MAX_NAME_CHARS: usize = 254;

/// The longest label, by RFC 1035.
const MAX_LABEL_CHARS: usize = 63;

/// How much of a refused name an error repeats.
const SHOWN_CHARS: usize = 80;

/// The zone of a grant and the section that granted it (for errors).
#[derive(Debug, Clone)]
pub(crate) struct GrantedZone {
    zone: Name,
    section: String,
}

impl GrantedZone {
    /// The zone as the operator wrote it (`warden.test` or `warden.test.`).
    /// The root is refused: it would grant every name.
    pub(crate) fn new(zone: &str, section: &str) -> Result<GrantedZone> {
        let trimmed = zone.strip_suffix('.').unwrap_or(zone);
        if trimmed.is_empty() {
            bail!("{section} zone: {zone:?} names no zone (the root is never granted)");
        }
        check_host_name(trimmed).map_err(|reason| {
            anyhow::anyhow!("{section} zone: {zone:?} is not a DNS zone name: {reason}")
        })?;
        let mut name = Name::from_ascii(trimmed)
            .with_context(|| format!("{section} zone: {zone:?} is not a DNS zone name"))?;
        name.set_fqdn(true);
        Ok(GrantedZone {
            zone: name.to_lowercase(),
            section: section.to_string(),
        })
    }

    /// The zone, absolute.
    pub(crate) fn zone(&self) -> &Name {
        &self.zone
    }

    /// The section that granted it, e.g. `[plugins.network-name.dns]`.
    pub(crate) fn section(&self) -> &str {
        &self.section
    }

    /// The absolute name `given` stands for, if it is a host name inside
    /// the zone. `evs1.warden.test.` is absolute; `evs1` is taken inside the
    /// zone; `evs1.warden.test` (no final dot) already ends with the zone
    /// and is taken as it is, not as `evs1.warden.test.warden.test.`.
    pub(crate) fn name(&self, given: &str) -> Result<Name, DnsError> {
        let invalid = |reason: String| DnsError::InvalidName {
            name: shown(given),
            reason,
            section: self.section.clone(),
        };
        if given.len() > MAX_NAME_CHARS {
            return Err(invalid(format!(
                "{} characters, more than the {MAX_NAME_CHARS} a DNS name can have",
                given.len()
            )));
        }
        let (text, absolute) = match given.strip_suffix('.') {
            Some(text) => (text, true),
            None => (given, false),
        };
        check_host_name(text).map_err(invalid)?;
        let mut name = Name::from_ascii(text).map_err(|e| invalid(e.to_string()))?;
        name.set_fqdn(false);
        let name = if absolute {
            let mut name = name;
            name.set_fqdn(true);
            name
        } else {
            let mut as_absolute = name.clone();
            as_absolute.set_fqdn(true);
            if self.zone.zone_of(&as_absolute) {
                as_absolute
            } else {
                name.append_domain(&self.zone)
                    .map_err(|e| invalid(format!("inside {}: {e}", self.zone)))?
            }
        };
        if name.len() > MAX_NAME_CHARS {
            return Err(invalid(format!(
                "{} characters inside {}, more than a DNS name can have",
                name.len(),
                self.zone
            )));
        }
        if !self.zone.zone_of(&name) {
            return Err(DnsError::OutsideZone {
                name: shown(&name.to_ascii()),
                zone: self.zone.to_ascii(),
                section: self.section.clone(),
            });
        }
        Ok(name.to_lowercase())
    }

    /// Refuse addresses no client can reach a virtual server at.
    pub(crate) fn check_address(&self, address: IpAddr) -> Result<(), DnsError> {
        let reason = if address.is_unspecified() {
            Some("it is the unspecified address")
        } else if address.is_multicast() {
            Some("it is a multicast address")
        } else if matches!(address, IpAddr::V4(v4) if v4.is_broadcast()) {
            Some("it is the broadcast address")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(DnsError::InvalidAddress {
                address,
                reason,
                section: self.section.clone(),
            }),
            None => Ok(()),
        }
    }
}

/// A host name by RFC 952/1123: labels of 1 to 63 letters, digits and
/// hyphens, not beginning or ending with a hyphen. No wildcard, no
/// underscore, no escapes, nothing the zone file or a log could misread.
fn check_host_name(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("it is empty".to_string());
    }
    for label in text.split('.') {
        if label.is_empty() {
            return Err("it has an empty label (two dots in a row, or a leading dot)".to_string());
        }
        if label.len() > MAX_LABEL_CHARS {
            return Err(format!(
                "a label of {} characters, more than {MAX_LABEL_CHARS}",
                label.len()
            ));
        }
        if let Some(bad) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(format!(
                "{bad:?} in {:?}: a label holds only letters, digits and hyphens",
                shown(label)
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("the label {label:?} begins or ends with a hyphen"));
        }
    }
    Ok(())
}

/// `text` cut to [`SHOWN_CHARS`] and escaped, for an error message.
fn shown(text: &str) -> String {
    let mut cut: String = text.chars().take(SHOWN_CHARS).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    cut.escape_debug().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone() -> GrantedZone {
        GrantedZone::new("warden.test", "[plugins.network-name.dns]").expect("a zone")
    }

    #[test]
    fn relative_names_are_taken_inside_the_zone() {
        let zone = zone();
        assert_eq!(zone.name("evs1").unwrap().to_ascii(), "evs1.warden.test.");
        assert_eq!(
            zone.name("EVS1.Warden.Test").unwrap().to_ascii(),
            "evs1.warden.test."
        );
        assert_eq!(
            zone.name("evs1.warden.test.").unwrap().to_ascii(),
            "evs1.warden.test."
        );
        assert_eq!(
            zone.name("mail.other.test").unwrap().to_ascii(),
            "mail.other.test.warden.test."
        );
    }

    #[test]
    fn names_outside_the_zone_are_refused_naming_the_grant() {
        let error = zone().name("mail.other.test.").unwrap_err().to_string();
        assert_eq!(
            error,
            "mail.other.test. is outside the zone warden.test. that [plugins.network-name.dns] grants"
        );
        // A suffix that is not a whole label is not inside the zone.
        assert!(matches!(
            zone().name("evilwarden.test."),
            Err(DnsError::OutsideZone { .. })
        ));
    }

    #[test]
    fn names_that_are_not_host_names_are_refused() {
        let zone = zone();
        for bad in [
            "",
            ".",
            "a..b",
            "*.warden.test.",
            "_srv",
            "-lead",
            "trail-",
            "sp ace",
            "nul\0byte",
            "new\nline",
            "é",
            "a\\.b",
        ] {
            let error = zone.name(bad).unwrap_err();
            assert!(
                matches!(error, DnsError::InvalidName { .. }),
                "{bad:?}: {error}"
            );
            assert!(!error.to_string().contains('\n'), "{error}");
        }
        let long_label = "a".repeat(64);
        assert!(zone.name(&long_label).is_err());
        let huge = "a.".repeat(100_000);
        let error = zone.name(&huge).unwrap_err().to_string();
        assert!(
            error.len() < 400,
            "the error repeats the whole name: {error}"
        );
        // 250 characters fit as text but not inside the zone.
        let long = [
            "a".repeat(60),
            "b".repeat(60),
            "c".repeat(60),
            "d".repeat(60),
        ]
        .join(".");
        assert!(zone.name(&long).is_err());
    }

    #[test]
    fn unreachable_addresses_are_refused() {
        let zone = zone();
        for bad in ["0.0.0.0", "::", "224.0.0.1", "ff02::1", "255.255.255.255"] {
            assert!(zone.check_address(bad.parse().unwrap()).is_err(), "{bad}");
        }
        for good in ["198.18.0.10", "fd00::10", "127.0.0.1"] {
            assert!(zone.check_address(good.parse().unwrap()).is_ok(), "{good}");
        }
    }

    #[test]
    fn the_root_and_bad_zones_are_refused() {
        for bad in ["", ".", "a..b", "_x.test"] {
            assert!(GrantedZone::new(bad, "[s]").is_err(), "{bad:?}");
        }
    }
}
