//! The built-in `ip-address` and `network-name` types end to end through
//! the contract's `network` import: the plugin asks, the host checks the
//! node's grant and does the work (netlink and raw sockets in a lab host's
//! namespace; signed DNS updates to a real Knot DNS). Bad input, each a
//! clear error that leaves nothing half-configured: an address outside
//! the grant, an unknown interface, an address another host answers for,
//! a type granted nothing, a DNS server refusing the update.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use crate::common::dns_server::{DnsServer, KEY, free_dns_address};
use crate::common::netlab::{IFACE, Lab};
use crate::common::*;
use warden::dns_update::DnsGrant;
use warden::monitor::{Monitor, ResourceHandle, ResourceSpec, ResourceState};
use warden::runtime::Grants;
use warden::virtual_ip::IpGrant;

const IP_ADDRESS: &str = env!("WARDEN_PLUGIN_IP_ADDRESS");
const NETWORK_NAME: &str = env!("WARDEN_PLUGIN_NETWORK_NAME");
const WITHIN: Duration = Duration::from_secs(20);

/// Every address on `host`'s interface, as `ADDRESS/PREFIX`.
fn addresses(lab: &Lab, host: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["-n", &lab.ns(host), "-o", "addr", "show", "dev", IFACE])
        .output()
        .expect("ip addr");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let mut words = line
                .split_whitespace()
                .skip_while(|w| *w != "inet" && *w != "inet6");
            words.nth(1).map(str::to_string)
        })
        .collect()
}

/// A resource of `type_name` with `properties` and the type's `grants`.
fn resource(type_name: &str, properties: &[(&str, &str)], grants: Grants) -> ResourceSpec {
    let mut spec = spec(type_name, properties);
    spec.type_name = type_name.to_string();
    spec.timing.pending_timeout = Some(Duration::from_secs(10));
    spec.timing.check_timeout = Some(Duration::from_secs(5));
    spec.grants = grants;
    spec
}

/// The grant of `[plugins.ip-address.ip]` with these ranges on eth0 (and
/// `eth9`, which no lab host has).
fn ip_grants(ranges: &[&str]) -> Grants {
    let grant = IpGrant {
        interfaces: vec![IFACE.to_string(), "eth9".to_string()],
        ranges: ranges.iter().map(|r| r.to_string()).collect(),
    }
    .resolve("plugins.ip-address.ip")
    .expect("the test's grant");
    Grants {
        ip: Some(Arc::new(grant)),
        ..Grants::default()
    }
}

/// Bring `handle` online and wait until it is Online or Failed; the
/// failure's reason, if it failed.
async fn online(handle: &ResourceHandle) -> Option<String> {
    let failures = handle.status().failures;
    handle.online().expect("actor runs");
    let status = handle
        .wait_for(WITHIN, |s| {
            s.state == ResourceState::Online
                || (s.state == ResourceState::Failed && s.failures > failures)
        })
        .await
        .unwrap_or_else(|| panic!("{} neither Online nor Failed", handle.name()));
    (status.state == ResourceState::Failed).then(|| status.reason.unwrap_or_default())
}

#[test]
fn ip_address_resources_take_release_and_refuse_addresses_as_granted() {
    let Some(lab) = Lab::or_skip("ip-address-type", &["n1", "n2", "client"]) else {
        return;
    };
    let before = addresses(&lab, "n1");
    // n2 answers for .150 already: a duplicate for n1's probe.
    let taken = Command::new("ip")
        .args([
            "-n",
            &lab.ns("n2"),
            "addr",
            "add",
            "198.18.0.150/24",
            "dev",
            IFACE,
        ])
        .status()
        .expect("ip addr add");
    assert!(taken.success());

    lab.run_inside("n1", || async {
        let plugin = load(IP_ADDRESS).await;
        let mut monitor = Monitor::new(64 << 20);
        let props = |address: &'static str, interface: &'static str| {
            [
                ("address", address),
                ("prefix-length", "24"),
                ("interface", interface),
                ("probe-ms", "300"),
            ]
        };

        // Granted: online puts it up, is-alive sees it, offline takes it off.
        let vip = monitor
            .add(
                plugin.clone(),
                resource(
                    "vip",
                    &props("198.18.0.100", IFACE),
                    ip_grants(&["198.18.0.0/24"]),
                ),
            )
            .await
            .expect("valid spec");
        assert_eq!(online(&vip).await, None, "{:?}", vip.status());
        assert!(addresses(&lab, "n1").contains(&"198.18.0.100/24".to_string()));
        let answer = vip.control("announce", "").await.expect("actor runs");
        assert_eq!(answer.as_deref(), Ok("announced 198.18.0.100/24 on eth0"));
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(vip.status().state, ResourceState::Online, "is-alive holds");
        // Taken away behind the agent's back: is-alive notices.
        let removed = Command::new("ip")
            .args([
                "-n",
                &lab.ns("n1"),
                "addr",
                "del",
                "198.18.0.100/24",
                "dev",
                IFACE,
            ])
            .status()
            .expect("ip addr del");
        assert!(removed.success());
        let failed = vip
            .wait_for(WITHIN, |s| s.state == ResourceState::Failed)
            .await
            .expect("is-alive fails");
        let reason = failed.reason.unwrap_or_default();
        assert!(
            reason.contains("198.18.0.100/24 on eth0 is no longer there"),
            "{reason}"
        );
        assert_eq!(online(&vip).await, None, "back online");
        vip.offline().expect("actor runs");
        wait_state(&vip, ResourceState::Offline, WITHIN).await;
        assert_eq!(addresses(&lab, "n1"), before, "offline took it off");

        // Refused, each naming why, and nothing added.
        for (name, props, grants, expected) in [
            (
                "outside",
                props("198.18.0.100", IFACE),
                ip_grants(&["198.18.0.192/26"]),
                "198.18.0.100 is outside the grant [plugins.ip-address.ip]",
            ),
            (
                "wider",
                props("198.18.0.200", IFACE),
                ip_grants(&["198.18.0.192/26"]),
                "198.18.0.200/24 is a wider subnet than the grant [plugins.ip-address.ip]",
            ),
            (
                "no-such-interface",
                props("198.18.0.100", "eth9"),
                ip_grants(&["198.18.0.0/24"]),
                "eth9",
            ),
            (
                "duplicate",
                props("198.18.0.150", IFACE),
                ip_grants(&["198.18.0.0/24"]),
                &lab.mac("n2"),
            ),
            (
                "not-granted",
                props("198.18.0.100", IFACE),
                Grants::default(),
                "no [plugins.ip-address.ip] section",
            ),
        ] {
            let handle = monitor
                .add(plugin.clone(), resource(name, &props, grants))
                .await
                .expect("valid spec");
            let reason = online(&handle)
                .await
                .unwrap_or_else(|| panic!("{name} went online"));
            assert!(reason.contains(expected), "{name}: {reason}");
            assert_eq!(addresses(&lab, "n1"), before, "{name} changed n1");
        }
        monitor.shutdown().await;
    });
    assert!(
        addresses(&lab, "n2").contains(&"198.18.0.150/24".to_string()),
        "n2 keeps its address"
    );
}

/// The grant of `[plugins.network-name.dns]` at `server` with `key`.
fn dns_grants(server: &DnsServer, key_file: &std::path::Path) -> Grants {
    let updater = DnsGrant {
        server: server.address.to_string(),
        zone: "warden.test".to_string(),
        key_name: KEY.to_string(),
        key_algorithm: "hmac-sha256".to_string(),
        key_file: key_file.to_path_buf(),
        timeout_ms: Some(3_000),
    }
    .resolve("[plugins.network-name.dns]")
    .expect("the test's grant");
    Grants {
        dns: Some(Arc::new(updater)),
        ..Grants::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_name_resources_register_check_and_remove_their_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = DnsServer::start(&dir.path().join("knot"), free_dns_address());
    let plugin = load(NETWORK_NAME).await;
    let mut monitor = Monitor::new(64 << 20);
    let props = [
        ("name", "evs1"),
        ("address", "198.18.0.100"),
        ("ttl-s", "30"),
    ];

    let name = monitor
        .add(
            plugin.clone(),
            resource("evs1", &props, dns_grants(&server, &server.key_file(KEY))),
        )
        .await
        .expect("valid spec");
    assert_eq!(online(&name).await, None, "{:?}", name.status());
    assert_eq!(server.records("evs1", "A"), ["30 A 198.18.0.100"]);
    let looked_up = name.control("lookup", "").await.expect("actor runs");
    assert_eq!(looked_up.as_deref(), Ok("198.18.0.100"));

    // Someone points the name elsewhere: is-alive says so.
    server.set_records("evs1", "A", &["198.18.0.7".to_string()]);
    let failed = name
        .wait_for(WITHIN, |s| s.state == ResourceState::Failed)
        .await
        .expect("is-alive fails");
    let reason = failed.reason.unwrap_or_default();
    assert!(
        reason.contains("evs1 resolves to [") && reason.contains("not only 198.18.0.100"),
        "{reason}"
    );
    assert_eq!(online(&name).await, None, "registered again");
    assert_eq!(server.records("evs1", "A"), ["30 A 198.18.0.100"]);
    // Offline leaves the record: the address moves with the group.
    name.offline().expect("actor runs");
    wait_state(&name, ResourceState::Offline, WITHIN).await;
    assert_eq!(server.records("evs1", "A"), ["30 A 198.18.0.100"]);
    // With remove-on-offline, offline removes it.
    let removing = [
        ("name", "evs1"),
        ("address", "198.18.0.100"),
        ("ttl-s", "30"),
        ("remove-on-offline", "true"),
    ];
    let removing = monitor
        .add(
            plugin.clone(),
            resource(
                "evs1-removing",
                &removing,
                dns_grants(&server, &server.key_file(KEY)),
            ),
        )
        .await
        .expect("valid spec");
    assert_eq!(online(&removing).await, None, "{:?}", removing.status());
    removing.offline().expect("actor runs");
    wait_state(&removing, ResourceState::Offline, WITHIN).await;
    assert!(server.records("evs1", "A").is_empty(), "offline removed it");

    // A key the server does not know: refused, the zone unchanged.
    let wrong = dir.path().join("wrong.secret");
    std::fs::write(
        &wrong,
        "c2VjcmV0IHRoYXQgdGhlIHNlcnZlciBkb2VzIG5vdCBrbm93Cg==\n",
    )
    .expect("key file");
    let refused = monitor
        .add(
            plugin.clone(),
            resource("wrong-key", &props, dns_grants(&server, &wrong)),
        )
        .await
        .expect("valid spec");
    let reason = online(&refused).await.expect("refused");
    assert!(reason.contains("NOTAUTH"), "{reason}");
    assert!(server.records("evs1", "A").is_empty(), "nothing registered");

    // Outside the zone, and a type granted nothing.
    for (resource_name, props, grants, expected) in [
        (
            "outside",
            [
                ("name", "mail.example.com."),
                ("address", "198.18.0.100"),
                ("ttl-s", "30"),
            ],
            dns_grants(&server, &server.key_file(KEY)),
            "outside the zone",
        ),
        (
            "not-granted",
            props,
            Grants::default(),
            "no [plugins.network-name.dns] section",
        ),
    ] {
        let handle = monitor
            .add(plugin.clone(), resource(resource_name, &props, grants))
            .await
            .expect("valid spec");
        let reason = online(&handle)
            .await
            .unwrap_or_else(|| panic!("{resource_name} went online"));
        assert!(reason.contains(expected), "{resource_name}: {reason}");
    }
    assert!(server.records("evs1", "A").is_empty());
    monitor.shutdown().await;
}

#[test]
fn the_example_virtual_server_parses_with_its_grants_and_dependency_chain() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/virtual-server.toml"
    );
    let text = std::fs::read_to_string(path).expect("examples/virtual-server.toml");
    // The key file the example names, made here: the grant reads it.
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("dns-update.key");
    std::fs::write(&key, "c2VjcmV0IG9mIHRoZSBleGFtcGxlCg==\n").expect("key file");
    let text = text.replace("/etc/warden/dns-update.key", &key.display().to_string());
    let config = warden::config::AgentConfig::parse(&text).expect("the example parses");
    let chain: Vec<(&str, &str, Vec<&str>)> = config
        .resources
        .iter()
        .map(|r| {
            let depends = r.depends_on.iter().map(String::as_str).collect();
            (r.name.as_str(), r.type_name.as_str(), depends)
        })
        .collect();
    assert_eq!(
        chain,
        [
            ("evs1-ip", "ip-address", vec![]),
            ("evs1-name", "network-name", vec!["evs1-ip"]),
            ("store", "store", vec!["evs1-name"]),
            ("smtp", "smtp-instance", vec!["store"]),
            ("http", "http-instance", vec!["store"]),
            ("mta", "mta", vec!["store"]),
            ("search", "ms-search", vec!["store"]),
        ]
    );
    let grants = config.plugins["ip-address"]
        .resolve("ip-address")
        .expect("the grant resolves");
    assert!(grants.ip.is_some());
    // Without the key file, the error names the section and the file.
    let missing = std::fs::read_to_string(path)
        .expect("example")
        .replace("/etc/warden/dns-update.key", "/nonexistent/dns-update.key");
    let error = format!(
        "{:#}",
        warden::config::AgentConfig::parse(&missing).expect_err("no key file")
    );
    assert!(
        error.contains("[plugins.network-name.dns]")
            && error.contains("/nonexistent/dns-update.key"),
        "{error}"
    );
}
