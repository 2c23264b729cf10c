//! The Debian package (`cargo deb -p warden`, see `[package.metadata.deb]`
//! in host/Cargo.toml), installed with the real `dpkg -i` in a throwaway
//! root: a systemd booted by `tests/systemd/boot.sh` over an overlay of `/`
//! in namespaces of its own, so the maintainer scripts run as on a real
//! machine and nothing is installed on this one. Checked: the package's
//! fields and files, what its scripts made (the `warden` system user, the
//! data directory, the API token, with their owners and modes), the unit
//! (`systemd-analyze verify`), the installed unit starting the agent with
//! its example configuration (the example service running as `warden`),
//! a stop leaving nothing, and a purge.
//!
//! The package: `WARDEN_DEB` names one built already (`.ci/run` builds it
//! once, from the binary the tests use); unset, the test builds one from
//! that binary with cargo-deb. Without cargo-deb, root, systemd or cgroup
//! v2 it says why and passes, except under CI (`CI` set), where it fails.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::systemd::{BootedSystemd, proc_status, why_not_here};

const MANIFEST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
/// Where the package is copied inside the booted system.
const DEB_INSIDE: &str = "/opt/warden-test/warden.deb";

/// Skip with `why`, or fail under CI, where the test must run.
fn cannot_run(why: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "package: cannot run under CI: {why}"
    );
    println!("package: not run: {why}");
}

/// The package to test: `WARDEN_DEB`, or one built now into `dir`.
fn package(dir: &Path) -> Result<PathBuf, String> {
    if let Some(deb) = std::env::var_os("WARDEN_DEB") {
        let deb = PathBuf::from(deb);
        return if deb.is_file() {
            Ok(deb)
        } else {
            Err(format!("WARDEN_DEB={} is not a file", deb.display()))
        };
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let found = Command::new(&cargo)
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|out| out.status.success());
    if !found {
        return Err("cargo-deb is not installed (`cargo install cargo-deb --version 3.8.0 --locked`, as .ci/run does), and WARDEN_DEB is unset".into());
    }
    // The binary this test was built with (target/debug/warden): the
    // package's contents, not its optimisation, are under test.
    let out = Command::new(&cargo)
        .args([
            "deb",
            "-p",
            "warden",
            "--no-build",
            "--profile",
            "dev",
            "--fast",
        ])
        .arg("--manifest-path")
        .arg(MANIFEST)
        .arg("-o")
        .arg(dir)
        .output()
        .map_err(|err| format!("running cargo deb: {err}"))?;
    assert!(
        out.status.success(),
        "cargo deb failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_dir(dir)
        .expect("the package directory")
        .filter_map(|e| Some(e.ok()?.path()))
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .ok_or_else(|| format!("cargo deb wrote no .deb into {}", dir.display()))
}

fn dpkg_deb(args: &[&str], deb: &Path) -> String {
    let out = Command::new("dpkg-deb")
        .args(args)
        .arg(deb)
        .output()
        .expect("run dpkg-deb");
    assert!(out.status.success(), "dpkg-deb {args:?} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The fields and the files of the package itself.
fn check_the_archive(deb: &Path) {
    let field = |name: &str| {
        dpkg_deb(&["-f"], deb)
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_string))
    };
    assert_eq!(field("Package").as_deref(), Some("warden"));
    let depends = field("Depends").unwrap_or_default();
    assert!(
        depends.contains("adduser") && depends.contains("libc6"),
        "Depends: {depends}"
    );
    let listing = dpkg_deb(&["-c"], deb);
    // mode owner/group size date time path
    let files: HashMap<String, (String, String)> = listing
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((
                f.get(5)?.trim_start_matches('.').to_string(),
                (f.first()?.to_string(), f.get(1)?.to_string()),
            ))
        })
        .collect();
    for (path, mode) in [
        ("/usr/bin/warden", "-rwxr-xr-x"),
        ("/etc/warden/node.toml", "-rw-r--r--"),
        ("/usr/lib/systemd/system/warden.service", "-rw-r--r--"),
        ("/usr/share/doc/warden/operating.md", "-rw-r--r--"),
    ] {
        let (got_mode, owner) = files
            .get(path)
            .unwrap_or_else(|| panic!("{path} is not in the package:\n{listing}"));
        assert_eq!((got_mode.as_str(), owner.as_str()), (mode, "0/0"), "{path}");
    }
    // The unit shipped is the one systemd_unit.rs runs.
    let unit = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .output()
        .expect("dpkg-deb --fsys-tarfile");
    let tar = tempfile::tempdir().expect("tempdir");
    std::fs::write(tar.path().join("data.tar"), &unit.stdout).expect("tar");
    let out = Command::new("tar")
        .args([
            "-xOf",
            "data.tar",
            "./usr/lib/systemd/system/warden.service",
        ])
        .current_dir(tar.path())
        .output()
        .expect("tar");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        include_str!("../../../examples/warden.service"),
        "the packaged unit is not examples/warden.service"
    );
}

/// `stat` of `path` inside: owner:group and octal mode.
fn stat(systemd: &BootedSystemd, path: &str) -> String {
    systemd.ok("stat", &["-c", "%U:%G %a", path])
}

/// The agent's status through its API, with the token the package made.
fn sleeper_state(systemd: &BootedSystemd) -> Option<String> {
    let out = systemd.run(
        "sh",
        &[
            "-c",
            "WARDEN_TOKEN=$(cat /etc/warden/api-token) exec /usr/bin/warden status --json",
        ],
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    status["groups"]
        .as_array()?
        .iter()
        .flat_map(|g| g["resources"].as_array().into_iter().flatten())
        .find(|r| r["name"] == "sleeper")?["state"]
        .as_str()
        .map(str::to_string)
}

#[test]
fn the_debian_package_installs_a_unit_that_runs_the_agent() {
    if let Some(why) = why_not_here() {
        return cannot_run(&why);
    }
    let build = tempfile::tempdir().expect("tempdir");
    let deb = match package(build.path()) {
        Ok(deb) => deb,
        Err(why) => return cannot_run(&why),
    };
    println!("package: {}", deb.display());
    check_the_archive(&deb);

    let systemd = BootedSystemd::boot(
        |files| {
            let target = files.join("etc/systemd/system/warden-test.target");
            std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
            std::fs::write(
                &target,
                "[Unit]\nDescription=The Warden package under test\n",
            )
            .expect("target");
            let inside = files.join(DEB_INSIDE.trim_start_matches('/'));
            std::fs::create_dir_all(inside.parent().expect("parent")).expect("mkdir");
            std::fs::copy(&deb, &inside).expect("copy the package");
            // cp -a gives the new root the modes of these directories.
            for dir in ["", "etc", "etc/systemd", "etc/systemd/system", "opt"] {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(files.join(dir), std::fs::Permissions::from_mode(0o755))
                    .expect("chmod");
            }
        },
        None,
    );
    systemd.wait_for(
        "systemd to finish booting",
        Duration::from_secs(120),
        || {
            let out = systemd.run("systemctl", &["is-system-running"]);
            let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
            matches!(state.as_str(), "running" | "degraded").then_some(())
        },
    );

    // The real dpkg, its maintainer scripts run under the booted systemd.
    systemd.ok("dpkg", &["-i", DEB_INSIDE]);

    // The user: a system account that cannot log in.
    let passwd = systemd.ok("getent", &["passwd", "warden"]);
    let fields: Vec<&str> = passwd.split(':').collect();
    let uid: u32 = fields[2].parse().expect("uid");
    assert!(uid < 1000, "warden is not a system user: {passwd}");
    assert_eq!(fields[5], "/nonexistent", "{passwd}");
    assert!(fields[6].ends_with("nologin"), "{passwd}");
    systemd.ok("getent", &["group", "warden"]);

    // Files, owners and modes; the data directory as the unit's
    // StateDirectory= (root, 0700) has it; the token owner-only.
    for (path, expected) in [
        ("/usr/bin/warden", "root:root 755"),
        ("/etc/warden", "root:root 755"),
        ("/etc/warden/node.toml", "root:root 644"),
        ("/etc/warden/api-token", "root:root 600"),
        ("/var/lib/warden", "root:root 700"),
        ("/usr/lib/systemd/system/warden.service", "root:root 644"),
    ] {
        assert_eq!(stat(&systemd, path), expected, "{path}");
    }
    let token = systemd.ok("cat", &["/etc/warden/api-token"]);
    assert!(
        token.len() == 48 && token.chars().all(|c| c.is_ascii_hexdigit()),
        "the token the package made: {token:?}"
    );
    let conffiles = systemd.ok("dpkg-query", &["-W", "-f=${Conffiles}", "warden"]);
    assert!(
        conffiles.contains("/etc/warden/node.toml"),
        "conffiles: {conffiles}"
    );
    let verify = systemd.run(
        "systemd-analyze",
        &["verify", "/usr/lib/systemd/system/warden.service"],
    );
    assert!(
        verify.status.success(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    // Installed, not enabled: the operator edits the example first.
    assert_eq!(
        String::from_utf8_lossy(&systemd.run("systemctl", &["is-enabled", "warden"]).stdout).trim(),
        "disabled"
    );
    assert_eq!(systemd.unit("ActiveState"), "inactive");

    // The installed unit starts the agent on the example configuration;
    // its service runs as the package's user.
    systemd.ok("systemctl", &["start", "warden"]);
    systemd.wait_active();
    systemd.wait_for("sleeper Online", Duration::from_secs(60), || {
        (sleeper_state(&systemd).as_deref() == Some("Online")).then_some(())
    });
    let sleepers = systemd.processes("/usr/bin/sleep 3600");
    assert_eq!(sleepers.len(), 1, "one sleeper: {sleepers:?}");
    let owner = proc_status(sleepers[0]);
    let inside_uid = systemd.ok("id", &["-u", "warden"]);
    assert!(
        owner
            .get("Uid")
            .is_some_and(|ids| ids.split_whitespace().all(|id| id == inside_uid)),
        "the example service does not run as warden ({inside_uid}): {owner:?}"
    );
    systemd.ok("systemctl", &["stop", "warden"]);
    assert_eq!(
        systemd.unit("Result"),
        "success",
        "{}",
        systemd.diagnostics()
    );
    let left = systemd.processes("/usr/bin/sleep 3600");
    assert!(left.is_empty(), "services left after the stop: {left:?}");

    // A purge takes the package's files, data and token; the user stays.
    systemd.ok("dpkg", &["--purge", "warden"]);
    for gone in ["/usr/bin/warden", "/var/lib/warden", "/etc/warden"] {
        let out = systemd.run("test", &["-e", gone]);
        assert!(!out.status.success(), "{gone} is left after a purge");
    }
    systemd.ok("getent", &["passwd", "warden"]);
}
