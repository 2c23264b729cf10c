//! [`Component`], the part of a node a requester takes out of service, and the
//! text forms of it, of a [`State`](super::State) and of a
//! [`Requester`](super::Requester) (what the CLI, the API and the stores
//! write), with [`ParseError`] naming the accepted words.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The accepted spellings of a [`Component`], for error messages.
const COMPONENT_WORDS: &str = "ServerWideOffline, Monitoring, RecoveryActionsEnabled, \
                               or type:<resource-type>";
/// The accepted spellings of a [`State`](super::State), for error messages.
const STATE_WORDS: &str = "Active, Inactive, Draining";
/// The accepted spellings of a [`Requester`](super::Requester), for error messages.
const REQUESTER_WORDS: &str = "HealthAPI, Maintenance, Sidelined, Functional, Deployment";
/// The prefix that marks a resource-type component in its text form.
const TYPE_PREFIX: &str = "type:";

/// A word that did not parse as a component, state or requester.
///
/// Each message names the bad word and the accepted ones, so an operator
/// who typed it can correct it without reading the documentation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not a fixed component name, and no `type:` prefix.
    #[error("unknown component `{0}`: expected {COMPONENT_WORDS}")]
    Component(String),
    /// `type:` with an empty name or one containing whitespace.
    #[error(
        "invalid resource type name in component `{0}`: expected type:<name> with a \
         non-empty name without whitespace"
    )]
    TypeName(String),
    /// Not one of the three states.
    #[error("unknown state `{0}`: expected one of {STATE_WORDS}")]
    State(String),
    /// Not one of the five requesters.
    #[error("unknown requester `{0}`: expected one of {REQUESTER_WORDS}")]
    Requester(String),
}

/// A part of a node that can be taken out of service on its own.
///
/// The declaration order is the order of
/// [`ComponentStates::list`](super::ComponentStates::list): the
/// node-wide switch first, then the two that govern the agent's own automation,
/// then the resource types by name.
///
/// # Text form
///
/// The fixed components are written as Exchange writes them
/// (`ServerWideOffline`, `Monitoring`, `RecoveryActionsEnabled`) and parsed
/// case-insensitively. A resource-type component is written `type:<name>`
/// (`type:smtp-instance`); the prefix is case-insensitive, the name is kept
/// exactly. [`FromStr`] rejects a bare word that is not a fixed component:
/// otherwise a typo such as `Monitorng` would silently become a component
/// for a resource type that does not exist. Where the known type names are
/// at hand (the CLI, the admin API), [`Component::parse_with_types`] also
/// accepts a bare type name. The text form is also the serde form, so it is
/// what the stores hold.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Component {
    /// The whole node: Inactive drains it of all its groups.
    ServerWideOffline,
    /// Health checks of the node's resources.
    Monitoring,
    /// Automatic restarts and failovers.
    RecoveryActionsEnabled,
    /// The resources of one resource type, by the type's name.
    Type(String),
}

impl Component {
    /// A resource-type component; `name` is the type's name as configured.
    pub fn resource_type(name: impl Into<String>) -> Self {
        Self::Type(name.into())
    }

    /// Parses `word` like [`FromStr`], and also accepts a bare resource type
    /// name if it is one of `types` (exactly as spelled there).
    ///
    /// A fixed component name wins over a type of the same name; such a type
    /// is still reachable as `type:<name>`.
    pub fn parse_with_types<'a>(
        word: &str,
        types: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, ParseError> {
        match word.parse() {
            Ok(component) => Ok(component),
            Err(ParseError::Component(bad)) => {
                if types.into_iter().any(|t| t == word) {
                    Ok(Self::Type(word.to_owned()))
                } else {
                    Err(ParseError::Component(bad))
                }
            }
            Err(other) => Err(other),
        }
    }

    /// The resource type's name, for a resource-type component.
    pub fn type_name(&self) -> Option<&str> {
        match self {
            Self::Type(name) => Some(name),
            _ => None,
        }
    }

    /// Whether [`Component::ServerWideOffline`] overrides this component.
    ///
    /// It overrides every resource type, and neither `Monitoring` nor
    /// `RecoveryActionsEnabled`: they keep the node's health checking and
    /// recovery going, which is what can bring the node back (the seed:
    /// "Without them, no OnlineResponder could bring ServerWideOffline back
    /// to Active automatically").
    pub fn follows_server_wide_offline(&self) -> bool {
        matches!(self, Self::Type(_))
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ServerWideOffline => f.write_str("ServerWideOffline"),
            Self::Monitoring => f.write_str("Monitoring"),
            Self::RecoveryActionsEnabled => f.write_str("RecoveryActionsEnabled"),
            Self::Type(name) => write!(f, "{TYPE_PREFIX}{name}"),
        }
    }
}

impl FromStr for Component {
    type Err = ParseError;

    fn from_str(word: &str) -> Result<Self, ParseError> {
        let fixed = [
            Self::ServerWideOffline,
            Self::Monitoring,
            Self::RecoveryActionsEnabled,
        ];
        if let Some(component) = fixed
            .into_iter()
            .find(|c| c.to_string().eq_ignore_ascii_case(word))
        {
            return Ok(component);
        }
        if let Some((prefix, name)) = word.split_at_checked(TYPE_PREFIX.len())
            && prefix.eq_ignore_ascii_case(TYPE_PREFIX)
        {
            let valid =
                !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c.is_control());
            return if valid {
                Ok(Self::Type(name.to_owned()))
            } else {
                Err(ParseError::TypeName(word.to_owned()))
            };
        }
        Err(ParseError::Component(word.to_owned()))
    }
}

impl TryFrom<String> for Component {
    type Error = ParseError;

    fn try_from(word: String) -> Result<Self, ParseError> {
        word.parse()
    }
}

impl From<Component> for String {
    fn from(component: Component) -> Self {
        component.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::components::{Requester, State};

    #[test]
    fn component_text_forms() {
        let good: &[(&str, Component)] = &[
            ("ServerWideOffline", Component::ServerWideOffline),
            ("serverwideoffline", Component::ServerWideOffline),
            ("MONITORING", Component::Monitoring),
            ("recoveryActionsEnabled", Component::RecoveryActionsEnabled),
            (
                "type:smtp-instance",
                Component::resource_type("smtp-instance"),
            ),
            ("TYPE:Smtp", Component::resource_type("Smtp")),
            ("type:monitoring", Component::resource_type("monitoring")),
        ];
        for (word, expected) in good {
            let parsed: Component = word.parse().unwrap();
            assert_eq!(&parsed, expected, "{word}");
            assert_eq!(parsed.to_string().parse::<Component>().unwrap(), parsed);
        }
        assert_eq!(
            Component::resource_type("smtp-instance").to_string(),
            "type:smtp-instance"
        );
        assert_eq!(
            Component::RecoveryActionsEnabled.to_string(),
            "RecoveryActionsEnabled"
        );
    }

    #[test]
    fn component_with_known_types() {
        let types = ["smtp-instance", "Monitoring"];
        let parse = |w: &str| Component::parse_with_types(w, types);
        assert_eq!(
            parse("smtp-instance"),
            Ok(Component::resource_type("smtp-instance"))
        );
        assert_eq!(parse("monitoring"), Ok(Component::Monitoring));
        assert_eq!(
            parse("type:Monitoring"),
            Ok(Component::resource_type("Monitoring"))
        );
        assert_eq!(
            parse("imap-instance"),
            Err(ParseError::Component("imap-instance".into()))
        );
        assert_eq!(parse("type:"), Err(ParseError::TypeName("type:".into())));
    }

    #[test]
    fn parse_errors_name_the_word_and_the_choices() {
        let cases: &[(Result<(), ParseError>, &str, &[&str])] = &[
            (
                "Monitorng".parse::<Component>().map(drop),
                "`Monitorng`",
                &[
                    "ServerWideOffline",
                    "Monitoring",
                    "RecoveryActionsEnabled",
                    "type:<resource-type>",
                ],
            ),
            (
                "type:".parse::<Component>().map(drop),
                "`type:`",
                &["type:<name>"],
            ),
            (
                "type:a b".parse::<Component>().map(drop),
                "`type:a b`",
                &["type:<name>"],
            ),
            (
                "Offline".parse::<State>().map(drop),
                "`Offline`",
                &["Active", "Inactive", "Draining"],
            ),
            (
                "Admin".parse::<Requester>().map(drop),
                "`Admin`",
                &[
                    "HealthAPI",
                    "Maintenance",
                    "Sidelined",
                    "Functional",
                    "Deployment",
                ],
            ),
        ];
        for (result, word, choices) in cases {
            let Err(error) = result else {
                panic!("{word} parsed");
            };
            let message = error.to_string();
            assert!(message.contains(word), "{message}");
            for choice in *choices {
                assert!(message.contains(choice), "{message} lacks {choice}");
            }
        }
    }
}
