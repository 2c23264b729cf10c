//! Reading an answer: a DNS message that answers the request (same
//! opcode and question), signed with the key when it says yes, or an error
//! code turned into words an operator can act on.
//!
//! A success is only believed when its TSIG verifies: an unsigned "done"
//! could come from anyone on the path. An error may come unsigned (a
//! server that does not know the key cannot sign; RFC 8945 5.3.2), so it is
//! reported as what the server said, marked unsigned.

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::tsig::TsigError;
use hickory_proto::rr::{Name, RecordType, TSigVerifier};

use super::DnsError;
use super::exchange::Exchange;

/// What the request was, to check the answer against it and to explain
/// its error codes.
pub(crate) struct Expected<'a> {
    pub op_code: OpCode,
    /// The question (a query) or the zone section (an update).
    pub question: (&'a Name, RecordType),
    pub zone: &'a Name,
    /// The key's name and algorithm, for errors.
    pub key: &'a str,
}

/// The answer in `bytes`, read and verified. `NXDOMAIN` to a query is an
/// answer (no such name), not an error.
pub(crate) fn read(
    bytes: &[u8],
    verifier: &mut TSigVerifier,
    expected: &Expected<'_>,
    exchange: &Exchange<'_>,
) -> Result<Message, DnsError> {
    let message = Message::from_vec(bytes)
        .map_err(|e| exchange.malformed(format!("not a DNS message: {e}")))?;
    if message.metadata.message_type != MessageType::Response {
        return Err(exchange.malformed("not a response".to_string()));
    }
    if message.metadata.op_code != expected.op_code {
        return Err(exchange.malformed(format!(
            "the answer's opcode is {}, the request's {}",
            message.metadata.op_code, expected.op_code
        )));
    }
    let (name, kind) = expected.question;
    if let Some(question) = message.queries.first()
        && (message.queries.len() > 1 || question.name() != name || question.query_type() != kind)
    {
        return Err(exchange.malformed(format!(
            "it answers {} {}, not {name} {kind}",
            question.name(),
            question.query_type()
        )));
    }
    let rcode = message.metadata.response_code;
    let unsigned = match message.signature() {
        Some(tsig) if tsig.data.error.is_some() => {
            // BADKEY, BADSIG, BADTIME: the server could not check our
            // signature, so it could not sign its answer either.
            let error = tsig.data.error.unwrap_or(TsigError::Unknown(0));
            return Err(rejected(exchange, rcode, Some(error), false, expected));
        }
        Some(_) => {
            verifier.verify(bytes).map_err(|e| DnsError::BadSignature {
                server: exchange.server,
                operation: exchange.operation.to_string(),
                key: expected.key.to_string(),
                reason: e.to_string(),
            })?;
            false
        }
        None => true,
    };
    let is_answer = rcode == ResponseCode::NoError
        || (rcode == ResponseCode::NXDomain && expected.op_code == OpCode::Query);
    if !is_answer {
        return Err(rejected(exchange, rcode, None, unsigned, expected));
    }
    if unsigned {
        return Err(DnsError::BadSignature {
            server: exchange.server,
            operation: exchange.operation.to_string(),
            key: expected.key.to_string(),
            reason: "the answer is not signed, though the request was".to_string(),
        });
    }
    Ok(message)
}

/// The server said no: which code, and what it usually means.
fn rejected(
    exchange: &Exchange<'_>,
    rcode: ResponseCode,
    tsig_error: Option<TsigError>,
    unsigned: bool,
    expected: &Expected<'_>,
) -> DnsError {
    let key = expected.key;
    let zone = expected.zone;
    let updating = expected.op_code == OpCode::Update;
    let explanation = match (rcode, tsig_error) {
        (_, Some(TsigError::BadKey)) => format!(
            "the server does not accept the key {key}: either it does not know the key (check its \
             name and algorithm on both sides) or its policy does not let the key do this in the \
             zone {zone} (its ACL)"
        ),
        (_, Some(TsigError::BadSig)) => format!(
            "the signature with the key {key} does not verify on the server: its secret differs from the server's"
        ),
        (_, Some(TsigError::BadTime)) => {
            "the server's clock and this node's differ by more than the 300 s TSIG allows"
                .to_string()
        }
        (_, Some(other)) => format!(
            "the server refuses the signature (TSIG error {})",
            u16::from(other)
        ),
        (ResponseCode::Refused, None) if updating => format!(
            "the server's policy refuses it: is the key {key} allowed to update the zone {zone} (its ACL)?"
        ),
        (ResponseCode::Refused, None) => {
            format!("the server's policy refuses queries for {zone} with the key {key}")
        }
        (ResponseCode::NotAuth, None) => format!(
            "the server is not authoritative for the zone {zone}, or does not accept the key {key}"
        ),
        (ResponseCode::NotZone, None) => {
            format!("the name is not inside the zone {zone} as the server knows it")
        }
        (ResponseCode::NotImp, None) => {
            "the server does not implement this (dynamic update?)".to_string()
        }
        (ResponseCode::FormErr, None) => "the server could not parse the request".to_string(),
        (ResponseCode::ServFail, None) => {
            "the server failed to carry it out (its log says why)".to_string()
        }
        (ResponseCode::YXDomain | ResponseCode::YXRRSet | ResponseCode::NXRRSet, None) => {
            "a prerequisite did not hold".to_string()
        }
        (_, None) => "an error code this host does not expect".to_string(),
    };
    let mut code = rcode_name(rcode);
    if let Some(error) = tsig_error {
        code.push_str(&format!(" (TSIG {})", tsig_error_name(error)));
    }
    if unsigned {
        code.push_str(", unsigned");
    }
    DnsError::Rejected {
        server: exchange.server,
        operation: exchange.operation.to_string(),
        rcode: code,
        explanation,
    }
}

/// The code's mnemonic, as RFC 1035 and RFC 2136 name it.
fn rcode_name(rcode: ResponseCode) -> String {
    let name = match rcode {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::Refused => "REFUSED",
        ResponseCode::YXDomain => "YXDOMAIN",
        ResponseCode::YXRRSet => "YXRRSET",
        ResponseCode::NXRRSet => "NXRRSET",
        ResponseCode::NotAuth => "NOTAUTH",
        ResponseCode::NotZone => "NOTZONE",
        other => return format!("RCODE {}", u16::from(other)),
    };
    name.to_string()
}

fn tsig_error_name(error: TsigError) -> String {
    match error {
        TsigError::BadSig => "BADSIG".to_string(),
        TsigError::BadKey => "BADKEY".to_string(),
        TsigError::BadTime => "BADTIME".to_string(),
        TsigError::BadTrunc => "BADTRUNC".to_string(),
        TsigError::Unknown(code) => code.to_string(),
    }
}
