//! The Redfish side: which resource is a node, what its power state is,
//! and how it is reset.

use crate::Device;
use crate::exports::warden::fence::fence_type::PowerState;
use crate::http::{self, Answer};

/// The longest system id accepted: ids are short (`1`, `System.Embedded.1`,
/// a UUID).
const MAX_TARGET: usize = 128;

/// The path of system `target`, after checking that the id cannot leave
/// `/redfish/v1/Systems/` nor break the request line.
fn system_path(target: &str) -> Result<String, String> {
    let fine = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
    if target.is_empty()
        || target.len() > MAX_TARGET
        || !target.chars().all(fine)
        || target.starts_with('.')
    {
        return Err(format!(
            "target {target:?} is not a Redfish system id (1 to {MAX_TARGET} of A-Z a-z 0-9 . - _)"
        ));
    }
    Ok(format!("/redfish/v1/Systems/{target}"))
}

/// The error for an answer that is not a success, naming the request.
fn refused(what: &str, target: &str, answer: &Answer) -> String {
    let detail = http::excerpt(&answer.body);
    match answer.status {
        404 => format!("the BMC has no system {target:?} ({what} answered 404 Not Found)"),
        401 | 403 => format!(
            "the BMC refused the credentials ({what} answered {}): check username and password",
            answer.status
        ),
        status => format!("{what} answered HTTP {status}{detail}"),
    }
}

/// The system's `PowerState`.
pub fn power_state(device: &Device, target: &str) -> Result<PowerState, String> {
    let path = system_path(target)?;
    let what = format!("GET {path} at {}", device.address);
    let answer = http::request(device, "GET", &path, None).map_err(|e| format!("{what}: {e}"))?;
    if answer.status != 200 {
        return Err(refused(&what, target, &answer));
    }
    let json: serde_json::Value = serde_json::from_slice(&answer.body).map_err(|e| {
        format!(
            "{what}: the answer is not JSON ({e}){}",
            http::excerpt(&answer.body)
        )
    })?;
    match json.get("PowerState") {
        Some(serde_json::Value::String(state)) => Ok(match state.as_str() {
            "On" => PowerState::On,
            "Off" => PowerState::Off,
            other => PowerState::Other(other.chars().take(64).collect()),
        }),
        Some(serde_json::Value::Null) | None => Err(format!(
            "{what}: the answer has no PowerState (is {target:?} a ComputerSystem?)"
        )),
        Some(other) => Err(format!(
            "{what}: PowerState is {}, not a string",
            http::excerpt(other.to_string().as_bytes())
        )),
    }
}

/// `ComputerSystem.Reset` with `reset_type`. A refused `ForceOff` of a
/// system that is already off is a success (some BMCs refuse to switch off
/// what is off), so that off stays idempotent.
pub fn reset(device: &Device, target: &str, reset_type: &str) -> Result<(), String> {
    let path = format!("{}/Actions/ComputerSystem.Reset", system_path(target)?);
    let what = format!("POST {path} (ResetType {reset_type}) at {}", device.address);
    let body = format!("{{\"ResetType\":\"{reset_type}\"}}");
    let answer =
        http::request(device, "POST", &path, Some(&body)).map_err(|e| format!("{what}: {e}"))?;
    if (200..300).contains(&answer.status) {
        return Ok(());
    }
    if reset_type == "ForceOff"
        && answer.status != 404
        && matches!(power_state(device, target), Ok(PowerState::Off))
    {
        return Ok(());
    }
    Err(refused(&what, target, &answer))
}
