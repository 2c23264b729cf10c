//! The newest generation a copy knows, kept in `DIR/GENERATION`.
//!
//! Why on disk: fencing must survive a restart. A passive that accepted
//! log from generation 7 must still refuse generation 6 after a crash, and
//! an active deposed by generation 7 that is restarted with `--generation
//! 6` must come back deposed, not serving writes. The file is replaced
//! atomically (temp file, fsync, rename, fsync the directory), so a crash
//! leaves the old number or the new one.

use std::fs;
use std::io;
use std::path::Path;

use crate::fsutil::{self, Context};

pub const FILE: &str = "GENERATION";
const HEADER: &str = "warden-store-generation 1";

/// Reads the generation kept in `dir` (0 if the file does not exist). A file
/// that is not one this store wrote is an error naming it: guessing a
/// generation could unfence a deposed copy.
pub fn load(dir: &Path) -> io::Result<u64> {
    let path = dir.join(FILE);
    let text = match fs::read(&path) {
        Ok(bytes) if bytes.len() <= 128 => String::from_utf8_lossy(&bytes).into_owned(),
        Ok(bytes) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is {} bytes, not a generation",
                    path.display(),
                    bytes.len()
                ),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
    };
    let mut lines = text.lines();
    match (
        lines.next(),
        lines.next().map(str::parse::<u64>),
        lines.next(),
    ) {
        (Some(HEADER), Some(Ok(generation)), None) => Ok(generation),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is not `{HEADER}` and one number: {:?}",
                path.display(),
                text.chars().take(60).collect::<String>()
            ),
        )),
    }
}

/// Makes `generation` the one kept in `dir`, durably.
pub fn store(dir: &Path, generation: u64) -> io::Result<()> {
    fsutil::write_atomic(dir, FILE, format!("{HEADER}\n{generation}\n").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refuses_what_it_did_not_write() {
        let dir = std::env::temp_dir().join(format!("warden-gen-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        assert_eq!(load(&dir).unwrap(), 0);
        store(&dir, 7).unwrap();
        assert_eq!(load(&dir).unwrap(), 7);
        fs::write(dir.join(FILE), "7\n").unwrap();
        assert!(load(&dir).unwrap_err().to_string().contains("GENERATION"));
        fs::write(dir.join(FILE), vec![b'9'; 4096]).unwrap();
        assert!(load(&dir).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
