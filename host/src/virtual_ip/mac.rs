//! `MacAddr`: an Ethernet hardware address, as announcements carry it and
//! as a duplicate address error names the host that answered.

use std::fmt;

/// A 48-bit Ethernet (IEEE 802) hardware address.
///
/// Displayed the way `ip link` and `ip neigh` print one
/// (`aa:bb:cc:dd:ee:ff`), so an operator can match a duplicate address
/// error against a neighbour table or a switch's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The Ethernet broadcast address, where ARP requests go.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    /// The address from a link-layer attribute of exactly six bytes; any
    /// other length (an interface without Ethernet addressing) is `None`.
    pub fn from_slice(bytes: &[u8]) -> Option<MacAddr> {
        <[u8; 6]>::try_from(bytes).ok().map(MacAddr)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_as_ip_link_does_and_takes_only_six_bytes() {
        let mac = MacAddr::from_slice(&[0x02, 0, 0x5e, 0x10, 0xab, 0x0f]).expect("six bytes");
        assert_eq!(mac.to_string(), "02:00:5e:10:ab:0f");
        assert_eq!(MacAddr::from_slice(&[1, 2, 3, 4, 5]), None);
        assert_eq!(MacAddr::from_slice(&[0; 20]), None);
    }
}
