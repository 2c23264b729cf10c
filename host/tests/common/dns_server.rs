//! A real DNS server for the dynamic update tests: Debian's Knot DNS
//! (`knotd`, `.ci/run` installs the package `knot`), serving one zone
//! (`warden.test.` unless told another, [`DnsServer::start_zone`]) from a
//! directory of the test's, on the address given (a free loopback port
//! here; a lab host's address in the network lab).
//!
//! Three TSIG keys, each with a fresh random secret:
//! - `warden-key` (hmac-sha256) may query and update the zone;
//! - `warden-512` (hmac-sha512) may query and update the zone;
//! - `reader-key` (hmac-sha256) may only query (knot answers its update
//!   NOTAUTH, TSIG BADKEY, as for a key it does not know).
//!
//! Knot answers a signed query only when an ACL rule allows the key the
//! `query` action: a grant's key needs `action: [query, update]`.
//!
//! Their secrets are in `DIR/KEY.secret` (base64 alone, as a grant's
//! `key_file`). `knotc` reads the zone as the server has it, so a test
//! checks what happened without trusting the code under test.

use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};

use super::wait_until;

pub const KNOTD: &str = "/usr/sbin/knotd";
pub const KNOTC: &str = "/usr/sbin/knotc";

/// The zone the server serves.
pub const ZONE: &str = "warden.test.";
/// The key allowed to update the zone (hmac-sha256).
pub const KEY: &str = "warden-key";
/// A second key allowed to update the zone, hmac-sha512.
pub const KEY_512: &str = "warden-512";
/// A key the server knows that may not update.
pub const READER_KEY: &str = "reader-key";

/// A running knotd; killed when dropped.
pub struct DnsServer {
    pub address: SocketAddr,
    pub dir: PathBuf,
    /// The zone it serves, absolute (`warden.test.`).
    pub zone: String,
    config: PathBuf,
    log: PathBuf,
    child: Child,
}

impl DnsServer {
    /// Start knotd on `listen` (UDP and TCP) with the zone and keys above,
    /// and wait until it answers for the zone.
    pub fn start(dir: &Path, listen: SocketAddr) -> DnsServer {
        DnsServer::start_zone(dir, listen, ZONE)
    }

    /// As [`DnsServer::start`], serving `zone` (absolute, e.g. `mail.test.`)
    /// instead of `warden.test.`.
    pub fn start_zone(dir: &Path, listen: SocketAddr, zone: &str) -> DnsServer {
        assert!(zone.ends_with('.'), "{zone:?}: give the zone absolute");
        assert!(
            Path::new(KNOTD).exists(),
            "{KNOTD} is missing: install the package knot (.ci/run does)"
        );
        std::fs::create_dir_all(dir.join("db")).expect("the server's directory");
        let mut keys = String::new();
        for (name, algorithm) in [
            (KEY, "hmac-sha256"),
            (KEY_512, "hmac-sha512"),
            (READER_KEY, "hmac-sha256"),
        ] {
            let secret = random_secret();
            std::fs::write(dir.join(format!("{name}.secret")), format!("{secret}\n"))
                .expect("write a key's secret");
            keys.push_str(&format!(
                "  - id: {name}\n    algorithm: {algorithm}\n    secret: {secret}\n"
            ));
        }
        let zone_file = format!("{zone}zone");
        std::fs::write(
            dir.join(&zone_file),
            format!(
                "$ORIGIN {zone}\n$TTL 300\n\
                 @ SOA ns.{zone} hostmaster.{zone} 1 3600 900 604800 300\n\
                 @ NS ns\nns A 198.18.0.53\n"
            ),
        )
        .expect("write the zone file");
        let config = dir.join("knot.conf");
        std::fs::write(
            &config,
            format!(
                "server:\n    listen: {}@{}\n    rundir: {dir}\n    udp-workers: 1\n    \
                 tcp-workers: 1\n    background-workers: 1\n\
                 log:\n  - target: stderr\n    any: info\n\
                 database:\n    storage: {dir}/db\n\
                 control:\n    listen: {dir}/knot.sock\n\
                 key:\n{keys}\
                 acl:\n  - id: update\n    key: [{KEY}, {KEY_512}]\n    action: [query, update]\n\
                 \x20 - id: query\n    key: {READER_KEY}\n    action: query\n\
                 zone:\n  - domain: {zone}\n    storage: {dir}\n    file: {zone_file}\n    \
                 acl: [update, query]\n",
                listen.ip(),
                listen.port(),
                dir = dir.display(),
            ),
        )
        .expect("write knot.conf");
        let log = dir.join("knotd.log");
        let child = spawn(&config, &log);
        let mut server = DnsServer {
            address: listen,
            dir: dir.to_path_buf(),
            zone: zone.to_string(),
            config,
            log,
            child,
        };
        wait_until(
            &format!("knotd to answer for {zone}"),
            Duration::from_secs(30),
            || {
                if let Ok(Some(status)) = server.child.try_wait() {
                    panic!("knotd exited ({status}): {}", server.log_text());
                }
                answers_for_zone(listen, zone).then_some(())
            },
        );
        server
    }

    /// The `key_file` of `key` (its base64 secret).
    pub fn key_file(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.secret"))
    }

    /// The base64 secret of `key`.
    pub fn secret(&self, key: &str) -> String {
        std::fs::read_to_string(self.key_file(key))
            .expect("a key's secret")
            .trim()
            .to_string()
    }

    /// The records of `name` (relative to the zone, or `@`) as the server
    /// holds them, as `TTL TYPE DATA` (e.g. `300 A 198.18.0.10`), sorted; empty
    /// when there is no such name. Read with knotc, not through DNS.
    pub fn records(&self, name: &str, kind: &str) -> Vec<String> {
        let output = self
            .knotc(&["zone-read", &self.zone, name, kind])
            .expect("run knotc zone-read");
        let text = String::from_utf8_lossy(&output.stdout).to_string()
            + &String::from_utf8_lossy(&output.stderr);
        if text.contains("no such node") {
            return Vec::new();
        }
        assert!(output.status.success(), "knotc zone-read {name}: {text}");
        let mut records: Vec<String> = text
            .lines()
            .filter_map(|line| {
                // [warden.test.] evs1.warden.test. 300 A 198.18.0.10
                let fields: Vec<&str> = line.split_whitespace().collect();
                (fields.len() >= 5).then(|| fields[2..].join(" "))
            })
            .collect();
        records.sort();
        records
    }

    /// Set `name`'s records of `kind` to `values` behind DNS's back (knotc
    /// transaction), e.g. to make an answer too large for UDP.
    pub fn set_records(&self, name: &str, kind: &str, values: &[String]) {
        let run = |args: &[&str]| {
            let output = self.knotc(args).expect("run knotc");
            assert!(
                output.status.success(),
                "knotc {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        run(&["zone-begin", &self.zone]);
        for value in values {
            run(&["zone-set", &self.zone, name, "300", kind, value]);
        }
        run(&["zone-commit", &self.zone]);
    }

    fn knotc(&self, args: &[&str]) -> std::io::Result<std::process::Output> {
        Command::new(KNOTC)
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .stdin(Stdio::null())
            .output()
    }

    /// The server's log (for a failure's message).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stop the server (a dead server).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loopback address whose port was free for both UDP and TCP a moment ago.
pub fn free_dns_address() -> SocketAddr {
    free_dns_address_on(IpAddr::from([127, 0, 0, 1])).expect("a free port on 127.0.0.1")
}

/// An address on `ip` whose port was free for both UDP and TCP a moment
/// ago; an error where `ip` cannot be bound (no IPv6 loopback, say).
///
/// Taken below the kernel's ephemeral range, as `service_ports` does: an
/// ephemeral port may be handed to any process's outgoing socket between
/// this check and the server's bind. Each call of the process starts
/// further on, so tests running side by side get different ports.
pub fn free_dns_address_on(ip: IpAddr) -> std::io::Result<SocketAddr> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let (low, ephemeral_low) = super::ports::below_ephemeral_range();
    let width = u32::from(ephemeral_low.saturating_sub(low)).max(1);
    let start = std::process::id()
        .wrapping_mul(7919)
        .wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed).wrapping_mul(97));
    // Binding the address itself fails at once where `ip` is not there.
    UdpSocket::bind((ip, 0))?;
    for step in 0..width {
        let port = low + (start.wrapping_add(step) % width) as u16;
        let address = SocketAddr::new(ip, port);
        let Ok(_udp) = UdpSocket::bind(address) else {
            continue;
        };
        if TcpListener::bind(address).is_ok() && super::ports::claim(port) {
            return Ok(address);
        }
    }
    Err(std::io::Error::other(format!(
        "no port free for both UDP and TCP on {ip} in {low}..{ephemeral_low}"
    )))
}

fn spawn(config: &Path, log: &Path) -> Child {
    let log = std::fs::File::create(log).expect("knotd's log");
    Command::new(KNOTD)
        .arg("-c")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("the log"))
        .stderr(log)
        .spawn()
        .expect("start knotd")
}

/// 32 random bytes, base64: what `keymgr -t` makes.
fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    let mut urandom = std::fs::File::open("/dev/urandom").expect("/dev/urandom");
    std::io::Read::read_exact(&mut urandom, &mut bytes).expect("random bytes");
    data_encoding::BASE64.encode(&bytes)
}

/// Whether the server at `address` answers an SOA query for the zone with
/// authority (built here with hickory, not with the code under test).
fn answers_for_zone(address: SocketAddr, zone: &str) -> bool {
    let Ok(socket) = UdpSocket::bind(match address {
        SocketAddr::V4(_) => "0.0.0.0:0",
        SocketAddr::V6(_) => "[::]:0",
    }) else {
        return false;
    };
    if socket.connect(address).is_err()
        || socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .is_err()
    {
        return false;
    }
    let mut query = Message::query();
    query.add_query(Query::query(
        Name::from_ascii(zone).expect("the zone's name"),
        RecordType::SOA,
    ));
    let Ok(bytes) = query.to_vec() else {
        return false;
    };
    if socket.send(&bytes).is_err() {
        return false;
    }
    let mut buffer = [0u8; 4096];
    let Ok(size) = socket.recv(&mut buffer) else {
        return false;
    };
    Message::from_vec(&buffer[..size]).is_ok_and(|answer| {
        answer.metadata.message_type == MessageType::Response
            && answer.metadata.id == query.metadata.id
            && answer.metadata.response_code == ResponseCode::NoError
            && answer.metadata.authoritative
    })
}
