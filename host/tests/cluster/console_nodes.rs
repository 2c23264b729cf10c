//! The nodes of a 3-agent cluster in each node's console (a real headless
//! Chromium, see `tests/all/console.rs`): every console shows the three
//! nodes with the same states as every CLI, a paused node shows "paused"
//! everywhere and a killed one "down"; a resource another node owns shows
//! that node's reports (and says its checks are seen there only); a move
//! goes to the target picked in the dialog, after the dialog has shown the
//! policy's answer for that target.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common;
use crate::common::cluster::{Cluster, NODES, TOKEN};
use crate::common::webdriver::{Session, WAIT, browser, screenshots};

/// Each node's name and state as the console's node table shows them.
fn shown_nodes(session: &Session) -> Value {
    session.run(
        "return [...document.querySelectorAll('#nodes tbody tr')].map(r =>
           [r.cells[0].innerText, r.querySelector('[data-state]').dataset.state]);",
        json!([]),
    )
}

/// The same, as agent `i`'s `warden status --json` says.
fn cli_nodes(cluster: &Cluster, i: usize) -> Option<Value> {
    let status = cluster.status(i)?;
    let nodes = status["nodes"]
        .as_array()?
        .iter()
        .map(|n| json!([n["name"], n["state"]]));
    Some(Value::Array(nodes.collect()))
}

/// Open node `i`'s console (each node is an origin of its own, so each asks
/// for the token once per tab).
fn open(session: &Session, cluster: &Cluster, i: usize) {
    session.goto(&format!("http://{}/ui", cluster.apis[i]));
    session.wait_for("#token, #nodes", WAIT);
    if session.find("#token").is_some() {
        session.type_into("#token", TOKEN);
        session.click("#token-form button[type=submit]");
    }
    session.wait_for("#nodes", WAIT);
}

/// Wait until node `i`'s console and CLI both show `expected` for the
/// nodes.
fn nodes_everywhere_as(session: &Session, cluster: &Cluster, i: usize, expected: &Value) {
    open(session, cluster, i);
    common::wait_until(
        &format!(
            "{}'s console and CLI to show the nodes as {expected}",
            NODES[i]
        ),
        WAIT,
        || {
            let shown = shown_nodes(session);
            (shown == *expected && cli_nodes(cluster, i).as_ref() == Some(expected)).then_some(())
        },
    );
}

fn nodes(states: [&str; 3]) -> Value {
    json!([["n1", states[0]], ["n2", states[1]], ["n3", states[2]]])
}

#[test]
fn every_node_shows_the_nodes_alike_and_a_move_goes_to_the_node_picked() {
    let Some(driver) = browser() else { return };
    let mut cluster = Cluster::new();
    cluster.start_joined(0);
    cluster.wait_served_by("n1", Duration::from_secs(60));
    cluster.start_joined(1);
    cluster.start_joined(2);
    let session = driver.session();

    let all_up = nodes(["up", "up", "up"]);
    for i in 0..3 {
        nodes_everywhere_as(&session, &cluster, i, &all_up);
    }
    let text = cluster.ok(1, &["status"]);
    for node in NODES {
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with(node) && l.contains(" up")),
            "warden status on n2 prints {node} up:\n{text}"
        );
    }

    // n2 does not run web-service: it shows n1's reports, and no check.
    open(&session, &cluster, 1);
    session.until(
        "n2's console to show web-service Online as n1 reported",
        WAIT,
        "const row = [...document.querySelectorAll('#resources tbody tr')].find(r => r.cells[0].innerText === 'web-service');
         return row && row.cells[3].innerText === 'Online as n1 reported' && row.cells[6].innerText === 'seen on n1 only';",
    );
    let web = |i: usize| {
        cluster
            .status(i)
            .map(|s| s["groups"][0]["resources"][0].clone())
    };
    let on_n2 = web(1).expect("n2's status");
    assert_eq!(on_n2["state_from"], "owner-reports", "{on_n2}");
    assert_eq!(on_n2["last_check"], Value::Null, "{on_n2}");
    let on_n1 = common::wait_until("n1 to report a check of web-service", WAIT, || {
        web(0).filter(|r| r["last_check"]["latency_us"].is_u64())
    });
    assert_eq!(on_n1["state_from"], Value::Null, "this node's: {on_n1}");
    eprintln!(
        "web-service's last check on n1: {} µs",
        on_n1["last_check"]["latency_us"]
    );
    session.screenshot(&screenshots().join("cluster-nodes-n2.png"));

    // n3 paused (asked of n3): "paused" on every node's console and CLI.
    cluster.ok(2, &["node", "pause"]);
    let n3_paused = nodes(["up", "up", "paused"]);
    for i in 0..3 {
        nodes_everywhere_as(&session, &cluster, i, &n3_paused);
    }
    session.screenshot(&screenshots().join("cluster-n3-paused.png"));

    // On n1's console: the picker offers the group's other nodes; for the
    // paused n3 the policy's answer is a refusal, and it is shown.
    open(&session, &cluster, 0);
    session.click("[data-key='group-move-web']");
    session.wait_for("dialog[open] #move-target", WAIT);
    let offered = session.run(
        "return [...document.querySelectorAll('#move-target option')].map(o => o.value);",
        json!([]),
    );
    assert_eq!(offered, json!(["", "n2", "n3"]), "n1 owns web: not offered");
    session.click("#move-target option[value='n3']");
    session.wait_for("dialog[open] #what-if[data-target='n3']", WAIT);
    let plan = session.text("#what-if");
    assert!(
        plan.contains("refused") && plan.contains("n3 is paused"),
        "the policy's answer for paused n3: {plan}"
    );
    session.screenshot(&screenshots().join("cluster-move-to-paused.png"));
    session.click("dialog[open] button.secondary");
    session.until(
        "the dialog closed",
        WAIT,
        "return !document.querySelector('dialog');",
    );

    // n3 resumed, then web moved to it: the one picked, not the policy's
    // best other node (n2, the next preferred owner).
    cluster.ok(2, &["node", "resume"]);
    for i in 0..3 {
        nodes_everywhere_as(&session, &cluster, i, &all_up);
    }
    open(&session, &cluster, 0);
    session.click("[data-key='group-move-web']");
    session.wait_for("dialog[open] #what-if[data-target='']", WAIT);
    let best = session.text("#what-if");
    assert!(best.contains("n2"), "the policy's best other node: {best}");
    session.click("#move-target option[value='n3']");
    session.wait_for("dialog[open] #what-if[data-target='n3']", WAIT);
    let plan = session.text("#what-if");
    eprintln!("what-if for the move to n3, as the dialog shows it: {plan}");
    assert!(
        plan.contains("n3") && !plan.contains("refused"),
        "the policy's answer for n3: {plan}"
    );
    session.screenshot(&screenshots().join("cluster-move-picker.png"));
    session.click("#dialog-confirm");
    for (i, node) in NODES.iter().enumerate() {
        common::wait_until(
            &format!("{node}'s CLI to show web on n3"),
            Duration::from_secs(60),
            || {
                let status = cluster.status(i)?;
                (status["groups"][0]["owner"] == "n3" && status["groups"][0]["state"] == "online")
                    .then_some(())
            },
        );
    }
    cluster.wait_served_by("n3", Duration::from_secs(60));
    session.until(
        "n1's console to show web on n3, as n3 reported",
        WAIT,
        "const g = document.querySelector('#groups tbody tr');
         const r = [...document.querySelectorAll('#resources tbody tr')].find(r => r.cells[0].innerText === 'web-service');
         return g && g.cells[2].innerText === 'n3' && r && r.cells[3].innerText === 'Online as n3 reported';",
    );
    session.screenshot(&screenshots().join("cluster-moved-to-n3.png"));

    // n2 killed: once its lease is gone, n1's and n3's consoles show it down.
    cluster.kill_agent(1);
    let n2_down = nodes(["up", "down", "up"]);
    for i in [0, 2] {
        common::wait_until(
            &format!("{}'s CLI to show n2 down", NODES[i]),
            Duration::from_secs(60),
            || (cli_nodes(&cluster, i).as_ref() == Some(&n2_down)).then_some(()),
        );
        nodes_everywhere_as(&session, &cluster, i, &n2_down);
    }
    let errors: Vec<Value> = session
        .browser_log()
        .into_iter()
        .filter(|e| e["level"] == "SEVERE")
        .collect();
    // n2's console was open in this tab's history; its agent is gone, but
    // nothing shown now came from it.
    assert!(
        errors.iter().all(|e| e["message"]
            .to_string()
            .contains(&cluster.apis[1].to_string())),
        "the consoles logged errors: {errors:#?}"
    );
}

#[test]
fn a_node_cut_off_from_etcd_shows_itself_fenced_and_the_others_show_it_down() {
    let Some(driver) = browser() else { return };
    let mut cluster = Cluster::new();
    cluster.start_joined(0);
    cluster.wait_served_by("n1", Duration::from_secs(60));
    cluster.start_joined(1);
    cluster.start_joined(2);
    let session = driver.session();
    nodes_everywhere_as(&session, &cluster, 2, &nodes(["up", "up", "up"]));

    // n3 loses etcd: it fences itself half way to its lease's expiry, and
    // once the lease is gone the others mark it down.
    cluster.proxies[2].cut();
    let fenced = common::wait_until(
        "n3's CLI to show itself fenced",
        Duration::from_secs(60),
        || {
            let status = cluster.status(2)?;
            let me = status["nodes"]
                .as_array()?
                .iter()
                .find(|n| n["name"] == "n3")?
                .clone();
            (me["state"] == "fenced").then_some(me)
        },
    );
    eprintln!("n3 about itself: {fenced}");
    assert!(
        fenced["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "a fenced node says why: {fenced}"
    );
    open(&session, &cluster, 2);
    session.until(
        "n3's console to show itself fenced, with the reason",
        WAIT,
        "const row = [...document.querySelectorAll('#nodes tbody tr')].find(r => r.cells[0].innerText === 'n3');
         return row && row.querySelector('[data-state]').dataset.state === 'fenced' && row.cells[3].innerText.length > 0;",
    );
    session.screenshot(&screenshots().join("cluster-n3-fenced.png"));
    let n3_down = nodes(["up", "up", "down"]);
    for i in [0, 1] {
        common::wait_until(
            &format!("{}'s CLI to show n3 down", NODES[i]),
            Duration::from_secs(60),
            || (cli_nodes(&cluster, i).as_ref() == Some(&n3_down)).then_some(()),
        );
        nodes_everywhere_as(&session, &cluster, i, &n3_down);
    }

    // Mended: n3 rejoins, and every node shows it up again.
    cluster.proxies[2].mend();
    let all_up = nodes(["up", "up", "up"]);
    for (i, node) in NODES.iter().enumerate() {
        common::wait_until(
            &format!("{node}'s CLI to show n3 up again"),
            Duration::from_secs(60),
            || (cli_nodes(&cluster, i).as_ref() == Some(&all_up)).then_some(()),
        );
        nodes_everywhere_as(&session, &cluster, i, &all_up);
    }
}
