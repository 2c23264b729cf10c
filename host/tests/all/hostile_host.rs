//! A hostile plugin (`plugins/hostile-host`) attacks the agent through the
//! services the host offers it: the programs it starts (their environment,
//! working directory and user), the agent's own files about the resource
//! (checkpoint record, pid record, service log) and the network grant.
//! Every attempt is refused or lands only where the plugin may write, and
//! nothing outside the resource's data directory changes.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::Path;

use crate::common::*;
use warden::monitor::{Monitor, ResourceHandle, ResourceState};
use warden::runtime::{Grants, LaunchGrants, RunAs};

const HOSTILE: &str = env!("WARDEN_PLUGIN_HOSTILE_HOST");

/// A hostile resource online with `grants` and the operator's `props`.
async fn hostile(
    monitor: &mut Monitor,
    name: &str,
    grants: Grants,
    props: &[(&str, &str)],
) -> (ResourceHandle, warden::runtime::ResourceDirs) {
    let mut spec = spec(name, props);
    spec.grants = grants;
    let dirs = spec.dirs.clone();
    (online_resource(monitor, HOSTILE, spec).await, dirs)
}

async fn ask(handle: &ResourceHandle, code: &str, payload: &str) -> Result<String, String> {
    handle.control(code, payload).await.expect("actor runs")
}

fn programs(list: &[&str]) -> Grants {
    Grants {
        allow_programs: list.iter().map(Into::into).collect(),
        ..Grants::default()
    }
}

/// The service log the agent keeps for the resource, once it holds
/// something.
fn service_log(dirs: &warden::runtime::ResourceDirs) -> String {
    let path = dirs.private.join("service.log");
    wait_until("the program's output in service.log", ms(5000), || {
        std::fs::read_to_string(&path)
            .ok()
            .filter(|text| !text.is_empty())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_gets_only_the_environment_the_operator_grants() {
    let mut monitor = Monitor::default();
    let mut grants = programs(&["/usr/bin/env"]);
    grants.launch = LaunchGrants {
        env: vec![("LANG".into(), "C.UTF-8".into())],
        allow_env: vec!["GREETING".into()],
        run_as: None,
    };
    let (handle, dirs) = hostile(&mut monitor, "env", grants, &[]).await;

    // LD_PRELOAD would run a library the plugin wrote into /data as root.
    for name in ["LD_PRELOAD", "LD_LIBRARY_PATH", "PATH"] {
        let err = ask(
            &handle,
            "spawn",
            &format!("/usr/bin/env\n\n\n{name}=/data/x"),
        )
        .await
        .expect_err(&format!("{name} must be refused"));
        assert!(
            err.contains(&format!("environment variable {name:?} is not allowed")),
            "{err}"
        );
    }
    assert!(!dirs.private.join("service.log").exists(), "nothing ran");

    ask(&handle, "spawn", "/usr/bin/env\n\n\nGREETING=hello")
        .await
        .expect("an allowed variable");
    let log = service_log(&dirs);
    let mut lines: Vec<&str> = log.lines().collect();
    lines.sort_unstable();
    // Exactly the operator's variable and the allowed one: nothing of the
    // agent's own environment (this test process has PATH, HOME, CARGO_...).
    assert_eq!(lines, ["GREETING=hello", "LANG=C.UTF-8"], "{log}");
    monitor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_runs_in_the_data_directory_or_beneath_it() {
    let mut monitor = Monitor::default();
    let (handle, dirs) = hostile(&mut monitor, "cwd", programs(&["/usr/bin/pwd"]), &[]).await;
    std::fs::create_dir(dirs.data.join("sub")).expect("a real subdirectory");
    // What a plugin can plant: a link in /data that leads out.
    std::os::unix::fs::symlink("/", dirs.data.join("escape")).expect("link");

    for cwd in [
        "/",
        "/etc",
        "/data/..",
        "../..",
        "escape",
        "/data/escape",
        "/data/sub/../..",
    ] {
        let err = ask(&handle, "spawn", &format!("/usr/bin/pwd\n\n{cwd}\n"))
            .await
            .expect_err(&format!("working directory {cwd:?} must be refused"));
        assert!(err.contains(&format!("working directory {cwd:?}")), "{err}");
    }
    assert!(!dirs.private.join("service.log").exists(), "nothing ran");

    ask(&handle, "spawn", "/usr/bin/pwd\n\n/data/sub\n")
        .await
        .expect("a directory beneath /data");
    let log = service_log(&dirs);
    let expected = dirs.data.join("sub").canonicalize().expect("sub");
    assert_eq!(log.trim(), expected.display().to_string());
    monitor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_runs_as_the_configured_user() {
    let Ok(Some(nobody)) = nix::unistd::User::from_name("nobody") else {
        panic!("this machine has no user nobody");
    };
    let mut monitor = Monitor::default();
    let mut grants = programs(&["/usr/bin/id"]);
    grants.launch.run_as = Some(RunAs {
        user: "nobody".into(),
        uid: nobody.uid.as_raw(),
        gid: nobody.gid.as_raw(),
    });
    let (handle, dirs) = hostile(&mut monitor, "user", grants, &[]).await;
    ask(&handle, "spawn", "/usr/bin/id\n-u\n\n")
        .await
        .expect("id starts");
    assert_eq!(service_log(&dirs).trim(), nobody.uid.as_raw().to_string());
    // The data directory is the service's to work in.
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(&dirs.data).expect("data dir");
    assert_eq!(meta.uid(), nobody.uid.as_raw());
    monitor.shutdown().await;
}

/// Plant, in the plugin's /data, a link at every name under which an
/// earlier agent kept its own files, each to a victim file outside.
fn plant_links(data: &Path, victims: &Path) -> Vec<std::path::PathBuf> {
    std::fs::create_dir_all(victims).expect("victims dir");
    let mut planted = Vec::new();
    for name in [
        ".warden-checkpoint.json",
        ".warden-checkpoint.json.tmp",
        ".warden-pid",
        "service.log",
    ] {
        let victim = victims.join(name.trim_start_matches('.'));
        std::fs::write(&victim, "untouched").expect("victim");
        std::os::unix::fs::symlink(&victim, data.join(name)).expect("link");
        planted.push(victim);
    }
    planted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_files_are_out_of_the_plugins_reach() {
    let mut monitor = Monitor::default();
    let (handle, dirs) = hostile(&mut monitor, "files", programs(&["/usr/bin/sleep"]), &[]).await;
    let victims = dirs.data.with_extension("victims");
    let planted = plant_links(&dirs.data, &victims);

    assert_eq!(
        ask(&handle, "checkpoint-set", "k=v").await.as_deref(),
        Ok("stored")
    );
    ask(&handle, "spawn", "/usr/bin/sleep\n600\n\n")
        .await
        .expect("sleep starts");
    ask(&handle, "stop", "").await.expect("sleep stops");
    for victim in &planted {
        assert_eq!(
            std::fs::read_to_string(victim).expect("victim"),
            "untouched",
            "{} was written through a link",
            victim.display()
        );
    }
    // The plugin cannot read or replace the agent's files either.
    for path in [
        "/data/../private/.warden-checkpoint.json".to_string(),
        format!("{}/.warden-checkpoint.json", dirs.private.display()),
    ] {
        assert!(ask(&handle, "read-file", &path).await.is_err(), "{path}");
    }
    assert_eq!(
        ask(&handle, "checkpoint-get", "k").await.as_deref(),
        Ok("v")
    );
    monitor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_pid_record_does_not_make_the_agent_kill_or_adopt() {
    // A process that is not the resource's: its own process group.
    let mut foreign = std::process::Command::new("/usr/bin/sleep")
        .arg("600")
        .process_group(0)
        .spawn()
        .expect("a foreign sleep");
    let pid = foreign.id();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let started = stat[stat.rfind(')').expect(")") + 2..]
        .split_whitespace()
        .nth(19)
        .expect("start time")
        .to_string();

    let mut monitor = Monitor::default();
    let mut spec = spec("forged", &[]);
    spec.grants = programs(&["/usr/bin/sleep"]);
    // The forgery as a plugin would write it, in /data, before the first
    // spawn: "that process is ours, adopt it (or kill it)".
    std::fs::create_dir_all(&spec.dirs.data).expect("data dir");
    std::fs::write(
        spec.dirs.data.join(".warden-pid"),
        format!("{pid} {started} /usr/bin/sleep\n"),
    )
    .expect("forged record");
    let handle = monitor
        .add(load(HOSTILE).await, spec)
        .await
        .expect("valid spec");
    handle.online().expect("actor runs");
    wait_state(&handle, ResourceState::Online, ms(10_000)).await;
    let answer = ask(&handle, "spawn", "/usr/bin/sleep\n600\n\n")
        .await
        .expect("sleep starts");
    assert_ne!(
        answer,
        format!("started as pid {pid}"),
        "the forgery was adopted"
    );
    ask(&handle, "stop", "").await.expect("stops its own sleep");
    monitor.shutdown().await;
    assert!(
        foreign.try_wait().expect("wait").is_none(),
        "the agent killed a process it did not start"
    );
    let _ = foreign.kill();
    let _ = foreign.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_addresses_the_operator_configured_grant_a_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("listener");
    let address = listener.local_addr().expect("address").to_string();
    let mut monitor = Monitor::default();

    // The plugin's own default (127.0.0.1:9): denied by the sandbox, not
    // refused by a closed port.
    let (defaults, _) = hostile(&mut monitor, "defaults", Grants::default(), &[]).await;
    let err = ask(&defaults, "connect", "target").await.unwrap_err();
    assert!(!err.contains("refused"), "the connect was attempted: {err}");
    // A default name is not even looked up by the agent (the resource
    // opened although nobody granted it), and the plugin may not either.
    assert!(ask(&defaults, "connect", "named").await.is_err());

    // The operator's value grants.
    let (configured, _) = hostile(
        &mut monitor,
        "configured",
        Grants::default(),
        &[("target", &address)],
    )
    .await;
    assert_eq!(
        ask(&configured, "connect", "target").await,
        Ok(format!("connected to {address}"))
    );
    monitor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_cannot_hoard_descriptors() {
    let mut monitor = Monitor::default();
    let (neighbour, _) = hostile(&mut monitor, "neighbour", Grants::default(), &[]).await;
    let (hoarder, _) = hostile(&mut monitor, "hoarder", Grants::default(), &[]).await;
    assert_eq!(
        ask(&hoarder, "hoard-files", "100").await.as_deref(),
        Ok("holding 100 files")
    );
    // Past its share the call fails (the store, with every descriptor it
    // held, is thrown away) ...
    assert!(ask(&hoarder, "hoard-files", "2000").await.is_err());
    // ... and the neighbour's host services still work.
    assert_eq!(
        ask(&neighbour, "checkpoint-set", "k=v").await.as_deref(),
        Ok("stored")
    );
    // The hoarder gets a fresh instance with its share back.
    assert_eq!(
        ask(&hoarder, "hoard-files", "10").await.as_deref(),
        Ok("holding 10 files")
    );
    monitor.shutdown().await;
}

/// The `network` import, abused: without a grant every call is refused
/// naming the section; with one, an interface or address outside it, and
/// megabytes where a name or address belongs, are refused with a bounded
/// answer. The granted interface does not exist on this machine, so
/// nothing here can configure the machine's own network.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_network_import_refuses_what_is_not_granted_and_bounds_what_it_is_given() {
    let mut monitor = Monitor::new(64 << 20);
    let (bare, _) = hostile(&mut monitor, "bare", Grants::default(), &[]).await;
    let refused = ask(&bare, "net-add", "198.18.0.9 24 eth0")
        .await
        .unwrap_err();
    assert!(
        refused.contains("no [plugins.") && refused.contains(".ip] section"),
        "{refused}"
    );
    let refused = ask(&bare, "net-register", "evs1 198.18.0.9")
        .await
        .unwrap_err();
    assert!(refused.contains(".dns] section"), "{refused}");

    let grant = warden::virtual_ip::IpGrant {
        interfaces: vec!["wl-none0".to_string()],
        ranges: vec!["198.18.255.0/24".to_string()],
    }
    .resolve("plugins.hostile-host.ip")
    .expect("grant");
    let granted = Grants {
        ip: Some(std::sync::Arc::new(grant)),
        ..Grants::default()
    };
    let (held, _) = hostile(&mut monitor, "granted", granted, &[]).await;
    let huge = "x".repeat(4 << 20);
    for (payload, expected) in [
        ("198.18.0.9 24 wl-none0".to_string(), "outside the grant"),
        ("198.18.255.9 24 eth0".to_string(), "is not granted"),
        ("198.18.255.9 16 wl-none0".to_string(), "wider subnet"),
        ("198.18.255.9 33 wl-none0".to_string(), "33"),
        ("198.18.255.9 24 wl-none0".to_string(), "wl-none0"),
        (format!("{huge} 24 wl-none0"), "is not an IP address"),
        (
            format!("198.18.255.9 24 {huge}"),
            "an interface name of 4194304 bytes",
        ),
    ] {
        let answer = ask(&held, "net-add", &payload).await.unwrap_err();
        assert!(
            answer.contains(expected),
            "{}: {answer}",
            &payload[..payload.len().min(40)]
        );
        assert!(
            answer.len() < 64 << 10,
            "an answer of {} bytes",
            answer.len()
        );
    }
    assert_eq!(held.status().state, ResourceState::Online);
    monitor.shutdown().await;
}
