//! The agent raises its open-file limit for its resources: the soft limit
//! to the hard one always, the hard one too when the resources need more
//! and the agent may (CAP_SYS_RESOURCE); without the capability it says
//! which setting to raise. Each live resource holds a file (its /data
//! directory): 50 000 resources failed at about 19 000 on "Too many open
//! files" when the agent stopped at the container's hard limit of 20 000.
//!
//! The agent is started with a hard limit lowered below what its resources
//! need (lowering needs no privilege), so the test is the same on any
//! machine; with the capability dropped from the child's bounding set for
//! the refusal.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::Duration;

use crate::common::agent_process::{AgentProcess, WARDEN};
use crate::common::wait_until;

const CHAOS: &str = env!("WARDEN_PLUGIN_CHAOS");
/// Resources of the node: they need about 1 000 + 100 files.
const RESOURCES: usize = 100;
/// The hard limit the agent is started with: short of that.
const LOWERED: u64 = 1_050;
/// Linux's CAP_SYS_RESOURCE.
const CAP_SYS_RESOURCE: u32 = 24;

fn config(dir: &Path) -> String {
    std::fs::create_dir_all(dir.join("plugins")).expect("plugins dir");
    std::fs::copy(CHAOS, dir.join("plugins/chaos.wasm")).expect("copy chaos");
    let mut config =
        "[node]\nname = \"n\"\ndata_dir = \"data\"\nplugins_dir = \"plugins\"\n".to_string();
    for i in 0..RESOURCES {
        config.push_str(&format!(
            "[[resource]]\nname = \"r{i}\"\ntype = \"chaos\"\nis_alive_interval_ms = 60000\n\
             looks_alive_interval_ms = 0\n"
        ));
    }
    config
}

/// Whether this process has CAP_SYS_RESOURCE in its effective set.
fn may_raise_hard_limits() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_SYS_RESOURCE) != 0)
}

/// `Max open files` of `pid`: (soft, hard).
fn open_file_limit(pid: i32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files line");
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (numbers[0], numbers[1])
}

/// Start the agent with its open-file limit lowered to `LOWERED` (soft
/// and hard), and CAP_SYS_RESOURCE dropped from what it can have when
/// `drop_capability`.
fn start(dir: &Path, drop_capability: bool) -> AgentProcess {
    let config = config(dir);
    AgentProcess::start_command(Path::new(WARDEN), dir, &config, |command| {
        // SAFETY: only async-signal-safe calls (setrlimit, prctl) between
        // fork and exec.
        unsafe {
            command.pre_exec(move || {
                let limit = libc::rlimit {
                    rlim_cur: LOWERED,
                    rlim_max: LOWERED,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if drop_capability
                    && libc::prctl(
                        libc::PR_CAPBSET_DROP,
                        CAP_SYS_RESOURCE as libc::c_ulong,
                        0,
                        0,
                        0,
                    ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    })
}

fn all_online(agent: &AgentProcess) {
    wait_until("every resource Online", Duration::from_secs(120), || {
        let status: serde_json::Value =
            serde_json::from_str(&agent.ok(&["status", "--json"])).ok()?;
        let online = status["groups"]
            .as_array()?
            .iter()
            .flat_map(|g| g["resources"].as_array().cloned().unwrap_or_default())
            .filter(|r| r["state"] == "Online")
            .count();
        (online == RESOURCES).then_some(())
    });
}

#[test]
fn a_privileged_agent_raises_its_hard_open_file_limit_to_what_its_resources_need() {
    let dir = tempfile::tempdir().expect("temp dir");
    let agent = start(dir.path(), false);
    all_online(&agent);
    let (soft, hard) = open_file_limit(agent.pid());
    let log = agent.log();
    if may_raise_hard_limits() {
        // 1 100 needed: the next power of two.
        assert_eq!((soft, hard), (2048, 2048), "{log}");
        assert!(
            log.contains(&format!(
                "raised the hard open-file limit (RLIMIT_NOFILE) from {LOWERED} to 2048: \
                 {RESOURCES} resources need about 1100"
            )),
            "not said in the log:\n{log}"
        );
        assert!(!log.contains("Too many open files"), "{log}");
    } else {
        // Without the capability this test runs as the refusal below.
        assert_eq!((soft, hard), (LOWERED, LOWERED), "{log}");
        assert!(
            log.contains("could not raise the hard open-file limit"),
            "{log}"
        );
    }
    agent.stop();
}

#[test]
fn an_agent_that_may_not_raise_its_hard_limit_says_which_setting_to_raise() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Dropping a capability from the bounding set takes CAP_SETPCAP, which
    // root has; without it the agent has no CAP_SYS_RESOURCE anyway.
    let agent = start(dir.path(), may_raise_hard_limits());
    all_online(&agent);
    assert_eq!(open_file_limit(agent.pid()), (LOWERED, LOWERED));
    let log = agent.log();
    assert!(
        log.contains(&format!(
            "could not raise the hard open-file limit (RLIMIT_NOFILE) from {LOWERED} to 2048 \
             for {RESOURCES} resources"
        )),
        "no refusal in the log:\n{log}"
    );
    assert!(log.contains("LimitNOFILE=2048"), "{log}");
    // And the shortfall: which resources will fail.
    assert!(
        log.contains(&format!("{RESOURCES} resources need about 1100 open files")),
        "no shortfall in the log:\n{log}"
    );
    agent.stop();
}
