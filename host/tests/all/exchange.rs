//! An Exchange virtual server with the real agent: the `warden` binary run
//! with a TOML configuration whose group `evs1` holds the built-in types
//! (store, smtp-instance, http-instance, ms-search) supervising the real
//! mail services of examples/mail-services; and the http-instance type
//! supervising Debian's nginx.
//!
//! Health checks are 60 s apart (or suspended through the Monitoring
//! component), so a kill -9 seen within seconds can only have been seen
//! through the process's exit event. The Store is killed while a writer
//! streams messages over SMTP; every acknowledged message must be readable
//! afterwards. The smtp-instance type also supervises Debian's aiosmtpd
//! (python3-aiosmtpd), an SMTP server it was not written against.
//!
//! Self-contained: the helpers follow agent.rs and mail.rs.

use crate::common;
use crate::common::agent_process::start_agent;
use crate::common::mail_client::{ask, http_get, smtp_ehlo, smtp_send, try_smtp_send};
use crate::common::nginx::{NGINX, nginx_config};
use crate::common::process::{events, oldest_pid_of};
use crate::common::{free_address, wait_until};

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const WARDEN: &str = env!("CARGO_BIN_EXE_warden");

fn count(history: &Path, resource: &str, to: &str) -> usize {
    events(history)
        .iter()
        .filter(|e| e["resource"] == resource && e["to"] == to)
        .count()
}

/// The node configuration of one Exchange virtual server, `evs1`. `bin` is
/// the directory holding the mail services.
fn evs_config(bin: &Path, store: &str, smtp: &str, http: &str, search: &str) -> String {
    let bin = bin.display();
    format!(
        r#"
[node]
name = "node-1"
data_dir = "data"

[plugins.store]
allow_programs = ["{bin}/mail-store"]

[plugins.smtp-instance]
allow_programs = ["{bin}/mail-smtp"]

[plugins.http-instance]
allow_programs = ["{bin}/mail-http"]

[plugins.ms-search]
allow_programs = ["{bin}/mail-indexer"]

[[group]]
name = "evs1"

[[resource]]
name = "store"
type = "store"
group = "evs1"
looks_alive_interval_ms = 60000
is_alive_interval_ms = 60000
restart = {{ threshold = 3, period_s = 900, delay_ms = 100 }}
properties = {{ program = "{bin}/mail-store", address = "{store}" }}

[[resource]]
name = "smtp"
type = "smtp-instance"
group = "evs1"
depends_on = ["store"]
looks_alive_interval_ms = 60000
is_alive_interval_ms = 60000
restart = {{ threshold = 3, period_s = 900, delay_ms = 100 }}
properties = {{ program = "{bin}/mail-smtp", address = "{smtp}", store = "{store}" }}

[[resource]]
name = "http"
type = "http-instance"
group = "evs1"
depends_on = ["store"]
looks_alive_interval_ms = 60000
is_alive_interval_ms = 60000
restart = {{ threshold = 3, period_s = 900, delay_ms = 100 }}
properties = {{ program = "{bin}/mail-http", address = "{http}", store = "{store}" }}

[[resource]]
name = "search"
type = "ms-search"
group = "evs1"
depends_on = ["store"]
looks_alive_interval_ms = 60000
is_alive_interval_ms = 60000
restart = {{ threshold = 3, period_s = 900, delay_ms = 100 }}
properties = {{ program = "{bin}/mail-indexer", address = "{search}", store = "{store}", args = "--store {{store}} --data . --listen {{address}} --poll-ms 50" }}
"#
    )
}

#[test]
fn an_exchange_virtual_server_runs_under_the_real_agent() {
    let bin = common::mail_services();
    let (store_at, smtp_at, http_at, search_at) = (
        free_address(),
        free_address(),
        free_address(),
        free_address(),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        evs_config(&bin, &store_at, &smtp_at, &http_at, &search_at),
    )
    .expect("write config");
    let agent = start_agent(&config);
    let history = dir.path().join("data/events.jsonl");

    // The group comes online, the Store before the others start.
    wait_until("evs1 online", Duration::from_secs(60), || {
        ["store", "smtp", "http", "search"]
            .iter()
            .all(|r| count(&history, r, "Online") >= 1)
            .then_some(())
    });
    let seen = events(&history);
    let at = |resource: &str, to: &str| {
        seen.iter()
            .find(|e| e["resource"] == resource && e["to"] == to)
            .and_then(|e| e["at_ms"].as_u64())
            .unwrap_or_else(|| panic!("{resource} never {to}: {seen:?}"))
    };
    for dependent in ["smtp", "http", "search"] {
        assert!(
            at("store", "Online") <= at(dependent, "OnlinePending"),
            "{dependent} started before the store was online: {seen:#?}"
        );
    }

    // A message sent over SMTP is readable over HTTP and found by the search.
    smtp_send(&smtp_at, "alice", "warden zebra crossing");
    let mailbox = http_get(&http_at, "/mailbox/alice").expect("mail-http answers");
    assert!(
        mailbox.starts_with("HTTP/1.1 200") && mailbox.contains("zebra"),
        "{mailbox}"
    );
    wait_until(
        "the search finding the message",
        Duration::from_secs(10),
        || {
            ask(&search_at, "SEARCH zebra")
                .starts_with("HITS 1")
                .then_some(())
        },
    );

    // kill -9 of mail-smtp: seen through the exit event (checks are 60 s
    // apart) and the service back online within seconds.
    let smtp_program = format!("{}/mail-smtp --listen {smtp_at}", bin.display());
    let pid = oldest_pid_of(&smtp_program).expect("mail-smtp runs");
    let onlines = count(&history, "smtp", "Online");
    let killed = Instant::now();
    kill(Pid::from_raw(pid), Signal::SIGKILL).expect("kill -9 mail-smtp");
    wait_until("smtp back online", Duration::from_secs(5), || {
        (count(&history, "smtp", "Online") > onlines).then_some(())
    });
    let back = killed.elapsed();
    let seen = events(&history);
    assert!(
        seen.iter()
            .any(|e| e["resource"] == "smtp" && e["event"] == "process-exited"),
        "no process-exited for smtp: {seen:#?}"
    );
    let new_pid = oldest_pid_of(&smtp_program).expect("mail-smtp runs again");
    assert_ne!(pid, new_pid, "the same mail-smtp process");
    assert!(back < Duration::from_secs(5), "back after {back:?}");
    // The others were not touched.
    for other in ["store", "http", "search"] {
        assert_eq!(count(&history, other, "Online"), 1, "{other}: {seen:#?}");
    }
    smtp_send(&smtp_at, "alice", "second message after the restart");
    let mailbox = http_get(&http_at, "/mailbox/alice").expect("mail-http answers");
    assert!(
        mailbox.contains("zebra") && mailbox.contains("second message"),
        "{mailbox}"
    );

    // kill -9 of mail-store while a writer streams messages over SMTP:
    // after the group recovers, every message the SMTP service acknowledged
    // (250 after the data) is readable over HTTP.
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u32>::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (acked, stop, smtp_at) = (acked.clone(), stop.clone(), smtp_at.clone());
        std::thread::spawn(move || {
            let mut refused = 0u32;
            for n in 0u32.. {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                match try_smtp_send(&smtp_at, "bob", &format!("stream-{n:05} end")) {
                    Ok(()) => acked.lock().expect("acked list").push(n),
                    Err(_) => {
                        refused += 1;
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            }
            refused
        })
    };
    let acked_count = || acked.lock().expect("acked list").len();
    wait_until("20 messages acknowledged", Duration::from_secs(20), || {
        (acked_count() >= 20).then_some(())
    });
    let store_program = format!("{}/mail-store --data . --listen {store_at}", bin.display());
    let store_pid = oldest_pid_of(&store_program).expect("mail-store runs");
    let store_onlines = count(&history, "store", "Online");
    kill(Pid::from_raw(store_pid), Signal::SIGKILL).expect("kill -9 mail-store");
    let at_kill = acked_count();
    wait_until("the store back online", Duration::from_secs(30), || {
        (count(&history, "store", "Online") > store_onlines).then_some(())
    });
    // The writer gets through again: the group is whole.
    wait_until(
        "messages acknowledged after the recovery",
        Duration::from_secs(30),
        || (acked_count() >= at_kill + 20).then_some(()),
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let refused = writer.join().expect("the writer thread");
    let seen = events(&history);
    assert!(
        seen.iter().any(|e| e["resource"] == "store"
            && e["event"] == "process-exited"
            && e["pid"] == store_pid),
        "no process-exited for the killed mail-store: {seen:#?}"
    );
    assert!(
        ask(&store_at, "STATUS").contains("clean=false"),
        "the store did not recover from its log"
    );
    let mailbox = wait_until("mail-http answering", Duration::from_secs(10), || {
        http_get(&http_at, "/mailbox/bob").filter(|a| a.starts_with("HTTP/1.1 200"))
    });
    let acked = acked.lock().expect("acked list").clone();
    let lost: Vec<u32> = acked
        .iter()
        .copied()
        .filter(|n| !mailbox.contains(&format!("stream-{n:05} end")))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged messages lost by the store's kill -9 ({refused} sends refused \
         meanwhile): {lost:?}",
        lost.len(),
        acked.len()
    );

    // SIGTERM: a clean exit, and the store dismounted cleanly.
    let status = agent.terminate(Duration::from_secs(30));
    assert!(status.success(), "clean shutdown: {status:?}");
    let clean = dir.path().join("data/resources/store/CLEAN");
    assert!(
        clean.exists(),
        "the store left no CLEAN marker: {:?}",
        std::fs::read_dir(dir.path().join("data/resources/store"))
            .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
    );
    assert!(
        oldest_pid_of(&format!("{}/mail-", bin.display())).is_none(),
        "a mail service survived the agent"
    );
}

#[test]
fn the_example_configuration_parses_and_names_the_four_types() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/exchange-node.toml"
    ))
    .expect("examples/exchange-node.toml");
    let value: toml::Table = text.parse().expect("valid TOML");
    let types: Vec<&str> = value["resource"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(|r| r["type"].as_str())
        .collect();
    assert_eq!(
        types,
        ["store", "smtp-instance", "http-instance", "ms-search"]
    );
}

#[test]
fn http_instance_supervises_debian_nginx_and_sees_a_kill_9_at_once() {
    assert!(
        Path::new(NGINX).exists(),
        "{NGINX} is missing: this test needs Debian's nginx (apt-get install -y nginx-light; .ci/run installs it)"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let ngx = dir.path().join("nginx");
    std::fs::create_dir(&ngx).expect("mkdir");
    let address = free_address();
    let conf = nginx_config(&ngx, &address);
    let config = dir.path().join("node.toml");
    let n = ngx.display();
    std::fs::write(
        &config,
        format!(
            r#"
[node]
name = "node-1"
data_dir = "data"

[plugins.http-instance]
allow_programs = ["{NGINX}"]

[[resource]]
name = "web"
type = "http-instance"
looks_alive_interval_ms = 60000
is_alive_interval_ms = 60000
restart = {{ threshold = 3, period_s = 900, delay_ms = 100 }}
properties = {{ program = "{NGINX}", args = "-c {conf} -p {n} -e {n}/error.log", address = "{address}", path = "/" }}
"#,
            conf = conf.display()
        ),
    )
    .expect("write config");
    let agent = start_agent(&config);
    let history = dir.path().join("data/events.jsonl");
    wait_until("web online", Duration::from_secs(30), || {
        (count(&history, "web", "Online") >= 1).then_some(())
    });
    let answer = http_get(&address, "/").expect("nginx answers");
    assert!(answer.contains("warden nginx ok"), "{answer}");

    let master = format!("nginx: master process {NGINX} -c {}", conf.display());
    let pid = oldest_pid_of(&master).expect("the nginx master runs");
    let killed = Instant::now();
    kill(Pid::from_raw(pid), Signal::SIGKILL).expect("kill -9 nginx");
    let exited = wait_until("the exit event", Duration::from_secs(5), || {
        events(&history)
            .iter()
            .any(|e| e["resource"] == "web" && e["event"] == "process-exited")
            .then(|| killed.elapsed())
    });
    // The killed master's workers are its process group; they must go with
    // it, or they keep the port and answer for a server that is down.
    struct Reap(i32);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = nix::sys::signal::killpg(Pid::from_raw(self.0), Signal::SIGKILL);
        }
    }
    let _reap = Reap(pid);
    let in_group = |pgid: i32| {
        let out = Command::new("pgrep")
            .args(["-g", &pgid.to_string()])
            .output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let left = (0..60)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(50));
            in_group(pid)
        })
        .find(String::is_empty);
    assert!(
        left.is_some(),
        "3 s after the kill -9 of the nginx master (pid {pid}), its workers still run \
         (pids {}) and hold {address}: the agent does not stop the process group of a \
         managed process that exited on its own, so the restarted nginx cannot bind and \
         the old worker answers the checks",
        in_group(pid)
    );
    wait_until("web online again", Duration::from_secs(15), || {
        (count(&history, "web", "Online") >= 2).then_some(())
    });
    let answer = wait_until("nginx serving again", Duration::from_secs(5), || {
        http_get(&address, "/").filter(|a| a.contains("warden nginx ok"))
    });
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let new_pid = oldest_pid_of(&master).unwrap_or_else(|| {
        let ps = Command::new("ps")
            .args(["-eo", "pid,ppid,pgid,args"])
            .output();
        let ps = ps.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        let log = std::fs::read_to_string(ngx.join("error.log")).unwrap_or_default();
        panic!(
            "no new nginx master: {:#?}\nps: {ps:?}\nerror.log: {log}",
            events(&history)
        )
    });
    assert_ne!(pid, new_pid);
    assert!(
        exited < Duration::from_secs(3),
        "exit seen after {exited:?}"
    );
    let status = agent.terminate(Duration::from_secs(30));
    assert!(status.success(), "clean shutdown: {status:?}");
    assert!(oldest_pid_of(&master).is_none(), "nginx survived the agent");
}

const PYTHON: &str = "/usr/bin/python3";

/// `warden_health_checks_total{check="is-alive",result=...}` from the
/// agent's metrics (0 when not counted yet).
fn is_alive_checks(api: &str, token: &str, result: &str) -> u64 {
    let Ok(mut stream) = TcpStream::connect(api) else {
        return 0;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!(
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    let mut answer = String::new();
    if stream.write_all(request.as_bytes()).is_err() || stream.read_to_string(&mut answer).is_err()
    {
        return 0;
    }
    let series = format!("warden_health_checks_total{{check=\"is-alive\",result=\"{result}\"}} ");
    answer
        .lines()
        .find_map(|line| line.strip_prefix(&series))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Set a server component through the `warden` CLI.
fn set_component(api: &str, token: &str, component: &str, state: &str) {
    let out = Command::new(WARDEN)
        .args([
            "component",
            "set",
            component,
            state,
            "--requester",
            "Maintenance",
        ])
        .env("WARDEN_API", format!("http://{api}"))
        .env("WARDEN_TOKEN", token)
        .output()
        .expect("run the CLI");
    assert!(
        out.status.success(),
        "component set {component} {state}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn smtp_instance_supervises_debian_aiosmtpd_through_a_kill_9() {
    let has_aiosmtpd = Command::new(PYTHON)
        .args(["-c", "import aiosmtpd"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_aiosmtpd,
        "{PYTHON} cannot import aiosmtpd: this test needs Debian's python3-aiosmtpd \
         (apt-get install -y python3-aiosmtpd; .ci/run installs it)"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let (address, api) = (free_address(), free_address());
    const TOKEN: &str = "debian-smtp-test-token";
    warden::config::write_token_file(&dir.path().join("token"), TOKEN).expect("token");
    // Is-alive every 200 ms while Monitoring is active; looks-alive (a bare
    // connect) out of the way, so every check counted is the SMTP dialogue.
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[node]
name = "node-1"
data_dir = "data"

[api]
listen = "{api}"
token_file = "token"

[plugins.smtp-instance]
allow_programs = ["{PYTHON}"]

[[resource]]
name = "mx"
type = "smtp-instance"
looks_alive_interval_ms = 60000
is_alive_interval_ms = 200
restart = {{ threshold = 3, period_s = 900, delay_ms = 100 }}
properties = {{ program = "{PYTHON}", args = "-m aiosmtpd -n -l {{address}}", address = "{address}" }}
"#
        ),
    )
    .expect("write config");
    let agent = start_agent(&config);
    let history = dir.path().join("data/events.jsonl");
    wait_until("mx online", Duration::from_secs(30), || {
        (count(&history, "mx", "Online") >= 1).then_some(())
    });

    // The type's is-alive (banner, EHLO, QUIT) passes against aiosmtpd,
    // whose EHLO reply has several lines, again and again.
    wait_until(
        "three passing is-alive checks",
        Duration::from_secs(15),
        || (is_alive_checks(&api, TOKEN, "healthy") >= 3).then_some(()),
    );
    let ehlo = smtp_ehlo(&address).expect("aiosmtpd answers EHLO");
    assert!(ehlo.len() > 1, "a one-line EHLO reply: {ehlo:?}");
    assert_eq!(
        is_alive_checks(&api, TOKEN, "failed"),
        0,
        "a failed is-alive against aiosmtpd: {:#?}",
        events(&history)
    );

    // Health checks suspended: whatever sees the kill -9 now can only be
    // the exit event.
    set_component(&api, TOKEN, "Monitoring", "Inactive");
    let server = format!("{PYTHON} -m aiosmtpd -n -l {address}");
    let pid = oldest_pid_of(&server).expect("aiosmtpd runs");
    kill(Pid::from_raw(pid), Signal::SIGKILL).expect("kill -9 aiosmtpd");
    wait_until("mx online again", Duration::from_secs(30), || {
        (count(&history, "mx", "Online") >= 2).then_some(())
    });
    let seen = events(&history);
    assert!(
        seen.iter()
            .any(|e| e["resource"] == "mx" && e["event"] == "process-exited" && e["pid"] == pid),
        "no process-exited for the killed aiosmtpd (pid {pid}): {seen:#?}"
    );
    assert!(
        !seen.iter().any(|e| e["event"] == "check"),
        "a health check ran while Monitoring was inactive: {seen:#?}"
    );
    let new_pid = oldest_pid_of(&server).expect("aiosmtpd runs again");
    assert_ne!(pid, new_pid, "the same aiosmtpd process");
    let ehlo = smtp_ehlo(&address).expect("the restarted aiosmtpd answers EHLO");
    assert!(ehlo.len() > 1, "{ehlo:?}");

    // Checks resume, and the dialogue passes against the new server.
    let before = is_alive_checks(&api, TOKEN, "healthy");
    set_component(&api, TOKEN, "Monitoring", "Active");
    wait_until("is-alive passing again", Duration::from_secs(15), || {
        (is_alive_checks(&api, TOKEN, "healthy") >= before + 2).then_some(())
    });
    assert_eq!(is_alive_checks(&api, TOKEN, "failed"), 0);

    let status = agent.terminate(Duration::from_secs(30));
    assert!(status.success(), "clean shutdown: {status:?}");
    assert!(
        oldest_pid_of(&server).is_none(),
        "aiosmtpd survived the agent"
    );
}
