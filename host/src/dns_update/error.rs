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
        /// The name in question.
        name: String,
        /// The granted zone.
        zone: String,
        /// The configuration section of the grant.
        section: String,
    },
    /// The name is not a host name (a plugin chose every byte of it).
    #[error("{section}: {name} is not a valid host name: {reason}")]
    InvalidName {
        /// The name as given, cut and escaped for a log line.
        name: String,
        /// Why, in words an operator can act on.
        reason: String,
        /// The configuration section of the grant.
        section: String,
    },
    /// An address no host can be reached at (unspecified, multicast, broadcast).
    #[error("{section}: {address} cannot be registered: {reason}")]
    InvalidAddress {
        /// The address in question.
        address: IpAddr,
        /// Why, in words an operator can act on.
        reason: &'static str,
        /// The configuration section of the grant.
        section: String,
    },
    /// A TTL beyond [`super::MAX_TTL_S`].
    #[error("{section}: a TTL of {ttl_s} s is more than the {max_s} s allowed")]
    InvalidTtl {
        /// The TTL asked for, in seconds.
        ttl_s: u32,
        /// The most allowed, in seconds.
        max_s: u32,
        /// The configuration section of the grant.
        section: String,
    },
    /// The server answered with an error code (REFUSED, NOTAUTH, NOTZONE, ...).
    #[error("DNS server {server} rejected {operation}: {rcode}: {explanation}")]
    Rejected {
        /// The DNS server.
        server: SocketAddr,
        /// What the agent was doing.
        operation: String,
        /// The response code, with the TSIG error when there is one,
        /// e.g. `NOTAUTH (TSIG BADKEY)`.
        rcode: String,
        /// What the answer's code means here.
        explanation: String,
    },
    /// Nothing could be sent, or the server said nothing listens there.
    #[error("DNS server {server} is unreachable for {operation}: {detail}")]
    Unreachable {
        /// The DNS server.
        server: SocketAddr,
        /// What the agent was doing.
        operation: String,
        /// What was wrong, in words.
        detail: String,
    },
    /// No answer before the deadline.
    #[error("DNS server {server} gave no answer to {operation} within {waited_ms} ms{ignored}")]
    NoAnswer {
        /// The DNS server.
        server: SocketAddr,
        /// What the agent was doing.
        operation: String,
        /// How long the agent waited, in milliseconds.
        waited_ms: u128,
        /// What arrived that was not an answer to the request, if anything.
        ignored: String,
    },
    /// The answer's TSIG is missing or does not verify: it may not come
    /// from the server that holds the key, so nothing in it is believed.
    #[error("DNS server {server}'s answer to {operation} does not verify with key {key}: {reason}")]
    BadSignature {
        /// The DNS server.
        server: SocketAddr,
        /// What the agent was doing.
        operation: String,
        /// The TSIG key, by name and algorithm.
        key: String,
        /// Why, in words an operator can act on.
        reason: String,
    },
    /// An answer that is not a DNS message, or not one that answers the request.
    #[error("DNS server {server} sent a malformed answer to {operation}: {reason}")]
    Malformed {
        /// The DNS server.
        server: SocketAddr,
        /// What the agent was doing.
        operation: String,
        /// Why, in words an operator can act on.
        reason: String,
    },
    /// An answer larger than [`super::MAX_ANSWER_BYTES`].
    #[error(
        "DNS server {server} sent an answer of at least {size} bytes to {operation}, more than the {limit} accepted"
    )]
    Oversized {
        /// The DNS server.
        server: SocketAddr,
        /// What the agent was doing.
        operation: String,
        /// Its length as announced (TCP) or as far as it was read (UDP,
        /// `limit + 1`): at least this.
        size: usize,
        /// The most allowed.
        limit: usize,
    },
    /// The request could not be encoded or signed (a bug, or a name the
    /// encoder refuses).
    #[error("{operation} could not be built: {reason}")]
    Request {
        /// What the agent was doing.
        operation: String,
        /// Why, in words an operator can act on.
        reason: String,
    },
}
