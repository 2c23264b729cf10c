//! Why a call into a plugin did not return a value.

use std::time::Duration;

use wasmtime::Trap;

use super::limits::MemoryLimitReached;

/// A call into a plugin that was cut off or failed in the sandbox. After any
/// of these the instance is discarded; the next call gets a fresh one.
///
/// The `Display` text is what operators read in the event history, so it
/// says what happened in their words: "online timed out after 5s".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("{call} timed out after {}", human(*after))]
    /// The call did not end within its deadline.
    TimedOut {
        /// The call into the plugin.
        call: &'static str,
        /// How long it ran.
        after: Duration,
    },
    #[error("{call} was cancelled by the operator after {}", human(*after))]
    /// The operator cancelled the call.
    Cancelled {
        /// The call into the plugin.
        call: &'static str,
        /// How long it ran.
        after: Duration,
    },
    #[error("{call} trapped: {detail}")]
    /// The plugin trapped.
    Trapped {
        /// The call into the plugin.
        call: &'static str,
        /// What the trap said.
        detail: String,
    },
    #[error("{call} stopped: {detail}")]
    /// The plugin grew its memory past its limit.
    MemoryLimit {
        /// The call into the plugin.
        call: &'static str,
        /// What the trap said.
        detail: String,
    },
    #[error("{call} overflowed its stack (unbounded recursion?)")]
    /// The plugin overflowed its stack.
    StackOverflow {
        /// The call into the plugin.
        call: &'static str,
    },
    #[error("open refused property {property:?}: {reason}")]
    /// `open` refused the resource's configuration.
    OpenRefused {
        /// The property, by name.
        property: String,
        /// Why, in words an operator can act on.
        reason: String,
    },
    #[error(
        "{call} needs a replicated type, and {type_name} does not export {}",
        crate::contract::REPLICATION_EXPORT
    )]
    /// A copy call to a type that is not replicated (nothing was called).
    NotReplicated {
        /// The call that was asked for.
        call: &'static str,
        /// The resource's type.
        type_name: String,
    },
}

impl CallError {
    /// Turn a wasmtime error from `call` into what happened, adding what the
    /// plugin printed to stderr during the call (a Rust guest prints its
    /// panic message there just before it traps).
    pub(crate) fn from_wasmtime(
        call: &'static str,
        err: &wasmtime::Error,
        said: Option<String>,
    ) -> CallError {
        if let Some(limit) = err.downcast_ref::<MemoryLimitReached>() {
            return CallError::MemoryLimit {
                call,
                detail: limit.to_string(),
            };
        }
        if let Some(Trap::StackOverflow) = err.downcast_ref::<Trap>() {
            return CallError::StackOverflow { call };
        }
        let mut detail = match err.downcast_ref::<Trap>() {
            Some(trap) => trap.to_string(),
            None => err.to_string(),
        };
        if let Some(said) = said {
            detail.push_str(" — plugin said: ");
            detail.push_str(&super::plugin_text::reason(said));
        }
        CallError::Trapped { call, detail }
    }
}

/// `5s`, `1.5s`, `250ms`: durations as an operator writes them.
pub(super) fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms >= 1000 && ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else if ms >= 1000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_read_like_an_operator_would_write_them() {
        let e = CallError::TimedOut {
            call: "online",
            after: Duration::from_secs(5),
        };
        assert_eq!(e.to_string(), "online timed out after 5s");
        assert_eq!(human(Duration::from_millis(1500)), "1.5s");
        assert_eq!(human(Duration::from_millis(250)), "250ms");
    }
}
