//! The agent makes its own API token when the file is missing: a new node
//! starts without a step before it, the token is random (256 bits) and
//! owner-only, and the log says where it is. A file its group or others
//! may read still stops the agent, naming the fix.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::agent_process::WARDEN;
use crate::common::process::Killed;
use crate::common::{free_port, wait_until};

fn config(dir: &Path, api: std::net::SocketAddr, token_file: &Path) -> std::path::PathBuf {
    let path = dir.join("node.toml");
    std::fs::write(
        &path,
        format!(
            "[node]\nname = \"n\"\ndata_dir = \"data\"\n\n[api]\nlisten = \"{api}\"\n\
             token_file = {:?}\n",
            token_file.display().to_string()
        ),
    )
    .expect("config");
    path
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

#[test]
fn a_missing_token_file_is_created_owner_only_and_works() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let token_file = tmp.path().join("secrets/warden/api-token");
    let api = free_port();
    let config = config(tmp.path(), api, &token_file);
    let log = std::fs::File::create(tmp.path().join("agent.log")).expect("log");
    let agent = Killed(
        Command::new(WARDEN)
            .args(["agent", "--config"])
            .arg(&config)
            .env("WARDEN_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the agent"),
    );
    // The API binds before the token is read: wait for the log line that
    // says the file is written, then for the API.
    let logged = wait_until("the token file logged", Duration::from_secs(60), || {
        std::fs::read_to_string(tmp.path().join("agent.log"))
            .ok()
            .filter(|log| log.contains("created the API token file"))
    });
    assert!(logged.contains("api-token"), "{logged}");
    wait_until("the admin API", Duration::from_secs(60), || {
        std::net::TcpStream::connect(api).ok().map(drop)
    });

    let token = std::fs::read_to_string(&token_file).expect("the agent wrote the token");
    let token = token.trim_end();
    assert_eq!(token.len(), 64, "256 bits in hex: {token:?}");
    assert!(token.chars().all(|c| c.is_ascii_hexdigit()), "{token:?}");
    assert_eq!(mode(&token_file), 0o600);
    assert_eq!(mode(token_file.parent().expect("dir")), 0o700);
    assert_eq!(mode(&tmp.path().join("secrets")), 0o700);

    // The token opens the API; another does not.
    let status = |token: &str| {
        Command::new(WARDEN)
            .args(["status", "--json"])
            .env("WARDEN_API", format!("http://{api}"))
            .env("WARDEN_TOKEN", token)
            .output()
            .expect("run the CLI")
    };
    let out = status(token);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!status("0123456789abcdef0123456789abcdef").status.success());
    agent.terminate(Duration::from_secs(30));

    // The next start keeps the token it made.
    let agent = Killed(
        Command::new(WARDEN)
            .args(["agent", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the agent again"),
    );
    wait_until("the admin API again", Duration::from_secs(60), || {
        std::net::TcpStream::connect(api).ok().map(drop)
    });
    assert_eq!(
        std::fs::read_to_string(&token_file)
            .expect("token")
            .trim_end(),
        token
    );
    assert!(status(token).status.success());
    agent.terminate(Duration::from_secs(30));
}

#[test]
fn a_token_file_others_may_read_still_stops_the_agent() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let token_file = tmp.path().join("api-token");
    std::fs::write(&token_file, "0123456789abcdef0123456789abcdef\n").expect("token");
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let config = config(tmp.path(), free_port(), &token_file);
    let out = Command::new(WARDEN)
        .args(["agent", "--config"])
        .arg(&config)
        .output()
        .expect("run the agent");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started with a readable token file");
    assert!(stderr.contains("chmod 600"), "{stderr}");
    // Left as it was: not replaced, not tightened behind the operator's back.
    assert_eq!(mode(&token_file), 0o644);
    assert_eq!(
        std::fs::read_to_string(&token_file).expect("token"),
        "0123456789abcdef0123456789abcdef\n"
    );
}

/// The file the agent would create is a link left dangling (an attacker's,
/// or a stale one) pointing where the agent should never write: the agent
/// does not follow it to create the target, and does not start.
#[test]
fn a_dangling_link_at_the_token_path_is_not_followed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).expect("dir");
    let target = elsewhere.join("planted-token");
    let token_file = tmp.path().join("api-token");
    std::os::unix::fs::symlink(&target, &token_file).expect("symlink");
    let config = config(tmp.path(), free_port(), &token_file);
    let out = Command::new(WARDEN)
        .args(["agent", "--config"])
        .arg(&config)
        .output()
        .expect("run the agent");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "started through a dangling token link"
    );
    assert!(stderr.contains("api-token"), "names the file: {stderr}");
    assert!(!target.exists(), "the agent created the link's target");
    assert!(
        std::fs::symlink_metadata(&token_file)
            .expect("the link")
            .file_type()
            .is_symlink(),
        "the link was replaced"
    );
}
