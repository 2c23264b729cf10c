//! The compile cache: compiled plugins kept on disk, so that an agent that
//! restarts with many plugins compiles none of them again.
//!
//! An artifact is what `Engine::precompile_component` made of a component,
//! stored as `<key>.cwasm` in the cache directory. The key is a SHA-256 over
//! the component's bytes and everything that decides whether compiled code
//! fits an engine (see [`CompileCache::key`]), so a changed plugin, a changed
//! engine configuration or another wasmtime gives another key and a fresh
//! compile, never a stale artifact.
//!
//! The cache only ever makes loading faster. A file that is not a plugin is
//! refused exactly as [`Plugin::load`] refuses it; an artifact that cannot be
//! used is deleted and replaced; a directory that cannot be written means
//! compiling every time (with a warning), not a failed load.
//!
//! # File format
//!
//! `WARDENC2`, the SHA-256 of the component the artifact was compiled from
//! (32 bytes), a checksum (32 bytes: SHA-256 over the magic, that source
//! hash and the artifact), then the artifact. wasmtime does not check
//! precompiled code for damage (a flipped bit in machine code deserializes
//! fine and runs), so the checksum is verified before the artifact is handed
//! to wasmtime: a damaged file is a miss.
//!
//! # Binding an artifact to its plugin
//!
//! The file name (the key) alone does not say which plugin an artifact was
//! compiled from: an artifact of plugin A renamed to plugin B's key would
//! deserialize fine and run A's code under B's name. So the source hash in
//! the header must be the hash of the bytes being loaded, and the checksum
//! covers it: a file copied under another key is refused, deleted and the
//! plugin compiled again, with the reason logged.
//!
//! The checksum is not a secret MAC. What keeps forged artifacts out is
//! that only the agent's own user can write the cache: [`CompileCache::open`]
//! makes the directory owner-only (0700) and refuses one that is a symbolic
//! link or belongs to another user; an artifact is opened without following
//! symbolic links and used only if it is a regular file of the agent's user
//! that no one else may write, no larger than [`MAX_FILE`]. Anyone who can
//! still write there runs as the agent already.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use sha2::{Digest, Sha256};

use super::engine::Runtime;
use super::plugin::{LoadError, Plugin, check_header};

/// Extension of the artifacts; anything else in the directory is not ours
/// to delete, except our own temporary files.
const EXTENSION: &str = "cwasm";
/// Suffix of an artifact being written, before it is renamed into place.
const TEMP_SUFFIX: &str = ".tmp";
/// First bytes of every artifact file: the format of this file.
const MAGIC: &[u8; 8] = b"WARDENC2";
/// Length of the header: magic, the source's SHA-256 and the checksum.
const HEADER_LEN: usize = MAGIC.len() + 32 + 32;
/// Bumped when the key or the file format changes, so old files are
/// simply never found (and [`CompileCache::prune`] removes them).
const KEY_FORMAT: &str = "warden-compile-cache/2";
/// The largest cache file read. Compiled code is a few times the size of
/// the component; a file past this is not one this cache wrote for any
/// plugin worth loading, and is not read into memory.
pub(super) const MAX_FILE: u64 = 512 << 20;
/// A temporary file older than this is left over from a crash.
const STALE_TEMP: Duration = Duration::from_secs(600);

/// What the cache did for one [`CompileCache::load`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheOutcome {
    /// The plugin was loaded from a stored artifact: nothing was compiled.
    Hit,
    /// The plugin was compiled (once) and its artifact stored. Also the
    /// outcome when a stored artifact was unusable and has been replaced.
    Miss,
    /// The plugin was compiled but the cache could not be used, e.g. the
    /// artifact could not be written. Loading worked; the next load will
    /// compile again. The reason has been logged.
    Bypassed {
        /// The cache could not be used (`reason`); the plugin was compiled.
        reason: String,
    },
}

/// Compiled plugins on disk, keyed by content and engine. See the module
/// documentation.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
}

/// What [`CompileCache::load_stored`] found.
enum Stored {
    /// The plugin, loaded from its stored artifact (boxed: a plugin is
    /// large beside the other variant).
    Loaded(Box<Plugin>),
    /// Nothing usable: compile. `bypass` says why the cache cannot be used
    /// for this load, if it cannot.
    Absent { bypass: Option<String> },
}

impl CompileCache {
    /// Use `dir` (created owner-only if missing) for artifacts.
    ///
    /// Loading an artifact runs the code in it (see the SAFETY note in
    /// [`CompileCache::load`]), so the directory must be one only the agent
    /// writes: it must belong to the agent's user and not be a symbolic
    /// link (an error naming the directory otherwise), and its permissions
    /// are narrowed to 0700 if they were wider.
    pub fn open(dir: impl Into<PathBuf>) -> anyhow::Result<Self> {
        let dir = dir.into();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("creating the compile cache {}", dir.display()))?;
        let meta = fs::symlink_metadata(&dir)
            .with_context(|| format!("reading the compile cache {}", dir.display()))?;
        if !meta.is_dir() {
            anyhow::bail!(
                "the compile cache {} is not a directory (a symbolic link?): \
                 it must be a directory only the agent writes",
                dir.display()
            );
        }
        let me = nix::unistd::Uid::effective().as_raw();
        if meta.uid() != me {
            anyhow::bail!(
                "the compile cache {} belongs to user {}, not to the agent's user {me}: \
                 compiled code found there would run in the agent; remove it or give it \
                 to the agent's user",
                dir.display(),
                meta.uid()
            );
        }
        if meta.mode() & 0o077 != 0 {
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).with_context(|| {
                format!(
                    "making the compile cache {} owner-only (it was {:o})",
                    dir.display(),
                    meta.mode() & 0o777
                )
            })?;
        }
        Ok(CompileCache { dir })
    }

    /// The cache's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the artifact for `key` is (or would be) stored.
    pub fn artifact_path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.{EXTENSION}"))
    }

    /// The key of `bytes` compiled by `runtime`'s engine: 64 hex digits.
    ///
    /// A SHA-256 over, each length-prefixed:
    /// - a tag of this cache's key and file format;
    /// - this agent's version (a new agent build starts a fresh set of
    ///   artifacts; [`CompileCache::prune`] removes the old ones);
    /// - the SHA-256 of the component's bytes;
    /// - `Engine::precompile_compatibility_hash`, which covers the target,
    ///   the compiler's flags, the engine's tunables and wasm features, and
    ///   wasmtime's own crate version (its `ModuleVersionStrategy` hashes
    ///   wasmtime's `CARGO_PKG_VERSION`). wasmtime 48 has no
    ///   `wasmtime::VERSION` constant, so this is how the wasmtime version
    ///   gets into the key.
    ///
    /// That hash is a `std::hash::Hash`, fed here to a `Hasher` that is
    /// SHA-256 underneath ([`Sha256Hasher`]) rather than `DefaultHasher`:
    /// its result depends only on the bytes wasmtime feeds it, not on the
    /// standard library's choice of algorithm, which may change between
    /// Rust releases. (The bytes themselves are only meaningful for one
    /// build on one platform, which is all the key needs: artifacts are
    /// only valid for the wasmtime build that made them.)
    ///
    /// Costs one pass of SHA-256 over the component.
    pub fn key(runtime: &Runtime, bytes: &[u8]) -> String {
        Self::key_of_source(runtime, &Sha256::digest(bytes).into())
    }

    /// [`CompileCache::key`] for a component whose SHA-256 is `source`.
    fn key_of_source(runtime: &Runtime, source: &[u8; 32]) -> String {
        let mut engine = Sha256Hasher::default();
        runtime
            .engine()
            .precompile_compatibility_hash()
            .hash(&mut engine);

        let mut key = Sha256::new();
        for part in [
            KEY_FORMAT.as_bytes(),
            env!("CARGO_PKG_VERSION").as_bytes(),
            source.as_slice(),
            engine.0.finalize().as_slice(),
        ] {
            key.update((part.len() as u64).to_le_bytes());
            key.update(part);
        }
        hex(&key.finalize())
    }

    /// Load a plugin as [`Plugin::load`] does, from the cache when it can.
    ///
    /// Errors are those of [`Plugin::load`] for the same bytes; the cache
    /// itself never makes a load fail:
    /// - not a component: refused before the cache is looked at;
    /// - stored artifact: loaded without compiling ([`CacheOutcome::Hit`]);
    /// - none, or a damaged or incompatible one: compiled once, loaded from
    ///   the compiled code, and stored if the plugin loaded
    ///   ([`CacheOutcome::Miss`]); a plugin that is refused (contract,
    ///   describe, schema) is not stored;
    /// - the directory cannot be read or written: compiled, loaded, not
    ///   stored ([`CacheOutcome::Bypassed`], with a warning).
    pub async fn load(
        &self,
        runtime: &Arc<Runtime>,
        bytes: &[u8],
    ) -> Result<(Plugin, CacheOutcome), LoadError> {
        check_header(bytes)?;
        let source: [u8; 32] = Sha256::digest(bytes).into();
        let key = Self::key_of_source(runtime, &source);
        let path = self.artifact_path(&key);

        let mut bypass = match self.load_stored(runtime, &path, &source).await? {
            Stored::Loaded(plugin) => return Ok((*plugin, CacheOutcome::Hit)),
            Stored::Absent { bypass } => bypass,
        };

        let engine = runtime.engine().clone();
        let owned = bytes.to_vec();
        // Compiling takes milliseconds to seconds of CPU: keep it off the
        // async workers, as `Plugin::load` does.
        let artifact = tokio::task::spawn_blocking(move || engine.precompile_component(&owned))
            .await
            .map_err(|e| LoadError::Compile(format!("the compile task failed: {e}")))?
            .map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        // SAFETY: `artifact` was made just now by `precompile_component` of
        // this very engine, in this process; it has not left memory.
        let mut plugin = unsafe { Plugin::load_precompiled(runtime, &artifact) }.await?;
        plugin.source = Some(source);

        if bypass.is_none() {
            bypass = self.store(path, source, artifact).await.err();
        }
        match bypass {
            None => Ok((plugin, CacheOutcome::Miss)),
            Some(reason) => {
                tracing::warn!(
                    plugin = %plugin.name(),
                    "compile cache not used, the plugin was compiled: {reason}"
                );
                Ok((plugin, CacheOutcome::Bypassed { reason }))
            }
        }
    }

    /// The plugin from its stored artifact, if there is one wasmtime
    /// accepts and that was compiled from exactly these bytes (`source`,
    /// their SHA-256). An unusable artifact is discarded; a cache that
    /// cannot be read says why in `bypass`.
    async fn load_stored(
        &self,
        runtime: &Arc<Runtime>,
        path: &Path,
        source: &[u8; 32],
    ) -> Result<Stored, LoadError> {
        // Set when the cache cannot be used for this load.
        let mut bypass = None;
        let reading = path.to_path_buf();
        let read = tokio::task::spawn_blocking(move || read_artifact_file(&reading))
            .await
            .unwrap_or_else(|e| {
                Err(Unusable::Unreadable(io::Error::other(format!(
                    "the read task failed: {e}"
                ))))
            });
        match read {
            Ok(file) => match verified_artifact(&file, source) {
                Ok(artifact) => {
                    // SAFETY: `Component::deserialize` trusts its input to be
                    // code compiled by wasmtime for a compatible engine. This
                    // file is ours: a regular file of the agent's user that
                    // no one else may write, in a directory only the agent's
                    // user may write ([`CompileCache::open`]), opened without
                    // following links. Only this cache writes `<key>.cwasm`,
                    // from `precompile_component` of an engine whose
                    // compatibility hash is part of `key`; the checksum just
                    // verified says it is whole and was compiled from exactly
                    // these bytes (not another plugin's artifact under this
                    // key). wasmtime checks the engine settings again while
                    // deserializing.
                    match unsafe { Plugin::load_precompiled(runtime, artifact) }.await {
                        Ok(mut plugin) => {
                            plugin.source = Some(*source);
                            return Ok(Stored::Loaded(Box::new(plugin)));
                        }
                        // `load_precompiled` only says `Compile` when
                        // wasmtime refuses the artifact.
                        Err(LoadError::Compile(why)) => {
                            self.discard(path, &format!("wasmtime refused it: {why}"));
                        }
                        // The plugin itself was refused (contract, describe,
                        // ...): compiling again would not change that.
                        Err(err) => return Err(err),
                    }
                }
                Err(why) => self.discard(path, &why),
            },
            Err(Unusable::Missing) => {}
            Err(Unusable::Refused(why)) => self.discard(path, &why),
            Err(Unusable::Unreadable(err)) => {
                bypass = Some(format!("could not read {}: {err}", path.display()));
            }
        }
        Ok(Stored::Absent { bypass })
    }

    /// Remove every artifact whose key is not in `keep`, and temporary files
    /// left over by a crash. Returns how many artifacts were removed.
    ///
    /// Call it with the keys ([`CompileCache::key`]) of every plugin the
    /// agent has loaded, once the agent has loaded its plugins at start-up
    /// and again after plugins are replaced or removed, so that old versions
    /// do not pile up. Not while loads are in flight: an artifact stored by
    /// a load that `keep` does not know of yet would be removed (harmless:
    /// the next start compiles that plugin again). Blocking file system
    /// work: from async code, run it with `spawn_blocking`.
    ///
    /// Files that are not the cache's are left alone. Failures are logged,
    /// never returned: a file that cannot be removed stays.
    pub fn prune(&self, keep: &HashSet<String>) -> usize {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(err) => {
                tracing::warn!(
                    "could not list the compile cache {}: {err}",
                    self.dir.display()
                );
                return 0;
            }
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let path = entry.path();
            if name.starts_with('.') && name.ends_with(TEMP_SUFFIX) {
                let stale = entry
                    .metadata()
                    .and_then(|meta| meta.modified())
                    .ok()
                    .and_then(|at| SystemTime::now().duration_since(at).ok())
                    .is_some_and(|age| age > STALE_TEMP);
                if stale {
                    remove(&path);
                }
                continue;
            }
            let Some(key) = name.strip_suffix(&format!(".{EXTENSION}")) else {
                continue;
            };
            if is_key(key) && !keep.contains(key) && remove(&path) {
                removed += 1;
            }
        }
        removed
    }

    /// Write `artifact` to `path` (off the async workers: it syncs to disk).
    async fn store(
        &self,
        path: PathBuf,
        source: [u8; 32],
        artifact: Vec<u8>,
    ) -> Result<(), String> {
        let dir = self.dir.clone();
        let target = path.clone();
        tokio::task::spawn_blocking(move || write_atomically(&dir, &target, &source, &artifact))
            .await
            .unwrap_or_else(|e| Err(io::Error::other(format!("the write task failed: {e}"))))
            .map_err(|err| format!("could not store {}: {err}", path.display()))
    }

    /// Delete an artifact that could not be used; it is rewritten by the
    /// load that found it.
    fn discard(&self, path: &Path, why: &str) {
        tracing::warn!(
            "compile cache: discarding {} and compiling again: {why}",
            path.display()
        );
        if let Err(err) = fs::remove_file(path)
            && err.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!("could not remove {}: {err}", path.display());
        }
    }
}

/// Why a cache file was not read.
enum Unusable {
    /// There is none: a plain miss.
    Missing,
    /// There is one, but it is not something this cache may trust (a link,
    /// another user's file, too large): it is removed and rewritten.
    Refused(String),
    /// It could not be read: the cache is bypassed for this load.
    Unreadable(io::Error),
}

/// Read the cache file at `path` if it may be trusted to be this cache's:
/// opened without following a symbolic link, a regular file of the agent's
/// user that neither group nor others may write, at most [`MAX_FILE`]
/// bytes (checked before reading, and the read is bounded too).
fn read_artifact_file(path: &Path) -> Result<Vec<u8>, Unusable> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Err(Unusable::Missing),
        Err(err) if err.raw_os_error() == Some(nix::libc::ELOOP) => {
            return Err(Unusable::Refused(
                "it is a symbolic link, not a file this cache wrote".to_string(),
            ));
        }
        Err(err) => return Err(Unusable::Unreadable(err)),
    };
    let meta = file.metadata().map_err(Unusable::Unreadable)?;
    let me = nix::unistd::Uid::effective().as_raw();
    if !meta.is_file() {
        return Err(Unusable::Refused("it is not a regular file".to_string()));
    }
    if meta.uid() != me {
        return Err(Unusable::Refused(format!(
            "it belongs to user {}, not to the agent's user {me}",
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(Unusable::Refused(format!(
            "others may write it (mode {:o})",
            meta.mode() & 0o777
        )));
    }
    if meta.len() > MAX_FILE {
        return Err(Unusable::Refused(format!(
            "it is {} bytes, more than the {MAX_FILE} a cache file may be",
            meta.len()
        )));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(Unusable::Unreadable)?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(Unusable::Refused(format!(
            "it grew past the {MAX_FILE} bytes a cache file may be while it was read"
        )));
    }
    Ok(bytes)
}

/// The checksum of a cache file: over the magic, the source's SHA-256 and
/// the artifact, so neither the artifact nor the plugin it is bound to can
/// change without the checksum failing.
fn checksum(source: &[u8; 32], artifact: &[u8]) -> [u8; 32] {
    let mut sum = Sha256::new();
    sum.update(MAGIC);
    sum.update(source);
    sum.update(artifact);
    sum.finalize().into()
}

/// The artifact inside a cache file, if the file is whole and was compiled
/// from the component whose SHA-256 is `source`.
fn verified_artifact<'a>(file: &'a [u8], source: &[u8; 32]) -> Result<&'a [u8], String> {
    if file.len() < HEADER_LEN || &file[..MAGIC.len()] != MAGIC {
        return Err("it is not a compile cache file of this format".to_string());
    }
    let (compiled_from, rest) = file[MAGIC.len()..].split_at(32);
    let (sum, artifact) = rest.split_at(32);
    if compiled_from != source {
        return Err(format!(
            "it was compiled from another component (SHA-256 {}), not from this one ({}): \
             an artifact is only ever used for the plugin it was compiled from",
            hex(compiled_from),
            hex(source)
        ));
    }
    if checksum(source, artifact).as_slice() != sum {
        return Err("its checksum does not match: it is damaged or truncated".to_string());
    }
    Ok(artifact)
}

/// Write `artifact` to `target` so that `target` is either absent, the old
/// file, or the whole new one: a temporary file in the same directory,
/// flushed to disk, then renamed over `target`. Concurrent writers of the
/// same key each use their own temporary file; the last rename wins, and
/// both wrote the same thing.
fn write_atomically(
    dir: &Path,
    target: &Path,
    source: &[u8; 32],
    artifact: &[u8],
) -> io::Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = target
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("artifact");
    let temp = dir.join(format!(
        ".{name}.{}.{}{TEMP_SUFFIX}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        // Owner-only, and `create_new` never follows a link planted there.
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        file.write_all(MAGIC)?;
        file.write_all(source)?;
        file.write_all(&checksum(source, artifact))?;
        file.write_all(artifact)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temp, target)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
        return result;
    }
    // Make the rename itself durable. Best effort: the artifact is in place
    // either way, and losing it in a crash only costs a compile.
    if let Err(err) = File::open(dir).and_then(|dir| dir.sync_all()) {
        tracing::debug!("could not sync {}: {err}", dir.display());
    }
    Ok(())
}

fn remove(path: &Path) -> bool {
    match fs::remove_file(path) {
        Ok(()) => true,
        Err(err) => {
            tracing::warn!("could not remove {}: {err}", path.display());
            false
        }
    }
}

fn is_key(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A `std::hash::Hasher` that is SHA-256 underneath, for turning a
/// `std::hash::Hash` value into a digest that depends only on the bytes fed
/// to it. `finish` is there to satisfy the trait; use the inner digest.
#[derive(Default)]
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().expect("a SHA-256 has 32 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_of(source: &[u8; 32], artifact: &[u8]) -> Vec<u8> {
        let mut file = MAGIC.to_vec();
        file.extend_from_slice(source);
        file.extend_from_slice(&checksum(source, artifact));
        file.extend_from_slice(artifact);
        file
    }

    #[test]
    fn only_whole_files_are_artifacts() {
        let artifact = b"compiled code";
        let source: [u8; 32] = Sha256::digest(b"component").into();
        let file = file_of(&source, artifact);
        assert_eq!(verified_artifact(&file, &source), Ok(&artifact[..]));

        assert!(verified_artifact(&file[..file.len() - 1], &source).is_err());
        assert!(verified_artifact(&file[..HEADER_LEN - 1], &source).is_err());
        let mut flipped = file.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(verified_artifact(&flipped, &source).is_err());
        let mut other = file.clone();
        other[0] = b'X';
        assert!(verified_artifact(&other, &source).is_err());
    }

    #[test]
    fn an_artifact_is_only_used_for_its_own_source() {
        let artifact = b"compiled code";
        let a: [u8; 32] = Sha256::digest(b"plugin a").into();
        let b: [u8; 32] = Sha256::digest(b"plugin b").into();
        let of_a = file_of(&a, artifact);
        let err = verified_artifact(&of_a, &b).expect_err("a's artifact is not b's");
        assert!(err.contains("compiled from another component"), "{err}");
        // Rewriting the source hash alone breaks the checksum.
        let mut relabelled = of_a.clone();
        relabelled[MAGIC.len()..MAGIC.len() + 32].copy_from_slice(&b);
        let err = verified_artifact(&relabelled, &b).expect_err("checksum covers the source");
        assert!(err.contains("checksum"), "{err}");
    }

    #[test]
    fn keys_are_hex_digests() {
        let key = hex(&Sha256::digest(b"x"));
        assert!(is_key(&key), "{key}");
        assert!(!is_key(&key[1..]));
        assert!(!is_key(&key.to_uppercase()));
    }
}
