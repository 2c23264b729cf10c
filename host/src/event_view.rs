//! `warden events`: the event history as an operator reads it, once or
//! followed as `journalctl -f` does.
//!
//! The history keeps milliseconds since the epoch (`at_ms`), which no
//! operator reads; the human view prints the local time of the machine the
//! command runs on (TZ, else /etc/localtime), the JSON view adds `at`, the
//! same instant in RFC 3339 with its offset, and keeps `at_ms` for scripts.
//!
//! `--follow` reads `GET /v1/events/stream` (Server-Sent Events, each
//! event's id its sequence number). When the agent goes away, it says so on
//! stderr and tries again every second, then resumes after the last event
//! it printed, so nothing is missed or printed twice. It stops on Ctrl-C,
//! or on a refusal (a wrong token, a bad filter) that retrying cannot mend.

use std::io::{BufRead, Write};
use std::time::Duration;

use anyhow::Result;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde_json::{Map, Value};

use crate::cli::{Client, StreamError, text};

/// Filters of `warden events`.
#[derive(Debug, Default, Clone)]
pub(crate) struct EventFilter {
    pub resource: Option<String>,
    pub kind: Option<String>,
    pub since_ms: Option<u64>,
    pub limit: usize,
}

impl EventFilter {
    fn query(&self) -> Vec<String> {
        let mut query = Vec::new();
        if let Some(r) = &self.resource {
            query.push(format!("resource={}", encode(r)));
        }
        if let Some(k) = &self.kind {
            query.push(format!("event={}", encode(k)));
        }
        if let Some(s) = self.since_ms {
            query.push(format!("since_ms={s}"));
        }
        query
    }
}

/// Percent-encode a query value (names are plain, but a filter is the
/// operator's text).
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// How long `--follow` waits between attempts to reach a lost agent.
const RETRY: Duration = Duration::from_secs(1);

/// Print the newest `filter.limit` matching events; with `follow`, go on
/// printing new ones as they happen.
pub(crate) fn events(
    client: &Client,
    filter: EventFilter,
    as_json: bool,
    follow: bool,
) -> Result<()> {
    let view = View::new(as_json);
    let mut out = std::io::stdout().lock();
    if !follow {
        let mut query = filter.query();
        query.push(format!("limit={}", filter.limit));
        let list = client.call("GET", &format!("/v1/events?{}", query.join("&")), None)?;
        for event in list.as_array().cloned().unwrap_or_default() {
            if !view.print(&mut out, event) {
                break;
            }
        }
        return Ok(());
    }
    let mut last_seq: Option<u64> = None;
    let mut lost = false;
    loop {
        let mut query = filter.query();
        match last_seq {
            Some(seq) => query.push(format!("after={seq}")),
            None => query.push(format!("limit={}", filter.limit)),
        }
        let reason = match client.stream(&format!("/v1/events/stream?{}", query.join("&"))) {
            Ok(stream) => {
                if lost {
                    eprintln!("warden: the agent at {} answers again", client.base());
                    lost = false;
                }
                match read_stream(stream, &view, &mut out, &mut last_seq) {
                    Ended::StdoutClosed => return Ok(()),
                    Ended::Lost(reason) => reason,
                }
            }
            // The first attempt fails as every other command does: a
            // wrong address or token is the operator's to fix.
            Err(StreamError::Unreachable(err)) if last_seq.is_none() && !lost => return Err(err),
            Err(StreamError::Unreachable(err)) => format!("{err:#}"),
            Err(StreamError::Refused(err)) => return Err(err),
        };
        if !lost {
            eprintln!(
                "warden: lost the agent at {} ({reason}); trying again every {}s until it answers (Ctrl-C to stop)",
                client.base(),
                RETRY.as_secs()
            );
            lost = true;
        }
        std::thread::sleep(RETRY);
    }
}

enum Ended {
    /// Nobody reads what we print any more (a closed pipe): stop quietly.
    StdoutClosed,
    /// The stream ended or broke, for this reason.
    Lost(String),
}

/// Print the events of one Server-Sent Events stream until it ends,
/// remembering the id of each printed event.
fn read_stream(
    stream: impl BufRead,
    view: &View,
    out: &mut impl Write,
    last_seq: &mut Option<u64>,
) -> Ended {
    let mut id: Option<u64> = None;
    let mut data = String::new();
    for line in stream.lines() {
        let line = match line {
            Ok(line) => line,
            Err(err) => return Ended::Lost(format!("reading the event stream: {err}")),
        };
        if line.is_empty() {
            // The end of one event.
            if !data.is_empty() {
                let event = serde_json::from_str(&data).unwrap_or(Value::String(data.clone()));
                if !view.print(out, event) {
                    return Ended::StdoutClosed;
                }
                if id.is_some() {
                    *last_seq = id;
                }
            }
            id = None;
            data.clear();
        } else if let Some(value) = line.strip_prefix("id:") {
            id = value.trim().parse().ok();
        } else if let Some(value) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(value.strip_prefix(' ').unwrap_or(value));
        }
        // Comments (":", the keep-alive) and other fields are not events.
    }
    Ended::Lost("the agent ended the event stream".to_string())
}

/// Prints events, human or JSON, with times in the local zone.
struct View {
    as_json: bool,
    zone: TimeZone,
}

impl View {
    fn new(as_json: bool) -> View {
        View {
            as_json,
            zone: TimeZone::system(),
        }
    }

    /// Print one event; false once stdout no longer takes it.
    fn print(&self, out: &mut impl Write, event: Value) -> bool {
        let line = if self.as_json {
            self.json(event).to_string()
        } else {
            self.human(event)
        };
        writeln!(out, "{line}").and_then(|()| out.flush()).is_ok()
    }

    /// The event with `at` (RFC 3339, local offset) beside `at_ms`.
    fn json(&self, event: Value) -> Value {
        match event {
            Value::Object(mut fields) => {
                if let Some(at) = fields["at_ms"]
                    .as_u64()
                    .and_then(|ms| rfc3339(&self.zone, ms))
                {
                    fields.insert("at".to_string(), Value::String(at));
                }
                Value::Object(fields)
            }
            other => other,
        }
    }

    /// `2026-12-03 06:12:45.123 RESOURCE EVENT key=value ...`
    fn human(&self, event: Value) -> String {
        let mut rest: Map<String, Value> = match event {
            Value::Object(fields) => fields,
            other => return text(&other),
        };
        let at = rest
            .remove("at_ms")
            .and_then(|v| v.as_u64())
            .and_then(|ms| local_time(&self.zone, ms))
            .unwrap_or_else(|| "-".to_string());
        let subject = rest
            .remove("resource")
            .map(|v| text(&v))
            .unwrap_or_default();
        let kind = rest.remove("event").map(|v| text(&v)).unwrap_or_default();
        let details: Vec<String> = rest
            .into_iter()
            .map(|(k, v)| format!("{k}={}", text(&v)))
            .collect();
        format!("{at:<23} {subject:<16} {kind:<16} {}", details.join(" "))
            .trim_end()
            .to_string()
    }
}

fn zoned(zone: &TimeZone, ms: u64) -> Option<jiff::Zoned> {
    let ms = i64::try_from(ms).ok()?;
    Some(Timestamp::from_millisecond(ms).ok()?.to_zoned(zone.clone()))
}

/// `2026-12-03 06:12:45.123`: the wall clock in `zone`, to the millisecond.
pub(crate) fn local_time(zone: &TimeZone, ms: u64) -> Option<String> {
    Some(
        zoned(zone, ms)?
            .strftime("%Y-%m-%d %H:%M:%S%.3f")
            .to_string(),
    )
}

/// `2026-12-03T06:12:45.123+01:00`: RFC 3339 with `zone`'s offset then.
pub(crate) fn rfc3339(zone: &TimeZone, ms: u64) -> Option<String> {
    Some(
        zoned(zone, ms)?
            .strftime("%Y-%m-%dT%H:%M:%S%.3f%:z")
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT_MS: u64 = 1_796_278_365_123; // 2026-12-03 06:12:45.123 UTC

    #[test]
    fn times_are_the_wall_clock_of_the_zone_to_the_millisecond() {
        let utc = TimeZone::UTC;
        assert_eq!(
            local_time(&utc, AT_MS).as_deref(),
            Some("2026-12-03 06:12:45.123")
        );
        assert_eq!(
            rfc3339(&utc, AT_MS).as_deref(),
            Some("2026-12-03T06:12:45.123+00:00")
        );
        let india = TimeZone::fixed(jiff::tz::offset(5) + jiff::SignedDuration::from_mins(30));
        assert_eq!(
            local_time(&india, AT_MS).as_deref(),
            Some("2026-12-03 11:42:45.123")
        );
        assert_eq!(
            rfc3339(&india, AT_MS + 877).as_deref(),
            Some("2026-12-03T11:42:46.000+05:30")
        );
    }

    #[test]
    fn an_instant_past_what_a_clock_shows_has_no_time() {
        assert_eq!(local_time(&TimeZone::UTC, u64::MAX), None);
    }

    #[test]
    fn a_stream_prints_each_event_and_remembers_its_id() {
        let stream = ": keep-alive\n\nid: 7\ndata: {\"at_ms\":1796278365123,\"resource\":\"r1\",\"event\":\"policy\",\"reason\":\"x\"}\n\nid: 9\ndata: {\"event\":\"history-lagged\",\"missed\":3}\n\n";
        let view = View {
            as_json: false,
            zone: TimeZone::UTC,
        };
        let mut out = Vec::new();
        let mut last = None;
        let ended = read_stream(stream.as_bytes(), &view, &mut out, &mut last);
        assert!(matches!(ended, Ended::Lost(_)));
        assert_eq!(last, Some(9));
        let out = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(lines[0].starts_with("2026-12-03 06:12:45.123 r1 "), "{out}");
        assert!(lines[0].ends_with("reason=x"), "{out}");
        assert!(lines[1].starts_with("- "), "{out}");
        assert!(lines[1].ends_with("missed=3"), "{out}");
    }
}
