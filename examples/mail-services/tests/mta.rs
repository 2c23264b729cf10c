//! The MTA accepts mail while the store is down, keeps it across its own
//! crash, and delivers it once the store is up.

mod common;

use common::*;

#[test]
fn queues_while_the_store_is_down_and_delivers_later() {
    let dir = TempDir::new("mta");
    let store_addr = format!("127.0.0.1:{}", free_port());
    let mta_args = |dir: &TempDir| {
        vec![
            "--listen".to_string(),
            "127.0.0.1:0".into(),
            "--store".into(),
            store_addr.clone(),
            "--data".into(),
            dir.arg("mta"),
            "--hostname".into(),
            "mta.test".into(),
            "--retry-ms".into(),
            "50".into(),
        ]
    };
    let args = mta_args(&dir);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut mta = Service::start(MTA, &argv);

    let mut c = Line::connect(mta.addr).unwrap();
    assert_eq!(c.smtp_reply(), "220 mta.test ESMTP warden-mta");
    drop(c);
    let reply = smtp_send(
        mta.addr,
        "from@x.test",
        &["Dave@example.com", "erin@example.com"],
        "Queued mail",
    );
    assert!(reply.starts_with("250 OK queued as "), "{reply}");
    let queued = || std::fs::read_dir(dir.join("mta/queue")).unwrap().count();
    assert_eq!(queued(), 2, "one durable file per recipient");
    mta.wait_log("will retry every 50 ms");

    // A crash after the 250 loses nothing.
    mta.kill9();
    let mut mta = Service::start(MTA, &argv);
    mta.wait_log("2 queued");

    let store = Service::start(
        STORE,
        &["--data", &dir.arg("store"), "--listen", &store_addr],
    );
    let mut s = Line::connect(store.addr).unwrap();
    eventually("delivery to the store", || {
        (s.cmd("SEQ") == "SEQ 2").then_some(())
    });
    let all = s.all();
    let mut boxes: Vec<&str> = all.iter().map(|m| m.1.as_str()).collect();
    boxes.sort();
    assert_eq!(boxes, ["dave", "erin"]);
    assert!(all.iter().all(|m| m.2 == b"Queued mail\r\n"));
    mta.wait_log("reachable again");
    eventually("an empty queue", || (queued() == 0).then_some(()));
    assert!(mta.terminate().success());
}
