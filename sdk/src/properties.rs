//! Property schemas: declare each property of a type once, as a
//! [`Property`], and get both halves of the contract from that one list:
//! `describe()`'s property table ([`Property::spec`]) and the parsing of a
//! resource's values ([`Props`]), whose errors name the property and say
//! why it was refused.
//!
//! ```
//! use warden_sdk::{Property, Props};
//!
//! const SCHEMA: &[Property] = &[
//!     Property::address("address", "Where the server listens (host:port)"),
//!     Property::duration_ms("answer-timeout-ms", "How long a check may take").default("2000"),
//! ];
//!
//! let values = vec![("address".to_string(), "127.0.0.1:6379".to_string())];
//! let props = Props::new(&values, SCHEMA);
//! assert_eq!(props.address("address")?, "127.0.0.1:6379");
//! // Not set: the schema's default.
//! assert_eq!(props.duration("answer-timeout-ms")?.as_millis(), 2000);
//! # Ok::<(), warden_sdk::types::PropertyError>(())
//! ```

use std::time::Duration;

use crate::types::{PropertyError, PropertyKind, PropertySpec};

/// One property of a type's schema: its name, the kind of value it holds,
/// its default and the help text operators see (`warden plugin check`,
/// the admin API). A property without a default is required.
///
/// Every constructor is `const`, so a schema can be a `const` slice:
///
/// ```
/// use warden_sdk::Property;
/// use warden_sdk::types::PropertyKind;
///
/// const PATH: Property = Property::string("path", "The path whose GET must answer 2xx").default("/health");
/// assert_eq!(PATH.kind, PropertyKind::String);
/// assert_eq!(PATH.default, Some("/health"));
/// assert!(!PATH.is_required());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Property {
    /// The name, 1 to 64 characters of `a-z`, `0-9` and `-`.
    pub name: &'static str,
    /// The kind of value; the agent checks values against it before the
    /// plugin sees them.
    pub kind: PropertyKind,
    /// The value used when a resource does not set the property; `None`
    /// makes the property required.
    pub default: Option<&'static str>,
    /// One line of help for operators.
    pub description: &'static str,
}

impl Property {
    /// A required property of any kind; see the shorthands below.
    ///
    /// ```
    /// use warden_sdk::Property;
    /// use warden_sdk::types::PropertyKind;
    ///
    /// let p = Property::new("max-lag", PropertyKind::Integer, "Fail when the index is this far behind");
    /// assert!(p.is_required());
    /// ```
    pub const fn new(name: &'static str, kind: PropertyKind, description: &'static str) -> Self {
        Property {
            name,
            kind,
            default: None,
            description,
        }
    }

    /// A required text property. Read it with [`Props::string`].
    ///
    /// ```
    /// # use warden_sdk::Property;
    /// let p = Property::string("program", "Path of the program to run");
    /// assert!(p.is_required());
    /// ```
    pub const fn string(name: &'static str, description: &'static str) -> Self {
        Self::new(name, PropertyKind::String, description)
    }

    /// A required whole number. Read it with [`Props::u64`].
    ///
    /// ```
    /// # use warden_sdk::Property;
    /// let p = Property::integer("max-lag", "Fail when the index is this far behind").default("1000");
    /// assert_eq!(p.default, Some("1000"));
    /// ```
    pub const fn integer(name: &'static str, description: &'static str) -> Self {
        Self::new(name, PropertyKind::Integer, description)
    }

    /// A required `true` or `false`. Read it with [`Props::bool`].
    ///
    /// ```
    /// # use warden_sdk::Property;
    /// let p = Property::boolean("read-only", "Mount read-only").default("false");
    /// assert!(!p.is_required());
    /// ```
    pub const fn boolean(name: &'static str, description: &'static str) -> Self {
        Self::new(name, PropertyKind::Boolean, description)
    }

    /// A required duration in milliseconds. Read it with
    /// [`Props::duration`] (or [`Props::u64`] for the number itself).
    ///
    /// ```
    /// # use warden_sdk::Property;
    /// let p = Property::duration_ms("answer-timeout-ms", "How long a check may take").default("3000");
    /// assert_eq!(p.spec().default_value.as_deref(), Some("3000"));
    /// ```
    pub const fn duration_ms(name: &'static str, description: &'static str) -> Self {
        Self::new(name, PropertyKind::DurationMs, description)
    }

    /// A required TCP address, `host:port`. Declaring it is what lets the
    /// plugin connect there: the agent allows connections only to the
    /// addresses in properties of this kind. Read it with
    /// [`Props::address`].
    ///
    /// ```
    /// # use warden_sdk::Property;
    /// use warden_sdk::types::PropertyKind;
    /// let p = Property::address("address", "Where the service listens (host:port)");
    /// assert_eq!(p.kind, PropertyKind::Address);
    /// ```
    pub const fn address(name: &'static str, description: &'static str) -> Self {
        Self::new(name, PropertyKind::Address, description)
    }

    /// The same property with a default value, which makes it optional.
    /// The agent checks at load time that the default fits the kind.
    ///
    /// ```
    /// # use warden_sdk::Property;
    /// let store = Property::string("store", "The store's address, for the args template").default("");
    /// assert_eq!(store.default, Some(""));
    /// ```
    pub const fn default(self, value: &'static str) -> Self {
        Property {
            default: Some(value),
            ..self
        }
    }

    /// Whether a resource must set the property: it has no default.
    ///
    /// ```
    /// # use warden_sdk::Property;
    /// assert!(Property::address("address", "Where it listens").is_required());
    /// ```
    pub const fn is_required(&self) -> bool {
        self.default.is_none()
    }

    /// The entry of `describe()`'s property table.
    ///
    /// ```
    /// # use warden_sdk::Property;
    /// let spec = Property::address("address", "Where it listens").spec();
    /// assert_eq!(spec.name, "address");
    /// assert!(spec.required);
    /// assert_eq!(spec.default_value, None);
    /// ```
    pub fn spec(&self) -> PropertySpec {
        PropertySpec {
            name: self.name.to_string(),
            kind: self.kind,
            default_value: self.default.map(str::to_string),
            required: self.is_required(),
            description: self.description.to_string(),
        }
    }
}

/// A [`PropertyError`] for `property`: what `validate` and `open` answer
/// when a value is refused.
///
/// ```
/// let err = warden_sdk::refuse("path", "must start with /");
/// assert_eq!(err.property, "path");
/// assert_eq!(err.reason, "must start with /");
/// ```
pub fn refuse(property: &str, reason: impl Into<String>) -> PropertyError {
    PropertyError {
        property: property.to_string(),
        reason: reason.into(),
    }
}

/// A resource's property values read through its type's schema.
///
/// A value the resource does not set is the schema's default (the agent
/// fills defaults in before `validate` and `open`, but the schema is the
/// single source either way). Every getter's error is a [`PropertyError`]
/// naming the property, ready to be returned from `open`:
///
/// ```
/// use warden_sdk::{Property, Props};
///
/// const SCHEMA: &[Property] = &[Property::integer("max-lag", "Bound on the lag").default("1000")];
/// let values = vec![("max-lag".to_string(), "a lot".to_string())];
/// let err = Props::new(&values, SCHEMA).u64("max-lag").unwrap_err();
/// assert_eq!(err.property, "max-lag");
/// assert_eq!(err.reason, "expected a whole number, got \"a lot\"");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Props<'a> {
    values: &'a [(String, String)],
    schema: &'a [Property],
}

impl<'a> Props<'a> {
    /// Read `values` (name, value pairs, as the contract passes them)
    /// through `schema`.
    ///
    /// ```
    /// # use warden_sdk::{Property, Props};
    /// let schema = [Property::string("program", "Path of the program")];
    /// let values = vec![("program".to_string(), "/usr/bin/sleep".to_string())];
    /// assert_eq!(Props::new(&values, &schema).string("program")?, "/usr/bin/sleep");
    /// # Ok::<(), warden_sdk::types::PropertyError>(())
    /// ```
    pub fn new(values: &'a [(String, String)], schema: &'a [Property]) -> Self {
        Props { values, schema }
    }

    /// The values as given, for what works on all of them at once (the
    /// argument template of [`crate::service::expand`]).
    ///
    /// ```
    /// # use warden_sdk::{Property, Props};
    /// let values = vec![("a".to_string(), "1".to_string())];
    /// assert_eq!(Props::new(&values, &[]).values().len(), 1);
    /// ```
    pub fn values(&self) -> &'a [(String, String)] {
        self.values
    }

    /// The schema the values are read through.
    ///
    /// ```
    /// # use warden_sdk::{Property, Props};
    /// let schema = [Property::string("program", "Path of the program")];
    /// assert_eq!(Props::new(&[], &schema).schema()[0].name, "program");
    /// ```
    pub fn schema(&self) -> &'a [Property] {
        self.schema
    }

    /// The declaration of `name` and its text: the value set, else the
    /// default. A name the schema does not declare is a bug in the type,
    /// reported as an error naming it.
    fn lookup(&self, name: &str) -> Result<(&'a Property, Option<&'a str>), PropertyError> {
        let property = self.schema.iter().find(|p| p.name == name).ok_or_else(|| {
            refuse(
                name,
                "the type reads a property its schema does not declare (a bug in the type)",
            )
        })?;
        let value = self
            .values
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .or(property.default);
        Ok((property, value))
    }

    /// The text of a property of kind `wanted`, empty meaning unset.
    fn typed(
        &self,
        name: &str,
        wanted: &[PropertyKind],
        as_what: &str,
    ) -> Result<&'a str, PropertyError> {
        let (property, value) = self.lookup(name)?;
        if !wanted.contains(&property.kind) {
            return Err(refuse(
                name,
                format!(
                    "the type reads it as {as_what}, but declares it {} (a bug in the type)",
                    kind_name(property.kind)
                ),
            ));
        }
        value
            .filter(|v| !v.is_empty())
            .or(property.default.filter(|d| !d.is_empty()))
            .ok_or_else(|| required(property))
    }

    /// The text of a property, whatever its kind: the value set, else the
    /// default. A required property that is unset or empty is refused.
    ///
    /// ```
    /// # use warden_sdk::{Property, Props};
    /// let schema = [
    ///     Property::string("program", "Path of the program to run"),
    ///     Property::string("store", "The store's address").default(""),
    /// ];
    /// let values = vec![("program".to_string(), String::new())];
    /// let props = Props::new(&values, &schema);
    /// assert_eq!(props.get("store")?, "");
    /// let err = props.get("program").unwrap_err();
    /// assert_eq!((err.property.as_str(), err.reason.as_str()), ("program", "required: path of the program to run"));
    /// # Ok::<(), warden_sdk::types::PropertyError>(())
    /// ```
    pub fn get(&self, name: &str) -> Result<&'a str, PropertyError> {
        let (property, value) = self.lookup(name)?;
        match value {
            Some(text) if !(text.is_empty() && property.is_required()) => Ok(text),
            _ => Err(required(property)),
        }
    }

    /// [`Props::get`] as an owned `String`.
    ///
    /// ```
    /// # use warden_sdk::{Property, Props};
    /// let schema = [Property::string("path", "The path to GET").default("/health")];
    /// assert_eq!(Props::new(&[], &schema).string("path")?, "/health");
    /// # Ok::<(), warden_sdk::types::PropertyError>(())
    /// ```
    pub fn string(&self, name: &str) -> Result<String, PropertyError> {
        self.get(name).map(str::to_string)
    }

    /// A whole number (a property of kind integer or duration-ms). Empty
    /// means unset.
    ///
    /// ```
    /// # use warden_sdk::{Property, Props};
    /// let schema = [Property::integer("max-lag", "Bound on the lag").default("1000")];
    /// let values = vec![("max-lag".to_string(), "250".to_string())];
    /// assert_eq!(Props::new(&values, &schema).u64("max-lag")?, 250);
    /// assert_eq!(Props::new(&[], &schema).u64("max-lag")?, 1000);
    /// # Ok::<(), warden_sdk::types::PropertyError>(())
    /// ```
    pub fn u64(&self, name: &str) -> Result<u64, PropertyError> {
        let text = self.typed(
            name,
            &[PropertyKind::Integer, PropertyKind::DurationMs],
            "a whole number",
        )?;
        text.parse()
            .map_err(|_| refuse(name, format!("expected a whole number, got {text:?}")))
    }

    /// A duration, from a property of kind duration-ms. Empty means unset.
    ///
    /// ```
    /// # use warden_sdk::{Property, Props};
    /// use std::time::Duration;
    /// let schema = [Property::duration_ms("stop-grace-ms", "SIGTERM to SIGKILL").default("5000")];
    /// assert_eq!(Props::new(&[], &schema).duration("stop-grace-ms")?, Duration::from_secs(5));
    /// let values = vec![("stop-grace-ms".to_string(), "5s".to_string())];
    /// let err = Props::new(&values, &schema).duration("stop-grace-ms").unwrap_err();
    /// assert_eq!(err.reason, "expected a number of milliseconds, got \"5s\"");
    /// # Ok::<(), warden_sdk::types::PropertyError>(())
    /// ```
    pub fn duration(&self, name: &str) -> Result<Duration, PropertyError> {
        let text = self.typed(name, &[PropertyKind::DurationMs], "a duration")?;
        text.parse().map(Duration::from_millis).map_err(|_| {
            refuse(
                name,
                format!("expected a number of milliseconds, got {text:?}"),
            )
        })
    }

    /// `true` or `false`, from a property of kind boolean. Empty means
    /// unset.
    ///
    /// ```
    /// # use warden_sdk::{Property, Props};
    /// let schema = [Property::boolean("read-only", "Mount read-only").default("false")];
    /// assert!(!Props::new(&[], &schema).bool("read-only")?);
    /// let values = vec![("read-only".to_string(), "yes".to_string())];
    /// assert_eq!(
    ///     Props::new(&values, &schema).bool("read-only").unwrap_err().reason,
    ///     "expected true or false, got \"yes\""
    /// );
    /// # Ok::<(), warden_sdk::types::PropertyError>(())
    /// ```
    pub fn bool(&self, name: &str) -> Result<bool, PropertyError> {
        let text = self.typed(name, &[PropertyKind::Boolean], "a boolean")?;
        match text {
            "true" => Ok(true),
            "false" => Ok(false),
            other => Err(refuse(
                name,
                format!("expected true or false, got {other:?}"),
            )),
        }
    }

    /// A `host:port` address, from a property of kind address. Empty is
    /// refused as unset. The host may be a name; the agent resolves it
    /// when it opens the resource, and [`crate::net`] connects to IP
    /// addresses and `localhost`.
    ///
    /// ```
    /// # use warden_sdk::{Property, Props};
    /// let schema = [Property::address("address", "Where it listens").default("127.0.0.1:6379")];
    /// assert_eq!(Props::new(&[], &schema).address("address")?, "127.0.0.1:6379");
    /// let values = vec![("address".to_string(), "127.0.0.1".to_string())];
    /// assert_eq!(
    ///     Props::new(&values, &schema).address("address").unwrap_err().reason,
    ///     "expected host:port, got \"127.0.0.1\""
    /// );
    /// # Ok::<(), warden_sdk::types::PropertyError>(())
    /// ```
    pub fn address(&self, name: &str) -> Result<String, PropertyError> {
        let text = self.typed(name, &[PropertyKind::Address], "an address")?;
        let port = text
            .rsplit_once(':')
            .map(|(host, port)| (host, port.parse::<u16>()));
        match port {
            Some((host, Ok(_))) if !host.is_empty() => Ok(text.to_string()),
            _ => Err(refuse(name, format!("expected host:port, got {text:?}"))),
        }
    }
}

/// The error for a required property without a value.
fn required(property: &Property) -> PropertyError {
    let mut what = property.description.to_string();
    if let Some(first) = what.get(..1)
        && what.get(1..2).is_some_and(|c| c == c.to_lowercase())
    {
        // "Where it listens" reads "required: where it listens", but an
        // acronym ("TCP ...") keeps its case.
        what.replace_range(..1, &first.to_lowercase());
    }
    refuse(property.name, format!("required: {what}"))
}

/// How a kind reads in an error.
fn kind_name(kind: PropertyKind) -> &'static str {
    match kind {
        PropertyKind::String => "a string",
        PropertyKind::Integer => "an integer",
        PropertyKind::Boolean => "a boolean",
        PropertyKind::DurationMs => "a duration in milliseconds",
        PropertyKind::Address => "an address",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &[Property] = &[
        Property::address("address", "Where it listens"),
        Property::duration_ms("answer-timeout-ms", "How long").default("3000"),
        Property::string("store", "The store").default(""),
    ];

    fn values(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn unset_and_empty_values_fall_back_to_the_default_or_are_required() {
        let v = values(&[("answer-timeout-ms", ""), ("address", "")]);
        let props = Props::new(&v, SCHEMA);
        assert_eq!(
            props.duration("answer-timeout-ms").unwrap(),
            Duration::from_secs(3)
        );
        let err = props.address("address").unwrap_err();
        assert_eq!(err.property, "address");
        assert_eq!(err.reason, "required: where it listens");
        assert_eq!(props.get("store").unwrap(), "");
    }

    #[test]
    fn reading_an_undeclared_or_mistyped_property_names_it() {
        let props = Props::new(&[], SCHEMA);
        let err = props.string("nope").unwrap_err();
        assert_eq!(err.property, "nope");
        assert!(err.reason.contains("does not declare"), "{}", err.reason);
        let err = props.bool("answer-timeout-ms").unwrap_err();
        assert_eq!(err.property, "answer-timeout-ms");
        assert!(err.reason.contains("a duration in milliseconds"));
    }

    #[test]
    fn addresses_need_a_port() {
        for bad in ["nohost", ":25", "host:port", "host:70000"] {
            let v = values(&[("address", bad)]);
            assert!(Props::new(&v, SCHEMA).address("address").is_err(), "{bad}");
        }
        for good in ["localhost:25", "[::1]:25", "10.0.0.5:25"] {
            let v = values(&[("address", good)]);
            assert_eq!(Props::new(&v, SCHEMA).address("address").unwrap(), good);
        }
    }

    #[test]
    fn required_keeps_the_case_of_acronyms() {
        let p = Property::string("x", "TCP port");
        assert_eq!(required(&p).reason, "required: TCP port");
    }
}
