//! The web console (`/ui`) in a real headless Chromium, driven over
//! WebDriver, against a real `warden agent --dev` supervising real
//! processes: the page loads clean, a killed service is seen Failed and then
//! Online without a reload, the browser's actions reach the agent (checked
//! with the CLI), a wrong token gets its message, and a group's graph has a
//! box for every resource. Screenshots of each view go to
//! target/console-screenshots/.
//!
//! Needs Debian's `chromium` and `chromium-driver`: without them the tests
//! say why and pass, unless WARDEN_BROWSER_REQUIRED=1 (CI) makes it a failure.

mod common;
#[path = "console/webdriver.rs"]
mod webdriver;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

use common::agent_process::WARDEN;
use common::dev_agent::{DevAgent, http_get, pid_in};
use webdriver::{Driver, ESCAPE, Session, TAB};

/// Long enough for a loaded 2-core machine; the spec's 2 s is reported, not asserted.
const WAIT: Duration = Duration::from_secs(20);

/// chromedriver on a free port, or None (with the reason printed) when this
/// machine has no browser and the tests are not required to run.
fn browser() -> Option<Driver> {
    if let Some(why) = webdriver::missing_browser() {
        if std::env::var("WARDEN_BROWSER_REQUIRED").as_deref() == Ok("1") {
            panic!("WARDEN_BROWSER_REQUIRED=1 but {why}");
        }
        eprintln!("skipped: {why}; set WARDEN_BROWSER_REQUIRED=1 to make this a failure");
        return None;
    }
    Some(Driver::start(common::free_port()))
}

fn dev_agent() -> DevAgent {
    let mut command = Command::new(WARDEN);
    command.args(["agent", "--dev"]);
    let agent = DevAgent::spawn(command);
    // The banner comes before the agent has bound its API.
    let addr = agent.api.trim_start_matches("http://").to_string();
    common::wait_until("the admin API", WAIT, || {
        std::net::TcpStream::connect(&addr).ok()
    });
    agent
}

fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots")
}

/// Open the console and connect with `token` through its form.
fn connect(session: &Session, agent: &DevAgent, token: &str) {
    session.goto(&format!("{}/ui", agent.api));
    session.type_into("#token", token);
    session.click("#token-form button[type=submit]");
}

/// The state the cluster view writes for `resource` ("" while it is not shown).
fn shown_state(session: &Session, resource: &str) -> String {
    session
        .run(
            "const row = [...document.querySelectorAll('#resources tbody tr')]
               .find(r => r.cells[0].innerText === arguments[0]);
             return row ? row.querySelector('[data-state]').dataset.state : '';",
            json!([resource]),
        )
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Errors the page caught (window.onerror, unhandled rejections) and the
/// browser's log entries at SEVERE (failed loads, console.error).
fn page_errors(session: &Session) -> Vec<String> {
    let mut errors: Vec<String> = session
        .run(
            "return window.wardenErrors || ['the console never started'];",
            json!([]),
        )
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| e.to_string())
        .collect();
    for entry in session.browser_log() {
        if entry["level"] == "SEVERE" || entry["level"] == "WARNING" {
            errors.push(entry["message"].to_string());
        }
    }
    errors
}

fn cli_status(agent: &DevAgent) -> Value {
    let out = Command::new(WARDEN)
        .args(["status", "--json"])
        .envs(agent.cli_env())
        .output()
        .expect("run warden status");
    assert!(
        out.status.success(),
        "warden status: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("warden status --json is JSON")
}

fn group_state(agent: &DevAgent, group: &str) -> String {
    let status = cli_status(agent);
    status["groups"]
        .as_array()
        .and_then(|groups| groups.iter().find(|g| g["name"] == group))
        .map(|g| g["state"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default()
}

#[test]
fn the_console_shows_a_live_dev_agent_and_operates_it() {
    let Some(driver) = browser() else { return };
    let agent = dev_agent();
    let session = driver.session();
    let shots = screenshots();

    connect(&session, &agent, &agent.token);
    session.wait_for("#resources", WAIT);
    session.until("every resource Online", WAIT, "return [...document.querySelectorAll('#resources [data-state]')].every(e => e.dataset.state === 'Online') && document.querySelectorAll('#resources tbody tr').length === 2");
    session.until(
        "the event stream connected",
        WAIT,
        "return document.getElementById('live').dataset.stream === 'live'",
    );
    session.screenshot(&shots.join("cluster.png"));
    // Readable without colour: every state shown is also written.
    let unwritten = session.run(
        "return [...document.querySelectorAll('[data-state]')].filter(e => e.innerText.trim() !== e.dataset.state).length;",
        json!([]),
    );
    assert_eq!(unwritten, json!(0), "a state shown by colour only");

    // Each view loads, and the page has no error after all of them.
    for (hash, marker) in [
        ("#/group/demo", "#graph"),
        ("#/events", "#events"),
        ("#/resource/mail-api", "#properties"),
        ("#/plugins", "#plugins"),
        ("#/components", "#components"),
    ] {
        session.goto(&format!("{}/ui{hash}", agent.api));
        session.wait_for(marker, WAIT);
        let name = hash.trim_start_matches("#/").replace('/', "-");
        session.screenshot(&shots.join(format!("{name}.png")));
    }
    let errors = page_errors(&session);
    assert!(errors.is_empty(), "the console logged errors: {errors:#?}");

    // The graph: a box for every configured resource, each with its state
    // written, and the one dependency as an arrow.
    session.goto(&format!("{}/ui#/group/demo", agent.api));
    session.wait_for("#graph", WAIT);
    let boxes = session.run(
        "return [...document.querySelectorAll('#graph a.box')].map(a => [a.dataset.resource, a.querySelector('.state-text').textContent]);",
        json!([]),
    );
    let mut boxes: Vec<Value> = boxes.as_array().cloned().unwrap_or_default();
    boxes.sort_by_key(|b| b[0].to_string());
    assert_eq!(
        boxes,
        vec![
            json!(["mail-api", "Online"]),
            json!(["web-frontend", "Online"])
        ]
    );
    let edges = session.run(
        "return [...document.querySelectorAll('#graph .edge')].map(e => [e.dataset.from, e.dataset.to]);",
        json!([]),
    );
    assert_eq!(edges, json!([["web-frontend", "mail-api"]]));

    // A killed service: Failed, then Online again, seen without a reload.
    session.goto(&format!("{}/ui#/cluster", agent.api));
    session.wait_for("#resources", WAIT);
    session.run(
        "window.sameDocument = true; window.seen = [];
         new MutationObserver(() => {
           const row = [...document.querySelectorAll('#resources tbody tr')].find(r => r.cells[0].innerText === 'mail-api');
           const state = row && row.querySelector('[data-state]').dataset.state;
           if (state && window.seen[window.seen.length - 1] !== state) window.seen.push(state);
         }).observe(document.getElementById('view'), { childList: true, subtree: true });",
        json!([]),
    );
    let pid = pid_in(&http_get(agent.service("mail-api")).expect("mail-api answers"));
    let killed = Instant::now();
    kill(Pid::from_raw(pid), Signal::SIGKILL).expect("kill mail-api");
    session.until(
        "mail-api shown Failed",
        WAIT,
        "return (window.seen || []).includes('Failed')",
    );
    let failed_after = killed.elapsed();
    session.screenshot(&shots.join("cluster-failed.png"));
    session.until(
        "mail-api shown Online again",
        WAIT,
        "const s = window.seen || []; return s.includes('Failed') && s[s.length - 1] === 'Online';",
    );
    let online_after = killed.elapsed();
    assert_eq!(
        session.run("return window.sameDocument === true;", json!([])),
        json!(true),
        "the page was reloaded"
    );
    let seen = session.run("return window.seen;", json!([]));
    eprintln!(
        "observed: mail-api shown Failed {failed_after:?} and Online {online_after:?} after the kill (states shown: {seen})"
    );

    // Move: the dialog shows the policy's answer; Escape closes it and nothing moves.
    session.click("[data-key='group-move-demo']");
    session.wait_for("dialog[open] #what-if", WAIT);
    session.screenshot(&shots.join("move-dialog.png"));
    let focused_in_dialog = session.run(
        "return document.querySelector('dialog').contains(document.activeElement);",
        json!([]),
    );
    assert_eq!(focused_in_dialog, json!(true), "the dialog has the focus");
    // Tab goes round the dialog's buttons, never out to the page behind.
    for _ in 0..5 {
        session.press(TAB);
        let inside = session.run(
            "return document.querySelector('dialog').contains(document.activeElement);",
            json!([]),
        );
        assert_eq!(inside, json!(true), "Tab left the dialog");
    }
    session.press(ESCAPE);
    session.until(
        "the dialog closed",
        WAIT,
        "return !document.querySelector('dialog');",
    );
    assert_eq!(group_state(&agent, "demo"), "online");

    // Offline and online from the browser, as the CLI then sees it.
    session.click("[data-key='group-offline-demo']");
    common::wait_until("the CLI to show demo offline", WAIT, || {
        (group_state(&agent, "demo") == "offline").then_some(())
    });
    session.until("the console to show demo offline", WAIT, "const r = document.querySelector('#groups tbody tr'); return r && r.querySelector('[data-state]').dataset.state === 'offline';");
    session.click("[data-key='group-online-demo']");
    common::wait_until("the CLI to show demo online", WAIT, || {
        (group_state(&agent, "demo") == "online").then_some(())
    });
    session.until("the console to show demo online", WAIT, "const r = document.querySelector('#groups tbody tr'); return r && r.querySelector('[data-state]').dataset.state === 'online';");
    assert!(!shown_state(&session, "mail-api").is_empty());

    // The events view, filtered by kind: only state changes.
    session.goto(&format!("{}/ui#/events", agent.api));
    session.wait_for("#events", WAIT);
    session.click("#filter-kind option[value='process-exited']");
    session.until("only process-exited events", WAIT, "const rows = [...document.querySelectorAll('#events tbody tr')]; return rows.length > 0 && rows.every(r => r.cells[1].innerText === 'process-exited');");
    session.screenshot(&shots.join("events-filtered.png"));
    let errors = page_errors(&session);
    assert!(errors.is_empty(), "the console logged errors: {errors:#?}");
}

#[test]
fn a_wrong_token_is_refused_with_its_message_and_can_be_entered_again() {
    let Some(driver) = browser() else { return };
    let agent = dev_agent();
    let session = driver.session();

    session.goto(&format!("{}/ui", agent.api));
    session.wait_for("#token-form", WAIT);
    assert!(
        session.find("#token-error").is_none(),
        "no error before a token is given"
    );
    connect(&session, &agent, "not-the-token");
    session.wait_for("#token-error", WAIT);
    let message = session.text("#token-error");
    assert_eq!(message, "the agent refused the token: 401 wrong token");
    session.screenshot(&screenshots().join("wrong-token.png"));
    assert!(
        session.find("#resources").is_none(),
        "nothing is shown without the token"
    );
    let caught = session.run("return window.wardenErrors;", json!([]));
    assert_eq!(caught, json!([]), "the refusal is no uncaught error");

    // The token never goes into the URL, and the right one is then taken.
    let url = session.run("return location.href;", json!([]));
    assert!(!url.to_string().contains("not-the-token"), "{url}");
    session.type_into("#token", &agent.token);
    session.click("#token-form button[type=submit]");
    session.wait_for("#resources", WAIT);
    let url = session.run("return location.href + document.cookie;", json!([]));
    assert!(!url.to_string().contains(&agent.token), "{url}");
}

/// Each group's name, state and owner as the console's cluster view shows them.
fn shown_groups(session: &Session) -> Value {
    session.run(
        "return [...document.querySelectorAll('#groups tbody tr')].map(r =>
           [r.cells[0].innerText, r.cells[1].innerText, r.cells[2].innerText]);",
        json!([]),
    )
}

/// The same, as agent `i`'s `warden status --json` says.
fn cli_groups(cluster: &common::cluster::Cluster, i: usize) -> Option<Value> {
    let status = cluster.status(i)?;
    let groups = status["groups"]
        .as_array()?
        .iter()
        .map(|g| json!([g["name"], g["state"], g["owner"].as_str().unwrap_or("none")]));
    Some(Value::Array(groups.collect()))
}

/// Open node `i`'s console in `session` (each node is an origin of its own,
/// so each asks for the token) and wait until it shows what that node's CLI
/// shows, with an owner for every group.
fn console_of(session: &Session, cluster: &common::cluster::Cluster, i: usize) -> Value {
    session.goto(&format!("http://{}/ui", cluster.apis[i]));
    session.wait_for("#token, #groups", WAIT);
    if session.find("#token").is_some() {
        session.type_into("#token", common::cluster::TOKEN);
        session.click("#token-form button[type=submit]");
    }
    session.wait_for("#groups", WAIT);
    common::wait_until(
        &format!(
            "{}'s console to agree with its CLI",
            common::cluster::NODES[i]
        ),
        WAIT,
        || {
            let shown = shown_groups(session);
            let settled = shown
                .as_array()?
                .iter()
                .all(|g| g[2] != "none" && g[1] == "online");
            (settled && Some(&shown) == cli_groups(cluster, i).as_ref()).then_some(shown)
        },
    )
}

#[test]
fn every_node_of_a_cluster_shows_the_same_groups_and_a_move_made_in_one_changes_the_owner() {
    let Some(driver) = browser() else { return };
    let mut cluster = common::cluster::Cluster::new();
    cluster.start_joined(0);
    cluster.wait_served_by("n1", Duration::from_secs(60));
    cluster.start_joined(1);
    cluster.start_joined(2);
    let session = driver.session();

    let seen: Vec<Value> = (0..3).map(|i| console_of(&session, &cluster, i)).collect();
    assert_eq!(seen[0], json!([["web", "online", "n1"]]));
    assert!(
        seen.iter().all(|s| *s == seen[0]),
        "the nodes' consoles differ: {seen:#?}"
    );

    // On n2's console (its token still in the tab), move the group,
    // confirming what the policy says it will do.
    console_of(&session, &cluster, 1);
    session.click("[data-key='group-move-web']");
    session.wait_for("dialog[open] #what-if", WAIT);
    let plan = session.text("#what-if");
    eprintln!("what-if for the move, as the dialog shows it: {plan}");
    assert!(
        !plan.contains("refused"),
        "the policy refuses the move: {plan}"
    );
    session.screenshot(&screenshots().join("cluster-move-dialog.png"));
    session.click("#dialog-confirm");
    let moved_to = common::wait_until(
        "the CLI to show another owner",
        Duration::from_secs(60),
        || {
            let owner = cluster.status(0)?["groups"][0]["owner"]
                .as_str()?
                .to_string();
            (owner != "n1").then_some(owner)
        },
    );
    cluster.wait_served_by(&moved_to, Duration::from_secs(60));
    session.until("n2's console to show the new owner", WAIT, &format!(
        "const r = document.querySelector('#groups tbody tr'); return r && r.cells[2].innerText === {moved_to:?} && r.cells[1].innerText === 'online';"
    ));
    session.screenshot(&screenshots().join("cluster-moved.png"));
    for i in 0..3 {
        let shown = console_of(&session, &cluster, i);
        assert_eq!(
            shown,
            json!([["web", "online", moved_to]]),
            "{}'s console",
            common::cluster::NODES[i]
        );
    }
}

/// One raw HTTP/1.1 GET to the agent: status, lower-cased headers, body.
fn raw_get(addr: &str, path: &str, extra: &str) -> (u16, Vec<(String, String)>, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the agent");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n{extra}\r\n"
    )
    .expect("send");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("the answer");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_default()
}

/// No browser needed: what the agent answers for the console's files, and
/// for paths a hostile client makes up.
#[test]
fn the_console_files_are_served_with_their_types_and_a_strict_policy() {
    let agent = dev_agent();
    let addr = agent.api.trim_start_matches("http://").to_string();
    for (path, kind) in [
        ("/ui", "text/html"),
        ("/ui/", "text/html"),
        ("/ui/main.js", "text/javascript"),
        ("/ui/console.css", "text/css"),
        ("/ui/favicon.svg", "image/svg+xml"),
    ] {
        let (status, headers, body) = raw_get(&addr, path, "");
        assert_eq!(status, 200, "{path}");
        assert!(
            header(&headers, "content-type").starts_with(kind),
            "{path}: {headers:?}"
        );
        let csp = header(&headers, "content-security-policy");
        assert!(
            csp.contains("script-src 'self'") && csp.contains("default-src 'none'"),
            "{path}: {csp}"
        );
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
        assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
        assert_eq!(header(&headers, "cache-control"), "no-cache");
        assert!(!body.is_empty(), "{path}");
        // Asked again with its ETag: 304, nothing sent again.
        let etag = header(&headers, "etag").to_string();
        assert!(etag.starts_with('"'), "{path}: no ETag in {headers:?}");
        let (again, _, body) = raw_get(&addr, path, &format!("if-none-match: {etag}\r\n"));
        assert_eq!((again, body.as_str()), (304, ""), "{path}");
    }
    // The pages need no token; the data still does.
    let (status, _, body) = raw_get(&addr, "/v1/status", "");
    assert_eq!(status, 401, "{body}");

    // Made-up paths: a JSON refusal, never a file from elsewhere.
    let long = format!("/ui/{}", "a".repeat(60_000));
    for path in [
        "/ui/nothing.js",
        "/ui/../v1/status",
        "/ui/%2e%2e%2fCargo.toml",
        "/ui/main.js%00.html",
        "/ui/sub/main.js",
        long.as_str(),
    ] {
        let (status, headers, body) = raw_get(&addr, path, "");
        assert!(
            (400..500).contains(&status) && status != 401,
            "{}: {status} {body}",
            &path[..path.len().min(40)]
        );
        if status == 404 {
            let answer: Value = serde_json::from_str(&body).expect("a JSON refusal");
            assert!(answer["error"].is_string(), "{body}");
            assert!(header(&headers, "content-type").starts_with("application/json"));
        }
    }
}
