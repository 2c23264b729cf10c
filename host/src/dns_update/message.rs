//! The requests: an RFC 2136 update that replaces a name's address
//! records, one that deletes one record, and a query; each signed with TSIG.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Edns, Message, OpCode, Query, UpdateMessage};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, TSigVerifier, TSigner};

use super::DnsError;

/// The UDP payload size we advertise (EDNS): the size the DNS flag day
/// 2020 settled on, which fits any path's MTU.
pub(crate) const EDNS_PAYLOAD: u16 = 1232;

/// A request ready to send: its bytes, its id and what checks the answer.
pub(crate) struct Signed {
    pub bytes: Vec<u8>,
    pub id: u16,
    pub verifier: TSigVerifier,
}

/// The address record type of `address`: A or AAAA.
pub(crate) fn record_type(address: IpAddr) -> RecordType {
    match address {
        IpAddr::V4(_) => RecordType::A,
        IpAddr::V6(_) => RecordType::AAAA,
    }
}

fn address_data(address: IpAddr) -> RData {
    match address {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    }
}

/// An update of `zone` (its zone section) with no prerequisites.
fn update(zone: &Name) -> Message {
    let mut message = Message::query();
    message.metadata.op_code = OpCode::Update;
    message.metadata.recursion_desired = false;
    let mut zone_section = Query::query(zone.clone(), RecordType::SOA);
    zone_section.set_query_class(DNSClass::IN);
    message.add_zone(zone_section);
    message
}

/// `name`'s A (or AAAA) records become `address` alone, in one message
/// the server applies atomically: delete the RRset (RFC 2136 2.5.2), add
/// the record (2.5.1).
pub(crate) fn replace(zone: &Name, name: &Name, address: IpAddr, ttl_s: u32) -> Message {
    let mut message = update(zone);
    let mut delete = Record::update0(name.clone(), 0, record_type(address));
    delete.dns_class = DNSClass::ANY;
    message.add_update(delete);
    message.add_update(Record::from_rdata(
        name.clone(),
        ttl_s,
        address_data(address),
    ));
    message
}

/// Delete exactly the record `name` -> `address` (RFC 2136 2.5.4); the
/// server ignores it when there is no such record.
pub(crate) fn delete(zone: &Name, name: &Name, address: IpAddr) -> Message {
    let mut message = update(zone);
    let mut record = Record::from_rdata(name.clone(), 0, address_data(address));
    record.dns_class = DNSClass::NONE;
    message.add_update(record);
    message
}

/// A query for `name`'s records of type `kind`, not recursive (the
/// server is the zone's own), with EDNS.
pub(crate) fn query(name: &Name, kind: RecordType) -> Message {
    let mut message = Message::query();
    message.metadata.recursion_desired = false;
    message.add_query(Query::query(name.clone(), kind));
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD).set_version(0);
    message.set_edns(edns);
    message
}

/// Sign `message` with `signer` (TSIG, the time now) and encode it.
pub(crate) fn sign(
    mut message: Message,
    signer: &TSigner,
    operation: &str,
) -> Result<Signed, DnsError> {
    let failed = |reason: String| DnsError::Request {
        operation: operation.to_string(),
        reason,
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| failed("the system clock is before 1970".to_string()))?
        .as_secs();
    let verifier = message
        .finalize(signer, now)
        .map_err(|e| failed(format!("signing: {e}")))?
        .ok_or_else(|| failed("signing gave no verifier for the answer".to_string()))?;
    let bytes = message
        .to_vec()
        .map_err(|e| failed(format!("encoding: {e}")))?;
    Ok(Signed {
        bytes,
        id: message.metadata.id,
        verifier,
    })
}
