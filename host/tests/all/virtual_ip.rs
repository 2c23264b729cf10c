//! Virtual IP addresses (`warden::virtual_ip`) on the network lab: real
//! namespaces, a real bridge, the kernel's own ARP and neighbour tables.
//! The module works in the calling thread's namespace, so each call runs on
//! a thread moved into a lab host's (`Lab::run_inside`).
//!
//! Added on one host, the address is reached from the client; removed,
//! nothing is left. Moved to another host and announced, the client's
//! neighbour entry names the new host before the client sends anything
//! (the gratuitous ARP / unsolicited advertisement did it). Held by one
//! host, a probe from another fails naming its hardware address. Requests
//! outside the grant, for a missing interface, a bad prefix, an address
//! held on another interface, without the capabilities: clear errors and
//! nothing changed. A pulled cable shows in the state. The machine's own
//! namespace is never touched.
//!
//! Without CAP_NET_ADMIN each test says why and returns;
//! `WARDEN_NETLAB_REQUIRED=1` (CI) makes that a failure.

use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use crate::common::netlab::{self, IFACE, Lab};
use crate::common::wait_until;
use warden::virtual_ip::{AddressError, AddressGrant, AddressSpec, AddressState, IpGrant};

const V4: &str = "198.18.0.100";
const V6: &str = "fd00::100";
const PORT: u16 = 9000;
const PROBE_WAIT: Duration = Duration::from_millis(600);

fn grant(interfaces: &[&str]) -> AddressGrant {
    IpGrant {
        interfaces: interfaces.iter().map(|s| s.to_string()).collect(),
        ranges: vec!["198.18.0.0/24".to_string(), "fd00::/64".to_string()],
    }
    .resolve("plugins.ip-address.ip")
    .expect("the test's grant")
}

fn spec(address: &str, interface: &str) -> AddressSpec {
    let address: IpAddr = address.parse().expect("test address");
    AddressSpec {
        address,
        prefix_len: if address.is_ipv4() { 24 } else { 64 },
        interface: interface.to_string(),
    }
}

/// `ip ARGS` in `host`'s namespace: its output; panics naming the command.
fn ip_in(lab: &Lab, host: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["-n", &lab.ns(host)])
        .args(args)
        .output()
        .expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?} in {host}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every address of `host` as `DEV ADDRESS/PREFIX`, sorted.
fn addresses(lab: &Lab, host: &str) -> Vec<String> {
    let mut found: Vec<String> = ip_in(lab, host, &["-o", "addr", "show"])
        .lines()
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            Some(format!("{} {}", words.get(1)?, words.get(3)?))
        })
        .collect();
    found.sort();
    found
}

/// The machine's own interfaces and addresses, to show a test left them.
fn machine() -> (Vec<String>, String) {
    let out = Command::new("ip")
        .args(["-o", "addr", "show"])
        .output()
        .expect("ip");
    (
        netlab::machine_interfaces(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The hardware address `host`'s neighbour table gives `address` (`None`
/// without an entry or with one that has none, as while it resolves).
fn neighbour(lab: &Lab, host: &str, address: &str) -> Option<String> {
    let table = ip_in(lab, host, &["neigh", "show", address, "dev", IFACE]);
    let words: Vec<&str> = table.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "lladdr")?;
    words.get(at + 1).map(|m| m.to_string())
}

/// Whether `from` opens a TCP connection to `address`'s test port within
/// a second.
/// Whether `from` connects to `address`, trying for up to 5 s: the first
/// SYN waits for neighbour resolution (ARP, or IPv6 neighbour discovery),
/// which on a loaded 2-core machine can take longer than one connect's
/// second. An address that must not answer is asked as patiently.
fn reaches(lab: &Lab, from: &str, address: &str) -> bool {
    let to = SocketAddr::new(address.parse().expect("address"), PORT);
    let until = std::time::Instant::now() + Duration::from_secs(5);
    lab.within(from, || {
        loop {
            if TcpStream::connect_timeout(&to, Duration::from_secs(1)).is_ok() {
                return true;
            }
            if std::time::Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}

/// A listener on `address` in `host`'s namespace: binding only succeeds
/// where the address is the host's own.
fn listen(lab: &Lab, host: &str, address: &str) -> TcpListener {
    let at = SocketAddr::new(address.parse().expect("address"), PORT);
    lab.within(host, || {
        TcpListener::bind(at).unwrap_or_else(|e| panic!("bind {at} in {host}: {e}"))
    })
}

fn state(lab: &Lab, host: &str, grant: &AddressGrant, spec: &AddressSpec) -> AddressState {
    lab.run_inside(host, || async { grant.state(spec).await })
        .unwrap_or_else(|e| panic!("state of {spec} on {host}: {e}"))
}

fn add(lab: &Lab, host: &str, grant: &AddressGrant, spec: &AddressSpec) {
    lab.run_inside(host, || async { grant.add(spec).await })
        .unwrap_or_else(|e| panic!("add {spec} on {host}: {e}"));
}

fn remove(lab: &Lab, host: &str, grant: &AddressGrant, spec: &AddressSpec) {
    lab.run_inside(host, || async { grant.remove(spec).await })
        .unwrap_or_else(|e| panic!("remove {spec} on {host}: {e}"));
}

#[test]
fn an_added_address_is_reached_from_the_client_and_a_removed_one_leaves_nothing() {
    let before = machine();
    let Some(lab) = Lab::or_skip("add and remove", &["n1", "client"]) else {
        return;
    };
    let grant = grant(&[IFACE]);
    let original = addresses(&lab, "n1");
    for address in [V4, V6] {
        let spec = spec(address, IFACE);
        assert_eq!(
            state(&lab, "n1", &grant, &spec),
            AddressState {
                present: false,
                link_up: true
            }
        );
        assert!(
            !reaches(&lab, "client", address),
            "{address} answers before it was added"
        );

        add(&lab, "n1", &grant, &spec);
        add(&lab, "n1", &grant, &spec); // already there: nothing to do
        let held: Vec<String> = addresses(&lab, "n1")
            .into_iter()
            .filter(|a| a.contains(address))
            .collect();
        assert_eq!(
            held,
            [format!("{IFACE} {address}/{}", spec.prefix_len)],
            "added once"
        );
        assert_eq!(
            state(&lab, "n1", &grant, &spec),
            AddressState {
                present: true,
                link_up: true
            }
        );
        let listener = listen(&lab, "n1", address);
        assert!(
            reaches(&lab, "client", address),
            "the client does not reach {address} on n1"
        );
        drop(listener);

        remove(&lab, "n1", &grant, &spec);
        remove(&lab, "n1", &grant, &spec); // absent: nothing to do
        assert_eq!(
            state(&lab, "n1", &grant, &spec),
            AddressState {
                present: false,
                link_up: true
            }
        );
        assert_eq!(
            addresses(&lab, "n1"),
            original,
            "removing {address} left something"
        );
        assert!(
            !reaches(&lab, "client", address),
            "{address} still answers after its removal"
        );
    }
    drop(lab);
    assert_eq!(machine(), before, "the machine's own namespace changed");
}

#[test]
fn an_announcement_moves_the_clients_neighbour_entry_before_it_sends_anything() {
    let before = machine();
    let Some(lab) = Lab::or_skip("announce", &["n1", "n2", "client"]) else {
        return;
    };
    let grant = grant(&[IFACE]);
    let (mac1, mac2) = (lab.mac("n1"), lab.mac("n2"));
    for address in [V4, V6] {
        let spec = spec(address, IFACE);
        add(&lab, "n1", &grant, &spec);
        let listener = listen(&lab, "n1", address);
        assert!(reaches(&lab, "client", address));
        drop(listener);
        assert_eq!(
            neighbour(&lab, "client", address),
            Some(mac1.clone()),
            "the client resolved {address} to n1"
        );

        remove(&lab, "n1", &grant, &spec);
        add(&lab, "n2", &grant, &spec);
        // Adding alone tells the client nothing: its entry still names n1.
        assert_eq!(
            neighbour(&lab, "client", address),
            Some(mac1.clone()),
            "the client's entry for {address} changed before any announcement"
        );
        lab.run_inside("n2", || async {
            grant.announce(&spec, 3, Duration::from_millis(50)).await
        })
        .unwrap_or_else(|e| panic!("announce {spec}: {e}"));
        // No traffic from the client in between: only the announcement can
        // have changed its entry.
        assert_eq!(
            neighbour(&lab, "client", address),
            Some(mac2.clone()),
            "after n2's announcement the client's entry for {address} does not name n2"
        );
        let listener = listen(&lab, "n2", address);
        assert!(
            reaches(&lab, "client", address),
            "the client does not reach {address} on n2"
        );
        drop(listener);
        remove(&lab, "n2", &grant, &spec);
    }
    drop(lab);
    assert_eq!(machine(), before, "the machine's own namespace changed");
}

#[test]
fn a_probe_for_an_address_another_host_holds_names_that_host_and_adds_nothing() {
    let before = machine();
    let Some(lab) = Lab::or_skip("probe", &["n1", "n2"]) else {
        return;
    };
    let grant = grant(&[IFACE]);
    let mac2 = lab.mac("n2");
    let original = addresses(&lab, "n1");
    for (address, free) in [(V4, "198.18.0.101"), (V6, "fd00::101")] {
        let spec = spec(address, IFACE);
        // Nobody holds it yet: the probe passes.
        lab.run_inside("n1", || async { grant.probe(&spec, PROBE_WAIT).await })
            .unwrap_or_else(|e| panic!("probe for the free {address}: {e}"));

        add(&lab, "n2", &grant, &spec);
        let refused = lab.run_inside("n1", || async { grant.probe(&spec, PROBE_WAIT).await });
        match refused {
            Err(AddressError::Duplicate {
                address: a,
                interface,
                answered_by,
            }) => {
                assert_eq!(
                    (a.to_string(), interface.as_str()),
                    (address.to_string(), IFACE)
                );
                assert_eq!(answered_by.to_string(), mac2, "the duplicate names n2");
            }
            other => panic!("probe for {address} held by n2: {other:?}"),
        }
        let text = lab
            .run_inside("n1", || async { grant.probe(&spec, PROBE_WAIT).await })
            .expect_err("still held")
            .to_string();
        assert!(
            text.contains(address) && text.contains(&mac2) && text.contains("already in use"),
            "{text}"
        );
        assert_eq!(
            addresses(&lab, "n1"),
            original,
            "the probe changed n1's addresses"
        );

        // Another address of the range is still free.
        let other = self::spec(free, IFACE);
        lab.run_inside("n1", || async { grant.probe(&other, PROBE_WAIT).await })
            .unwrap_or_else(|e| panic!("probe for the free {free}: {e}"));
        remove(&lab, "n2", &grant, &spec);
    }
    drop(lab);
    assert_eq!(machine(), before, "the machine's own namespace changed");
}

/// Which error a refused request should give.
type Expected = fn(&AddressError) -> bool;

/// The five operations on `spec` in `host`, each expected to fail: their
/// errors, in order probe, add, announce, remove, state.
fn all_refused(
    lab: &Lab,
    host: &str,
    grant: &AddressGrant,
    spec: &AddressSpec,
) -> Vec<AddressError> {
    lab.run_inside(host, || async {
        let announce = grant.announce(spec, 1, Duration::ZERO).await;
        vec![
            grant
                .probe(spec, PROBE_WAIT)
                .await
                .expect_err("probe refused"),
            grant.add(spec).await.expect_err("add refused"),
            announce.expect_err("announce refused"),
            grant.remove(spec).await.expect_err("remove refused"),
            grant.state(spec).await.expect_err("state refused"),
        ]
    })
}

#[test]
fn requests_outside_the_grant_or_the_node_are_refused_saying_why_and_change_nothing() {
    let before = machine();
    let Some(lab) = Lab::or_skip("grant abuse", &["n1"]) else {
        return;
    };
    // A second interface on n1 (a veth pair inside its namespace).
    ip_in(
        &lab,
        "n1",
        &["link", "add", "v0", "type", "veth", "peer", "name", "v1"],
    );
    ip_in(&lab, "n1", &["link", "set", "v0", "up"]);
    let grant = grant(&[IFACE, "v0", "gone0"]);
    ip_in(&lab, "n1", &["addr", "add", "198.18.0.50/24", "dev", "v0"]);
    ip_in(&lab, "n1", &["addr", "add", "198.18.0.60/32", "dev", IFACE]);
    let original = addresses(&lab, "n1");

    let cases: Vec<(AddressSpec, Expected, &[&str])> = vec![
        (
            spec("198.18.1.100", IFACE),
            |e| matches!(e, AddressError::OutsideGrant { .. }),
            &[
                "198.18.1.100",
                "outside the grant [plugins.ip-address.ip]",
                "198.18.0.0/24, fd00::/64",
            ],
        ),
        (
            spec("fd01::1", IFACE),
            |e| matches!(e, AddressError::OutsideGrant { .. }),
            &["fd01::1", "fd00::/64"],
        ),
        (
            spec(V4, "lo"),
            |e| matches!(e, AddressError::InterfaceNotGranted { .. }),
            &["\"lo\" is not granted", "eth0, v0, gone0"],
        ),
        (
            spec(V4, "gone0"),
            |e| matches!(e, AddressError::UnknownInterface { .. }),
            &["\"gone0\" does not exist", "this node has eth0, v0"],
        ),
        (
            AddressSpec {
                prefix_len: 33,
                ..spec(V4, IFACE)
            },
            |e| matches!(e, AddressError::PrefixLength { .. }),
            &["198.18.0.100/33", "1 to 32"],
        ),
        (
            AddressSpec {
                prefix_len: 129,
                ..spec(V6, IFACE)
            },
            |e| matches!(e, AddressError::PrefixLength { .. }),
            &["fd00::100/129", "1 to 128"],
        ),
    ];
    for (spec, expected, says) in cases {
        for error in all_refused(&lab, "n1", &grant, &spec) {
            let text = error.to_string();
            assert!(expected(&error), "{spec}: unexpected {error:?}");
            for part in says {
                assert!(
                    text.contains(part),
                    "{spec}: {text:?} does not say {part:?}"
                );
            }
        }
    }

    // Held on another interface of this node: probe and add refuse,
    // naming it; v0 keeps it.
    let on_v0 = spec("198.18.0.50", IFACE);
    let errors = lab.run_inside("n1", || async {
        [
            grant.probe(&on_v0, PROBE_WAIT).await,
            grant.add(&on_v0).await,
        ]
    });
    for error in errors {
        let text = error.expect_err("held on v0").to_string();
        assert!(
            text.contains("already on interface v0") && text.contains("198.18.0.50"),
            "{text}"
        );
    }
    // Held with another prefix length on the same interface: not changed,
    // not removed, not announced.
    let other_prefix = spec("198.18.0.60", IFACE);
    lab.run_inside("n1", || async {
        let added = grant.add(&other_prefix).await.expect_err("held as /32");
        assert!(
            added.to_string().contains("198.18.0.60/32, not /24"),
            "{added}"
        );
        grant
            .remove(&other_prefix)
            .await
            .expect("nothing of ours to remove");
        let announced = grant
            .announce(&other_prefix, 1, Duration::ZERO)
            .await
            .expect_err("not ours");
        assert!(
            matches!(announced, AddressError::NotHeld { .. }),
            "{announced:?}"
        );
        let state = grant.state(&other_prefix).await.expect("state");
        assert!(!state.present, "a /32 is not the /24 asked for");
    });
    // Counts and waits out of range, whatever the address.
    let vip = spec(V4, IFACE);
    lab.run_inside("n1", || async {
        for count in [0, 101, u32::MAX] {
            let e = grant
                .announce(&vip, count, Duration::ZERO)
                .await
                .expect_err("count");
            assert!(
                matches!(e, AddressError::OutOfRange { .. }) && e.to_string().contains("1 to 100"),
                "{e}"
            );
        }
        let e = grant
            .announce(&vip, 1, Duration::from_secs(3600))
            .await
            .expect_err("interval");
        assert!(matches!(e, AddressError::OutOfRange { .. }), "{e}");
        for wait in [
            Duration::ZERO,
            Duration::from_millis(99),
            Duration::from_secs(61),
            Duration::MAX,
        ] {
            let e = grant.probe(&vip, wait).await.expect_err("wait");
            assert!(
                matches!(e, AddressError::OutOfRange { .. }),
                "{wait:?}: {e}"
            );
        }
        let e = grant
            .announce(&vip, 1, Duration::ZERO)
            .await
            .expect_err("not added");
        assert!(e.to_string().contains("not on that interface"), "{e}");
    });
    assert_eq!(
        addresses(&lab, "n1"),
        original,
        "a refused request changed n1's addresses"
    );
    drop(lab);
    assert_eq!(machine(), before, "the machine's own namespace changed");
}

#[test]
fn a_pulled_cable_shows_as_link_down_and_plugged_back_as_up() {
    let Some(lab) = Lab::or_skip("link down", &["n1", "n2"]) else {
        return;
    };
    let grant = grant(&[IFACE]);
    let spec = spec(V4, IFACE);
    add(&lab, "n1", &grant, &spec);
    lab.link_down("n1");
    let down = wait_until("n1's carrier to go", Duration::from_secs(10), || {
        let s = state(&lab, "n1", &grant, &spec);
        (!s.link_up).then_some(s)
    });
    assert!(down.present, "the address went with the carrier");
    lab.link_up("n1");
    wait_until("n1's carrier to come back", Duration::from_secs(10), || {
        state(&lab, "n1", &grant, &spec).link_up.then_some(())
    });
    // Set down by hand inside n1: not up either.
    ip_in(&lab, "n1", &["link", "set", IFACE, "down"]);
    assert_eq!(
        state(&lab, "n1", &grant, &spec),
        AddressState {
            present: true,
            link_up: false
        }
    );
}

/// Linux capability numbers (linux/capability.h).
const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;

/// Clear `caps` from the calling thread's effective set (capabilities are
/// per thread: the rest of the test process keeps them).
fn drop_effective(caps: &[u32]) {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Default, Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut header = Header {
        version: 0x2008_0522,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget/capset with a version 3 header and two data structs,
    // as the kernel expects; only this thread is affected.
    unsafe {
        assert_eq!(
            libc::syscall(libc::SYS_capget, &raw mut header, data.as_mut_ptr()),
            0,
            "capget"
        );
        for cap in caps {
            data[(cap / 32) as usize].effective &= !(1 << (cap % 32));
        }
        assert_eq!(
            libc::syscall(libc::SYS_capset, &raw mut header, data.as_ptr()),
            0,
            "capset"
        );
    }
}

#[test]
fn without_the_capabilities_each_refusal_names_the_one_missing() {
    let Some(lab) = Lab::or_skip("capabilities", &["n1"]) else {
        return;
    };
    let grant = grant(&[IFACE]);
    let spec = spec(V4, IFACE);
    let original = addresses(&lab, "n1");
    let (added, probed) = lab.within("n1", || {
        drop_effective(&[CAP_NET_ADMIN, CAP_NET_RAW]);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async { (grant.add(&spec).await, grant.probe(&spec, PROBE_WAIT).await) })
    });
    let added = added.expect_err("added without CAP_NET_ADMIN");
    assert!(
        matches!(
            added,
            AddressError::NotPermitted {
                capability: "CAP_NET_ADMIN",
                ..
            }
        ),
        "{added:?}"
    );
    assert!(
        added
            .to_string()
            .contains("adding the address on eth0: not permitted, the agent needs CAP_NET_ADMIN"),
        "{added}"
    );
    let probed = probed.expect_err("probed without CAP_NET_RAW");
    assert!(
        matches!(
            probed,
            AddressError::NotPermitted {
                capability: "CAP_NET_RAW",
                ..
            }
        ),
        "{probed:?}"
    );
    assert_eq!(addresses(&lab, "n1"), original);

    // Announcing needs CAP_NET_RAW alone: with CAP_NET_ADMIN kept, the
    // address added, the refusal names CAP_NET_RAW.
    add(&lab, "n1", &grant, &spec);
    let announced = lab.within("n1", || {
        drop_effective(&[CAP_NET_RAW]);
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(grant.announce(&spec, 1, Duration::ZERO))
    });
    let announced = announced.expect_err("announced without CAP_NET_RAW");
    assert!(
        announced.to_string().contains("needs CAP_NET_RAW"),
        "{announced}"
    );
}

/// The ICMPv6 checksum over the pseudo-header and `icmp` (RFC 4443 2.3),
/// for the hostile neighbour's well-formed frames.
fn icmp6_checksum(source: [u8; 16], destination: [u8; 16], icmp: &[u8]) -> u16 {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&source);
    bytes.extend_from_slice(&destination);
    bytes.extend_from_slice(&(icmp.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&[0, 0, 0, 58]);
    bytes.extend_from_slice(icmp);
    let mut sum: u64 = bytes
        .chunks(2)
        .map(|p| (u64::from(p[0]) << 8) | p.get(1).map_or(0, |b| u64::from(*b)))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An Ethernet frame from `mac` carrying an ICMPv6 neighbour message of
/// `kind` for `target` (a target link-layer option naming `option_mac`,
/// `option_len` units of 8 bytes), hop limit `hops`, checksum right or not.
fn nd_frame(
    mac: [u8; 6],
    kind: u8,
    target: &str,
    option_mac: [u8; 6],
    option_len: u8,
    hops: u8,
    good_sum: bool,
) -> Vec<u8> {
    let target: std::net::Ipv6Addr = target.parse().expect("target");
    let source: std::net::Ipv6Addr = "fe80::bad".parse().expect("source");
    let destination: std::net::Ipv6Addr = "ff02::1".parse().expect("all nodes");
    let mut icmp = vec![kind, 0, 0, 0, 0x20, 0, 0, 0];
    icmp.extend_from_slice(&target.octets());
    icmp.extend_from_slice(&[2, option_len]);
    icmp.extend_from_slice(&option_mac);
    if good_sum {
        let sum = icmp6_checksum(source.octets(), destination.octets(), &icmp);
        icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    let mut frame = vec![0x33, 0x33, 0, 0, 0, 1];
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
    frame.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    frame.extend_from_slice(&[58, hops]);
    frame.extend_from_slice(&source.octets());
    frame.extend_from_slice(&destination.octets());
    frame.extend_from_slice(&icmp);
    frame
}

/// An ARP frame from `mac`: sender `sender` asking for `target`, with the
/// given hardware and protocol address sizes.
fn arp_frame(mac: [u8; 6], sender: [u8; 4], target: [u8; 4], sizes: [u8; 2]) -> Vec<u8> {
    let mut frame = vec![0xff; 6];
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, sizes[0], sizes[1], 0, 2]);
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&sender);
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&target);
    frame
}

#[test]
fn a_neighbour_flooding_malformed_and_unrelated_frames_does_not_pass_for_a_duplicate() {
    let Some(lab) = Lab::or_skip("hostile neighbour", &["n1", "n2"]) else {
        return;
    };
    let grant = grant(&[IFACE]);
    let mac: Vec<u8> = lab
        .mac("n2")
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).expect("hex"))
        .collect();
    let mac: [u8; 6] = mac.try_into().expect("six bytes");
    let vip4 = [198, 18, 0, 100];
    let frames: Vec<Vec<u8>> = vec![
        // ARP: cut short; other address sizes (sender would be the VIP);
        // a host asking for the VIP from its own address (no claim).
        arp_frame(mac, vip4, vip4, [6, 4])[..30].to_vec(),
        arp_frame(mac, vip4, vip4, [8, 4]),
        arp_frame(mac, [198, 18, 0, 2], vip4, [6, 4]),
        // Neighbour advertisements of the VIP that are not valid: a wrong
        // checksum, from off the link (hop limit 64), a zero-length option
        // (the frame's source then counts, so also a wrong checksum).
        nd_frame(mac, 136, V6, mac, 1, 255, false),
        nd_frame(mac, 136, V6, mac, 1, 64, true),
        nd_frame(mac, 136, V6, mac, 0, 255, false),
        // A valid advertisement of another address.
        nd_frame(mac, 136, "fd00::7", mac, 1, 255, true),
        // Noise as large as a frame gets, of both types.
        [&[0xff; 6][..], &mac, &[0x08, 0x06], &[0xa5; 1500]].concat(),
        [
            &[0x33, 0x33, 0, 0, 0, 1][..],
            &mac,
            &[0x86, 0xdd],
            &[0x5a; 1500],
        ]
        .concat(),
    ];
    let stop = std::sync::atomic::AtomicBool::new(false);
    let sent = std::thread::scope(|scope| {
        let flood = scope.spawn(|| {
            lab.within("n2", || {
                // SAFETY: a packet socket owned here and closed below.
                let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
                assert!(
                    fd >= 0,
                    "packet socket: {}",
                    std::io::Error::last_os_error()
                );
                let name = std::ffi::CString::new(IFACE).expect("name");
                // SAFETY: a valid C string.
                let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
                // SAFETY: sockaddr_ll is plain data.
                let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
                to.sll_family = libc::AF_PACKET as u16;
                to.sll_ifindex = index as i32;
                to.sll_halen = 6;
                let mut sent = 0u64;
                for _ in 0..200_000 {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    for frame in &frames {
                        // SAFETY: buffer and address valid for their lengths.
                        let done = unsafe {
                            libc::sendto(
                                fd,
                                frame.as_ptr().cast(),
                                frame.len(),
                                0,
                                (&raw const to).cast(),
                                std::mem::size_of::<libc::sockaddr_ll>() as u32,
                            )
                        };
                        if done > 0 {
                            sent += 1;
                        }
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
                // SAFETY: our own descriptor, closed once.
                unsafe { libc::close(fd) };
                sent
            })
        });
        let probed = lab.run_inside("n1", || async {
            let four = grant.probe(&spec(V4, IFACE), PROBE_WAIT).await;
            let six = grant.probe(&spec(V6, IFACE), PROBE_WAIT).await;
            (four, six)
        });
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let sent = flood.join().expect("the flood thread");
        let (four, six) = probed;
        four.unwrap_or_else(|e| panic!("the IPv4 probe under the flood: {e}"));
        six.unwrap_or_else(|e| panic!("the IPv6 probe under the flood: {e}"));
        sent
    });
    assert!(
        sent > frames.len() as u64 * 10,
        "the flood sent only {sent} frames"
    );
    // The same neighbour holding the address is still found (the flood did
    // not blind the probe).
    add(&lab, "n2", &grant, &spec(V4, IFACE));
    let found = lab.run_inside("n1", || async {
        grant.probe(&spec(V4, IFACE), PROBE_WAIT).await
    });
    assert!(
        matches!(found, Err(AddressError::Duplicate { .. })),
        "{found:?}"
    );
}
