//! The store's copies (contract 0.3.0's `replication`): the calls the agent
//! makes turned into the mail store's own command line and commands
//! (`examples/mail-services/README.md`, "Copies").
//!
//! - A passive copy is the service started with `--role passive
//!   --replicate-from FROM --generation G`; it pulls the active's log from
//!   `replicate-from` (in a cluster, the group's virtual address, which
//!   moves with the active copy) and replays it.
//! - `activate` sends `ACTIVATE G` to a running copy, or starts a stopped
//!   one as the active copy of generation G (it mounts its own log first).
//! - `deactivate` sends `DEACTIVATE G`; a stopped copy takes no writes
//!   already. At the copy's own generation (a planned move or the group
//!   going offline) the store answers once its passive copies hold its last
//!   position: the copy activated next loses nothing.
//! - `copy-status` reads `COPY-STATUS`. The store's `lag=unknown` (a
//!   passive that has not heard from its active yet) is reported as the
//!   largest lag there is, so that no policy takes it for caught up. An
//!   active copy's `health=refusing` (it serves, but refuses writes for
//!   now) is the contract's `failed` of an active copy, which the agent
//!   reads as that.

use warden_sdk::host::{self, Level};
use warden_sdk::service::{Service, ServiceType};
use warden_sdk::types::PropertyError;
use warden_sdk::{Props, refuse};
use warden_sdk_replication::{CopyHealth, CopyRole, CopySource, CopyState, ReplicatedService};

use crate::Store;

/// The longest a planned step-down waits for the passive copies to catch
/// up: the store's `--sync-timeout-ms`, which the plugin leaves at its
/// default.
const STEP_DOWN_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// How the store's copies are set up, from the resource's properties.
pub(crate) struct CopySettings {
    /// `replication-listen`: where this copy serves its log once active;
    /// empty: the store is not replicated.
    listen: String,
    /// `replicate-from`: where a passive copy pulls the log from.
    from: String,
    /// `sync-mode`: `sync` or `async`.
    sync_mode: String,
    /// `max-async-lag`: empty for none.
    max_async_lag: String,
}

impl CopySettings {
    /// Read and check the copy properties; an error names the property.
    pub(crate) fn from_props(props: &Props) -> Result<CopySettings, PropertyError> {
        let settings = CopySettings {
            listen: props.string("replication-listen")?,
            from: props.string("replicate-from")?,
            sync_mode: props.string("sync-mode")?,
            max_async_lag: props.string("max-async-lag")?,
        };
        if !matches!(settings.sync_mode.as_str(), "sync" | "async") {
            return Err(refuse(
                "sync-mode",
                format!("{:?} is neither sync nor async", settings.sync_mode),
            ));
        }
        if !settings.max_async_lag.is_empty() {
            if settings.sync_mode != "async" {
                return Err(refuse(
                    "max-async-lag",
                    "only an async store has a lag limit",
                ));
            }
            match settings.max_async_lag.parse::<u64>() {
                Ok(n) if n >= 1 => {}
                _ => {
                    return Err(refuse(
                        "max-async-lag",
                        format!(
                            "{:?} is not a number of records above 0",
                            settings.max_async_lag
                        ),
                    ));
                }
            }
        }
        if settings.listen.is_empty() != settings.from.is_empty() {
            return Err(refuse(
                "replicate-from",
                "replication-listen and replicate-from go together: a copy serves its log \
                 where the others pull it from",
            ));
        }
        Ok(settings)
    }

    /// Whether the store has copies at all.
    fn configured(&self) -> Result<(), String> {
        if self.listen.is_empty() {
            Err("this store has no copies: set replication-listen and replicate-from".to_string())
        } else {
            Ok(())
        }
    }

    /// The arguments every copy is started with, whatever its role.
    fn common_args(&self) -> Vec<String> {
        let mut args = vec![
            "--replication-listen".to_string(),
            self.listen.clone(),
            "--sync-mode".to_string(),
            self.sync_mode.clone(),
        ];
        if !self.max_async_lag.is_empty() {
            args.extend(["--max-async-lag".to_string(), self.max_async_lag.clone()]);
        }
        args
    }

    /// The arguments of a copy started in `role` with `generation`.
    fn role_args(&self, role: &str, generation: u64) -> Vec<String> {
        let mut args = self.common_args();
        args.extend([
            "--role".to_string(),
            role.to_string(),
            "--generation".to_string(),
            generation.to_string(),
        ]);
        if role == "passive" {
            args.extend(["--replicate-from".to_string(), self.from.clone()]);
        }
        args
    }
}

/// `COPY-STATUS`'s fields, by key (`reason=` runs to the end of the line).
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    if key == "reason" {
        return line.split_once(" reason=").map(|(_, reason)| reason);
    }
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
}

/// A `COPY-STATUS` line as the contract's copy state.
fn parse_status(line: &str) -> Result<CopyState, String> {
    let number = |key: &str| -> Result<u64, String> {
        let text =
            field(line, key).ok_or_else(|| format!("COPY-STATUS without {key}: {line:?}"))?;
        text.parse()
            .map_err(|_| format!("COPY-STATUS {key}={text:?} is not a number"))
    };
    let role = match field(line, "role") {
        Some("active") => CopyRole::Active,
        Some("passive") => CopyRole::Passive,
        Some("deposed") => CopyRole::Deposed,
        other => return Err(format!("COPY-STATUS with role {other:?}: {line:?}")),
    };
    let lag = match field(line, "lag") {
        Some("unknown") => u64::MAX,
        _ => number("lag")?,
    };
    let reason = field(line, "reason").unwrap_or("").to_string();
    let health = match field(line, "health") {
        Some("healthy") => CopyHealth::Healthy,
        Some("diverged") => CopyHealth::Diverged(reason),
        Some("failed") => CopyHealth::Failed(reason),
        // The active copy serves but refuses writes for now (sync with no
        // passive connected, async at its lag limit). Contract 0.3.0 has
        // no word of its own for it: an active copy's `failed` is read by
        // the agent as exactly this (its own failures are its health
        // checks'), shown healthy with the reason, and never failed over.
        Some("refusing") if field(line, "role") == Some("active") => CopyHealth::Failed(reason),
        other => return Err(format!("COPY-STATUS with health {other:?}: {line:?}")),
    };
    // The contract counts the active copy's own log: the last position it
    // wrote, and no lag. The store's `copied` and `lag` of an active copy
    // are its best passive's (its copy queue), which the host learns from
    // the passives' own reports.
    let (copied, lag) = match role {
        CopyRole::Active => (number("written")?, 0),
        _ => (number("copied")?, lag),
    };
    Ok(CopyState {
        role,
        generation: number("generation")?,
        copied,
        replayed: number("replayed")?,
        lag,
        health,
    })
}

impl Store {
    /// The running copy's status, or why there is none.
    fn copy_state(&self) -> Result<CopyState, String> {
        parse_status(&self.ask("COPY-STATUS", "COPY-STATUS ")?)
    }

    /// Send a copy command, expecting `OK`.
    fn command(&self, line: &str) -> Result<String, String> {
        self.ask(line, "OK ")
    }
}

impl ReplicatedService for Store {
    fn start_passive(&self, service: &Service, source: &CopySource) -> Result<(), String> {
        self.copies.configured()?;
        if service.running().is_ok() {
            let state = self.copy_state()?;
            match (&state.role, &state.health) {
                (CopyRole::Passive, CopyHealth::Diverged(why)) => {
                    host::log(
                        Level::Warn,
                        &format!("the copy diverged ({why}): reseeding"),
                    );
                    return self.command("RESEED").map(drop);
                }
                (CopyRole::Passive, _) => return Ok(()),
                _ => {
                    host::log(
                        Level::Info,
                        &format!(
                            "restarting the {:?} copy of generation {} as a passive one following {}",
                            state.role,
                            state.generation,
                            source.node.as_deref().unwrap_or("no active copy yet")
                        ),
                    );
                    service.stop()?;
                }
            }
        }
        let args = self.copies.role_args("passive", source.generation);
        service.start_with(&args, || self.ready())
    }

    fn stop_passive(&self, service: &Service) -> Result<(), String> {
        self.remember_seq();
        service.stop().map(drop)
    }

    fn activate(&self, service: &Service, generation: u64) -> Result<(), String> {
        self.copies.configured()?;
        if service.running().is_err() {
            host::report_progress("mounting the copy as the active one");
            let args = self.copies.role_args("active", generation);
            service.start_with(&args, || self.ready())?;
            let state = self.copy_state()?;
            return match state.role {
                CopyRole::Active if state.generation == generation => Ok(()),
                _ => Err(format!(
                    "started as the active copy of generation {generation}, the store says it is \
                     {:?} at generation {}",
                    state.role, state.generation
                )),
            };
        }
        match self.command(&format!("ACTIVATE {generation}")) {
            Ok(_) => Ok(()),
            Err(why) => {
                // Idempotent: asked again after it answered (a cut-off call).
                let state = self.copy_state()?;
                if matches!(state.role, CopyRole::Active) && state.generation == generation {
                    Ok(())
                } else {
                    Err(why)
                }
            }
        }
    }

    fn deactivate(&self, service: &Service, generation: u64) -> Result<(), String> {
        self.copies.configured()?;
        if service.running().is_err() {
            return Ok(());
        }
        // A planned step-down answers once the passive copies hold its
        // last position, which the store waits for up to its sync timeout
        // (5 s): the answer may take that long beyond the usual.
        let answer = self.ask_within(
            &format!("DEACTIVATE {generation}"),
            "OK ",
            self.answer + STEP_DOWN_WAIT,
        )?;
        host::log(Level::Info, &format!("stepped down: {answer}"));
        Ok(())
    }

    fn copy_status(&self, service: &Service) -> CopyState {
        let state = service.running().and_then(|()| self.copy_state());
        state.unwrap_or_else(|why| CopyState {
            role: CopyRole::None,
            generation: 0,
            copied: 0,
            replayed: 0,
            lag: u64::MAX,
            health: CopyHealth::Failed(why),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_active_copy_reports_what_it_wrote_and_no_lag() {
        let line = "COPY-STATUS role=active generation=2 written=25 copied=3 replayed=25 lag=22 \
                    copy_queue=22 replay_queue=0 passives=1 mode=async health=healthy";
        let state = parse_status(line).expect("parses");
        assert!(matches!(state.role, CopyRole::Active));
        assert_eq!(
            (state.generation, state.copied, state.replayed, state.lag),
            (2, 25, 25, 0)
        );
    }

    #[test]
    fn a_passive_status_line_reads_as_the_contracts_state() {
        let line = "COPY-STATUS role=passive generation=3 written=10 copied=10 replayed=8 lag=2 \
                    copy_queue=2 replay_queue=2 passives=0 mode=sync health=failed reason=active \
                    unreachable: connection refused";
        let state = parse_status(line).expect("parses");
        assert!(matches!(state.role, CopyRole::Passive));
        assert_eq!(
            (state.generation, state.copied, state.replayed, state.lag),
            (3, 10, 8, 2)
        );
        let CopyHealth::Failed(reason) = state.health else {
            panic!("not failed");
        };
        assert_eq!(reason, "active unreachable: connection refused");
    }

    #[test]
    fn an_active_copy_refusing_writes_is_its_failed_health_and_no_other_copy_may_say_it() {
        let line = "COPY-STATUS role=active generation=1 written=4 copied=0 replayed=4 lag=4 \
                    copy_queue=4 replay_queue=0 passives=0 mode=sync health=refusing \
                    reason=no passive copy connected: writes refused";
        let state = parse_status(line).expect("parses");
        assert!(matches!(state.role, CopyRole::Active));
        let CopyHealth::Failed(reason) = state.health else {
            panic!("not the active's refusal");
        };
        assert_eq!(reason, "no passive copy connected: writes refused");
        let passive = line.replace("role=active", "role=passive");
        assert!(parse_status(&passive).is_err());
    }

    #[test]
    fn an_unknown_lag_is_the_largest_and_a_bad_line_is_refused() {
        let line = "COPY-STATUS role=passive generation=1 written=0 copied=0 replayed=0 \
                    lag=unknown copy_queue=unknown replay_queue=0 passives=0 mode=sync health=healthy";
        assert_eq!(parse_status(line).expect("parses").lag, u64::MAX);
        assert!(parse_status("COPY-STATUS role=leader").is_err());
        assert!(parse_status("COPY-STATUS role=active generation=x").is_err());
    }
}
