//! Mailbox names.
//!
//! A mailbox name travels unescaped through every protocol here: as a token
//! in the store's line protocol, in an HTTP path, in the index file
//! (`mailbox:seq`) and in the MTA's queue files. Rather than escape it five
//! ways, names are restricted to what needs no escaping anywhere: 1 to 64
//! characters of `a-z 0-9 . _ + -`, starting with a letter or digit. SMTP
//! lowercases the local part of a recipient before checking it.

/// Longest mailbox name, in bytes (RFC 5321's limit on a local part).
pub const MAX_LEN: usize = 64;

/// Is `name` a mailbox name as stored (already lowercase)?
pub fn is_valid(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_LEN
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|&c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'+' | b'-')
        })
}

/// The mailbox for the local part of an address, lowercased; `None` if the
/// result is not a valid name.
pub fn from_local_part(local: &str) -> Option<String> {
    let name = local.to_ascii_lowercase();
    is_valid(&name).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["alice", "a", "john.doe", "x+tag", "b_c-d", "0day"] {
            assert!(is_valid(ok), "{ok}");
        }
        let long = "a".repeat(65);
        for bad in ["", "Alice", ".hidden", "a b", "a:b", "a/b", "é", &long[..]] {
            assert!(!is_valid(bad), "{bad:?}");
        }
        assert_eq!(from_local_part("Alice").as_deref(), Some("alice"));
        assert_eq!(from_local_part("o'brien"), None);
    }
}
