//! How long the host's dynamic DNS takes against a real server: register
//! (one signed update), lookup (signed A and AAAA queries, side by side),
//! remove, and a lookup whose answer is too big for UDP (truncated, then
//! TCP). Knot DNS on loopback (`tests/common/dns_server.rs`), so the
//! numbers are the host's and knotd's work, not a network's.
//!
//! Run: `cargo bench -p warden --bench dns --profile dev`
//! (`WARDEN_DNS_ROUNDS`, default 200).

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::dns_server::{DnsServer, KEY, free_dns_address};
use warden::dns_update::DnsGrant;

fn main() {
    let rounds: usize = std::env::var("WARDEN_DNS_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().expect("tempdir");
    let server = DnsServer::start(&dir.path().join("knot"), free_dns_address());
    let dns = DnsGrant {
        server: server.address.to_string(),
        zone: "warden.test".to_string(),
        key_name: KEY.to_string(),
        key_algorithm: "hmac-sha256".to_string(),
        key_file: server.key_file(KEY),
        timeout_ms: None,
    }
    .resolve("[plugins.network-name.dns]")
    .expect("the grant resolves");
    let big: Vec<String> = (1..=150).map(|i| format!("198.18.1.{i}")).collect();
    server.set_records("big", "A", &big);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let (mut register, mut lookup, mut remove, mut over_tcp) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    runtime.block_on(async {
        for round in 0..rounds {
            let address: IpAddr = format!("198.18.0.{}", 10 + round % 200)
                .parse()
                .expect("an address");
            let started = Instant::now();
            dns.register("evs1", address, 60).await.expect("register");
            register.push(started.elapsed());
            let started = Instant::now();
            let found = dns.lookup("evs1").await.expect("lookup");
            lookup.push(started.elapsed());
            assert_eq!(found, [address]);
            let started = Instant::now();
            dns.remove("evs1", address).await.expect("remove");
            remove.push(started.elapsed());
            let started = Instant::now();
            let found = dns.lookup("big").await.expect("lookup over TCP");
            over_tcp.push(started.elapsed());
            assert_eq!(found.len(), big.len());
        }
    });

    println!("| operation | rounds | min | median | p99 | max |");
    println!("|---|---|---|---|---|---|");
    for (what, mut times) in [
        ("register (update: delete RRset + add)", register),
        ("lookup (A and AAAA, side by side)", lookup),
        ("remove (delete one record)", remove),
        (
            "lookup of 150 A records (UDP truncated, then TCP)",
            over_tcp,
        ),
    ] {
        times.sort();
        let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
        let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1000.0);
        println!(
            "| {what} | {} | {} | {} | {} | {} |",
            times.len(),
            ms(times[0]),
            ms(at(0.5)),
            ms(at(0.99)),
            ms(times[times.len() - 1])
        );
    }
}
