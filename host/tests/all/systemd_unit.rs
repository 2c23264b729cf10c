//! The hardened unit, `examples/warden.service` as shipped, under a real
//! systemd: the `warden` binary built here supervising real services.
//!
//! `tests/systemd/boot.sh` boots `/lib/systemd/systemd` as PID 1 of
//! namespaces of its own (pid, mount, cgroup, network, uts, ipc) over an
//! overlay of `/`, so it runs on a machine (or container) whose own PID 1
//! is not systemd, and writes nothing to the machine's files or kernel
//! settings. The test then checks what `systemd-analyze security` cannot:
//! that the agent starts under every option of the unit, is ready only
//! once its API answers (Type=notify), runs with the sandbox applied
//! (no new privileges, a seccomp filter, exactly the unit's capabilities,
//! a read-only system), and that the services it starts work: one as
//! `nobody` (CAP_SETUID, CAP_SETGID, CAP_CHOWN), one as root on port 80
//! (CAP_NET_BIND_SERVICE); and that a restart and a stop take the services
//! down in order.
//!
//! It needs root, `/lib/systemd/systemd`, `unshare` and `nsenter`, and a
//! cgroup v2 hierarchy. Without them it prints why it did not run and
//! passes (`.ci/run` installs systemd; CI runs as root). With them, a
//! systemd that does not boot fails the test.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::common::agent_process::TOKEN;
use crate::common::systemd::{API, BootedSystemd, proc_status, why_not_here};

const WARDEN: &str = env!("CARGO_BIN_EXE_warden");
const UNIT: &str = include_str!("../../../examples/warden.service");
/// `nobody` and `nogroup` on Debian.
const NOBODY: &str = "65534";

/// The capabilities the unit's `CapabilityBoundingSet=` names, as the mask
/// `/proc/PID/status` shows.
fn unit_capabilities() -> u64 {
    const NUMBERS: [(&str, u32); 7] = [
        ("CAP_CHOWN", 0),
        ("CAP_DAC_OVERRIDE", 1),
        ("CAP_FOWNER", 3),
        ("CAP_KILL", 5),
        ("CAP_SETGID", 6),
        ("CAP_SETUID", 7),
        ("CAP_NET_BIND_SERVICE", 10),
    ];
    let line = UNIT
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("the unit sets CapabilityBoundingSet=");
    line.split_whitespace()
        .map(|name| {
            let (_, bit) = NUMBERS
                .iter()
                .find(|(known, _)| *known == name)
                .unwrap_or_else(|| panic!("the unit names {name}, unknown to this test"));
            1u64 << bit
        })
        .sum()
}

/// The agent's configuration: one resource, `web`, a demo service run as
/// `run_as` (none: the agent's own user, root).
fn config(run_as: Option<&str>) -> String {
    let user = run_as
        .map(|user| format!("user = \"{user}\"\n"))
        .unwrap_or_default();
    format!(
        r#"[node]
name = "sd"
data_dir = "/var/lib/warden"

[api]
listen = "{API}"
token_file = "/etc/warden/api-token"

[plugins.process]
allow_programs = ["/usr/bin/warden"]
{user}
[[group]]
name = "demo"

[[resource]]
name = "web"
type = "process"
group = "demo"
is_alive_interval_ms = 1000
properties = {{ program = "/usr/bin/warden", args = "demo-service --name web --listen 127.0.0.1:8080" }}
"#
    )
}

/// Lay out the files `boot.sh` copies over the booted system's root: the
/// unit as shipped, a target that wants it, the configuration (and the
/// one the restart switches to) and the token.
fn write_files(files: &Path) {
    let write = |path: &str, text: &str, mode: u32| {
        let path = files.join(path);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(&path, text).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    write("etc/systemd/system/warden.service", UNIT, 0o644);
    write(
        "etc/systemd/system/warden-test.target",
        "[Unit]\nDescription=The Warden unit under test\nWants=warden.service\n",
        0o644,
    );
    write("etc/warden/node.toml", &config(Some("nobody")), 0o644);
    write("etc/warden/as-root.toml", &config(None), 0o644);
    write("etc/warden/api-token", &format!("{TOKEN}\n"), 0o600);
    // cp -a gives the new root the modes of these directories.
    for dir in ["", "etc", "etc/systemd", "etc/systemd/system", "etc/warden"] {
        std::fs::set_permissions(files.join(dir), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
    }
}

fn mask(status: &HashMap<String, String>, field: &str) -> u64 {
    let value = status.get(field).map(String::as_str).unwrap_or("");
    u64::from_str_radix(value, 16).unwrap_or_else(|_| panic!("{field}: {value:?} is not a mask"))
}

/// One mount as a process sees it: where in its file system it starts
/// and whether it is read-only.
#[derive(Debug)]
struct Mount {
    root: String,
    read_only: bool,
}

/// The mounts at `points` in `pid`'s mount namespace, as its root sees
/// them (the last mount at a point is the one seen).
fn mounts(pid: u32, points: &[&str]) -> HashMap<String, Mount> {
    std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .expect("mountinfo")
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let (root, point, options) = (*fields.get(3)?, *fields.get(4)?, *fields.get(5)?);
            let mount = Mount {
                root: root.to_string(),
                read_only: options.split(',').any(|o| o == "ro"),
            };
            points.contains(&point).then(|| (point.to_string(), mount))
        })
        .collect()
}

/// The sandbox every process of the unit runs in.
fn assert_sandboxed(what: &str, status: &HashMap<String, String>) {
    assert_eq!(
        status.get("NoNewPrivs").map(String::as_str),
        Some("1"),
        "{what}: NoNewPrivileges=yes not applied: {status:?}"
    );
    assert_eq!(
        status.get("Seccomp").map(String::as_str),
        Some("2"),
        "{what}: no seccomp filter (SystemCallFilter=): {status:?}"
    );
    assert_eq!(
        mask(status, "CapBnd"),
        unit_capabilities(),
        "{what}: the bounding set is not the unit's CapabilityBoundingSet="
    );
    assert_eq!(mask(status, "CapAmb"), 0, "{what}: ambient capabilities");
}

#[test]
fn the_hardened_unit_runs_the_agent_and_its_services_under_a_real_systemd() {
    if let Some(why) = why_not_here() {
        println!("systemd_unit: not run: {why}");
        return;
    }
    let systemd = BootedSystemd::boot(write_files, Some(WARDEN));

    // Type=notify: systemd calls the unit active only once the agent said
    // READY=1, which it says once its API answers.
    systemd.wait_active();
    assert!(
        systemd.status().is_some(),
        "the unit is active but the API does not answer\n{}",
        systemd.diagnostics()
    );
    systemd.wait_online("web");

    // The agent: root, with only the unit's capabilities, sandboxed.
    let agent = systemd.agent();
    let status = proc_status(agent);
    assert_sandboxed("the agent", &status);
    assert_eq!(
        mask(&status, "CapEff"),
        unit_capabilities(),
        "the agent does not hold the unit's capabilities"
    );
    let mounts = mounts(
        agent,
        &["/", "/usr", "/etc", "/var/lib/warden", "/tmp", "/home"],
    );
    let mount = |point: &str| {
        mounts
            .get(point)
            .unwrap_or_else(|| panic!("no mount at {point} for the agent: {mounts:?}"))
    };
    assert!(mount("/").read_only, "ProtectSystem=strict: / is writable");
    for point in ["/usr", "/etc"] {
        // Under / unless mounted apart; read-only either way.
        assert!(
            mounts.get(point).is_none_or(|m| m.read_only),
            "ProtectSystem=strict: {point} is writable"
        );
    }
    assert!(mount("/home").read_only, "ProtectHome=yes not applied");
    assert!(
        !mount("/var/lib/warden").read_only,
        "StateDirectory=: the agent cannot write its data directory"
    );
    assert!(
        mount("/tmp").root.contains("systemd-private-") && !mount("/tmp").read_only,
        "PrivateTmp=yes: /tmp is not a private one: {:?}",
        mount("/tmp")
    );

    // Its service, run as nobody: the agent could switch user (SETUID,
    // SETGID) and give it its directory (CHOWN); it serves.
    let web = systemd.processes("demo-service --name web ");
    assert_eq!(web.len(), 1, "one web service: {web:?}");
    let service = proc_status(web[0]);
    assert_sandboxed("the service run as nobody", &service);
    assert!(
        service
            .get("Uid")
            .is_some_and(|ids| ids.split_whitespace().all(|id| id == NOBODY)),
        "the service does not run as nobody: {service:?}"
    );
    assert_eq!(mask(&service, "CapEff"), 0, "nobody holds capabilities");
    let owner = systemd.ok("stat", &["-c", "%u", "/var/lib/warden/resources/web"]);
    assert_eq!(owner, NOBODY, "the service's directory is not its own");
    let answer = systemd.http_get("127.0.0.1:8080");
    assert!(
        answer.contains("web is up"),
        "the service answered {answer:?}"
    );

    // A restart with services run as root: the agent stops and starts
    // under systemd, and a service on port 80 binds it
    // (CAP_NET_BIND_SERVICE), holding the unit's capabilities, no more.
    systemd.ok("cp", &["/etc/warden/as-root.toml", "/etc/warden/node.toml"]);
    systemd.ok("systemctl", &["restart", "warden"]);
    systemd.wait_active();
    assert_eq!(
        systemd.unit("NRestarts"),
        "0",
        "systemd restarted the agent on its own"
    );
    systemd.ok(
        "/usr/bin/warden",
        &[
            "resource",
            "create",
            "web80",
            "--type",
            "process",
            "--group",
            "demo",
            "--prop",
            "program=/usr/bin/warden",
            "--prop",
            "args=demo-service --name web80 --listen 127.0.0.1:80",
        ],
    );
    systemd.wait_online("web80");
    let answer = systemd.http_get("127.0.0.1:80");
    assert!(
        answer.contains("web80 is up"),
        "port 80 answered {answer:?}"
    );
    let web80 = systemd.processes("demo-service --name web80");
    assert_eq!(web80.len(), 1, "one web80 service: {web80:?}");
    let service = proc_status(web80[0]);
    assert_sandboxed("the service run as root", &service);
    assert_eq!(
        mask(&service, "CapEff"),
        unit_capabilities(),
        "a root service holds other capabilities than the unit's"
    );

    // A stop: the agent takes its services offline and exits cleanly.
    systemd.ok("systemctl", &["stop", "warden"]);
    assert_eq!(systemd.unit("ActiveState"), "inactive");
    assert_eq!(
        systemd.unit("Result"),
        "success",
        "{}",
        systemd.diagnostics()
    );
    let left = systemd.processes("demo-service");
    assert!(left.is_empty(), "services left after the stop: {left:?}");
}
