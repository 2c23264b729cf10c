//! `[api]`: where the admin API listens, and its token file, which only
//! its owner may read.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// Refuse a secret file that anyone but its owner may read or write.
fn check_owner_only(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .with_context(|| format!("reading the API token file {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        bail!(
            "the API token file {} has mode {:04o}: its group or others may use it; \
             make it owner-only with: chmod 600 {}",
            path.display(),
            mode & 0o7777,
            path.display()
        );
    }
    Ok(())
}

/// Write a token file that only its owner may read (mode 0600), replacing
/// any file there.
pub fn write_token_file(path: &Path, token: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating the API token file {}", path.display()))?;
    // `mode` applies only to a file it creates; an older file keeps its
    // own permissions unless they are set.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .and_then(|()| file.write_all(format!("{token}\n").as_bytes()))
        .with_context(|| format!("writing the API token file {}", path.display()))
}

/// Where the admin API listens and the token it wants.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// A loopback address, e.g. "127.0.0.1:7070".
    pub listen: std::net::SocketAddr,
    /// A file holding the bearer token (its first line).
    pub token_file: PathBuf,
}

/// How many random bytes a token the agent makes holds (256 bits).
const NEW_TOKEN_BYTES: usize = 32;

/// Create the token file at `path` with a new random token: owner-only
/// (0600), created new (never through a link or over a file that appeared
/// meanwhile), its parent directory created owner-only (0700) if missing.
/// Returns whether it made the file (false: one appeared meanwhile, which
/// is then read as any existing file is).
fn create_token_file(path: &Path) -> Result<bool> {
    use std::io::{Read, Write};
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && !parent.exists()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .with_context(|| {
                format!(
                    "creating {}, the directory of the API token file",
                    parent.display()
                )
            })?;
    }
    let mut bytes = [0u8; NEW_TOKEN_BYTES];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom for a new API token")?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    let mut file = match file {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(err) => {
            return Err(err)
                .with_context(|| format!("creating the API token file {}", path.display()));
        }
    };
    file.write_all(format!("{token}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing the API token file {}", path.display()))?;
    Ok(true)
}

impl ApiSection {
    /// The bearer token, as [`ApiSection::token`] reads it; a missing token
    /// file is created first with a new random token of 256 bits
    /// (owner-only, its directory too if the agent makes it), and where it
    /// was written is logged, so a new node needs no step before its first
    /// start. An existing file is never replaced: one its group or others
    /// may read is refused, naming the fix, as before.
    pub fn token_or_create(&self) -> Result<String> {
        let missing = matches!(
            std::fs::symlink_metadata(&self.token_file),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound
        );
        if missing && create_token_file(&self.token_file)? {
            tracing::info!(
                file = %self.token_file.display(),
                "created the API token file with a new random token (mode 0600); \
                 clients send it as WARDEN_TOKEN"
            );
        }
        self.token()
    }

    /// The bearer token: the first line of the token file, which only its
    /// owner may read. A token others can read is as good as published,
    /// so a file with any group or other permission is refused, naming the
    /// fix.
    pub fn token(&self) -> Result<String> {
        check_owner_only(&self.token_file)?;
        let text = std::fs::read_to_string(&self.token_file)
            .with_context(|| format!("reading the API token file {}", self.token_file.display()))?;
        let token = text.lines().next().unwrap_or("").trim().to_string();
        if token.len() < 16 {
            bail!(
                "the API token in {} is shorter than 16 characters",
                self.token_file.display()
            );
        }
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_file_others_can_read_is_refused_naming_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        let api = ApiSection {
            listen: "127.0.0.1:7070".parse().expect("address"),
            token_file: path.clone(),
        };
        write_token_file(&path, "a-token-of-twenty-chars").expect("write");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(api.token().expect("owner-only"), "a-token-of-twenty-chars");
        for loose in [0o644, 0o640, 0o604, 0o620] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(loose)).expect("chmod");
            let err = api.token().expect_err("loose mode").to_string();
            assert_eq!(
                err,
                format!(
                    "the API token file {p} has mode {loose:04o}: its group or others may use \
                     it; make it owner-only with: chmod 600 {p}",
                    p = path.display()
                )
            );
        }
        // An existing loose file is refused as it was, never replaced.
        let err = api.token_or_create().expect_err("loose mode");
        assert!(err.to_string().contains("chmod 600"), "{err}");
        // Writing again makes an existing loose file owner-only.
        write_token_file(&path, "another-token-of-twenty").expect("rewrite");
        assert_eq!(
            api.token().expect("owner-only again"),
            "another-token-of-twenty"
        );
    }

    #[test]
    fn a_missing_token_file_is_created_owner_only_with_its_directory() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("etc/warden/token");
        let api = ApiSection {
            listen: "127.0.0.1:7070".parse().expect("address"),
            token_file: path.clone(),
        };
        assert!(api.token().is_err(), "missing before");
        let token = api.token_or_create().expect("created");
        assert_eq!(token.len(), 64, "{token}");
        assert!(token.chars().all(|c| c.is_ascii_hexdigit()), "{token}");
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir.path().join("etc/warden")), 0o700);
        assert_eq!(mode(&dir.path().join("etc")), 0o700);
        // The next start reads the same token; another file, another token.
        assert_eq!(api.token_or_create().expect("again"), token);
        let other = ApiSection {
            token_file: dir.path().join("other-token"),
            ..api.clone()
        };
        assert_ne!(other.token_or_create().expect("other"), token);
    }

    #[test]
    fn a_dangling_link_at_the_token_file_is_not_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        let target = dir.path().join("elsewhere");
        std::os::unix::fs::symlink(&target, &path).expect("link");
        let api = ApiSection {
            listen: "127.0.0.1:7070".parse().expect("address"),
            token_file: path,
        };
        assert!(api.token_or_create().is_err());
        assert!(!target.exists(), "a token was written through the link");
    }
}
