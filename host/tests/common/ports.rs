//! Ports for the tests' servers. Tests of one binary run side by side, and
//! a port that was free a moment ago is free again for the next test until
//! the first one's server binds it: no port is handed out twice in a
//! process ([`claim`]), whichever helper found it.

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener};
use std::sync::Mutex;

/// Whether `port` is this caller's: true the first time a port is claimed
/// in this process, false ever after.
pub fn claim(port: u16) -> bool {
    static CLAIMED: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    CLAIMED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(port)
}

/// A port on 127.0.0.1 that was free a moment ago, and not handed out
/// before in this process.
pub fn free_port() -> SocketAddr {
    // The kernel picks ports at random: a port it gives twice is rare, and
    // a thousand in a row would mean the range is used up.
    for _ in 0..1000 {
        let address = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        if claim(address.port()) {
            return address;
        }
    }
    panic!("every port the kernel offered was handed out before in this process");
}

/// `free_port` as `host:port` text, for `address` properties.
pub fn free_address() -> String {
    free_port().to_string()
}

/// The 10 000 ports just below the kernel's ephemeral range
/// (`ip_local_port_range`), never the privileged ones: `(low, high)`, high
/// excluded. A port from [`free_port`] is an ephemeral one: while the
/// test's service is down, any process's outgoing connection may be given
/// it as its local port, and holds it while it lasts and for 60 s of
/// TIME_WAIT after, so the service can no longer bind it. Below the range
/// only an explicit bind takes a port.
pub fn below_ephemeral_range() -> (u16, u16) {
    let ephemeral_low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    (
        ephemeral_low.saturating_sub(10_000).max(1024),
        ephemeral_low,
    )
}

/// `N` distinct ports on 127.0.0.1, each free a moment ago, for services a
/// test stops and starts again over a long run: taken below the kernel's
/// ephemeral range ([`below_ephemeral_range`]). Falls back to
/// [`free_port`] where the range leaves no room below it.
pub fn service_ports<const N: usize>() -> [SocketAddr; N] {
    let (low, ephemeral_low) = below_ephemeral_range();
    let width = ephemeral_low.saturating_sub(low);
    if width < 1000 {
        return std::array::from_fn(|_| free_port());
    }
    // Start somewhere of this process's own, so that test binaries running
    // side by side do not walk the same ports in the same order.
    let start = (free_port().port() as u32 ^ std::process::id()) % width as u32;
    // Each kept bound until all are chosen, so that none is chosen twice.
    let mut held: Vec<TcpListener> = Vec::with_capacity(N);
    for step in 0..width as u32 {
        let port = low + ((start + step) % width as u32) as u16;
        if let Ok(listener) = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))
            && claim(port)
        {
            held.push(listener);
            if held.len() == N {
                break;
            }
        }
    }
    assert_eq!(held.len(), N, "{N} free ports in {low}..{ephemeral_low}");
    std::array::from_fn(|i| held[i].local_addr().expect("a bound port"))
}
