//! Checkpoints in a cluster live in etcd and follow the group: the new
//! owner reads what the old one wrote, and a node that no longer holds the
//! group's ownership key cannot overwrite it. Two nodes joined in-process
//! to a real 3-member etcd (Debian's etcd-server).

use crate::common;
use std::sync::Arc;
use std::time::Duration;

use crate::common::cluster::{one_at_a_time, start_etcd};
use warden::cluster::link::join;
use warden::cluster::{Joined, LinkMessage};
use warden::config::{AgentConfig, ClusterSection};
use warden::desired::Desired;
use warden::runtime::{Checkpoint, CheckpointStore};

/// One node, one offline group with one process resource.
const CONFIG: &str = common::cluster::ONE_GROUP_CONFIG;

/// Wait for the link to say the group's key is held.
async fn claimed(node: &mut Joined, group: &str) {
    node.link.claim(group);
    let wait = async {
        while let Some(message) = node.messages.recv().await {
            if let LinkMessage::Claimed(g) = message
                && g == group
            {
                return;
            }
        }
        panic!("the link stopped");
    };
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .expect("the ownership key within 30 s");
}

async fn save<S: CheckpointStore + 'static>(store: &Arc<S>, value: &str) -> Result<(), String> {
    let store = store.clone();
    let record: Checkpoint = [("count".to_string(), value.to_string())].into();
    tokio::task::spawn_blocking(move || store.save("counter", &record))
        .await
        .expect("the save task")
}

async fn load<S: CheckpointStore + 'static>(store: &Arc<S>) -> Checkpoint {
    let store = store.clone();
    tokio::task::spawn_blocking(move || store.load("counter"))
        .await
        .expect("the load task")
        .expect("loads")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_follow_the_owner_and_a_former_owner_cannot_overwrite_them() {
    // No other etcd of the binary runs meanwhile.
    let _one = tokio::task::block_in_place(one_at_a_time);
    let dir = tempfile::tempdir().expect("tempdir");
    let etcd = tokio::task::block_in_place(|| start_etcd(dir.path()));
    let section = ClusterSection {
        name: "checkpoints".to_string(),
        endpoints: etcd.clients.iter().map(|c| format!("http://{c}")).collect(),
        nodes: vec!["n1".to_string(), "n2".to_string()],
        lease_ttl_s: 5,
        fence_guard: false,
        watchdog_device: None,
        fence_device: Vec::new(),
    };
    let desired = Desired::from_file(&AgentConfig::parse(CONFIG).expect("config"));
    let mut n1 = join(&section, "n1", &desired, Default::default())
        .await
        .expect("n1 joins");
    let mut n2 = join(&section, "n2", &desired, Default::default())
        .await
        .expect("n2 joins");
    assert!(n1.created && !n2.created, "n1 wrote the configuration");

    // Only the owner writes.
    claimed(&mut n1, "web").await;
    save(&n1.checkpoints, "1").await.expect("the owner saves");
    let refused = save(&n2.checkpoints, "2")
        .await
        .expect_err("a node without the key is refused");
    assert!(refused.contains("does not hold group web"), "{refused}");

    // The group moves: the new owner reads what the old one wrote.
    n1.link.release("web");
    claimed(&mut n2, "web").await;
    assert_eq!(load(&n2.checkpoints).await["count"], "1");
    save(&n2.checkpoints, "2")
        .await
        .expect("the new owner saves");

    // The former owner can read but no longer write.
    let refused = save(&n1.checkpoints, "3")
        .await
        .expect_err("the former owner is refused");
    assert!(refused.contains("does not hold group web"), "{refused}");
    assert_eq!(load(&n1.checkpoints).await["count"], "2");
    n1.link.leave().await;
    n2.link.leave().await;
}
