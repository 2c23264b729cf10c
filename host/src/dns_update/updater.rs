//! `DnsUpdater`: register, remove and look up one name's addresses at the
//! granted server, each call bounded by the grant's timeout.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, OpCode};
use hickory_proto::rr::{Name, RData, RecordType, TSigner};
use tokio::time::Instant;

use super::answer::{self, Expected};
use super::exchange::Exchange;
use super::message::{self, record_type};
use super::names::GrantedZone;
use super::{DnsError, MAX_TTL_S};

/// What a resource type may do at its granted DNS server: built by
/// [`super::DnsGrant::resolve`], cheap to clone, shared by the type's
/// resources. Every method first checks that the name lies inside the
/// granted zone and is a host name; nothing is sent otherwise.
#[derive(Clone)]
pub struct DnsUpdater {
    server: SocketAddr,
    zone: GrantedZone,
    signer: TSigner,
    /// The key's name and algorithm, for errors.
    key: String,
    timeout: Duration,
}

impl fmt::Debug for DnsUpdater {
    /// Never the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DnsUpdater")
            .field("server", &self.server)
            .field("zone", &self.zone.zone().to_ascii())
            .field("key", &self.key)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl DnsUpdater {
    pub(super) fn new(
        server: SocketAddr,
        zone: GrantedZone,
        signer: TSigner,
        key: String,
        timeout: Duration,
    ) -> DnsUpdater {
        DnsUpdater {
            server,
            zone,
            signer,
            key,
            timeout,
        }
    }

    /// The same grant with another bound on each call: for a caller whose
    /// own deadline (a plugin call's) is nearer than the grant's timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> DnsUpdater {
        self.timeout = timeout;
        self
    }

    /// The server every request goes to.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// The granted zone, absolute (`warden.test.`).
    pub fn zone(&self) -> String {
        self.zone.zone().to_ascii()
    }

    /// How long one register, remove or lookup may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// NAME -> address: one update that replaces the name's A records (or
    /// AAAA, for an IPv6 address) with this address alone, TTL `ttl_s`. The
    /// server applies it atomically: no moment without a record, none with
    /// two. The other family's records are left as they are.
    pub async fn register(&self, name: &str, address: IpAddr, ttl_s: u32) -> Result<(), DnsError> {
        let name = self.zone.name(name)?;
        self.zone.check_address(address)?;
        if ttl_s > MAX_TTL_S {
            return Err(DnsError::InvalidTtl {
                ttl_s,
                max_s: MAX_TTL_S,
                section: self.zone.section().to_string(),
            });
        }
        let operation = format!("the update of {name} to {} {address}", record_type(address));
        let request = message::replace(self.zone.zone(), &name, address, ttl_s);
        self.update(request, &operation).await
    }

    /// Remove exactly the record NAME -> address; the name's other
    /// records stay. A record that is not there is no error (the server
    /// ignores its deletion), so an offline after a failed online is Ok.
    pub async fn remove(&self, name: &str, address: IpAddr) -> Result<(), DnsError> {
        let name = self.zone.name(name)?;
        self.zone.check_address(address)?;
        let operation = format!("the removal of {name} {} {address}", record_type(address));
        let request = message::delete(self.zone.zone(), &name, address);
        self.update(request, &operation).await
    }

    /// The name's A and AAAA records as the granted server has them (not
    /// the system resolver, whose cache may be stale), both queries signed
    /// and their answers verified. No such name is an empty list.
    pub async fn lookup(&self, name: &str) -> Result<Vec<IpAddr>, DnsError> {
        let name = self.zone.name(name)?;
        let deadline = Instant::now() + self.timeout;
        let (v4, v6) = tokio::join!(
            self.query(&name, RecordType::A, deadline),
            self.query(&name, RecordType::AAAA, deadline)
        );
        let mut addresses = v4?;
        addresses.extend(v6?);
        Ok(addresses)
    }

    async fn update(&self, request: Message, operation: &str) -> Result<(), DnsError> {
        let started = Instant::now();
        let exchange = Exchange {
            server: self.server,
            operation,
            deadline: started + self.timeout,
            started,
        };
        let zone = self.zone.zone();
        let expected = Expected {
            op_code: OpCode::Update,
            question: (zone, RecordType::SOA),
            zone,
            key: &self.key,
        };
        let mut signed = message::sign(request, &self.signer, operation)?;
        let bytes = exchange.run(&signed.bytes, signed.id).await?;
        answer::read(&bytes, &mut signed.verifier, &expected, &exchange)?;
        Ok(())
    }

    async fn query(
        &self,
        name: &Name,
        kind: RecordType,
        deadline: Instant,
    ) -> Result<Vec<IpAddr>, DnsError> {
        let operation = format!("the query for {name} {kind}");
        let exchange = Exchange {
            server: self.server,
            operation: &operation,
            deadline,
            started: Instant::now(),
        };
        let expected = Expected {
            op_code: OpCode::Query,
            question: (name, kind),
            zone: self.zone.zone(),
            key: &self.key,
        };
        let mut signed = message::sign(message::query(name, kind), &self.signer, &operation)?;
        let bytes = exchange.run(&signed.bytes, signed.id).await?;
        let answer = answer::read(&bytes, &mut signed.verifier, &expected, &exchange)?;
        if !answer.metadata.authoritative {
            return Err(exchange.malformed(format!(
                "the answer is not authoritative: is the server the primary of {}?",
                self.zone.zone()
            )));
        }
        Ok(answer
            .answers
            .iter()
            .filter(|record| record.name == *name)
            .filter_map(|record| match &record.data {
                RData::A(a) if kind == RecordType::A => Some(IpAddr::V4(a.0)),
                RData::AAAA(aaaa) if kind == RecordType::AAAA => Some(IpAddr::V6(aaaa.0)),
                _ => None,
            })
            .collect())
    }
}
