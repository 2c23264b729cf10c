//! Dynamic DNS for the `network-name` resource type: the virtual server's
//! name registered with the zone's server by RFC 2136 update, signed with
//! TSIG (RFC 8945), removed at offline, looked up for is-alive.
//!
//! A plugin cannot send UDP, so the host does this for it, within the
//! grant the operator gives its type (`[plugins.TYPE.dns]`, [`DnsGrant`]):
//! one server, one zone, one key. Everything a plugin gives (names,
//! addresses, TTLs) is checked before a byte is sent; everything the server
//! sends back is bounded, matched to the request and, for a success,
//! verified with the key.
//!
//! - `grant.rs` — [`DnsGrant`], the configuration section, and its checks.
//! - `key_file.rs` — the TSIG secret in the forms `tsig-keygen` and
//!   `keymgr` print.
//! - `names.rs` — the granted zone; host names and addresses a plugin gives.
//! - `message.rs` — the update and query messages, signed.
//! - `exchange.rs` — UDP with resends, TCP when truncated; deadline and size bounds.
//! - `answer.rs` — the answer matched to the request, its TSIG verified,
//!   error codes explained.
//! - `updater.rs` — [`DnsUpdater`]: `register`, `remove`, `lookup`.
//! - `error.rs` — [`DnsError`].

mod answer;
mod error;
mod exchange;
mod grant;
mod key_file;
mod message;
mod names;
mod updater;

pub use error::DnsError;
pub use exchange::RESEND_AFTER;
pub use grant::{DEFAULT_KEY_ALGORITHM, DEFAULT_TIMEOUT_MS, DnsGrant, MAX_TIMEOUT_MS};
pub use key_file::MAX_KEY_FILE_BYTES;
pub use names::MAX_NAME_CHARS;
pub use updater::DnsUpdater;

/// The largest answer accepted, over UDP or TCP. One name's A or AAAA
/// records and a signature take a few hundred bytes; 16 KiB leaves room
/// for a name with hundreds of addresses and refuses a flood.
pub const MAX_ANSWER_BYTES: usize = 16 * 1024;

/// The largest TTL a plugin may ask for: a day. A virtual server's name
/// should move with it; a long TTL keeps clients at the old address.
pub const MAX_TTL_S: u32 = 86_400;
