//! What a requester asks: a [`State`] for a component, who asks
//! ([`Requester`]), and when ([`Entry`]).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::ParseError;

/// The state a requester asks for, and the combined state of a component.
///
/// `Draining` means "finish what is under way, take nothing new"; in
/// Exchange it only matters to the transport components, here it is allowed
/// everywhere and ranks between the other two (see
/// [`ComponentStates::effective`](super::ComponentStates::effective)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum State {
    /// In service.
    Active,
    /// Out of service.
    Inactive,
    /// Finishing what is under way, taking nothing new.
    Draining,
}

impl State {
    /// How restrictive the state is: the combined state of a component is
    /// the most restrictive one any requester asked for, and a tie between
    /// two copies of an entry is broken the same way.
    pub(super) fn restriction(self) -> u8 {
        match self {
            Self::Active => 0,
            Self::Draining => 1,
            Self::Inactive => 2,
        }
    }

    /// Whether the component is fully in service.
    pub fn is_active(self) -> bool {
        self == Self::Active
    }

    /// The more restrictive of two states.
    pub(super) fn most_restrictive(self, other: Self) -> Self {
        if other.restriction() > self.restriction() {
            other
        } else {
            self
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Active => "Active",
            Self::Inactive => "Inactive",
            Self::Draining => "Draining",
        })
    }
}

impl FromStr for State {
    type Err = ParseError;

    /// Case-insensitive: `inactive` and `INACTIVE` are `Inactive`.
    fn from_str(word: &str) -> Result<Self, ParseError> {
        [Self::Active, Self::Inactive, Self::Draining]
            .into_iter()
            .find(|s| s.to_string().eq_ignore_ascii_case(word))
            .ok_or_else(|| ParseError::State(word.to_owned()))
    }
}

/// Who asked for a state. Requesters are labels with no hierarchy between
/// them, but each one's request is kept separately, so choose the one that
/// says why: Exchange's Managed Availability uses `HealthAPI` for its own
/// offline and online responders (treat it as reserved for the agent's
/// automation), planned work uses `Maintenance`, and setup uses
/// `Functional`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Requester {
    /// The agent's own health automation (Exchange's Managed Availability).
    #[serde(rename = "HealthAPI")]
    HealthApi,
    /// Planned work by an operator.
    Maintenance,
    /// Set aside because of a problem under investigation.
    Sidelined,
    /// Setup and upgrades (Exchange's setup uses it).
    Functional,
    /// Rolling out a new version.
    Deployment,
}

impl Requester {
    /// All requesters, in display order.
    pub const ALL: [Self; 5] = [
        Self::HealthApi,
        Self::Maintenance,
        Self::Sidelined,
        Self::Functional,
        Self::Deployment,
    ];
}

impl fmt::Display for Requester {
    /// As Exchange writes them: `HealthAPI`, `Maintenance`, ...
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::HealthApi => "HealthAPI",
            Self::Maintenance => "Maintenance",
            Self::Sidelined => "Sidelined",
            Self::Functional => "Functional",
            Self::Deployment => "Deployment",
        })
    }
}

impl FromStr for Requester {
    type Err = ParseError;

    /// Case-insensitive: `healthapi` is `HealthAPI`.
    fn from_str(word: &str) -> Result<Self, ParseError> {
        Self::ALL
            .into_iter()
            .find(|r| r.to_string().eq_ignore_ascii_case(word))
            .ok_or_else(|| ParseError::Requester(word.to_owned()))
    }
}

/// What one requester last asked of one component, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub state: State,
    /// Milliseconds since the Unix epoch: when it was asked.
    pub at_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::components::Requester::HealthApi;
    use crate::components::State::{Active, Draining, Inactive};

    #[test]
    fn state_and_requester_text_forms() {
        for state in [Active, Inactive, Draining] {
            assert_eq!(state.to_string().parse::<State>(), Ok(state));
            assert_eq!(state.to_string().to_lowercase().parse::<State>(), Ok(state));
            assert_eq!(state.to_string().to_uppercase().parse::<State>(), Ok(state));
        }
        for requester in Requester::ALL {
            let text = requester.to_string();
            assert_eq!(text.parse::<Requester>(), Ok(requester));
            assert_eq!(text.to_lowercase().parse::<Requester>(), Ok(requester));
        }
        assert_eq!(HealthApi.to_string(), "HealthAPI");
        assert_eq!("healthapi".parse::<Requester>(), Ok(HealthApi));
    }
}
