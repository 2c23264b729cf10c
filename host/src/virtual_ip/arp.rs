//! IPv4 on the wire: ARP announcements (gratuitous ARP) and ARP probes
//! (duplicate address detection), RFC 5227 style, as Ethernet frames.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::mac::MacAddr;

/// Bytes of an Ethernet header.
const ETHERNET_HEADER: usize = 14;
/// Bytes of an ARP message for IPv4 over Ethernet.
const ARP_MESSAGE: usize = 28;
/// The shortest Ethernet frame (without its checksum); shorter ones are
/// padded, as a NIC would.
const MIN_FRAME: usize = 60;
const OP_REQUEST: u16 = 1;

/// An ARP request on the broadcast address from `mac`, saying that
/// `sender` is at `mac` and asking for `target`.
///
/// An announcement has `sender == target == address` (RFC 5227 2.3): every
/// neighbour holding an entry for the address replaces its hardware address
/// with `mac` at once. A probe has `sender` 0.0.0.0 (RFC 5227 2.1.1): it
/// asks who holds `target` without claiming it, so no neighbour's table
/// changes.
pub(crate) fn request(mac: MacAddr, sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut frame = Vec::with_capacity(MIN_FRAME);
    frame.extend_from_slice(&MacAddr::BROADCAST.0);
    frame.extend_from_slice(&mac.0);
    frame.extend_from_slice(&super::socket::ETH_P_ARP.to_be_bytes());
    frame.extend_from_slice(&1u16.to_be_bytes()); // hardware: Ethernet
    frame.extend_from_slice(&0x0800u16.to_be_bytes()); // protocol: IPv4
    frame.extend_from_slice(&[6, 4]);
    frame.extend_from_slice(&OP_REQUEST.to_be_bytes());
    frame.extend_from_slice(&mac.0);
    frame.extend_from_slice(&sender.octets());
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&target.octets());
    frame.resize(MIN_FRAME, 0);
    frame
}

/// The parts of an ARP message that duplicate detection looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ArpMessage {
    pub sender_mac: MacAddr,
    pub sender_ip: Ipv4Addr,
    pub target_ip: Ipv4Addr,
}

/// An Ethernet frame read as ARP for IPv4 over Ethernet; anything else
/// (short, another protocol, other address sizes) is `None`.
pub(crate) fn parse(frame: &[u8]) -> Option<ArpMessage> {
    let arp = frame.get(ETHERNET_HEADER..ETHERNET_HEADER + ARP_MESSAGE)?;
    if frame[12..14] != super::socket::ETH_P_ARP.to_be_bytes() || arp[0..6] != [0, 1, 8, 0, 6, 4] {
        return None;
    }
    let sender_mac = MacAddr::from_slice(&arp[8..14])?;
    let ip = |at: usize| Ipv4Addr::new(arp[at], arp[at + 1], arp[at + 2], arp[at + 3]);
    Some(ArpMessage {
        sender_mac,
        sender_ip: ip(14),
        target_ip: ip(24),
    })
}

/// Whether `message`, received while probing for `address` from `ours`,
/// shows another host using or claiming it (RFC 5227 2.1.1): any ARP
/// message whose sender is the address, or another host's probe for it.
pub(crate) fn conflicts(message: &ArpMessage, address: Ipv4Addr, ours: MacAddr) -> bool {
    if message.sender_mac == ours {
        return false;
    }
    message.sender_ip == address
        || (message.sender_ip.is_unspecified() && message.target_ip == address)
}

/// When the probes of a probe lasting `wait` go out: three, spread over
/// its first two thirds, so that the last one has time to be answered.
pub(crate) fn probe_times(wait: Duration) -> [Duration; 3] {
    [Duration::ZERO, wait / 3, wait * 2 / 3]
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const OTHER: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
    const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);

    #[test]
    fn an_announcement_reads_back_as_sent_and_is_padded_to_a_minimum_frame() {
        let frame = request(MAC, VIP, VIP);
        assert_eq!(frame.len(), MIN_FRAME);
        assert_eq!(&frame[0..6], &[0xff; 6]);
        let message = parse(&frame).expect("ARP");
        assert_eq!(
            message,
            ArpMessage {
                sender_mac: MAC,
                sender_ip: VIP,
                target_ip: VIP
            }
        );
    }

    #[test]
    fn conflicts_are_other_hosts_using_or_probing_for_the_address() {
        let reply = ArpMessage {
            sender_mac: OTHER,
            sender_ip: VIP,
            target_ip: Ipv4Addr::UNSPECIFIED,
        };
        assert!(conflicts(&reply, VIP, MAC));
        let their_probe = parse(&request(OTHER, Ipv4Addr::UNSPECIFIED, VIP)).expect("ARP");
        assert!(conflicts(&their_probe, VIP, MAC));
        let our_probe = parse(&request(MAC, Ipv4Addr::UNSPECIFIED, VIP)).expect("ARP");
        assert!(
            !conflicts(&our_probe, VIP, MAC),
            "our own probe seen going out"
        );
        let unrelated = parse(&request(OTHER, Ipv4Addr::new(198, 18, 0, 2), VIP)).expect("ARP");
        assert!(
            !conflicts(&unrelated, VIP, MAC),
            "a host merely asking for the address"
        );
    }

    #[test]
    fn short_or_foreign_frames_are_not_arp() {
        let frame = request(MAC, VIP, VIP);
        assert_eq!(parse(&frame[..41]), None);
        assert_eq!(parse(&[]), None);
        let mut ipv6 = frame.clone();
        ipv6[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
        assert_eq!(parse(&ipv6), None);
        let mut long_addresses = frame;
        long_addresses[18] = 8;
        assert_eq!(parse(&long_addresses), None);
    }
}
