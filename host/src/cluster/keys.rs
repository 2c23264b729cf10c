//! Where the cluster keeps things in etcd: every key under one prefix,
//! `/warden/CLUSTER/`, so that several clusters can share an etcd.

/// The key names of one cluster.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// The keys of cluster `cluster`, all under `/warden/CLUSTER/`.
    pub fn new(cluster: &str) -> Keys {
        Keys {
            prefix: format!("/warden/{cluster}/"),
        }
    }

    /// The sequence number of the last log entry.
    pub fn log_head(&self) -> String {
        format!("{}log-head", self.prefix)
    }

    /// Log entry `seq`; zero-padded so that key order is log order.
    pub fn entry(&self, seq: u64) -> String {
        format!("{}log/{seq:020}", self.prefix)
    }

    /// One past the last possible entry key, the end of a range read.
    pub fn log_end(&self) -> String {
        format!("{}log0", self.prefix)
    }

    /// The newest snapshot of the log (see `cluster::snapshot`); outside
    /// the entries' range and prefix, so reads and watches of the entries
    /// never see it.
    pub fn snapshot(&self) -> String {
        format!("{}log-snapshot", self.prefix)
    }

    /// The prefix of every entry.
    pub fn log_prefix(&self) -> String {
        format!("{}log/", self.prefix)
    }

    /// Held by a live agent, attached to its lease.
    pub fn member(&self, node: &str) -> String {
        format!("{}members/{node}", self.prefix)
    }

    /// Where every member key lies (for a listing or a watch).
    pub fn members_prefix(&self) -> String {
        format!("{}members/", self.prefix)
    }

    /// The node a member key names, if `key` is one.
    pub fn member_of<'a>(&self, key: &'a str) -> Option<&'a str> {
        key.strip_prefix(&self.prefix)?.strip_prefix("members/")
    }

    /// The last log entry a live agent has read, attached to its lease:
    /// compaction never deletes an entry a live agent has yet to read.
    pub fn progress(&self, node: &str) -> String {
        format!("{}progress/{node}", self.prefix)
    }

    /// Where every node's reading progress lies (compaction waits for the
    /// slowest).
    pub fn progress_prefix(&self) -> String {
        format!("{}progress/", self.prefix)
    }

    /// A resource's checkpoint record (JSON).
    pub fn checkpoint(&self, resource: &str) -> String {
        format!("{}checkpoints/{resource}", self.prefix)
    }

    /// What a node runs, per type (`cluster::plugins`), on its lease.
    pub fn node_plugins(&self, node: &str) -> String {
        format!("{}plugins/{node}", self.prefix)
    }

    /// Where every node's record of its running builds lies.
    pub fn node_plugins_prefix(&self) -> String {
        format!("{}plugins/", self.prefix)
    }

    /// The build of a type to roll out to every node (`cluster::plugins`).
    pub fn rollout(&self, type_name: &str) -> String {
        format!("{}rollout/{type_name}", self.prefix)
    }

    /// Where every type's announced build lies.
    pub fn rollout_prefix(&self) -> String {
        format!("{}rollout/", self.prefix)
    }

    /// A type pinned on every node (`cluster::plugins`).
    pub fn pin(&self, type_name: &str) -> String {
        format!("{}pins/{type_name}", self.prefix)
    }

    /// Where every type's cluster-wide pin lies.
    pub fn pins_prefix(&self) -> String {
        format!("{}pins/", self.prefix)
    }

    /// Chunk `index` of the component whose SHA-256 is `sha256`.
    pub fn blob_chunk(&self, sha256: &str, index: usize) -> String {
        format!("{}blobs/{sha256}/{index:04}", self.prefix)
    }

    /// Where the chunks of the component with this SHA-256 lie.
    pub fn blob_prefix(&self, sha256: &str) -> String {
        format!("{}blobs/{sha256}/", self.prefix)
    }

    /// Held by the node a group runs on, attached to its lease.
    pub fn owner(&self, group: &str) -> String {
        format!("{}owners/{group}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_keys_sort_in_log_order_and_inside_the_range() {
        let keys = Keys::new("c");
        let (a, b) = (keys.entry(9), keys.entry(10));
        assert!(a < b, "{a} < {b}");
        assert!(b < keys.log_end());
        assert!(b.starts_with(&keys.log_prefix()));
        let snapshot = keys.snapshot();
        assert!(!snapshot.starts_with(&keys.log_prefix()));
        assert!(!(keys.entry(0)..keys.log_end()).contains(&snapshot));
        assert_eq!(keys.member_of(&keys.member("n1")), Some("n1"));
        assert_eq!(keys.member_of(&keys.owner("g")), None);
    }
}
