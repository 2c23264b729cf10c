//! What virtual address operations cost, on the network lab: add, state,
//! one announcement, remove, and a probe's fixed wait aside; and a move
//! (remove on n1, add and announce on n2) until the client reaches the
//! address on n2, whose neighbour entry the announcement switched.
//!
//! Each operation is timed inside a lab host's namespace (the thread and
//! runtime `Lab::run_inside` makes are outside the figure); the move is
//! timed from the test thread and includes moving threads between
//! namespaces, as an agent would not have to.
//!
//! Run: `cargo bench -p warden --bench virtual_ip` (`WARDEN_VIP_ROUNDS`,
//! default 20; needs CAP_NET_ADMIN, as the lab does).

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::netlab::{IFACE, Lab};
use warden::virtual_ip::{AddressSpec, IpGrant};

fn main() {
    let rounds: usize = std::env::var("WARDEN_VIP_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    let Some(lab) = Lab::or_skip("virtual_ip bench", &["n1", "n2", "client"]) else {
        return;
    };
    let grant = IpGrant {
        interfaces: vec![IFACE.to_string()],
        ranges: vec!["198.18.0.0/24".to_string(), "fd00::/64".to_string()],
    }
    .resolve("plugins.ip-address.ip")
    .expect("grant");
    for address in ["198.18.0.100", "fd00::100"] {
        let address = address.parse().expect("address");
        let spec = AddressSpec {
            address,
            prefix_len: if matches!(address, std::net::IpAddr::V4(_)) {
                24
            } else {
                64
            },
            interface: IFACE.to_string(),
        };
        let mut ops: [Vec<Duration>; 4] = Default::default();
        let mut moves = Vec::new();
        for _ in 0..rounds {
            let timed = lab.run_inside("n1", || async {
                let t = Instant::now();
                grant.add(&spec).await.expect("add");
                let add = t.elapsed();
                let t = Instant::now();
                grant.state(&spec).await.expect("state");
                let state = t.elapsed();
                let t = Instant::now();
                grant
                    .announce(&spec, 1, Duration::ZERO)
                    .await
                    .expect("announce");
                let announce = t.elapsed();
                [add, state, announce]
            });
            // The client learns n1's hardware address for it.
            let at = SocketAddr::new(address, 9000);
            let listener = lab.within("n1", || TcpListener::bind(at).expect("bind on n1"));
            lab.within("client", || {
                TcpStream::connect_timeout(&at, Duration::from_secs(1)).expect("reach n1")
            });
            drop(listener);

            let start = Instant::now();
            let remove = lab.run_inside("n1", || async {
                let t = Instant::now();
                grant.remove(&spec).await.expect("remove");
                t.elapsed()
            });
            lab.run_inside("n2", || async {
                grant.add(&spec).await.expect("add on n2");
                grant
                    .announce(&spec, 1, Duration::ZERO)
                    .await
                    .expect("announce on n2");
            });
            let listener = lab.within("n2", || TcpListener::bind(at).expect("bind on n2"));
            lab.within("client", || {
                TcpStream::connect_timeout(&at, Duration::from_secs(1)).expect("reach n2")
            });
            moves.push(start.elapsed());
            drop(listener);
            lab.run_inside("n2", || async {
                grant.remove(&spec).await.expect("remove on n2")
            });

            for (k, d) in timed.into_iter().chain([remove]).enumerate() {
                ops[k].push(d);
            }
        }
        for (name, mut samples) in ["add", "state", "announce x1", "remove"]
            .into_iter()
            .zip(ops)
            .chain([("move to n2, client reaches it", moves)])
        {
            samples.sort();
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            println!(
                "{address:<14} {name:<30} median {:>7.3} ms  max {:>7.3} ms  ({} rounds)",
                ms(samples[samples.len() / 2]),
                ms(samples[samples.len() - 1]),
                samples.len()
            );
        }
    }
}
