//! The agent's connection to etcd: one client for every endpoint the
//! operator named, and a request that goes to another member when the one
//! in use fails.
//!
//! Why not etcd-client's own balancing (one client over every endpoint)?
//! It keeps sending requests, and the lease's keep-alive stream, to a
//! member that died: with the leader killed, renewals went on timing out
//! against it until every agent fenced itself, though two members of
//! three were there to answer. Here each member has a client of its own;
//! every task asks the *preferred* member, and the first failure (an
//! error, or no answer within [`ATTEMPT`]) makes the next member the
//! preferred one for everyone, so a lost member costs one attempt, not a
//! fence.
//!
//! Requests are made with `require_leader`: a member cut off from the
//! majority says so at once instead of holding the request until it times
//! out, and a watch on it is cancelled, so it is re-established elsewhere.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use etcd_client::{Client, ConnectOptions};
use tokio::time::timeout;

/// How long one request to one member may take before the next member is
/// asked. Well inside the fence margin (half the lease TTL, at least a
/// second), and longer than an etcd election on a healthy network.
pub const ATTEMPT: Duration = Duration::from_millis(1500);

/// Every member the operator named; cheap to clone (the clients are
/// shared).
#[derive(Clone)]
pub struct Etcd {
    inner: Arc<Inner>,
}

struct Inner {
    members: Vec<Member>,
    /// The index of the member every task asks first.
    preferred: AtomicUsize,
}

struct Member {
    endpoint: String,
    client: Client,
}

impl Etcd {
    /// A client for each endpoint. Connections are made on first use, so a
    /// member that is down now is no error: it is skipped while it is.
    pub async fn connect(endpoints: &[String]) -> Result<Etcd> {
        if endpoints.is_empty() {
            return Err(anyhow!("no etcd endpoint named"));
        }
        let options = ConnectOptions::new()
            .with_connect_timeout(ATTEMPT)
            .with_timeout(ATTEMPT)
            .with_require_leader(true);
        let mut members = Vec::with_capacity(endpoints.len());
        for endpoint in endpoints {
            let client = Client::connect([endpoint.as_str()], Some(options.clone()))
                .await
                .with_context(|| format!("etcd endpoint {endpoint}"))?;
            members.push(Member {
                endpoint: endpoint.clone(),
                client,
            });
        }
        Ok(Etcd {
            inner: Arc::new(Inner {
                members,
                preferred: AtomicUsize::new(0),
            }),
        })
    }

    /// The same members over connections of their own. A client's
    /// connections are driven by the runtime it was made on: the lease
    /// keeper makes its own on its own thread, so that renewals go out
    /// while the agent's runtime is busy (see `link::lease`).
    pub async fn connect_again(&self) -> Result<Etcd> {
        let endpoints: Vec<String> = self
            .inner
            .members
            .iter()
            .map(|member| member.endpoint.clone())
            .collect();
        Etcd::connect(&endpoints).await
    }

    /// The endpoints, for messages.
    pub fn endpoints(&self) -> String {
        self.inner
            .members
            .iter()
            .map(|m| m.endpoint.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// How many members there are.
    pub fn member_count(&self) -> usize {
        self.inner.members.len()
    }

    /// The member to ask now: its index (for [`Etcd::failed`]) and client.
    pub fn preferred(&self) -> (usize, Client) {
        let index = self.inner.preferred.load(Ordering::Relaxed) % self.member_count();
        (index, self.inner.members[index].client.clone())
    }

    /// Member `index`'s client.
    pub fn client(&self, index: usize) -> Client {
        self.inner.members[index % self.member_count()]
            .client
            .clone()
    }

    /// Member `index` answered where the preferred one did not: every
    /// task asks it first from now on.
    pub fn prefer(&self, index: usize) {
        let index = index % self.member_count();
        let before = self.inner.preferred.swap(index, Ordering::Relaxed) % self.member_count();
        if before != index {
            tracing::info!(
                now = %self.inner.members[index].endpoint,
                "etcd member answered first; asking it first"
            );
        }
    }

    /// Member `index` failed a request: if it is still the preferred one,
    /// the next member is. (Several tasks that see one failure move the
    /// preference once.)
    pub fn failed(&self, index: usize) {
        let next = (index + 1) % self.member_count();
        if self
            .inner
            .preferred
            .compare_exchange(index, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            tracing::info!(
                failed = %self.inner.members[index].endpoint,
                now = %self.inner.members[next].endpoint,
                "etcd member did not answer; asking the next one"
            );
        }
    }

    /// Run `request` against the preferred member and, if it fails or does
    /// not answer within [`ATTEMPT`], against each other member in turn.
    /// The error names every member's failure.
    ///
    /// `request` may run more than once, also after an attempt whose answer
    /// was lost but which etcd carried out: it must be idempotent (a read,
    /// a compare-and-swap that recognises its own earlier success).
    pub async fn request<T, F, Fut>(&self, what: &str, mut request: F) -> Result<T>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let mut failures = Vec::new();
        for _ in 0..self.member_count() {
            let (index, client) = self.preferred();
            let endpoint = &self.inner.members[index].endpoint;
            match timeout(ATTEMPT, request(client)).await {
                Ok(Ok(answer)) => return Ok(answer),
                Ok(Err(err)) => failures.push(format!("{endpoint}: {err}")),
                Err(_) => failures.push(format!("{endpoint}: no answer within {ATTEMPT:?}")),
            }
            self.failed(index);
        }
        Err(anyhow!("{what}: {}", failures.join("; ")))
    }
}
