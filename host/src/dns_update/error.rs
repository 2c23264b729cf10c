//! `DnsError`: everything a dynamic update or a lookup can run into, each
//! naming the server (or the grant) and what went wrong, so that a resource's
//! failure reason tells the operator where to look.

use std::net::{IpAddr, SocketAddr};

/// Why a register, remove or lookup did not happen.
///
/// The first four are refused before anything is sent (the name, address or
/// TTL a plugin gave does not fit the grant); the others come from the
/// exchange with the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DnsError {
    /// The name lies outside the granted zone: nothing was sent.
    #[error("{name} is outside the zone {zone} that {section} grants")]
    OutsideZone {
        name: String,
        zone: String,
        section: String,
    },
    /// The name is not a host name (a plugin chose every byte of it).
    #[error("{section}: {name} is not a valid host name: {reason}")]
    InvalidName {
        /// The name as given, cut and escaped for a log line.
        name: String,
        reason: String,
        section: String,
    },
    /// An address no host can be reached at (unspecified, multicast, broadcast).
    #[error("{section}: {address} cannot be registered: {reason}")]
    InvalidAddress {
        address: IpAddr,
        reason: &'static str,
        section: String,
    },
    /// A TTL beyond [`super::MAX_TTL_S`].
    #[error("{section}: a TTL of {ttl_s} s is more than the {max_s} s allowed")]
    InvalidTtl {
        ttl_s: u32,
        max_s: u32,
        section: String,
    },
    /// The server answered with an error code (REFUSED, NOTAUTH, NOTZONE, ...).
    #[error("DNS server {server} rejected {operation}: {rcode}: {explanation}")]
    Rejected {
        server: SocketAddr,
        operation: String,
        /// The response code, with the TSIG error when there is one,
        /// e.g. `NOTAUTH (TSIG BADKEY)`.
        rcode: String,
        explanation: String,
    },
    /// Nothing could be sent, or the server said nothing listens there.
    #[error("DNS server {server} is unreachable for {operation}: {detail}")]
    Unreachable {
        server: SocketAddr,
        operation: String,
        detail: String,
    },
    /// No answer before the deadline.
    #[error("DNS server {server} gave no answer to {operation} within {waited_ms} ms{ignored}")]
    NoAnswer {
        server: SocketAddr,
        operation: String,
        waited_ms: u128,
        /// What arrived that was not an answer to the request, if anything.
        ignored: String,
    },
    /// The answer's TSIG is missing or does not verify: it may not come
    /// from the server that holds the key, so nothing in it is believed.
    #[error("DNS server {server}'s answer to {operation} does not verify with key {key}: {reason}")]
    BadSignature {
        server: SocketAddr,
        operation: String,
        key: String,
        reason: String,
    },
    /// An answer that is not a DNS message, or not one that answers the request.
    #[error("DNS server {server} sent a malformed answer to {operation}: {reason}")]
    Malformed {
        server: SocketAddr,
        operation: String,
        reason: String,
    },
    /// An answer larger than [`super::MAX_ANSWER_BYTES`].
    #[error(
        "DNS server {server} sent an answer of at least {size} bytes to {operation}, more than the {limit} accepted"
    )]
    Oversized {
        server: SocketAddr,
        operation: String,
        /// Its length as announced (TCP) or as far as it was read (UDP,
        /// `limit + 1`): at least this.
        size: usize,
        limit: usize,
    },
    /// The request could not be encoded or signed (a bug, or a name the
    /// encoder refuses).
    #[error("{operation} could not be built: {reason}")]
    Request { operation: String, reason: String },
}
