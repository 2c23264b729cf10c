//! Fence devices as plugins: the built-in `redfish` fence type against a
//! real Redfish emulator (sushy-tools' fake systems driver,
//! `common/redfish.rs`), driven through `warden fence`, as an operator
//! would; a BMC that is down, unknown systems, hostile answers (endless,
//! huge, not JSON, silent) and bad configurations, each refused naming what
//! is wrong.

use crate::common;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::redfish::{Emulator, system_id};
use crate::common::{free_port, wait_until};

const WARDEN: &str = env!("CARGO_BIN_EXE_warden");

/// An agent configuration naming one fence device; `properties` and
/// `targets` are TOML inline tables' contents.
fn config(dir: &Path, device: &str) -> PathBuf {
    let path = dir.join("agent.toml");
    std::fs::write(
        &path,
        format!(
            "[node]\nname = \"n1\"\ndata_dir = \"data\"\n\n\
             [cluster]\nname = \"test\"\nendpoints = [\"http://127.0.0.1:9\"]\n\
             nodes = [\"n1\", \"n2\"]\n\n\
             [[cluster.fence_device]]\n{device}\n"
        ),
    )
    .expect("write the configuration");
    path
}

/// A device of type redfish at `address`, `n1` and `n2` its systems.
fn redfish_device(address: &str, extra: &str) -> String {
    format!(
        "name = \"bmc\"\ntype = \"redfish\"\n\
         properties = {{ address = \"{address}\"{extra} }}\n\
         targets = {{ n1 = \"{}\", n2 = \"{}\" }}",
        system_id("n1"),
        system_id("n2")
    )
}

/// `warden fence ARGS --config CONFIG`, which must end within 60 s.
fn fence(config: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(WARDEN)
        .arg("fence")
        .args(args)
        .arg("--config")
        .arg(config)
        .current_dir(config.parent().expect("a directory"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run warden fence");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("warden fence {args:?} did not end within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("its output")
}

fn ok(config: &Path, args: &[&str]) -> String {
    let out = fence(config, args);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "warden fence {args:?} failed: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn refused(config: &Path, args: &[&str]) -> String {
    let out = fence(config, args);
    assert!(
        !out.status.success(),
        "warden fence {args:?} succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn redfish_powers_systems_of_the_emulator_off_and_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let emulator = Emulator::start(&dir.path().join("emulator"), &["n1", "n2"], None);
    let config = config(
        dir.path(),
        &redfish_device(&emulator.address.to_string(), ""),
    );

    assert!(ok(&config, &["status", "n1"]).ends_with(": on\n"));
    let off = ok(&config, &["off", "n1", "--wait"]);
    assert!(off.contains("off, confirmed"), "{off}");
    assert_eq!(emulator.power_state("n1").as_deref(), Some("Off"));
    assert!(ok(&config, &["status", "n1"]).ends_with(": off\n"));
    // The other system is untouched.
    assert_eq!(emulator.power_state("n2").as_deref(), Some("On"));
    // Off is idempotent: asked again of a system that is off, it succeeds.
    ok(&config, &["off", "n1", "--wait"]);

    assert!(ok(&config, &["on", "n1"]).contains("on asked"));
    wait_until("n1 to come on", Duration::from_secs(20), || {
        ok(&config, &["status", "n1"])
            .ends_with(": on\n")
            .then_some(())
    });
    assert!(ok(&config, &["reboot", "n2"]).contains("reboot asked"));
    // A restart goes through off and comes back on.
    wait_until(
        "n2 back on after the reboot",
        Duration::from_secs(20),
        || (emulator.power_state("n2").as_deref() == Some("On")).then_some(()),
    );
    let reset = format!(
        "POST /redfish/v1/Systems/{}/Actions/ComputerSystem.Reset",
        system_id("n2")
    );
    assert!(
        emulator.log_text().contains(&reset),
        "the emulator saw no reset of n2:\n{}",
        emulator.log_text()
    );
}

#[test]
fn unknown_systems_and_a_device_that_is_down_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut emulator = Emulator::start(&dir.path().join("emulator"), &["n1"], None);
    let config = config(
        dir.path(),
        &redfish_device(&emulator.address.to_string(), ""),
    );
    // n2's system is not on this emulator.
    let err = refused(&config, &["off", "n2"]);
    assert!(err.contains("no system \"system-n2\""), "{err}");
    assert!(err.contains("404"), "{err}");
    // A node no device fences.
    let err = refused(&config, &["status", "n3"]);
    assert!(
        err.contains("no [[cluster.fence_device]] names node \"n3\""),
        "{err}"
    );

    emulator.stop();
    let err = refused(&config, &["status", "n1"]);
    assert!(
        err.contains("fence device bmc (redfish), status of system-n1"),
        "{err}"
    );
    assert!(
        err.contains(&format!("cannot connect to {}", emulator.address)),
        "{err}"
    );
}

/// A BMC that answers each connection with `answer`, then holds it open
/// (`hold`) or writes `forever` until the client goes.
fn hostile_bmc(answer: &'static [u8], forever: Option<&'static [u8]>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request);
                if stream.write_all(answer).is_err() {
                    return;
                }
                match forever {
                    Some(more) => while stream.write_all(more).is_ok() {},
                    None => std::thread::sleep(Duration::from_secs(120)),
                }
            });
        }
    });
    address
}

#[test]
fn hostile_answers_are_cut_off_and_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: [(&str, SocketAddr, &str); 5] = [
        (
            "an endless body",
            hostile_bmc(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n",
                Some(&[b'x'; 8192]),
            ),
            "longer than",
        ),
        (
            "a huge announced body",
            hostile_bmc(
                b"HTTP/1.1 200 OK\r\nContent-Length: 999999999999\r\n\r\n{",
                None,
            ),
            "would be 999999999999 bytes",
        ),
        (
            "an endless head",
            hostile_bmc(
                b"HTTP/1.1 200 OK\r\n",
                Some(b"X-Flood: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"),
            ),
            "head is longer than",
        ),
        (
            "not JSON",
            hostile_bmc(
                b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n<html></html>",
                None,
            ),
            "not JSON",
        ),
        (
            "silence",
            hostile_bmc(b"", None),
            "timed out waiting for the answer's head",
        ),
    ];
    for (what, address, says) in cases {
        let config = config(
            dir.path(),
            &redfish_device(&address.to_string(), ", timeout-ms = \"1500\""),
        );
        let err = refused(&config, &["status", "n1"]);
        assert!(err.contains(says), "{what}: expected {says:?} in: {err}");
        assert!(err.contains("status of system-n1"), "{what}: {err}");
    }
}

#[test]
fn bad_fence_configurations_name_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let address = free_port().to_string();
    let cases = [
        (
            "name = \"bmc\"\ntype = \"ipmi\"\nproperties = {}\ntargets = { n1 = \"1\" }"
                .to_string(),
            "[[cluster.fence_device]] \"bmc\": type = \"ipmi\": no such fence type (known: redfish)",
        ),
        (
            redfish_device(&address, ", colour = \"red\""),
            "properties.colour: not a property of fence type redfish",
        ),
        (
            redfish_device(&address, ", timeout-ms = \"soon\""),
            "properties.timeout-ms = \"soon\" is not a valid",
        ),
        (
            redfish_device(&address, ", timeout-ms = \"0\""),
            "properties.timeout-ms: is 0",
        ),
        (
            redfish_device(&address, ", password = \"x\""),
            "properties.username: is empty while a password is set",
        ),
        (redfish_device("bmc.example:443", ""), "properties.address"),
        (
            "name = \"bmc\"\ntype = \"redfish\"\nproperties = {}\ntargets = { n1 = \"1\" }"
                .to_string(),
            "properties.address: required",
        ),
        (
            format!(
                "name = \"bmc\"\ntype = \"redfish\"\nproperties = {{ address = \"{address}\" }}\ntargets = {{ n9 = \"1\" }}"
            ),
            "targets.n9: \"n9\" is not one of [cluster] nodes",
        ),
    ];
    for (device, says) in cases {
        let config = config(dir.path(), &device);
        let err = refused(&config, &["status", "n1"]);
        assert!(err.contains(says), "expected {says:?} in: {err}");
        assert!(err.contains("\"bmc\""), "the device is not named: {err}");
    }
}

/// A fence type that attacks the host (`plugins/hostile-fence`): every
/// attack is cut off or refused, named, and the next call works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_fence_type_is_cut_off_and_refused_what_it_was_not_granted() {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use warden::fencing::{Action, FenceDevice, FenceType};

    let bytes = std::fs::read(env!("WARDEN_PLUGIN_HOSTILE_FENCE")).expect("the plugin");
    let fence_type = Arc::new(
        FenceType::load(&common::runtime(), &bytes)
            .await
            .expect("the hostile type loads"),
    );
    // What it is granted, and a listener it is not.
    let granted = TcpListener::bind("127.0.0.1:0").expect("bind");
    let other = TcpListener::bind("127.0.0.1:0").expect("bind");
    other.set_nonblocking(true).expect("nonblocking");
    let properties = BTreeMap::from([(
        "address".to_string(),
        granted.local_addr().expect("address").to_string(),
    )]);
    let device = FenceDevice::new("hostile", fence_type, &properties, BTreeMap::new())
        .await
        .expect("the device is accepted")
        .with_call_timeout(Duration::from_secs(2));

    let started = Instant::now();
    let err = device.status("spin").await.expect_err("a spin is cut off");
    assert!(
        err.contains("status of spin") && err.contains("timed out"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(20), "cut off late");

    let err = device
        .act(Action::Off, "sleep")
        .await
        .expect_err("a sleep is cut off");
    assert!(err.contains("timed out"), "{err}");

    let err = device
        .act(Action::On, "flood")
        .await
        .expect_err("a flood is an error");
    assert!(
        err.len() < 4096,
        "a {} byte error reached the host",
        err.len()
    );

    let err = device
        .act(Action::Reboot, "memory")
        .await
        .expect_err("memory is limited");
    assert!(err.contains("memory"), "{err}");

    let target = format!("connect:{}", other.local_addr().expect("address"));
    let err = device
        .act(Action::Off, &target)
        .await
        .expect_err("not granted");
    assert!(err.contains("refused"), "{err}");
    assert!(other.accept().is_err(), "the ungranted address was reached");

    // Each call had a store of its own: the next one works.
    device.act(Action::Off, "node").await.expect("a plain off");
}
