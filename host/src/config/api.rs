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

impl ApiSection {
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
        // Writing again makes an existing loose file owner-only.
        write_token_file(&path, "another-token-of-twenty").expect("rewrite");
        assert_eq!(
            api.token().expect("owner-only again"),
            "another-token-of-twenty"
        );
    }
}
