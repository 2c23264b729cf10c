//! Reading a TSIG key file. The secret is base64, in one of the forms the
//! usual tools print, so the operator can point `key_file` at what they
//! already have:
//!
//! - the secret alone (`tsig-keygen`'s or `keymgr -t`'s secret line);
//! - `ALGORITHM:NAME:SECRET` (knot's `-y` form, the comment `keymgr -t` prints);
//! - a BIND key statement (`tsig-keygen NAME` or `ddns-confgen`:
//!   `key "NAME" { algorithm hmac-sha256; secret "..."; };`);
//! - knot's configuration block (`keymgr -t NAME`: `key: - id: NAME
//!   algorithm: ... secret: ...`).
//!
//! Where the file names the key or its algorithm, the grant must agree:
//! a mismatch would only surface later as the server's NOTAUTH.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// A key file is a few hundred bytes; anything past this is not one.
pub const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// What a key file says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct KeyFile {
    pub secret: Vec<u8>,
    /// The key's name, where the file gives one.
    pub name: Option<String>,
    /// The algorithm, where the file gives one (lowercase).
    pub algorithm: Option<String>,
}

/// Read and parse `path` (a regular file, at most [`MAX_KEY_FILE_BYTES`]).
/// Errors name the file; the caller adds the grant.
pub(crate) fn read(path: &Path) -> Result<KeyFile> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("key_file {}: cannot be opened", path.display()))?;
    let meta = file
        .metadata()
        .with_context(|| format!("key_file {}", path.display()))?;
    if !meta.is_file() {
        bail!("key_file {} is not a regular file", path.display());
    }
    let mut text = String::new();
    file.take(MAX_KEY_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("key_file {}: not readable as text", path.display()))?;
    if text.len() as u64 > MAX_KEY_FILE_BYTES {
        bail!(
            "key_file {} is larger than {MAX_KEY_FILE_BYTES} bytes: not a TSIG key file",
            path.display()
        );
    }
    parse(&text).map_err(|reason| anyhow::anyhow!("key_file {}: {reason}", path.display()))
}

/// Parse a key file's text (see the module's doc for the forms).
pub(crate) fn parse(text: &str) -> Result<KeyFile, String> {
    let tokens = tokens(text);
    match tokens.as_slice() {
        [] => Err("it is empty: it should hold a base64 TSIG secret".to_string()),
        [only] => match only.split(':').collect::<Vec<_>>().as_slice() {
            [secret] => Ok(KeyFile {
                secret: decode(secret)?,
                name: None,
                algorithm: None,
            }),
            [algorithm, name, secret] => Ok(KeyFile {
                secret: decode(secret)?,
                name: Some(name.trim_end_matches('.').to_string()),
                algorithm: Some(algorithm.to_ascii_lowercase()),
            }),
            _ => Err(
                "one word that is neither a base64 secret nor ALGORITHM:NAME:SECRET".to_string(),
            ),
        },
        _ => statement(&tokens),
    }
}

/// The words of a BIND key statement or a knot key block, with quotes,
/// braces, semicolons, list dashes and comments gone, and a key's colon
/// (`secret:`) split from it.
fn tokens(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with("//") {
            continue;
        }
        let cleaned: String = line
            .chars()
            .map(|c| {
                if matches!(c, '"' | '{' | '}' | ';') {
                    ' '
                } else {
                    c
                }
            })
            .collect();
        for word in cleaned.split_whitespace() {
            if word == "-" {
                continue;
            }
            match word.strip_suffix(':') {
                Some(key) if !key.contains(':') => {
                    words.push(key.to_string());
                    words.push(":".to_string());
                }
                _ => words.push(word.to_string()),
            }
        }
    }
    words
}

/// `key NAME`, `id: NAME`, `algorithm X`, `secret X` among the words
/// (`key:` alone is knot's section header, not a name).
fn statement(tokens: &[String]) -> Result<KeyFile, String> {
    let mut secret = None;
    let mut name = None;
    let mut algorithm = None;
    let mut at = 0;
    while at < tokens.len() {
        let word = tokens[at].to_ascii_lowercase();
        let colon = tokens.get(at + 1).is_some_and(|next| next == ":");
        let value_at = if colon { at + 2 } else { at + 1 };
        let slot = match word.as_str() {
            "key" if colon => {
                at += 2;
                continue;
            }
            "key" | "id" => &mut name,
            "algorithm" => &mut algorithm,
            "secret" => &mut secret,
            _ => {
                at += 1;
                continue;
            }
        };
        let Some(value) = tokens.get(value_at).filter(|value| *value != ":") else {
            return Err(format!("{word} is not followed by a value"));
        };
        if slot.is_some() {
            return Err(format!("it gives {word} twice: give a file with one key"));
        }
        *slot = Some(value.clone());
        at = value_at + 1;
    }
    let Some(secret) = secret else {
        return Err(
            "it holds no secret (neither a base64 secret nor a key statement with one)".to_string(),
        );
    };
    Ok(KeyFile {
        secret: decode(&secret)?,
        name: name.map(|n| n.trim_end_matches('.').to_string()),
        algorithm: algorithm.map(|a| a.to_ascii_lowercase()),
    })
}

/// The secret's bytes; never repeats the secret in an error.
fn decode(secret: &str) -> Result<Vec<u8>, String> {
    let bytes = data_encoding::BASE64
        .decode(secret.as_bytes())
        .map_err(|e| format!("the secret is not base64 ({e})"))?;
    if bytes.is_empty() {
        return Err("the secret is empty".to_string());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "aQXRc5SRk/u+QbdR++42CCoZyMCKoW35j49vdbE6X2o=";

    fn secret() -> Vec<u8> {
        data_encoding::BASE64.decode(SECRET.as_bytes()).unwrap()
    }

    #[test]
    fn a_bare_secret() {
        let key = parse(&format!("{SECRET}\n")).unwrap();
        assert_eq!(key.secret, secret());
        assert_eq!(key.name, None);
    }

    #[test]
    fn the_colon_form() {
        let key = parse(&format!("hmac-sha256:warden-key:{SECRET}")).unwrap();
        assert_eq!(key.secret, secret());
        assert_eq!(key.name.as_deref(), Some("warden-key"));
        assert_eq!(key.algorithm.as_deref(), Some("hmac-sha256"));
    }

    #[test]
    fn keymgr_output() {
        let text = format!(
            "# hmac-sha256:warden-key:{SECRET}\nkey:\n  - id: warden-key\n    algorithm: hmac-sha256\n    secret: {SECRET}\n"
        );
        let key = parse(&text).unwrap();
        assert_eq!(key.secret, secret());
        assert_eq!(key.name.as_deref(), Some("warden-key"));
        assert_eq!(key.algorithm.as_deref(), Some("hmac-sha256"));
    }

    #[test]
    fn a_bind_key_statement() {
        let text = format!(
            "key \"warden-key\" {{\n\talgorithm hmac-sha512;\n\tsecret \"{SECRET}\";\n}};\n"
        );
        let key = parse(&text).unwrap();
        assert_eq!(key.secret, secret());
        assert_eq!(key.name.as_deref(), Some("warden-key"));
        assert_eq!(key.algorithm.as_deref(), Some("hmac-sha512"));
    }

    #[test]
    fn bad_files_say_why_without_the_secret() {
        for (text, expect) in [
            ("", "empty"),
            ("not-base64!", "not base64"),
            ("two words", "no secret"),
            ("a:b", "neither"),
            ("key \"k\" { algorithm hmac-sha256; };", "no secret"),
            ("secret", "not base64"),
            (
                "key: - id: a\n secret: QUFB\nkey: - id: b\n secret: QkJC",
                "twice",
            ),
            ("====", "not base64"),
        ] {
            let error = parse(text).unwrap_err();
            assert!(error.contains(expect), "{text:?}: {error}");
        }
        let error = parse(&format!("secret \"{}\"", &SECRET[1..])).unwrap_err();
        assert!(!error.contains(&SECRET[1..]), "{error}");
    }
}
