//! Scenario tests in the manner of Pacemaker's scheduler regression tests.
//!
//! Each file in `tests/scenarios/` is a cluster configuration, a list of
//! timestamped events, and — indented under each event — the actions the engine
//! must emit. The runner replays the file, writes the actual actions under the
//! same events, and compares the whole text with the file. Run with
//! `WARDEN_BLESS=1` to write the actual output into the files (then review the
//! diff: that review *is* the test). The format is described in README.md.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::path::Path;
use warden_policy::{
    Action, ClusterConfig, CopyHealth, CopyNodes, CopyStatus, Engine, Event, Failback, GroupConfig,
    Millis, ResourceConfig, RestartAction,
};

#[test]
fn scenarios() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/scenarios exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "scenario"))
        .collect();
    files.sort();
    let bless = std::env::var_os("WARDEN_BLESS").is_some();
    let only = std::env::var("WARDEN_SCENARIO").ok();
    let mut failures = Vec::new();
    let mut ran = 0;
    for path in &files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if only.as_deref().is_some_and(|o| !name.contains(o)) {
            continue;
        }
        ran += 1;
        let expected = std::fs::read_to_string(path).expect("readable scenario");
        let actual = match run(&expected) {
            Ok(a) => a,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        if actual != expected {
            if bless {
                std::fs::write(path, &actual).expect("writable scenario");
            } else {
                failures.push(format!(
                    "{name}: output differs (-expected +actual)\n{}",
                    diff(&expected, &actual)
                ));
            }
        }
    }
    assert!(ran > 0, "no scenario ran");
    assert!(
        failures.is_empty(),
        "{} of {ran} scenarios failed (WARDEN_BLESS=1 rewrites them with the actual output; review the diff):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    if only.is_none() {
        assert!(ran >= 40, "expected at least 40 scenarios, found {ran}");
    }
}

/// Runs one scenario; returns its text with the actual output in place of the
/// indented lines.
fn run(text: &str) -> Result<String, String> {
    let mut r = Runner::default();
    for (i, line) in text.lines().enumerate() {
        if line.starts_with(' ') || line.starts_with('\t') {
            continue; // previous output
        }
        r.out.push_str(line);
        r.out.push('\n');
        r.line(line)
            .map_err(|e| format!("line {}: {e}\n  {line}", i + 1))?;
    }
    Ok(r.out)
}

#[derive(Default)]
struct Runner {
    out: String,
    /// Configuration being written (before `start`, or between `reconfigure`
    /// and `commit`).
    config: Option<ClusterConfig>,
    engine: Option<Engine>,
    now: Millis,
    /// Requests not yet answered, oldest first, as the events that confirm them.
    outstanding: VecDeque<Event>,
}

impl Runner {
    fn emit(&mut self, s: &str) {
        let _ = writeln!(self.out, "  {s}");
    }

    fn line(&mut self, line: &str) -> Result<(), String> {
        // A comment may also end a line.
        let line = line.split(" #").next().unwrap_or_default().trim();
        if line.is_empty() || line.starts_with('#') {
            return Ok(());
        }
        let mut words: Vec<&str> = line.split_whitespace().collect();
        if words[0] == "at" {
            let t = words.get(1).ok_or("`at` needs a time")?;
            self.now = match t.strip_prefix('+') {
                Some(rel) => self.now + rel.parse::<Millis>().map_err(|e| e.to_string())?,
                None => t.parse::<Millis>().map_err(|e| e.to_string())?,
            };
            words.drain(..2);
        }
        let Some(&cmd) = words.first() else {
            return Err("missing command".into());
        };
        match cmd {
            "node" | "singleton-type" | "group" | "resource" => {
                let cfg = self.config.get_or_insert_with(ClusterConfig::default);
                config_line(cfg, &words)
            }
            "start" => {
                let cfg = self.config.take().unwrap_or_default();
                match Engine::new(cfg) {
                    Ok(e) => self.engine = Some(e),
                    Err(e) => self.emit(&format!("config error: {e}")),
                }
                Ok(())
            }
            "reconfigure" => {
                self.config = Some(ClusterConfig::default());
                Ok(())
            }
            "commit" => {
                let cfg = self.config.take().unwrap_or_default();
                let now = self.now;
                let res = self.engine_mut()?.reconfigure(cfg, now);
                match res {
                    Ok(actions) => self.record(&actions),
                    Err(e) => self.emit(&format!("config error: {e}")),
                }
                Ok(())
            }
            "show" => self.show(&words[1..]),
            "settle" => self.settle(),
            "what-if" => {
                let ev = parse_event(&words[1..])?;
                let now = self.now;
                let engine = self.engine_mut()?;
                let before = format!(
                    "{:?}",
                    (engine.groups(), engine.resources(), engine.nodes())
                );
                let actions = engine.what_if(ev, now);
                let after = format!(
                    "{:?}",
                    (engine.groups(), engine.resources(), engine.nodes())
                );
                for a in &actions {
                    self.emit(&a.to_string());
                }
                if before != after {
                    self.emit("!! what-if changed the state");
                }
                Ok(())
            }
            _ => {
                let ev = parse_event(&words)?;
                self.send(ev)
            }
        }
    }

    fn engine_mut(&mut self) -> Result<&mut Engine, String> {
        self.engine
            .as_mut()
            .ok_or_else(|| "no engine: missing or failed `start`".to_string())
    }

    fn send(&mut self, ev: Event) -> Result<(), String> {
        // An explicit report about a resource answers its outstanding request;
        // a dead node answers nothing.
        match &ev {
            Event::ResourceOnline { resource, .. }
            | Event::ResourceOffline { resource, .. }
            | Event::ResourceFailed { resource, .. } => {
                self.outstanding.retain(|o| !about(o, resource))
            }
            Event::CopyActivated { resource, node }
            | Event::CopyDeactivated { resource, node }
            | Event::PassiveCopyStarted { resource, node }
            | Event::PassiveCopyStopped { resource, node }
            | Event::CopyFailed { resource, node, .. } => self
                .outstanding
                .retain(|o| answer_about(o).is_none_or(|a| a != (resource, node))),
            Event::NodeDown(n) => self.outstanding.retain(|o| !on_node(o, n)),
            _ => {}
        }
        let now = self.now;
        let actions = self.engine_mut()?.handle(ev, now);
        self.record(&actions);
        Ok(())
    }

    fn record(&mut self, actions: &[Action]) {
        for a in actions {
            self.emit(&a.to_string());
            match a {
                Action::BringOnline { resource, node } => {
                    self.outstanding.push_back(Event::ResourceOnline {
                        resource: resource.clone(),
                        node: node.clone(),
                    })
                }
                Action::TakeOffline { resource, node } => {
                    self.outstanding.push_back(Event::ResourceOffline {
                        resource: resource.clone(),
                        node: node.clone(),
                    })
                }
                Action::ActivateCopy { resource, node, .. } => {
                    self.outstanding.push_back(Event::CopyActivated {
                        resource: resource.clone(),
                        node: node.clone(),
                    })
                }
                Action::DeactivateCopy { resource, node } => {
                    self.outstanding.push_back(Event::CopyDeactivated {
                        resource: resource.clone(),
                        node: node.clone(),
                    })
                }
                Action::StartPassiveCopy { resource, node, .. } => {
                    // A re-pointed copy answers once: the request replaces
                    // one still outstanding.
                    let answer = Event::PassiveCopyStarted {
                        resource: resource.clone(),
                        node: node.clone(),
                    };
                    if !self.outstanding.contains(&answer) {
                        self.outstanding.push_back(answer);
                    }
                }
                Action::StopPassiveCopy { resource, node } => {
                    self.outstanding.push_back(Event::PassiveCopyStopped {
                        resource: resource.clone(),
                        node: node.clone(),
                    })
                }
                _ => {}
            }
        }
    }

    /// Plays a monitor for which everything succeeds: answers every
    /// outstanding request, oldest first, until none is left.
    fn settle(&mut self) -> Result<(), String> {
        let mut budget = 1000;
        while let Some(ev) = self.outstanding.pop_front() {
            budget -= 1;
            if budget == 0 {
                return Err("settle did not converge".into());
            }
            let _ = writeln!(self.out, "  > {ev}");
            let now = self.now;
            let actions = self.engine_mut()?.handle(ev, now);
            self.record(&actions);
        }
        Ok(())
    }

    fn show(&mut self, what: &[&str]) -> Result<(), String> {
        let engine = self.engine.as_ref().ok_or("no engine")?;
        let mut lines = Vec::new();
        match what {
            ["deadline"] => lines.push(match engine.next_deadline() {
                Some(t) => format!("next deadline {t}"),
                None => "next deadline none".to_string(),
            }),
            ["copies", name] => {
                let c = engine
                    .copies(name)
                    .ok_or_else(|| format!("{name} is not a resource with copies"))?;
                let mut head = format!("copies {} generation={}", c.resource, c.generation);
                if let Some(a) = &c.active {
                    let _ = write!(head, " active={a}");
                }
                if let Some(p) = c.newest_position {
                    let _ = write!(head, " newest={p}");
                }
                let _ = write!(head, " max-lag={}", c.max_lag_on_failover);
                lines.push(head);
                for copy in &c.copies {
                    let mut l = format!("copy {} {}", copy.node, copy.state);
                    if let Some(source) = &copy.source {
                        let _ = write!(l, " source={source}");
                    }
                    if let Some(status) = &copy.status {
                        let _ = write!(l, " [{status}]");
                    }
                    if let Some(lag) = copy.lag {
                        let _ = write!(l, " lag={lag}");
                    }
                    if let Some(q) = copy.copy_queue_length {
                        let _ = write!(l, " copy-queue={q}");
                    }
                    if let Some(q) = copy.replay_queue_length {
                        let _ = write!(l, " replay-queue={q}");
                    }
                    if let Some(r) = &copy.failed_reason {
                        let _ = write!(l, " reason=\"{r}\"");
                    }
                    if let Some(t) = copy.retry_at {
                        let _ = write!(l, " retry-at={t}");
                    }
                    if let Some(r) = &copy.reseeded {
                        let _ = write!(l, " reseeded=\"{r}\"");
                    }
                    if let Some(b) = &copy.activation_blocked {
                        let _ = write!(l, " blocked=\"{b}\"");
                    }
                    lines.push(l);
                }
            }
            ["nodes"] => {
                for n in engine.nodes() {
                    let rec = if n.recovery_enabled {
                        ""
                    } else {
                        " recovery=off"
                    };
                    lines.push(format!("node {} {}{rec}", n.name, n.status));
                }
            }
            [name] => {
                if let Some(g) = engine.group(name) {
                    let mut s = format!("group {} {}", g.name, g.state);
                    if let Some(o) = &g.owner {
                        let _ = write!(s, " owner={o}");
                    }
                    if let Some(t) = &g.moving_to {
                        let _ = write!(s, " moving-to={t}");
                    }
                    let _ = write!(s, " failovers={}", g.failovers_in_period);
                    if let Some(r) = &g.failed_reason {
                        let _ = write!(s, " reason=\"{r}\"");
                    }
                    lines.push(s);
                    for r in engine.resources().iter().filter(|r| r.group == g.name) {
                        lines.push(resource_line(r));
                    }
                } else if let Some(r) = engine.resource(name) {
                    lines.push(resource_line(&r));
                } else {
                    return Err(format!("nothing named {name}"));
                }
            }
            _ => {
                return Err("show NAME | show copies RESOURCE | show nodes | show deadline".into());
            }
        }
        for l in lines {
            self.emit(&l);
        }
        Ok(())
    }
}

fn resource_line(r: &warden_policy::ResourceView) -> String {
    let mut s = format!("resource {} {}", r.name, r.state);
    if let Some(n) = &r.node {
        let _ = write!(s, " on={n}");
    }
    let _ = write!(s, " failures={}", r.failures_in_period);
    if let Some(t) = r.restart_at {
        let _ = write!(s, " restart-at={t}");
    }
    if let Some(t) = r.retry_at {
        let _ = write!(s, " retry-at={t}");
    }
    if let Some(x) = &r.failed_reason {
        let _ = write!(s, " reason=\"{x}\"");
    }
    s
}

/// An outstanding answer about the resource `r` itself (on its owner).
fn about(ev: &Event, r: &str) -> bool {
    matches!(ev, Event::ResourceOnline { resource, .. }
        | Event::ResourceOffline { resource, .. }
        | Event::CopyActivated { resource, .. }
        | Event::CopyDeactivated { resource, .. } if resource == r)
}

/// The resource and node an outstanding answer is about.
fn answer_about(ev: &Event) -> Option<(&String, &String)> {
    match ev {
        Event::ResourceOnline { resource, node }
        | Event::ResourceOffline { resource, node }
        | Event::CopyActivated { resource, node }
        | Event::CopyDeactivated { resource, node }
        | Event::PassiveCopyStarted { resource, node }
        | Event::PassiveCopyStopped { resource, node } => Some((resource, node)),
        _ => None,
    }
}

fn on_node(ev: &Event, n: &str) -> bool {
    answer_about(ev).is_some_and(|(_, node)| node == n)
}

/// `generation=G copied=C [replayed=R] [lag=L] healthy|failed: REASON|refusing: REASON`
/// (replayed defaults to copied, lag to 0).
fn parse_status(w: &[&str]) -> Result<CopyStatus, String> {
    let mut status = CopyStatus {
        generation: 0,
        copied: 0,
        replayed: 0,
        lag: 0,
        health: CopyHealth::Healthy,
    };
    let mut replayed = None;
    for (i, word) in w.iter().enumerate() {
        if *word == "healthy" {
            break;
        }
        if *word == "failed:" {
            status.health = CopyHealth::Failed(w[i + 1..].join(" "));
            break;
        }
        if *word == "refusing:" {
            status.health = CopyHealth::Refusing(w[i + 1..].join(" "));
            break;
        }
        if *word == "diverged:" {
            status.health = CopyHealth::Diverged(w[i + 1..].join(" "));
            break;
        }
        let (k, v) = word.split_once('=').ok_or_else(|| {
            format!("expected key=value, healthy, failed:, refusing: or diverged:, got {word}")
        })?;
        let v: u64 = v.parse().map_err(|_| format!("not a number: {v}"))?;
        match k {
            "generation" => status.generation = v,
            "copied" => status.copied = v,
            "replayed" => replayed = Some(v),
            "lag" => status.lag = v,
            _ => return Err(format!("unknown status key {k}")),
        }
    }
    status.replayed = replayed.unwrap_or(status.copied);
    Ok(status)
}

fn parse_event(w: &[&str]) -> Result<Event, String> {
    let s = |i: usize| -> Result<String, String> {
        w.get(i)
            .map(|x| x.to_string())
            .ok_or_else(|| format!("`{}` needs more arguments", w[0]))
    };
    Ok(match w.first().copied().unwrap_or("") {
        "node-up" => Event::NodeUp(s(1)?),
        "node-down" => Event::NodeDown(s(1)?),
        "node-paused" => Event::NodePaused(s(1)?),
        "node-resumed" => Event::NodeResumed(s(1)?),
        "node-draining" => Event::NodeDraining(s(1)?),
        "recovery" => Event::RecoveryActions {
            node: s(1)?,
            enabled: match s(2)?.as_str() {
                "on" => true,
                "off" => false,
                x => return Err(format!("recovery on|off, not {x}")),
            },
        },
        "group-online" => Event::GroupOnlineRequested(s(1)?),
        "group-offline" => Event::GroupOfflineRequested(s(1)?),
        "move" => Event::MoveRequested {
            group: s(1)?,
            to: w.get(2).map(|x| x.to_string()),
        },
        "online" => Event::ResourceOnline {
            resource: s(1)?,
            node: s(2)?,
        },
        "offline" => Event::ResourceOffline {
            resource: s(1)?,
            node: s(2)?,
        },
        "failed" => Event::ResourceFailed {
            resource: s(1)?,
            node: s(2)?,
            reason: if w.len() > 3 {
                w[3..].join(" ")
            } else {
                "failed".to_string()
            },
        },
        "tick" => Event::Tick,
        "copy-status" => Event::CopyStatusReported {
            resource: s(1)?,
            node: s(2)?,
            status: parse_status(w.get(3..).unwrap_or_default())?,
        },
        "copy-activated" => Event::CopyActivated {
            resource: s(1)?,
            node: s(2)?,
        },
        "copy-deactivated" => Event::CopyDeactivated {
            resource: s(1)?,
            node: s(2)?,
        },
        "passive-started" => Event::PassiveCopyStarted {
            resource: s(1)?,
            node: s(2)?,
        },
        "passive-stopped" => Event::PassiveCopyStopped {
            resource: s(1)?,
            node: s(2)?,
        },
        "copy-failed" => Event::CopyFailed {
            resource: s(1)?,
            node: s(2)?,
            reason: if w.len() > 3 {
                w[3..].join(" ")
            } else {
                "failed".to_string()
            },
        },
        "accept-data-loss" => Event::AcceptDataLoss {
            group_or_resource: s(1)?,
            node: w.get(2).map(|x| x.to_string()),
        },
        other => return Err(format!("unknown command {other}")),
    })
}

/// `key=value` options after the positional words.
fn options<'a>(w: &[&'a str]) -> Result<Vec<(&'a str, &'a str)>, String> {
    w.iter()
        .map(|x| {
            x.split_once('=')
                .ok_or_else(|| format!("expected key=value, got {x}"))
        })
        .collect()
}

fn list(v: &str) -> Vec<String> {
    v.split(',')
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

fn dur(v: &str) -> Result<Millis, String> {
    v.parse()
        .map_err(|e: warden_policy::ParseMillisError| e.to_string())
}

fn num(v: &str) -> Result<u32, String> {
    v.parse().map_err(|_| format!("not a number: {v}"))
}

fn config_line(cfg: &mut ClusterConfig, w: &[&str]) -> Result<(), String> {
    match w[0] {
        "node" => cfg.nodes.extend(w[1..].iter().map(|s| s.to_string())),
        "singleton-type" => cfg
            .singleton_types
            .extend(w[1..].iter().map(|s| s.to_string())),
        "group" => {
            let mut g = GroupConfig::new(*w.get(1).ok_or("group NAME")?);
            for (k, v) in options(&w[2..])? {
                match k {
                    "preferred" => g.preferred_owners = list(v),
                    "possible" => g.possible_owners = Some(list(v)),
                    "failover-threshold" => g.failover_threshold = num(v)?,
                    "failover-period" => g.failover_period = dur(v)?,
                    "failback" => {
                        g.failback = match v {
                            "off" => Failback::Off,
                            "immediate" => Failback::Immediate,
                            w => {
                                let (a, b) = w
                                    .split_once('-')
                                    .ok_or("failback=off|immediate|START-END")?;
                                Failback::Window {
                                    start_hour: a.parse().map_err(|_| "bad hour")?,
                                    end_hour: b.parse().map_err(|_| "bad hour")?,
                                }
                            }
                        }
                    }
                    _ => return Err(format!("unknown group option {k}")),
                }
            }
            cfg.groups.push(g);
        }
        "resource" => {
            let group = w.get(1).ok_or("resource GROUP NAME")?;
            let mut r = ResourceConfig::new(*w.get(2).ok_or("resource GROUP NAME")?, "");
            for (k, v) in options(&w[3..])? {
                match k {
                    "type" => r.type_name = v.to_string(),
                    "depends" => r.depends_on = list(v),
                    "restart" => {
                        r.restart.action = match v {
                            "none" => RestartAction::DoNotRestart,
                            "no-affect" => RestartAction::RestartNoAffectGroup,
                            "affect" => RestartAction::RestartAffectGroup,
                            _ => return Err("restart=none|no-affect|affect".into()),
                        }
                    }
                    "threshold" => r.restart.threshold = num(v)?,
                    "period" => r.restart.period = dur(v)?,
                    "delay" => r.restart.delay = dur(v)?,
                    "backoff" => r.restart.backoff = dur(v)?,
                    "max-backoff" => r.restart.max_backoff = dur(v)?,
                    "retry" => r.restart.retry_period = dur(v)?,
                    "copies" => {
                        r.copies = Some(if v == "all" {
                            CopyNodes::All
                        } else {
                            CopyNodes::Listed(list(v))
                        })
                    }
                    "max-lag" => {
                        r.max_lag_on_failover =
                            Some(v.parse().map_err(|_| format!("not a number: {v}"))?)
                    }
                    _ => return Err(format!("unknown resource option {k}")),
                }
            }
            if r.type_name.is_empty() {
                r.type_name = r.name.clone();
            }
            let g = cfg
                .groups
                .iter_mut()
                .find(|g| g.name == *group)
                .ok_or_else(|| format!("resource names unknown group {group}"))?;
            g.resources.push(r);
        }
        _ => unreachable!(),
    }
    Ok(())
}

/// A small line diff (longest common subsequence) with a few lines of context.
fn diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut ops = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', a[i]));
            i += 1;
        } else {
            ops.push(('+', b[j]));
            j += 1;
        }
    }
    let near = |k: usize| {
        ops[k.saturating_sub(3)..(k + 4).min(ops.len())]
            .iter()
            .any(|(c, _)| *c != ' ')
    };
    let mut out = String::new();
    let mut skipped = false;
    for (k, (c, l)) in ops.iter().enumerate() {
        if near(k) {
            let _ = writeln!(out, "{c} {l}");
            skipped = false;
        } else if !skipped {
            out.push_str("  ...\n");
            skipped = true;
        }
    }
    out
}
