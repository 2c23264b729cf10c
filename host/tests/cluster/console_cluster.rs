//! A 3-agent cluster on etcd (`common::cluster`), each node's console in
//! the same browser: all show the same groups and owners, and a move
//! confirmed in one changes the owner everywhere.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common;
use crate::common::webdriver::{Session, WAIT, browser, screenshots};

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
