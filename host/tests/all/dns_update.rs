//! Dynamic DNS update with TSIG (`warden::dns_update`), the host's side of
//! the `network-name` type, against a real DNS server (Knot DNS,
//! `common/dns_server.rs`): register, replace, remove and look up, IPv4 and
//! IPv6; wrong keys and a key without the right; names outside the grant
//! and names that are no host names, refused before anything is sent; a
//! dead server; hostile servers (garbage, wrong ids, floods, truncation,
//! silence, unsigned and forged answers); and bad grants.
//!
//! What the server holds is read with `knotc`, not through the code under
//! test.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::dns_server::{
    DnsServer, KEY, KEY_512, READER_KEY, free_dns_address, free_dns_address_on,
};
use hickory_proto::op::{Message, MessageType};
use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_proto::rr::{Name, TSigner};
use warden::dns_update::{DnsError, DnsGrant, DnsUpdater, MAX_ANSWER_BYTES};

const SECTION: &str = "[plugins.network-name.dns]";

fn ip(text: &str) -> IpAddr {
    text.parse().expect("an address")
}

/// A grant of the zone at `server` with `key` in `key_file`.
fn grant(server: SocketAddr, key: &str, algorithm: &str, key_file: &Path) -> DnsGrant {
    DnsGrant {
        server: server.to_string(),
        zone: "warden.test".to_string(),
        key_name: key.to_string(),
        key_algorithm: algorithm.to_string(),
        key_file: key_file.to_path_buf(),
        timeout_ms: Some(3_000),
    }
}

/// The updater the grant of `key` at `server` gives.
fn updater(server: &DnsServer, key: &str, algorithm: &str) -> DnsUpdater {
    grant(server.address, key, algorithm, &server.key_file(key))
        .resolve(SECTION)
        .expect("the grant resolves")
}

fn start_server() -> (tempfile::TempDir, DnsServer) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = DnsServer::start(&dir.path().join("knot"), free_dns_address());
    (dir, server)
}

/// `call`, failing the test if it takes longer than `bound`: the calls
/// under test must end by their own deadline, never hang.
async fn bounded<T>(bound: Duration, call: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(bound, call).await {
        Ok(value) => value,
        Err(_) => panic!("the call did not end within {bound:?}"),
    }
}

#[tokio::test]
async fn register_replace_remove_and_look_up_ipv4() {
    let (_dir, server) = start_server();
    let dns = updater(&server, KEY, "hmac-sha256");

    dns.register("evs1", ip("198.18.0.10"), 60)
        .await
        .expect("register");
    assert_eq!(server.records("evs1", "A"), ["60 A 198.18.0.10"]);
    assert_eq!(
        dns.lookup("evs1").await.expect("lookup"),
        [ip("198.18.0.10")]
    );

    // Again with another address: replaced, not added.
    dns.register("evs1.warden.test.", ip("198.18.0.11"), 30)
        .await
        .expect("register again");
    assert_eq!(server.records("evs1", "A"), ["30 A 198.18.0.11"]);
    assert_eq!(
        dns.lookup("EVS1.warden.test").await.expect("lookup"),
        [ip("198.18.0.11")]
    );

    // Removing the old address removes nothing; the current one, all.
    dns.remove("evs1", ip("198.18.0.10"))
        .await
        .expect("remove an absent record");
    assert_eq!(server.records("evs1", "A"), ["30 A 198.18.0.11"]);
    dns.remove("evs1", ip("198.18.0.11")).await.expect("remove");
    assert_eq!(server.records("evs1", "A"), Vec::<String>::new());
    assert_eq!(
        dns.lookup("evs1").await.expect("lookup"),
        Vec::<IpAddr>::new()
    );
    // Removing it again, or a name never registered, is no error either.
    dns.remove("evs1", ip("198.18.0.11"))
        .await
        .expect("remove twice");
    assert_eq!(
        dns.lookup("never-there").await.expect("lookup"),
        Vec::<IpAddr>::new()
    );
}

#[tokio::test]
async fn register_replace_remove_and_look_up_ipv6_beside_ipv4() {
    let (_dir, server) = start_server();
    let dns = updater(&server, KEY, "hmac-sha256");

    dns.register("evs2", ip("198.18.0.20"), 60)
        .await
        .expect("register A");
    dns.register("evs2", ip("fd00::20"), 60)
        .await
        .expect("register AAAA");
    assert_eq!(server.records("evs2", "AAAA"), ["60 AAAA fd00::20"]);
    // The AAAA update left the A record alone.
    assert_eq!(server.records("evs2", "A"), ["60 A 198.18.0.20"]);
    assert_eq!(
        dns.lookup("evs2").await.expect("lookup"),
        [ip("198.18.0.20"), ip("fd00::20")]
    );

    dns.register("evs2", ip("fd00::21"), 60)
        .await
        .expect("replace AAAA");
    assert_eq!(server.records("evs2", "AAAA"), ["60 AAAA fd00::21"]);
    assert_eq!(
        dns.lookup("evs2").await.expect("lookup"),
        [ip("198.18.0.20"), ip("fd00::21")]
    );

    dns.remove("evs2", ip("fd00::21"))
        .await
        .expect("remove AAAA");
    assert_eq!(
        dns.lookup("evs2").await.expect("lookup"),
        [ip("198.18.0.20")]
    );
    dns.remove("evs2", ip("198.18.0.20"))
        .await
        .expect("remove A");
    assert_eq!(
        dns.lookup("evs2").await.expect("lookup"),
        Vec::<IpAddr>::new()
    );
}

#[tokio::test]
async fn a_server_on_ipv6() {
    let address = match free_dns_address_on(ip("::1")) {
        Ok(address) => address,
        Err(e) => {
            eprintln!("SKIPPED, no IPv6 loopback here: {e}");
            return;
        }
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let server = DnsServer::start(&dir.path().join("knot"), address);
    let dns = updater(&server, KEY, "hmac-sha256");
    assert_eq!(dns.server(), address);
    dns.register("evs6", ip("fd00::6"), 60)
        .await
        .expect("register over IPv6");
    assert_eq!(server.records("evs6", "AAAA"), ["60 AAAA fd00::6"]);
    assert_eq!(dns.lookup("evs6").await.expect("lookup"), [ip("fd00::6")]);
}

#[tokio::test]
async fn hmac_sha512_and_key_files_in_bind_and_knot_forms() {
    let (dir, server) = start_server();
    // hmac-sha512, the secret alone.
    updater(&server, KEY_512, "hmac-sha512")
        .register("by512", ip("198.18.0.51"), 60)
        .await
        .expect("register with hmac-sha512");
    assert_eq!(server.records("by512", "A"), ["60 A 198.18.0.51"]);

    // The same key as `tsig-keygen` writes it (BIND) and as `keymgr -t`
    // prints it (knot).
    let secret = server.secret(KEY);
    let bind = dir.path().join("bind.key");
    std::fs::write(
        &bind,
        format!("key \"{KEY}\" {{\n\talgorithm hmac-sha256;\n\tsecret \"{secret}\";\n}};\n"),
    )
    .expect("write the BIND key");
    let knot = dir.path().join("knot.key");
    std::fs::write(
        &knot,
        format!(
            "# hmac-sha256:{KEY}:{secret}\nkey:\n  - id: {KEY}\n    algorithm: hmac-sha256\n    secret: {secret}\n"
        ),
    )
    .expect("write the knot key");
    for (file, address) in [(&bind, "198.18.0.52"), (&knot, "198.18.0.53")] {
        grant(server.address, KEY, "hmac-sha256", file)
            .resolve(SECTION)
            .expect("the grant resolves")
            .register("byfile", ip(address), 60)
            .await
            .unwrap_or_else(|e| panic!("register with {}: {e}", file.display()));
        assert_eq!(server.records("byfile", "A"), [format!("60 A {address}")]);
    }
}

#[tokio::test]
async fn a_wrong_secret_an_unknown_key_and_a_key_without_the_right_change_nothing() {
    let (dir, server) = start_server();
    let good = updater(&server, KEY, "hmac-sha256");
    good.register("evs3", ip("198.18.0.30"), 60)
        .await
        .expect("register");

    // The right key's name with another secret: BADSIG.
    let wrong = dir.path().join("wrong.secret");
    std::fs::write(&wrong, "c2VjcmV0IHRoYXQgdGhlIHNlcnZlciBkb2VzIG5vdCBrbm93\n")
        .expect("write a wrong secret");
    let error = grant(server.address, KEY, "hmac-sha256", &wrong)
        .resolve(SECTION)
        .expect("the grant resolves")
        .register("evs3", ip("198.18.0.99"), 60)
        .await
        .expect_err("a wrong secret updates nothing");
    let text = error.to_string();
    assert!(matches!(error, DnsError::Rejected { .. }), "{text}");
    for part in [
        "NOTAUTH",
        "BADSIG",
        KEY,
        &server.address.to_string(),
        "secret",
    ] {
        assert!(text.contains(part), "{part:?} missing: {text}");
    }

    // A key the server does not know: BADKEY.
    let error = grant(server.address, "stranger", "hmac-sha256", &wrong)
        .resolve(SECTION)
        .expect("the grant resolves")
        .remove("evs3", ip("198.18.0.30"))
        .await
        .expect_err("an unknown key removes nothing");
    let text = error.to_string();
    for part in ["NOTAUTH", "BADKEY", "stranger", "does not know"] {
        assert!(text.contains(part), "{part:?} missing: {text}");
    }

    // A key the server knows, which its ACL does not allow to update
    // (knot answers as for an unknown key).
    let error = updater(&server, READER_KEY, "hmac-sha256")
        .register("evs3", ip("198.18.0.98"), 60)
        .await
        .expect_err("the reader key may not update");
    let text = error.to_string();
    for part in ["NOTAUTH", "BADKEY", READER_KEY, "policy", "ACL"] {
        assert!(text.contains(part), "{part:?} missing: {text}");
    }
    // Yet its lookups are answered, signed.
    assert_eq!(
        updater(&server, READER_KEY, "hmac-sha256")
            .lookup("evs3")
            .await
            .expect("the reader key looks up"),
        [ip("198.18.0.30")]
    );

    // The right key, a zone the server does not serve.
    let error = DnsGrant {
        zone: "other.test".to_string(),
        ..grant(server.address, KEY, "hmac-sha256", &server.key_file(KEY))
    }
    .resolve(SECTION)
    .expect("the grant resolves")
    .register("evs3", ip("198.18.0.97"), 60)
    .await
    .expect_err("not the server's zone");
    let text = error.to_string();
    for part in ["NOTAUTH", "not authoritative", "other.test."] {
        assert!(text.contains(part), "{part:?} missing: {text}");
    }

    // Nothing changed.
    assert_eq!(server.records("evs3", "A"), ["60 A 198.18.0.30"]);
    assert_eq!(
        good.lookup("evs3").await.expect("lookup"),
        [ip("198.18.0.30")]
    );
}

#[tokio::test]
async fn an_answer_too_large_for_udp_comes_over_tcp() {
    let (_dir, server) = start_server();
    let many: Vec<String> = (1..=150).map(|i| format!("198.18.1.{i}")).collect();
    server.set_records("big", "A", &many);
    let mut found = updater(&server, KEY, "hmac-sha256")
        .lookup("big")
        .await
        .expect("lookup over TCP");
    found.sort();
    let mut expected: Vec<IpAddr> = many.iter().map(|a| ip(a)).collect();
    expected.sort();
    assert_eq!(found, expected);
}

#[tokio::test]
async fn names_outside_the_zone_and_bad_input_are_refused_before_anything_is_sent() {
    let hostile = Hostile::start(Reply::Silent, TcpReply::Refuse);
    let dns = hostile.updater(3_000);
    let refuse = |error: DnsError| error.to_string();

    let text = refuse(
        dns.register("mail.other.test.", ip("198.18.0.10"), 60)
            .await
            .expect_err("outside the zone"),
    );
    assert_eq!(
        text,
        "mail.other.test. is outside the zone warden.test. that [plugins.network-name.dns] grants"
    );
    assert!(matches!(
        dns.lookup("evilwarden.test.").await,
        Err(DnsError::OutsideZone { .. })
    ));
    assert!(matches!(
        dns.remove("test.", ip("198.18.0.10")).await,
        Err(DnsError::OutsideZone { .. })
    ));

    let huge = "a.".repeat(1 << 20);
    for bad in [
        "",
        "*",
        "_dmarc",
        "evs 1",
        "evs1\0",
        "evs1\n.warden.test.",
        "-evs1",
        "ünïcode",
        "a..b",
        huge.as_str(),
    ] {
        let error = dns
            .register(bad, ip("198.18.0.10"), 60)
            .await
            .expect_err("not a host name");
        let text = error.to_string();
        assert!(
            matches!(error, DnsError::InvalidName { .. }),
            "{bad:.40?}: {text}"
        );
        assert!(text.contains(SECTION), "{text}");
        assert!(text.len() < 500 && !text.contains('\n'), "{text:.600}");
    }
    for bad in ["0.0.0.0", "::", "224.0.0.251", "ff02::1", "255.255.255.255"] {
        let error = dns
            .register("evs1", ip(bad), 60)
            .await
            .expect_err("not an address to register");
        assert!(
            matches!(error, DnsError::InvalidAddress { .. }),
            "{bad}: {error}"
        );
    }
    let error = dns
        .register("evs1", ip("198.18.0.10"), u32::MAX)
        .await
        .expect_err("a TTL of 136 years");
    assert!(error.to_string().contains("TTL"), "{error}");

    assert_eq!(
        hostile.received(),
        0,
        "a refused request reached the server"
    );
}

#[tokio::test]
async fn a_dead_server_is_named_within_the_deadline() {
    // Nothing listens on the port: the kernel says so at once.
    let address = free_dns_address();
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("key");
    std::fs::write(&key, "c2VjcmV0\n").expect("write a key");
    let dns = grant(address, KEY, "hmac-sha256", &key)
        .resolve(SECTION)
        .expect("the grant resolves");
    for error in [
        bounded(
            Duration::from_secs(10),
            dns.register("evs1", ip("198.18.0.10"), 60),
        )
        .await
        .expect_err("no server"),
        bounded(Duration::from_secs(10), dns.lookup("evs1"))
            .await
            .expect_err("no server"),
    ] {
        let text = error.to_string();
        assert!(matches!(error, DnsError::Unreachable { .. }), "{text}");
        assert!(text.contains(&address.to_string()), "{text}");
        assert!(text.contains("nothing listens"), "{text}");
    }

    // A server that was up and is killed.
    let (_dir, mut server) = start_server();
    let dns = updater(&server, KEY, "hmac-sha256");
    dns.register("evs1", ip("198.18.0.10"), 60)
        .await
        .expect("register while it runs");
    server.stop();
    let error = bounded(
        Duration::from_secs(10),
        dns.remove("evs1", ip("198.18.0.10")),
    )
    .await
    .expect_err("the server is dead");
    assert!(
        error.to_string().contains(&server.address.to_string()),
        "{error}"
    );
}

#[tokio::test]
async fn a_silent_server_is_named_after_the_deadline_with_what_was_resent() {
    let hostile = Hostile::start(Reply::Silent, TcpReply::Refuse);
    let error = bounded(
        Duration::from_secs(10),
        hostile
            .updater(1_500)
            .register("evs1", ip("198.18.0.10"), 60),
    )
    .await
    .expect_err("no answer");
    let text = error.to_string();
    assert!(matches!(error, DnsError::NoAnswer { .. }), "{text}");
    assert!(text.contains(&hostile.address.to_string()), "{text}");
    assert!(text.contains("no answer"), "{text}");
    // It sent the request again while it waited.
    assert!(hostile.received() >= 2, "sent {} times", hostile.received());
}

#[tokio::test]
async fn garbage_and_answers_with_a_wrong_id_are_ignored_and_named() {
    for (reply, expect) in [
        (Reply::Garbage, "shorter than a DNS header"),
        (Reply::WrongId, "not the request's"),
        (Reply::Query, "not a response"),
    ] {
        let hostile = Hostile::start(reply, TcpReply::Refuse);
        let error = bounded(
            Duration::from_secs(10),
            hostile
                .updater(1_200)
                .register("evs1", ip("198.18.0.10"), 60),
        )
        .await
        .expect_err("nothing that answers");
        let text = error.to_string();
        assert!(
            matches!(error, DnsError::NoAnswer { .. }),
            "{reply:?}: {text}"
        );
        assert!(text.contains("ignored"), "{reply:?}: {text}");
        assert!(text.contains(expect), "{reply:?}: {text}");
    }
}

#[tokio::test]
async fn malformed_huge_unsigned_and_forged_answers_are_refused() {
    for (reply, check) in [
        (
            Reply::GarbageWithId,
            (|e: &DnsError| matches!(e, DnsError::Malformed { .. })) as fn(&DnsError) -> bool,
        ),
        (
            Reply::Huge,
            |e| matches!(e, DnsError::Oversized { size, limit, .. } if *size > *limit),
        ),
        (Reply::OtherQuestion, |e| {
            matches!(e, DnsError::Malformed { .. })
        }),
        (
            Reply::Unsigned,
            |e| matches!(e, DnsError::BadSignature { reason, .. } if reason.contains("not signed")),
        ),
        (Reply::Forged, |e| {
            matches!(e, DnsError::BadSignature { .. })
        }),
        (
            Reply::UnsignedRefused,
            |e| matches!(e, DnsError::Rejected { rcode, .. } if rcode.contains("unsigned")),
        ),
    ] {
        let hostile = Hostile::start(reply, TcpReply::Refuse);
        let dns = hostile.updater(2_000);
        for error in [
            bounded(
                Duration::from_secs(10),
                dns.register("evs1", ip("198.18.0.10"), 60),
            )
            .await
            .expect_err("a bad answer"),
            bounded(Duration::from_secs(10), dns.lookup("evs1"))
                .await
                .expect_err("a bad answer"),
        ] {
            assert!(check(&error), "{reply:?}: {error}");
            assert!(
                error.to_string().contains(&hostile.address.to_string()),
                "{reply:?}: {error}"
            );
        }
    }
}

#[tokio::test]
async fn a_truncated_answer_goes_to_tcp_and_what_tcp_does_wrong_is_named() {
    for (tcp, expect) in [
        (TcpReply::Refuse, "over TCP"),
        (TcpReply::HugePrefix, "more than the"),
        (TcpReply::CloseEarly, "closed the connection"),
        (TcpReply::Silent, "no answer"),
    ] {
        let hostile = Hostile::start(Reply::Truncated, tcp);
        let error = bounded(
            Duration::from_secs(10),
            hostile.updater(1_500).lookup("evs1"),
        )
        .await
        .expect_err("TCP fails");
        let text = error.to_string();
        assert!(text.contains(expect), "{tcp:?}: {text}");
        assert!(
            text.contains(&hostile.address.to_string()),
            "{tcp:?}: {text}"
        );
        if let DnsError::Oversized { size, limit, .. } = error {
            assert_eq!(size, 65_535);
            assert_eq!(limit, MAX_ANSWER_BYTES);
        }
    }
}

#[test]
fn bad_grants_are_refused_naming_the_section_and_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good_key = dir.path().join("good.secret");
    std::fs::write(&good_key, "c2VjcmV0IG9mIHRoZSB0ZXN0\n").expect("write a key");
    let not_base64 = dir.path().join("bad.secret");
    std::fs::write(&not_base64, "not-base64!\n").expect("write a bad key");
    let other_key = dir.path().join("other.key");
    std::fs::write(
        &other_key,
        "key \"someone-else\" { algorithm hmac-sha256; secret \"c2VjcmV0\"; };\n",
    )
    .expect("write another key");
    let big = dir.path().join("big.key");
    std::fs::write(&big, vec![b'A'; 1 << 20]).expect("write a big file");
    let missing = dir.path().join("missing.secret");
    let server: SocketAddr = "127.0.0.1:53".parse().expect("an address");
    let base = grant(server, KEY, "hmac-sha256", &good_key);
    base.resolve(SECTION).expect("the good grant resolves");

    let cases: Vec<(DnsGrant, &[&str])> = vec![
        (
            DnsGrant {
                key_file: missing.clone(),
                ..base.clone()
            },
            &[SECTION, KEY, "missing.secret", "cannot be opened"],
        ),
        (
            DnsGrant {
                key_file: not_base64.clone(),
                ..base.clone()
            },
            &[SECTION, KEY, "bad.secret", "not base64"],
        ),
        (
            DnsGrant {
                key_file: dir.path().to_path_buf(),
                ..base.clone()
            },
            &[SECTION, KEY, "not a regular file"],
        ),
        (
            DnsGrant {
                key_file: big.clone(),
                ..base.clone()
            },
            &[SECTION, KEY, "larger than"],
        ),
        (
            DnsGrant {
                key_file: PathBuf::from("relative.secret"),
                ..base.clone()
            },
            &[SECTION, KEY, "absolute"],
        ),
        (
            DnsGrant {
                key_file: other_key.clone(),
                ..base.clone()
            },
            &[SECTION, KEY, "someone-else"],
        ),
        (
            DnsGrant {
                key_algorithm: "hmac-md5".to_string(),
                ..base.clone()
            },
            &[SECTION, KEY, "hmac-md5", "not supported", "hmac-sha256"],
        ),
        (
            DnsGrant {
                key_algorithm: "hmac-sha512".to_string(),
                key_file: other_key.clone(),
                key_name: "someone-else".to_string(),
                ..base.clone()
            },
            &[SECTION, "someone-else", "hmac-sha256", "hmac-sha512"],
        ),
        (
            DnsGrant {
                server: "dns.example:53".to_string(),
                ..base.clone()
            },
            &[SECTION, "server", "dns.example:53", "address and port"],
        ),
        (
            DnsGrant {
                server: "127.0.0.1".to_string(),
                ..base.clone()
            },
            &[SECTION, "server", "address and port"],
        ),
        (
            DnsGrant {
                server: "127.0.0.1:0".to_string(),
                ..base.clone()
            },
            &[SECTION, "server", "port 0"],
        ),
        (
            DnsGrant {
                zone: ".".to_string(),
                ..base.clone()
            },
            &[SECTION, "zone", "root"],
        ),
        (
            DnsGrant {
                zone: "bad zone".to_string(),
                ..base.clone()
            },
            &[SECTION, "zone", "bad zone"],
        ),
        (
            DnsGrant {
                key_name: String::new(),
                ..base.clone()
            },
            &[SECTION, "key_name"],
        ),
        (
            DnsGrant {
                timeout_ms: Some(0),
                ..base.clone()
            },
            &[SECTION, "timeout_ms"],
        ),
    ];
    for (bad, parts) in cases {
        let error = bad.resolve(SECTION).expect_err("a bad grant is refused");
        let text = format!("{error:#}");
        for part in parts {
            assert!(text.contains(part), "{part:?} missing: {text}");
        }
        assert!(
            !text.contains("c2VjcmV0"),
            "an error repeats the secret: {text}"
        );
    }
}

#[test]
fn a_grant_reads_from_toml_with_defaults_and_refuses_unknown_fields() {
    let grant: DnsGrant = toml::from_str(
        "server = \"[fd00::35]:53\"\nzone = \"warden.test\"\nkey_name = \"warden-key\"\n\
         key_file = \"/etc/warden/warden-key.secret\"\n",
    )
    .expect("a grant");
    assert_eq!(grant.key_algorithm, "hmac-sha256");
    assert_eq!(grant.timeout_ms, None);
    let error = toml::from_str::<DnsGrant>(
        "server = \"198.18.0.53:53\"\nzone = \"warden.test\"\nkey_name = \"k\"\n\
         key_file = \"/k\"\nkey_secret = \"inline\"\n",
    )
    .expect_err("an unknown field");
    assert!(error.to_string().contains("key_secret"), "{error}");
}

// ---------------------------------------------------------------------
// A hostile DNS server: a UDP socket (and a TCP listener on the same
// port) in threads of the test, answering every request as told.

#[derive(Debug, Clone, Copy)]
enum Reply {
    /// Never answers.
    Silent,
    /// A few bytes that are no DNS message.
    Garbage,
    /// A well-formed response with another id.
    WrongId,
    /// A message with the request's id that is a query, not a response.
    Query,
    /// The request's id, the response bit, then garbage.
    GarbageWithId,
    /// The request's id and 20 KiB.
    Huge,
    /// A response to another question.
    OtherQuestion,
    /// NOERROR, not signed.
    Unsigned,
    /// NOERROR, signed with another secret under the right key's name.
    Forged,
    /// REFUSED, not signed.
    UnsignedRefused,
    /// A header with TC set: the client must ask again over TCP.
    Truncated,
}

#[derive(Debug, Clone, Copy)]
enum TcpReply {
    /// Nothing listens on TCP.
    Refuse,
    /// Accepts, reads, never answers.
    Silent,
    /// Announces an answer of 65 535 bytes.
    HugePrefix,
    /// Announces 100 bytes, sends 10, closes.
    CloseEarly,
}

struct Hostile {
    address: SocketAddr,
    received: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    key_file: tempfile::NamedTempFile,
}

impl Hostile {
    fn start(reply: Reply, tcp: TcpReply) -> Hostile {
        let address = free_dns_address();
        let udp = UdpSocket::bind(address).expect("bind the hostile UDP socket");
        udp.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("a read timeout");
        let received = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        {
            let received = received.clone();
            let stop = stop.clone();
            threads.push(std::thread::spawn(move || {
                let mut buffer = [0u8; 65_536];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((size, peer)) = udp.recv_from(&mut buffer) else {
                        continue;
                    };
                    received.fetch_add(1, Ordering::Relaxed);
                    for answer in answers(reply, &buffer[..size]) {
                        let _ = udp.send_to(&answer, peer);
                    }
                }
            }));
        }
        if !matches!(tcp, TcpReply::Refuse) {
            let listener = TcpListener::bind(address).expect("bind the hostile TCP port");
            listener.set_nonblocking(true).expect("nonblocking");
            let stop = stop.clone();
            threads.push(std::thread::spawn(move || {
                let mut held: Vec<TcpStream> = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((mut stream, _)) => {
                            let _ = stream.set_nonblocking(false);
                            let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
                            let mut request = [0u8; 2048];
                            let _ = stream.read(&mut request);
                            match tcp {
                                TcpReply::Refuse | TcpReply::Silent => {}
                                TcpReply::HugePrefix => {
                                    let _ = stream.write_all(&[0xff, 0xff]);
                                    let _ = stream.write_all(&[0u8; 4096]);
                                }
                                TcpReply::CloseEarly => {
                                    let _ = stream.write_all(&100u16.to_be_bytes());
                                    let _ = stream.write_all(&request[2..12]);
                                    continue;
                                }
                            }
                            held.push(stream);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            }));
        }
        let key_file = tempfile::NamedTempFile::new().expect("a key file");
        std::fs::write(key_file.path(), "c2VjcmV0IG9mIHRoZSB0ZXN0\n").expect("write the key");
        Hostile {
            address,
            received,
            stop,
            threads,
            key_file,
        }
    }

    /// An updater whose grant names this server, each call bounded by
    /// `timeout_ms`.
    fn updater(&self, timeout_ms: u64) -> DnsUpdater {
        DnsGrant {
            timeout_ms: Some(timeout_ms),
            ..grant(self.address, KEY, "hmac-sha256", self.key_file.path())
        }
        .resolve(SECTION)
        .expect("the grant resolves")
    }

    /// How many datagrams it has received.
    fn received(&self) -> usize {
        self.received.load(Ordering::Relaxed)
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// What the hostile server sends back for `request`.
fn answers(reply: Reply, request: &[u8]) -> Vec<Vec<u8>> {
    let Ok(request) = Message::from_vec(request) else {
        return Vec::new();
    };
    let id = request.metadata.id;
    let response = |id: u16| {
        let mut message = Message::response(id, request.metadata.op_code);
        message.metadata.authoritative = true;
        message.add_queries(request.queries.iter().cloned());
        message
    };
    let encode = |message: &Message| message.to_vec().expect("encode a response");
    let header = |flags: u8| {
        let mut bytes = Vec::from(id.to_be_bytes());
        bytes.extend_from_slice(&[flags, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        bytes
    };
    match reply {
        Reply::Silent => Vec::new(),
        Reply::Garbage => vec![b"\xde\xad".to_vec(), b"junk!".to_vec()],
        Reply::WrongId => vec![encode(&response(id.wrapping_add(1)))],
        Reply::Query => vec![header(0x00)],
        Reply::GarbageWithId => {
            let mut bytes = header(0x80);
            bytes[5] = 9; // nine questions that are not there
            bytes.extend_from_slice(b"\xff\xfe\xfd garbage");
            vec![bytes]
        }
        Reply::Huge => {
            let mut bytes = header(0x80);
            bytes.resize(20 * 1024, 0x41);
            vec![bytes]
        }
        Reply::OtherQuestion => {
            let mut message = Message::response(id, request.metadata.op_code);
            message.add_query(hickory_proto::op::Query::query(
                Name::from_ascii("other.warden.test.").expect("a name"),
                hickory_proto::rr::RecordType::TXT,
            ));
            vec![encode(&message)]
        }
        Reply::Unsigned => vec![encode(&response(id))],
        Reply::Forged => {
            let mut message = response(id);
            let signer = TSigner::new(
                b"not the secret the client holds".to_vec(),
                TsigAlgorithm::HmacSha256,
                Name::from_ascii(KEY).expect("a name"),
                300,
            )
            .expect("a signer");
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("after 1970")
                .as_secs();
            message.finalize(&signer, now).expect("sign");
            vec![encode(&message)]
        }
        Reply::UnsignedRefused => {
            let mut message = response(id);
            message.metadata.response_code = hickory_proto::op::ResponseCode::Refused;
            vec![encode(&message)]
        }
        Reply::Truncated => {
            let mut message = response(id);
            message.metadata.truncation = true;
            assert_eq!(message.metadata.message_type, MessageType::Response);
            vec![encode(&message)]
        }
    }
}
