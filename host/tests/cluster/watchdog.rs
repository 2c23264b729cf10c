//! The watchdog layer of fencing (`[cluster] watchdog_device`), with the
//! real agent, its real fence guard and a real etcd.
//!
//! Neither this machine nor CI has a watchdog device (containers: no
//! `/dev/watchdog`, no module loading), so these tests use a stand-in that
//! answers the watchdog's file interface through the kernel
//! (`common::fake_watchdog`: a FUSE file, ioctls included) and records
//! when it would have reset the node. `a_real_watchdog_device_arms_and_disarms`
//! uses `/dev/watchdog` itself, and says plainly that it skips when there
//! is none (docs/cluster.md says how to test on real hardware).

use crate::common;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::agent_process::{AgentProcess, WARDEN};
// One etcd and its agents at a time in this binary (`one_at_a_time`): the
// frozen-owner test judges the device's firing against etcd's expiry, and
// a 2-core machine running every test's agents at once would only blur both.
use crate::common::cluster::{one_at_a_time, start_single_etcd};
use crate::common::fake_watchdog::{Behaviour, FakeWatchdog, Op, unix_ms};
use crate::common::wait_until;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const MINUTE: Duration = Duration::from_secs(60);
/// The lease TTL of these tests: the watchdog's timeout is a third of it,
/// 2 s; the guard feeds until at most 7/12 of it (3.5 s) after the last
/// renewal sent, so the device fires by 5.5 s, before etcd can expire the
/// lease at 6 s.
const TTL_S: u64 = 6;

const NODES: [&str; 2] = ["n1", "n2"];

/// A one-node cluster configuration (without `[api]`, which
/// `AgentProcess` adds) whose group `web` runs a demo service, if `group`.
fn config(etcd: &[SocketAddr], device: &Path, group: bool) -> String {
    let text = node_config(etcd, device, "n1", &["n1"]);
    if group { text + &group_config() } else { text }
}

/// Node `name`'s configuration, in a cluster of `nodes`, without groups.
fn node_config(etcd: &[SocketAddr], device: &Path, name: &str, nodes: &[&str]) -> String {
    let endpoints = etcd
        .iter()
        .map(|c| format!("\"http://{c}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let nodes = nodes
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"
[node]
name = "{name}"
data_dir = "data"

[cluster]
name = "test"
endpoints = [{endpoints}]
nodes = [{nodes}]
lease_ttl_s = {TTL_S}
watchdog_device = "{device}"

[plugins.process]
allow_programs = ["{WARDEN}"]
"#,
        device = device.display()
    )
}

fn group_config() -> String {
    format!(
        r#"
[[group]]
name = "web"

[[resource]]
name = "web-service"
type = "process"
group = "web"
properties = {{ program = "{WARDEN}", args = "demo-service --name web --listen {listen}", stop-grace-ms = 1000 }}
"#,
        listen = common::free_port()
    )
}

/// One agent on a single-member etcd, its group Online, its guard feeding
/// the stand-in device: what most tests here start from. Bound in this
/// order, the parts drop agent first, the device and the lock last.
struct Owning {
    _one: crate::common::cluster::EtcdTurn,
    device: FakeWatchdog,
    dir: tempfile::TempDir,
    etcd: common::cluster::Etcd,
    agent: AgentProcess,
}

fn owning_with_device_fed() -> Owning {
    let _one = one_at_a_time();
    let device = FakeWatchdog::mount(Behaviour::default());
    let dir = tempfile::tempdir().expect("tempdir");
    let etcd = start_single_etcd(dir.path());
    let agent = AgentProcess::start(dir.path(), &config(&etcd.clients, &device.path, true));
    online(&agent);
    wait_until("the guard to arm and feed the device", MINUTE, || {
        (device.is_open() && device.feeds() > 3).then_some(())
    });
    Owning {
        _one,
        device,
        dir,
        etcd,
        agent,
    }
}

fn online(agent: &AgentProcess) {
    wait_until(
        &format!("web-service online; log:\n{}", agent.log()),
        MINUTE,
        || {
            agent
                .resource("web-service")
                .filter(|r| r["state"] == "Online")
        },
    );
}

/// Whether `n1`'s member key (on its lease) is in etcd.
fn member_key_present(
    runtime: &tokio::runtime::Runtime,
    etcd: &warden::cluster::etcd::Etcd,
) -> bool {
    let key = warden::cluster::Keys::new("test").member("n1");
    runtime.block_on(async {
        let (_, mut client) = etcd.preferred();
        client
            .get(key, None)
            .await
            .map(|answer| !answer.kvs().is_empty())
            .unwrap_or(true)
    })
}

/// The owning agent frozen (SIGSTOP): its guard stops feeding the device
/// once its vouch runs out, and the device fires (a real one resets the
/// node) while the node's lease still holds, before any other node could
/// take its groups. Judged from the device's own record against etcd's.
#[test]
fn a_frozen_agent_s_guard_stops_feeding_and_the_device_fires_before_the_lease_can_expire() {
    if common::fake_watchdog::unavailable(
        "a_frozen_agent_s_guard_stops_feeding_and_the_device_fires_before_the_lease_can_expire",
    ) {
        return;
    }
    let Owning {
        _one,
        device,
        dir: _dir,
        etcd,
        agent,
    } = owning_with_device_fed();
    let armed = device
        .seen()
        .into_iter()
        .find_map(|s| match s.op {
            Op::SetTimeout { asked, set } => Some((asked, set)),
            _ => None,
        })
        .expect("a timeout set");
    assert_eq!(armed, (2, 2), "a third of the TTL");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let endpoints: Vec<String> = etcd.clients.iter().map(|c| format!("http://{c}")).collect();
    let client = runtime
        .block_on(warden::cluster::etcd::Etcd::connect(&endpoints))
        .expect("connects");
    assert!(member_key_present(&runtime, &client));

    kill(Pid::from_raw(agent.pid()), Signal::SIGSTOP).expect("SIGSTOP");
    let frozen_at = unix_ms();
    // Until the key goes (the lease expired): when did the device fire?
    let lease_gone_at = wait_until("the lease to expire", MINUTE, || {
        (!member_key_present(&runtime, &client)).then(unix_ms)
    });
    let _ = kill(Pid::from_raw(agent.pid()), Signal::SIGCONT);
    let seen = device.seen();
    let fired_at = device.fired_at().unwrap_or_else(|| {
        panic!(
            "the device never fired although the agent was frozen from {frozen_at} until its \
             lease expired at {lease_gone_at}: {seen:?}; log:\n{}",
            agent.log()
        )
    });
    let last_feed = seen
        .iter()
        .filter(|s| s.op == Op::Feed)
        .map(|s| s.at_ms)
        .max()
        .expect("feeds");
    assert!(
        fired_at < lease_gone_at,
        "the device fired at {fired_at}, after the lease expired at {lease_gone_at}"
    );
    assert!(
        last_feed < fired_at && last_feed > frozen_at,
        "fed until the vouch ran out (frozen at {frozen_at}, last feed {last_feed}, fired \
         {fired_at})"
    );
    assert!(
        agent.log().contains("the watchdog") && agent.log().contains("is no longer fed"),
        "the guard says it stopped feeding; log:\n{}",
        agent.log()
    );
    eprintln!(
        "frozen at 0 ms: last feed {} ms, device fired {} ms, lease gone {} ms",
        last_feed - frozen_at,
        fired_at - frozen_at,
        lease_gone_at - frozen_at
    );
}

/// The device is armed only while the node owns a group or runs a
/// service. Two nodes, each with its own device: n2, holding nothing, never
/// arms its device (its start-up check aside) while its lease is renewed;
/// n1 runs the group with its device armed; once the group has moved to
/// n2, n1 holds nothing and its guard disarms its device (magic close),
/// and n2's is armed.
#[test]
fn an_agent_holding_no_group_does_not_keep_the_device_armed() {
    if common::fake_watchdog::unavailable(
        "an_agent_holding_no_group_does_not_keep_the_device_armed",
    ) {
        return;
    }
    let _one = one_at_a_time();
    let devices = [
        FakeWatchdog::mount(Behaviour::default()),
        FakeWatchdog::mount(Behaviour::default()),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let etcd = start_single_etcd(dir.path());
    let group = group_config();
    let agents: Vec<AgentProcess> = (0..2)
        .map(|i| {
            let node_dir = dir.path().join(NODES[i]);
            std::fs::create_dir_all(&node_dir).expect("node dir");
            let text = node_config(&etcd.clients, &devices[i].path, NODES[i], &NODES) + &group;
            AgentProcess::start(&node_dir, &text)
        })
        .collect();
    online(&agents[0]);
    wait_until("n1's guard to arm its device", MINUTE, || {
        (devices[0].is_open() && devices[0].feeds() > 2).then_some(())
    });
    // n2 joined and renews its lease (every TTL/6 = 1 s) meanwhile.
    std::thread::sleep(Duration::from_secs(3));
    let checked = devices[1].seen();
    assert!(
        !devices[1].is_open() && !devices[1].is_running(),
        "n2, holding nothing, armed its device: {checked:?}"
    );
    assert_eq!(
        checked.iter().filter(|s| s.op == Op::Open).count(),
        1,
        "n2's device was opened only by the start-up check: {checked:?}"
    );
    assert_eq!(
        checked.last().map(|s| &s.op),
        Some(&Op::Close { stopped: true })
    );

    wait_until("n2 to join", MINUTE, || {
        agents[1].log().contains("joined the cluster").then_some(())
    });
    agents[0].ok(&["group", "move", "web", "--to", "n2"]);
    online(&agents[1]);
    wait_until("n1's device to be disarmed", MINUTE, || {
        (!devices[0].is_open() && !devices[0].is_running()).then_some(())
    });
    wait_until("n2's guard to arm its device", MINUTE, || {
        (devices[1].is_open() && devices[1].is_running()).then_some(())
    });
    let seen = devices[0].seen();
    assert!(
        seen.iter()
            .filter(|s| matches!(s.op, Op::Close { .. }))
            .all(|s| s.op == Op::Close { stopped: true }),
        "every close of n1's device was a magic close: {seen:?}"
    );
    assert!(
        agents[0]
            .log()
            .contains("disarmed: this node holds nothing"),
        "{}",
        agents[0].log()
    );
    for device in &devices {
        assert!(device.fired_at().is_none(), "{:?}", device.seen());
    }
}

/// etcd lost (its only member killed): the agent, alive, cannot renew,
/// fences itself at half the TTL and terminates its service; once the
/// service is gone and the node owns nothing the guard disarms the device
/// (its grace still runs, though the lease is no longer vouched for), so a
/// node that stopped its services in time is not reset.
#[test]
fn a_live_agent_cut_off_from_etcd_stops_its_services_and_is_not_reset() {
    if common::fake_watchdog::unavailable(
        "a_live_agent_cut_off_from_etcd_stops_its_services_and_is_not_reset",
    ) {
        return;
    }
    let Owning {
        _one,
        device,
        dir,
        mut etcd,
        agent,
    } = owning_with_device_fed();
    etcd.kill_member(0);
    let cut_at = unix_ms();
    wait_until(
        &format!(
            "the device to be disarmed or to fire; log in {}",
            dir.path().display()
        ),
        MINUTE,
        || (!device.is_open() || device.fired_at().is_some()).then_some(()),
    );
    // Past the device's timeout: it stays quiet.
    std::thread::sleep(Duration::from_secs(3));
    let seen = device.seen();
    assert!(
        device.fired_at().is_none(),
        "the device fired although the agent stopped its service: {seen:?}; log:\n{}",
        agent.log()
    );
    assert_eq!(
        seen.last().map(|s| &s.op),
        Some(&Op::Close { stopped: true }),
        "{seen:?}"
    );
    assert!(agent.log().contains("fenced"), "{}", agent.log());
    let disarmed_at = seen.last().map(|s| s.at_ms).unwrap_or_default();
    eprintln!(
        "etcd killed at 0 ms: device disarmed at {} ms",
        disarmed_at.saturating_sub(cut_at)
    );
}

/// SIGTERM to an agent whose group runs: it stops its services, says
/// goodbye to its guard, and the guard disarms the device (magic close);
/// it does not fire afterwards.
#[test]
fn a_clean_shutdown_disarms_the_device() {
    if common::fake_watchdog::unavailable("a_clean_shutdown_disarms_the_device") {
        return;
    }
    let Owning {
        _one,
        device,
        dir,
        etcd: _etcd,
        agent,
    } = owning_with_device_fed();
    let log_of = dir.path().join("agent.log");
    agent.stop();
    let seen = device.seen();
    assert_eq!(
        seen.last().map(|s| &s.op),
        Some(&Op::Close { stopped: true }),
        "the last thing the device saw is the magic close: {seen:?}"
    );
    // Past the device's timeout: it stays quiet.
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        device.fired_at().is_none() && !device.is_running(),
        "{:?}; log:\n{}",
        device.seen(),
        std::fs::read_to_string(log_of).unwrap_or_default()
    );
}

/// Run an agent that must refuse to start; its stderr.
fn refused(config: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("node.toml");
    std::fs::write(&path, config).expect("config");
    let out = Command::new(WARDEN)
        .args(["agent", "--config"])
        .arg(&path)
        .output()
        .expect("run the agent");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "the agent started: {stderr}");
    stderr
}

/// A configured watchdog the agent cannot arm stops it at start, naming
/// the device and what is wrong: no such device, not a device (a regular
/// file, /dev/null), busy, permission denied, a timeout it cannot do; and
/// a watchdog without the fence guard or with a TTL too short.
#[test]
fn a_watchdog_the_agent_cannot_arm_stops_it_at_start() {
    // Nothing here needs etcd: the device is checked before joining.
    let etcd = [common::free_port()];
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no-such-watchdog");
    let regular = dir.path().join("regular-file");
    std::fs::write(&regular, "untouched").expect("write");
    let cases: Vec<(std::path::PathBuf, &str)> = vec![
        (missing.clone(), "no such device"),
        (regular.clone(), "not a watchdog device"),
        ("/dev/null".into(), "not a watchdog device"),
    ];
    for (path, why) in cases {
        let err = refused(&config(&etcd, &path, true));
        assert!(
            err.contains(&path.display().to_string()) && err.contains(why),
            "{}: {err}",
            path.display()
        );
    }
    assert_eq!(
        std::fs::read_to_string(&regular).expect("read"),
        "untouched",
        "nothing written to a file that is not a watchdog"
    );

    if common::fake_watchdog::unavailable(
        "a_watchdog_the_agent_cannot_arm_stops_it_at_start (the rest)",
    ) {
        return;
    }
    let device = FakeWatchdog::mount(Behaviour::default());
    {
        let _daemon = device.hold_open();
        let err = refused(&config(&etcd, &device.path, true));
        assert!(err.contains("busy"), "{err}");
    }
    let slow = FakeWatchdog::mount(Behaviour {
        min_timeout_s: 60,
        ..Behaviour::default()
    });
    let err = refused(&config(&etcd, &slow.path, true));
    assert!(
        err.contains("asked for a timeout of 2 s, it set 60 s")
            && err.contains("lease_ttl_s of at least 180"),
        "{err}"
    );
    assert_eq!(
        slow.seen().last().map(|s| &s.op),
        Some(&Op::Close { stopped: true }),
        "the refused device is disarmed again: {:?}",
        slow.seen()
    );
    let denied = FakeWatchdog::mount(Behaviour {
        deny: true,
        ..Behaviour::default()
    });
    let err = refused(&config(&etcd, &denied.path, true));
    assert!(err.contains("permission denied"), "{err}");

    let text = config(&etcd, &device.path, true);
    let err = refused(&text.replace("watchdog_device", "fence_guard = false\nwatchdog_device"));
    assert!(err.contains("needs fence_guard = true"), "{err}");
    let err = refused(&text.replace(&format!("lease_ttl_s = {TTL_S}"), "lease_ttl_s = 2"));
    assert!(err.contains("needs lease_ttl_s of at least 3"), "{err}");
}

/// The real device, where there is one: armed with a short timeout, fed,
/// disarmed by the magic close. Opt-in (`WARDEN_TEST_REAL_WATCHDOG=1`),
/// since a mistake resets the machine: use softdog with
/// `soft_noboot=1` (docs/cluster.md).
#[test]
fn a_real_watchdog_device_arms_and_disarms() {
    let device = Path::new("/dev/watchdog");
    if !device.exists() || std::env::var_os("WARDEN_TEST_REAL_WATCHDOG").is_none() {
        eprintln!(
            "SKIPPED: a_real_watchdog_device_arms_and_disarms needs /dev/watchdog (present: {}) \
             and WARDEN_TEST_REAL_WATCHDOG=1; this machine's tests use the stand-in device",
            device.exists()
        );
        return;
    }
    let mut armed =
        warden::fence_guard::watchdog::Armed::arm(device, 5).expect("arms /dev/watchdog");
    assert!(armed.timeout() <= Duration::from_secs(5));
    for _ in 0..4 {
        std::thread::sleep(Duration::from_secs(1));
        armed.feed().expect("feeds");
    }
    armed.disarm().expect("the magic close");
}
