//! Semver precedence, for ranking a type's versions: small enough not to
//! need a crate (one with other features than wasmtime's would rebuild
//! wasmtime).

use std::cmp::Ordering;

/// Semver precedence; a version that is not semver is below every one
/// that is, and such versions compare as text.
pub(crate) fn compare_versions(a: &str, b: &str) -> Ordering {
    match (Semver::parse(a), Semver::parse(b)) {
        (Some(a), Some(b)) => a.cmp(&b),
        (Some(_), None) => Ordering::Greater,
        (None, Some(_)) => Ordering::Less,
        (None, None) => a.cmp(b),
    }
}

/// `MAJOR.MINOR.PATCH[-PRE][+BUILD]`, ordered by semver precedence (build
/// metadata ignored). Small enough not to need a crate (one with other
/// features than wasmtime's would rebuild wasmtime).
#[derive(Debug, PartialEq, Eq)]
struct Semver<'a> {
    core: [u64; 3],
    pre: Vec<Identifier<'a>>,
}

/// A pre-release identifier: numeric ones rank below alphanumeric ones.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Identifier<'a> {
    Numeric(u64),
    Text(&'a str),
}

impl<'a> Semver<'a> {
    fn parse(text: &'a str) -> Option<Semver<'a>> {
        let text = text.split_once('+').map_or(text, |(version, _)| version);
        let (core, pre) = match text.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (text, None),
        };
        let number = |part: &str| {
            let leading_zero = part.len() > 1 && part.starts_with('0');
            let digits = !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
            (digits && !leading_zero).then(|| part.parse::<u64>().ok())?
        };
        let mut parts = core.split('.');
        let core = [
            number(parts.next()?)?,
            number(parts.next()?)?,
            number(parts.next()?)?,
        ];
        if parts.next().is_some() {
            return None;
        }
        let pre = match pre {
            None => Vec::new(),
            Some(pre) => pre
                .split('.')
                .map(|id| match number(id) {
                    Some(n) => Some(Identifier::Numeric(n)),
                    None => (!id.is_empty()
                        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
                    .then_some(Identifier::Text(id)),
                })
                .collect::<Option<Vec<_>>>()?,
        };
        Some(Semver { core, pre })
    }
}

impl Ord for Semver<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.core.cmp(&other.core).then_with(|| {
            match (self.pre.is_empty(), other.pre.is_empty()) {
                // A release is above its pre-releases.
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => self.pre.cmp(&other.pre),
            }
        })
    }
}

impl PartialOrd for Semver<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_by_semver_precedence() {
        // The order semver.org gives, lowest first.
        let ordered = [
            "not-a-version",
            "0.9.0",
            "0.10.0",
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.1",
            "2.0.0",
        ];
        for (i, a) in ordered.iter().enumerate() {
            for (j, b) in ordered.iter().enumerate() {
                assert_eq!(compare_versions(a, b), i.cmp(&j), "{a} against {b}");
            }
        }
        assert_eq!(compare_versions("1.0.0+build.5", "1.0.0"), Ordering::Equal);
        for bad in ["1.0", "1.0.0.0", "01.0.0", "1.0.0-", "1.0.0-a..b", "v1.0.0"] {
            assert_eq!(
                compare_versions(bad, "0.0.1"),
                Ordering::Less,
                "{bad} is not semver"
            );
        }
    }
}
