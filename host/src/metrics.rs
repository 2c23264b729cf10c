//! Prometheus metrics, counted from the event stream.
//!
//! The counters are fed by one task that reads every event, so nothing on
//! the path of a health check takes a lock for metrics; the current states
//! are read from the node's status when scraped.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::monitor::{CHECK_LAG_BOUNDS_US, CheckLag, Event, EventKind, ResourceState};
use crate::node::Status;

/// Upper bounds of the health-check latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 1.0, 10.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    total: u64,
}

#[derive(Default)]
struct Counters {
    /// (check, result) -> count
    checks: BTreeMap<(&'static str, &'static str), u64>,
    latency: BTreeMap<&'static str, Histogram>,
    cut_offs: BTreeMap<&'static str, u64>,
    restarts: BTreeMap<String, u64>,
    failovers: u64,
    process_exits: u64,
    /// Plugin events by action (swapped, rolled-back, rejected, loaded).
    plugins: BTreeMap<String, u64>,
    lagged: u64,
}

pub(crate) struct Metrics {
    counters: Mutex<Counters>,
    /// How late checks start, counted by the actors themselves (atomics):
    /// a lateness is known where the check starts, not from its event.
    check_lag: Arc<CheckLag>,
}

impl Metrics {
    /// Count every event from `events` until the stream closes; expose
    /// `check_lag` (the monitor's) as it is.
    pub(crate) fn spawn(
        mut events: broadcast::Receiver<Event>,
        check_lag: Arc<CheckLag>,
    ) -> Arc<Metrics> {
        let metrics = Arc::new(Metrics {
            counters: Mutex::default(),
            check_lag,
        });
        let feed = metrics.clone();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(event) => feed.count(&event),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        feed.lock().lagged += missed
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        metrics
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn count(&self, event: &Event) {
        let mut c = self.lock();
        match &event.kind {
            EventKind::Check {
                check,
                healthy,
                latency_us,
                ..
            } => {
                let result = if *healthy { "healthy" } else { "failed" };
                *c.checks.entry((check, result)).or_default() += 1;
                let seconds = *latency_us as f64 / 1e6;
                let h = c.latency.entry(check).or_default();
                h.total += 1;
                h.sum += seconds;
                for (i, bound) in BUCKETS.iter().enumerate() {
                    if seconds <= *bound {
                        h.counts[i] += 1;
                    }
                }
            }
            EventKind::CutOff { call, .. } => *c.cut_offs.entry(call).or_default() += 1,
            EventKind::State { from, to, .. } => {
                if *from == ResourceState::Failed && *to == ResourceState::OnlinePending {
                    *c.restarts.entry(event.resource.clone()).or_default() += 1;
                }
            }
            EventKind::Policy { action, reason } => {
                if action == "move" && reason.starts_with("failover") {
                    c.failovers += 1;
                }
            }
            EventKind::ProcessExited { .. } => c.process_exits += 1,
            EventKind::Plugin { action, .. } => *c.plugins.entry(action.clone()).or_default() += 1,
            EventKind::TerminateFailed { .. } | EventKind::Copy { .. } => {}
        }
    }

    /// The Prometheus text exposition: the resources' gauges (from
    /// `status`, when the node answered), then the counters.
    pub(crate) fn render(&self, status: Option<&Status>) -> String {
        let mut out = Exposition::default();
        if let Some(status) = status {
            out.resource_gauges(status);
        }
        out.counters(&self.lock());
        out.check_lag(&self.check_lag);
        out.text
    }
}

/// The Prometheus text exposition being written: each metric family's
/// `# HELP` and `# TYPE` lines, then its samples, a line each.
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    /// One line of the exposition.
    fn line(&mut self, text: String) {
        self.text.push_str(&text);
        self.text.push('\n');
    }

    /// The `# HELP` and `# TYPE` lines that open the family `name`.
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        self.line(format!("# HELP {name} {help}"));
        self.line(format!("# TYPE {name} {kind}"));
    }

    /// One histogram's series: a `_bucket` line per upper bound (seconds)
    /// with its cumulative count, `+Inf`, `_sum` and `_count`. `labels`
    /// (`check="is-alive",`, with its comma, or empty) go before `le`.
    fn histogram(
        &mut self,
        name: &str,
        labels: &str,
        cumulative: impl Iterator<Item = (f64, u64)>,
        sum_seconds: f64,
        count: u64,
    ) {
        for (bound, n) in cumulative {
            self.line(format!("{name}_bucket{{{labels}le=\"{bound}\"}} {n}"));
        }
        self.line(format!("{name}_bucket{{{labels}le=\"+Inf\"}} {count}"));
        let labels = labels.trim_end_matches(',');
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        self.line(format!("{name}_sum{braces} {sum_seconds}"));
        self.line(format!("{name}_count{braces} {count}"));
    }
    /// Each resource's state and its failures counted against the restart
    /// threshold.
    fn resource_gauges(&mut self, status: &Status) {
        self.family(
            "warden_resource_state",
            "gauge",
            "1 for the state each resource is in on this node.",
        );
        for group in &status.groups {
            for r in &group.resources {
                // This node's monitor's state, not the owner's report the
                // status shows elsewhere: a scrape of every node counts
                // each resource once.
                self.line(format!(
                    "warden_resource_state{{resource=\"{}\",group=\"{}\",type=\"{}\",state=\"{}\"}} 1",
                    r.name, group.name, r.type_name, r.on_this_node
                ));
            }
        }
        self.family(
            "warden_resource_failures_in_period",
            "gauge",
            "Failures counted against the restart threshold.",
        );
        for group in &status.groups {
            for r in &group.resources {
                self.line(format!(
                    "warden_resource_failures_in_period{{resource=\"{}\"}} {}",
                    r.name, r.failures_in_period
                ));
            }
        }
        self.copy_gauges(status);
    }

    /// Each copy's queues and lag (resources with copies), as the engine
    /// counts them: a copy without a status of the current generation has
    /// no sample.
    fn copy_gauges(&mut self, status: &Status) {
        type Pick = fn(&crate::node::CopyStatusView) -> Option<u64>;
        let families: [(&str, &str, Pick); 3] = [
            (
                "warden_copy_queue_length",
                "Log positions the active copy holds that this copy has not copied yet.",
                |c| c.copy_queue_length,
            ),
            (
                "warden_replay_queue_length",
                "Log positions this copy holds and has not replayed yet.",
                |c| c.replay_queue_length,
            ),
            (
                "warden_copy_lag",
                "How far this copy lags behind the newest data, as failover counts it.",
                |c| c.lag,
            ),
        ];
        for (name, help, pick) in families {
            self.family(name, "gauge", help);
            for group in &status.groups {
                for r in &group.resources {
                    for copy in &r.copies {
                        if let Some(value) = pick(copy) {
                            self.line(format!(
                                "{name}{{resource=\"{}\",node=\"{}\"}} {value}",
                                r.name, copy.node
                            ));
                        }
                    }
                }
            }
        }
    }

    /// How late checks started against their schedule: a histogram in
    /// seconds, and the latest start seen since the agent started.
    fn check_lag(&mut self, lag: &CheckLag) {
        let s = lag.snapshot();
        let name = "warden_check_lateness_seconds";
        self.family(
            name,
            "histogram",
            "How long after it was due each scheduled health check started.",
        );
        let bounds = CHECK_LAG_BOUNDS_US.iter().map(|us| *us as f64 / 1e6);
        self.histogram(
            name,
            "",
            bounds.zip(s.cumulative),
            s.sum_us as f64 / 1e6,
            s.count,
        );
        self.family(
            "warden_check_lateness_max_seconds",
            "gauge",
            "The latest any scheduled health check started since the agent started.",
        );
        self.line(format!(
            "warden_check_lateness_max_seconds {}",
            s.max_us as f64 / 1e6
        ));
    }

    /// What the metrics counted from the event stream.
    fn counters(&mut self, c: &Counters) {
        self.family(
            "warden_health_checks_total",
            "counter",
            "Health checks run, by check and result.",
        );
        for ((check, result), n) in &c.checks {
            self.line(format!(
                "warden_health_checks_total{{check=\"{check}\",result=\"{result}\"}} {n}"
            ));
        }
        self.family(
            "warden_health_check_latency_seconds",
            "histogram",
            "Time a health check call took.",
        );
        for (check, h) in &c.latency {
            self.histogram(
                "warden_health_check_latency_seconds",
                &format!("check=\"{check}\","),
                BUCKETS.iter().copied().zip(h.counts),
                h.sum,
                h.total,
            );
        }
        self.family(
            "warden_cut_off_calls_total",
            "counter",
            "Calls into plugins cut off or trapped, by call.",
        );
        for (call, n) in &c.cut_offs {
            self.line(format!("warden_cut_off_calls_total{{call=\"{call}\"}} {n}"));
        }
        self.family(
            "warden_restarts_total",
            "counter",
            "Restarts of failed resources.",
        );
        for (resource, n) in &c.restarts {
            self.line(format!(
                "warden_restarts_total{{resource=\"{resource}\"}} {n}"
            ));
        }
        self.family("warden_failovers_total", "counter", "Groups failed over.");
        self.line(format!("warden_failovers_total {}", c.failovers));
        self.family(
            "warden_process_exits_total",
            "counter",
            "Managed processes that exited unasked.",
        );
        self.line(format!("warden_process_exits_total {}", c.process_exits));
        self.family(
            "warden_plugin_events_total",
            "counter",
            "Plugin swaps, roll-backs, rejections and loads.",
        );
        for (action, n) in &c.plugins {
            self.line(format!(
                "warden_plugin_events_total{{action=\"{action}\"}} {n}"
            ));
        }
        self.family(
            "warden_events_missed_total",
            "counter",
            "Events the metrics fell too far behind to count.",
        );
        self.line(format!("warden_events_missed_total {}", c.lagged));
    }
}
