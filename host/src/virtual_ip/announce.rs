//! Announcements: telling the link that an address is now at this host,
//! so that neighbours holding an entry for it switch without asking.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use super::mac::MacAddr;
use super::socket::{ETH_P_ARP, Icmp6Socket, PacketSocket};
use super::{arp, ndp};

/// `count` gratuitous ARP requests (sender = target = `address`, to the
/// broadcast address) on interface `ifindex`, `interval` apart.
pub(crate) async fn arp(
    ifindex: u32,
    mac: MacAddr,
    address: Ipv4Addr,
    count: u32,
    interval: Duration,
) -> io::Result<()> {
    let socket = PacketSocket::open(ifindex, ETH_P_ARP)?;
    let frame = arp::request(mac, address, address);
    repeat(count, interval, || socket.send(&frame)).await
}

/// `count` unsolicited neighbour advertisements of `address` at `mac`
/// (override flag set) to all nodes on `interface`, `interval` apart, sent
/// from `address` itself (the caller checked it is on the interface).
pub(crate) async fn ndp(
    interface: &str,
    ifindex: u32,
    mac: MacAddr,
    address: Ipv6Addr,
    count: u32,
    interval: Duration,
) -> io::Result<()> {
    let socket = Icmp6Socket::open(interface, ifindex, address)?;
    let message = ndp::advertisement(address, mac);
    repeat(count, interval, || socket.send_to(&message, ndp::ALL_NODES)).await
}

async fn repeat<F: Future<Output = io::Result<()>>>(
    count: u32,
    interval: Duration,
    mut send: impl FnMut() -> F,
) -> io::Result<()> {
    for k in 0..count {
        if k > 0 {
            tokio::time::sleep(interval).await;
        }
        send().await?;
    }
    Ok(())
}
