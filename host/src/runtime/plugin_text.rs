//! Text a plugin hands the host, made safe to keep and to log.
//!
//! A plugin is untrusted, and so is every string it returns: a failure
//! reason of 20 MiB would be copied into each event, status and log line
//! that carries it, and a newline in a log message would let the plugin
//! write a line of its own into the agent's log that reads like the agent's
//! (`2026-… INFO warden: …`). So every piece of plugin text is cut to a
//! documented size and has its control characters escaped where it enters
//! the host, before anything else sees it:
//!
//! | text                                   | at most          | where            |
//! |----------------------------------------|------------------|------------------|
//! | failure reason (health, copy health, online, offline, control error, property error, trap output) | [`MAX_REASON`] | `instance.rs`, `plugin.rs`, `call.rs` |
//! | control answer (to the operator)       | [`MAX_ANSWER`]   | `instance.rs`    |
//! | log message                            | [`MAX_LOG_MESSAGE`] | `host_state.rs` |
//! | progress message                       | [`MAX_REASON`]   | `host_state.rs`  |
//! | stdout / stderr line                   | [`MAX_LINE`]     | `guest_output.rs` |
//!
//! A cut text ends with [`CUT_MARK`]. Escaping writes `\n`, `\r`, `\t` as
//! those two characters and any other control character (C0, DEL, C1, and
//! the Unicode line and paragraph separators) as `\u{XX}`, so a text that
//! reaches the log is always one line and shows what the plugin sent.

use crate::contract::{CopyHealth, CopyState, Health, PropertyError};

/// The longest failure reason (or progress message) kept from a plugin.
pub const MAX_REASON: usize = 4 * 1024;
/// The longest control answer passed on to the operator. Answers are not
/// logged and may hold several lines, so they are cut but not escaped.
pub const MAX_ANSWER: usize = 64 * 1024;
/// The longest message one `host::log` call may write.
pub const MAX_LOG_MESSAGE: usize = 16 * 1024;
/// The longest line of a plugin's stdout or stderr.
pub const MAX_LINE: usize = 4 * 1024;
/// The longest property name in a property error (names in a schema are
/// at most 64 characters; an error may name anything).
const MAX_PROPERTY_NAME: usize = 128;
/// Appended to a text that was cut.
pub const CUT_MARK: &str = " [cut]";

/// `text` cut to at most `max` bytes (on a character boundary), with
/// [`CUT_MARK`] appended when something was cut.
pub fn cut(mut text: String, max: usize) -> String {
    if truncate(&mut text, max) {
        text.push_str(CUT_MARK);
    }
    text
}

/// Cut `text` to at most `max` bytes on a character boundary; true if
/// something was cut.
fn truncate(text: &mut String, max: usize) -> bool {
    if text.len() <= max {
        return false;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    true
}

/// `text` with its control characters escaped (see the module docs).
pub fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

/// `text` as one line of at most `max` bytes (plus [`CUT_MARK`]): cut first
/// (so a huge text is not escaped whole), escaped, and cut again, since
/// escaping lengthens it.
pub fn one_line(mut text: String, max: usize) -> String {
    let cut_raw = truncate(&mut text, max);
    let mut line = escape_controls(&text);
    let cut_escaped = truncate(&mut line, max);
    if cut_raw || cut_escaped {
        line.push_str(CUT_MARK);
    }
    line
}

/// A failure reason from a plugin, as the host keeps it.
pub fn reason(text: String) -> String {
    one_line(text, MAX_REASON)
}

/// A health answer with its reason made safe.
pub fn health(health: Health) -> Health {
    match health {
        Health::Healthy => Health::Healthy,
        Health::Failed(text) => Health::Failed(reason(text)),
    }
}

/// A copy's status with its failure reason made safe.
pub fn copy_status(mut status: CopyState) -> CopyState {
    status.health = match status.health {
        CopyHealth::Healthy => CopyHealth::Healthy,
        CopyHealth::Failed(text) => CopyHealth::Failed(reason(text)),
        CopyHealth::Diverged(text) => CopyHealth::Diverged(reason(text)),
    };
    status
}

/// An `online`/`offline` answer with its reason made safe.
pub fn outcome<T>(result: Result<T, String>) -> Result<T, String> {
    result.map_err(reason)
}

/// A control answer: the answer cut to [`MAX_ANSWER`], the error made safe.
pub fn answer(result: Result<String, String>) -> Result<String, String> {
    result.map(|text| cut(text, MAX_ANSWER)).map_err(reason)
}

/// A property error from `validate` or `open`, made safe.
pub fn property_error(error: PropertyError) -> PropertyError {
    PropertyError {
        property: one_line(error.property, MAX_PROPERTY_NAME),
        reason: reason(error.reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_plain_text_is_kept_as_it_is() {
        assert_eq!(reason("disk full".to_string()), "disk full");
    }

    #[test]
    fn newlines_and_escape_sequences_cannot_make_a_second_line() {
        let forged = "ok\n2026-12-02T22:00:00Z  INFO warden: forged\r\x1b[31mred\u{2028}x\u{85}";
        let safe = reason(forged.to_string());
        assert!(!safe.chars().any(char::is_control), "{safe:?}");
        assert_eq!(
            safe,
            "ok\\n2026-12-02T22:00:00Z  INFO warden: forged\\r\\u{1b}[31mred\\u{2028}x\\u{85}"
        );
    }

    #[test]
    fn a_huge_reason_is_cut_to_its_limit_with_a_mark() {
        let safe = reason("x".repeat(20 << 20));
        assert!(safe.len() <= MAX_REASON + CUT_MARK.len(), "{}", safe.len());
        assert!(safe.ends_with(CUT_MARK));
    }

    #[test]
    fn escaping_cannot_push_a_text_past_its_limit() {
        let safe = reason("\x01".repeat(MAX_REASON));
        assert!(safe.len() <= MAX_REASON + CUT_MARK.len(), "{}", safe.len());
        assert!(safe.ends_with(CUT_MARK));
        let long = reason("\n".repeat(10 * MAX_REASON));
        assert!(long.len() <= MAX_REASON + CUT_MARK.len(), "{}", long.len());
        assert!(long.ends_with(CUT_MARK) && !long.contains('\n'));
    }

    #[test]
    fn cutting_respects_character_boundaries() {
        let text = "é".repeat(MAX_REASON);
        let safe = reason(text);
        assert!(safe.ends_with(CUT_MARK));
        assert!(safe.trim_end_matches(CUT_MARK).chars().all(|c| c == 'é'));
    }

    #[test]
    fn control_answers_keep_their_lines_but_not_their_bulk() {
        let answer = answer(Ok("a=1\nb=2".to_string()));
        assert_eq!(answer.as_deref(), Ok("a=1\nb=2"));
        let big = super::answer(Ok("y".repeat(MAX_ANSWER * 4))).unwrap_or_default();
        assert_eq!(big.len(), MAX_ANSWER + CUT_MARK.len());
    }
}
