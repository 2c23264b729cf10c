//! Prometheus metrics, read when scraped from what the monitor counts.
//!
//! Nothing here runs between scrapes: the checks, their lateness and the
//! events the metrics name are counted where they happen (the actors'
//! atomic counters and the event bus, `monitor::Counters`), and the current
//! states are read from the node's status. A passing check wakes no task
//! for its metrics, and no count can be missed by a reader falling behind.

use std::sync::Arc;

use crate::monitor::{
    CHECK_LAG_BOUNDS_US, CHECK_LATENCY_BOUNDS_US, CheckLag, CheckSnapshot, Counters, EventTally,
};
use crate::node::Status;

pub(crate) struct Metrics {
    /// The monitor's counts (shared with its actors and its event bus).
    counters: Arc<Counters>,
}

impl Metrics {
    /// The metrics of the monitor whose counts are `counters`.
    pub(crate) fn new(counters: Arc<Counters>) -> Metrics {
        Metrics { counters }
    }

    /// The Prometheus text exposition: the resources' gauges (from
    /// `status`, when the node answered), then the counters.
    pub(crate) fn render(&self, status: Option<&Status>) -> String {
        let mut out = Exposition::default();
        if let Some(status) = status {
            out.resource_gauges(status);
        }
        out.checks(&self.counters.checks.snapshot());
        out.events(&self.counters.events.snapshot());
        out.check_lag(&self.counters.check_lag);
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

    /// Every health check run, by check and result, and how long each
    /// took (a series only once its check has run).
    fn checks(&mut self, checks: &[CheckSnapshot]) {
        self.family(
            "warden_health_checks_total",
            "counter",
            "Health checks run, by check and result.",
        );
        for c in checks {
            for (result, n) in [("failed", c.failed), ("healthy", c.healthy)] {
                if n > 0 {
                    self.line(format!(
                        "warden_health_checks_total{{check=\"{}\",result=\"{result}\"}} {n}",
                        c.check
                    ));
                }
            }
        }
        self.family(
            "warden_health_check_latency_seconds",
            "histogram",
            "Time a health check call took.",
        );
        for c in checks.iter().filter(|c| c.count > 0) {
            let bounds = CHECK_LATENCY_BOUNDS_US.iter().map(|us| *us as f64 / 1e6);
            self.histogram(
                "warden_health_check_latency_seconds",
                &format!("check=\"{}\",", c.check),
                bounds.zip(c.cumulative),
                c.sum_us as f64 / 1e6,
                c.count,
            );
        }
    }

    /// The events other than checks that the metrics count.
    fn events(&mut self, c: &EventTally) {
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
        // Counted where they happen, the metrics miss no event; the family
        // stays (always 0) for the dashboards that read it.
        self.family(
            "warden_events_missed_total",
            "counter",
            "Events the metrics missed: none since they are counted as they happen (always 0).",
        );
        self.line("warden_events_missed_total 0".to_string());
    }
}
