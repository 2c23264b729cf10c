//! Duplicate address detection on the wire: send probes for an address
//! and listen for another host answering for it, for a bounded time.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use tokio::time::Instant;

use super::mac::MacAddr;
use super::socket::{Direction, ETH_P_ARP, ETH_P_IPV6, PacketSocket};
use super::{arp, ndp};

/// Largest frame read; longer ones are cut, which no ARP or neighbour
/// discovery message of interest is.
const FRAME_BUFFER: usize = 2048;

/// ARP probes for `address` on interface `ifindex` from `ours`, listening
/// for `wait`: the hardware address of the first other host that uses or
/// probes for it, or `None` if none did.
pub(crate) async fn arp(
    ifindex: u32,
    ours: MacAddr,
    address: Ipv4Addr,
    wait: Duration,
) -> io::Result<Option<MacAddr>> {
    let socket = PacketSocket::open(ifindex, ETH_P_ARP)?;
    let probe = arp::request(ours, Ipv4Addr::UNSPECIFIED, address);
    listen(&socket, &probe, wait, |frame| {
        arp::parse(frame)
            .filter(|m| arp::conflicts(m, address, ours))
            .map(|m| m.sender_mac)
    })
    .await
}

/// Neighbour solicitations for `address` from the unspecified address on
/// interface `ifindex`, listening for `wait`: the hardware address of the
/// first other host that advertises or probes for it, or `None`.
pub(crate) async fn ndp(
    ifindex: u32,
    ours: MacAddr,
    address: Ipv6Addr,
    wait: Duration,
) -> io::Result<Option<MacAddr>> {
    let socket = PacketSocket::open(ifindex, ETH_P_IPV6)?;
    let probe = ndp::dad_solicitation(address, ours);
    listen(&socket, &probe, wait, |frame| {
        ndp::parse(frame).and_then(|heard| ndp::conflicts(&heard, address, ours))
    })
    .await
}

/// Send `probe` at [`arp::probe_times`] within `wait` and read incoming
/// frames until `wait` is over or `judge` names a host that answered.
/// Frames this host sent itself are never judged.
async fn listen(
    socket: &PacketSocket,
    probe: &[u8],
    wait: Duration,
    judge: impl Fn(&[u8]) -> Option<MacAddr>,
) -> io::Result<Option<MacAddr>> {
    let start = Instant::now();
    let deadline = start + wait;
    let sends = arp::probe_times(wait);
    let mut sent = 0;
    let mut buffer = vec![0u8; FRAME_BUFFER];
    loop {
        while sent < sends.len() && Instant::now() >= start + sends[sent] {
            socket.send(probe).await?;
            sent += 1;
        }
        let wake = sends.get(sent).map_or(deadline, |at| start + *at);
        match tokio::time::timeout_at(wake, socket.recv(&mut buffer)).await {
            Err(_elapsed) if sent == sends.len() => return Ok(None),
            Err(_elapsed) => continue,
            Ok(received) => {
                let (length, direction) = received?;
                let frame = &buffer[..length.min(buffer.len())];
                if direction == Direction::Incoming
                    && let Some(mac) = judge(frame)
                {
                    return Ok(Some(mac));
                }
            }
        }
    }
}
