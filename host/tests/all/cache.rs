//! The compile cache: a plugin compiled once is loaded from disk after, a
//! bad artifact is replaced rather than trusted, and the cache never changes
//! what a load of a bad file says.

use std::collections::HashSet;
use std::time::Instant;

use crate::common::*;
use warden::runtime::{CacheOutcome, CompileCache, LoadError};

fn cache() -> (tempfile::TempDir, CompileCache) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = CompileCache::open(dir.path().join("compiled")).expect("open");
    (dir, cache)
}

fn chaos() -> Vec<u8> {
    std::fs::read(CHAOS).expect("chaos plugin")
}

/// The same component with a custom section appended: other bytes, same
/// plugin.
fn with_custom_section(bytes: &[u8], note: &str) -> Vec<u8> {
    let name = b"warden-test";
    let mut payload = vec![name.len() as u8];
    payload.extend_from_slice(name);
    payload.extend_from_slice(note.as_bytes());
    assert!(payload.len() < 128, "one-byte LEB128 size");
    let mut out = bytes.to_vec();
    out.push(0); // custom section
    out.push(payload.len() as u8);
    out.extend_from_slice(&payload);
    out
}

/// A cache file in the cache's format holding `artifact` as compiled from
/// `source`: magic, the source's SHA-256, the checksum, the artifact.
fn cache_file(source: &[u8], artifact: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let magic = b"WARDENC2";
    let source = Sha256::digest(source);
    let mut sum = Sha256::new();
    sum.update(magic);
    sum.update(source);
    sum.update(artifact);
    let mut file = magic.to_vec();
    file.extend_from_slice(&source);
    file.extend_from_slice(&sum.finalize());
    file.extend_from_slice(artifact);
    file
}

fn artifacts(cache: &CompileCache) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(cache.dir())
        .expect("list")
        .map(|entry| entry.expect("entry").file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_compiles_and_stores_then_a_hit_compiles_nothing() {
    let (_dir, cache) = cache();
    let runtime = runtime();
    let bytes = chaos();
    let key = CompileCache::key(&runtime, &bytes);

    let started = Instant::now();
    let (first, outcome) = cache.load(&runtime, &bytes).await.expect("loads");
    let miss = started.elapsed();
    assert_eq!(outcome, CacheOutcome::Miss);
    assert!(cache.artifact_path(&key).is_file());
    assert_eq!(artifacts(&cache), vec![format!("{key}.cwasm")]);

    let started = Instant::now();
    let (second, outcome) = cache.load(&runtime, &bytes).await.expect("loads");
    let hit = started.elapsed();
    assert_eq!(outcome, CacheOutcome::Hit);
    assert_eq!(second.info().name, first.info().name);
    assert_eq!(second.info().version, first.info().version);
    assert_eq!(
        second.info().properties.len(),
        first.info().properties.len()
    );
    eprintln!(
        "chaos.wasm ({} bytes): miss {miss:?}, hit {hit:?}",
        bytes.len()
    );

    // A new cache over the same directory, as after an agent restart.
    let reopened = CompileCache::open(cache.dir()).expect("reopen");
    let (_, outcome) = reopened.load(&runtime, &bytes).await.expect("loads");
    assert_eq!(outcome, CacheOutcome::Hit);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_artifact_is_replaced_not_trusted() {
    let (_dir, cache) = cache();
    let runtime = runtime();
    let bytes = chaos();
    let path = cache.artifact_path(&CompileCache::key(&runtime, &bytes));
    cache.load(&runtime, &bytes).await.expect("loads");
    let good = std::fs::read(&path).expect("stored");

    let damages: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", good[..good.len() / 2].to_vec()),
        ("empty", Vec::new()),
        ("garbage", b"not an artifact at all".to_vec()),
        ("one bit flipped in the code", {
            let mut flipped = good.clone();
            let at = flipped.len() * 2 / 3;
            flipped[at] ^= 0x10;
            flipped
        }),
        // Right header and checksum, but not something wasmtime made: the
        // fallback for artifacts wasmtime itself refuses.
        ("a valid file around a bad artifact", {
            cache_file(&bytes, b"\x7fELF not really")
        }),
    ];
    for (damage, contents) in damages {
        std::fs::write(&path, &contents).expect("damage");
        let (plugin, outcome) = cache
            .load(&runtime, &bytes)
            .await
            .unwrap_or_else(|err| panic!("{damage}: the load must not fail: {err}"));
        assert_eq!(outcome, CacheOutcome::Miss, "{damage}");
        assert_eq!(plugin.name(), "chaos", "{damage}");
        assert_eq!(std::fs::read(&path).expect("rewritten"), good, "{damage}");

        let (_, outcome) = cache.load(&runtime, &bytes).await.expect("loads");
        assert_eq!(outcome, CacheOutcome::Hit, "{damage}: healed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_content_has_another_key() {
    let (_dir, cache) = cache();
    let runtime = runtime();
    let bytes = chaos();
    let other = with_custom_section(&bytes, "v2");
    let key = CompileCache::key(&runtime, &bytes);
    let other_key = CompileCache::key(&runtime, &other);
    assert_ne!(key, other_key);
    assert_eq!(key, CompileCache::key(&runtime, &bytes), "stable");
    assert_eq!(key.len(), 64);

    let (_, outcome) = cache.load(&runtime, &bytes).await.expect("loads");
    assert_eq!(outcome, CacheOutcome::Miss);
    let (plugin, outcome) = cache.load(&runtime, &other).await.expect("loads");
    assert_eq!(outcome, CacheOutcome::Miss, "not the first one's artifact");
    assert_eq!(plugin.name(), "chaos");
    let mut expected = vec![format!("{key}.cwasm"), format!("{other_key}.cwasm")];
    expected.sort();
    assert_eq!(artifacts(&cache), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_files_get_the_same_errors_as_without_the_cache() {
    let (_dir, cache) = cache();
    let runtime = runtime();

    let err = cache
        .load(&runtime, b"#!/bin/sh\necho not wasm\n")
        .await
        .expect_err("must not load");
    assert!(matches!(err, LoadError::NotWasm(_)), "{err}");

    let core = wat::parse_str("(module)").expect("wat");
    let err = cache.load(&runtime, &core).await.expect_err("core module");
    assert!(matches!(err, LoadError::CoreModule), "{err}");

    let bytes = chaos();
    let err = cache
        .load(&runtime, &bytes[..bytes.len() / 2])
        .await
        .expect_err("truncated");
    assert!(matches!(err, LoadError::Compile(_)), "{err}");

    let traps = std::fs::read(DESCRIBE_TRAPS).expect("plugin");
    let err = cache
        .load(&runtime, &traps)
        .await
        .expect_err("describe traps");
    assert!(matches!(err, LoadError::Describe(_)), "{err}");

    let future = std::fs::read(FUTURE_CONTRACT).expect("plugin");
    let err = cache.load(&runtime, &future).await.expect_err("contract");
    assert!(matches!(err, LoadError::Contract(_)), "{err}");

    assert!(
        artifacts(&cache).is_empty(),
        "refused plugins are not stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_cache_is_bypassed_not_fatal() {
    let (_dir, cache) = cache();
    let runtime = runtime();
    let bytes = chaos();
    // A directory where the artifact should go: reading it fails (not
    // "not found") and so would writing it. Works as root too, unlike
    // permissions.
    std::fs::create_dir(cache.artifact_path(&CompileCache::key(&runtime, &bytes))).expect("mkdir");
    let (plugin, outcome) = cache.load(&runtime, &bytes).await.expect("loads");
    assert_eq!(plugin.name(), "chaos");
    assert!(
        matches!(outcome, CacheOutcome::Bypassed { .. }),
        "{outcome:?}"
    );

    // A cache directory that has disappeared.
    let (dir, gone) = cache_in_missing_dir();
    let (_, outcome) = gone.load(&runtime, &bytes).await.expect("loads");
    assert!(
        matches!(outcome, CacheOutcome::Bypassed { .. }),
        "{outcome:?}"
    );
    drop(dir);
}

fn cache_in_missing_dir() -> (tempfile::TempDir, CompileCache) {
    let (dir, cache) = cache();
    std::fs::remove_dir(cache.dir()).expect("rmdir");
    (dir, cache)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_removes_only_what_is_not_kept() {
    let (_dir, cache) = cache();
    let runtime = runtime();
    let v1 = chaos();
    let v2 = with_custom_section(&v1, "v2");
    let v3 = with_custom_section(&v1, "v3");
    for bytes in [&v1, &v2, &v3] {
        let (_, outcome) = cache.load(&runtime, bytes).await.expect("loads");
        assert_eq!(outcome, CacheOutcome::Miss);
    }
    let [k1, k2, k3] = [&v1, &v2, &v3].map(|bytes| CompileCache::key(&runtime, bytes));
    // Not the cache's: left alone.
    std::fs::write(cache.dir().join("README"), "hello").expect("write");
    std::fs::write(cache.dir().join("not-a-key.cwasm"), "x").expect("write");

    let keep: HashSet<String> = [k2.clone()].into();
    assert_eq!(cache.prune(&keep), 2);
    let mut expected = vec![
        format!("{k2}.cwasm"),
        "README".to_string(),
        "not-a-key.cwasm".to_string(),
    ];
    expected.sort();
    assert_eq!(artifacts(&cache), expected);
    assert!(!cache.artifact_path(&k1).exists());
    assert!(!cache.artifact_path(&k3).exists());

    let (_, outcome) = cache.load(&runtime, &v2).await.expect("loads");
    assert_eq!(outcome, CacheOutcome::Hit, "the kept one still works");
    let (_, outcome) = cache.load(&runtime, &v1).await.expect("loads");
    assert_eq!(
        outcome,
        CacheOutcome::Miss,
        "a pruned one is compiled again"
    );

    assert_eq!(cache.prune(&HashSet::new()), 2);
    assert_eq!(cache.prune(&HashSet::new()), 0);
}

/// Plugin A's artifact put under plugin B's key (copied, or linked) would
/// run A's code under B's name if the key were all that was checked. It is
/// refused, B is compiled from its own bytes, and B runs as itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_plugins_artifact_under_a_key_is_not_used() {
    let (_dir, cache) = cache();
    let runtime = runtime();
    let a = chaos();
    let b = std::fs::read(PROCESS).expect("process plugin");
    let a_path = cache.artifact_path(&CompileCache::key(&runtime, &a));
    let b_path = cache.artifact_path(&CompileCache::key(&runtime, &b));
    cache.load(&runtime, &a).await.expect("a loads");
    cache.load(&runtime, &b).await.expect("b loads");
    let b_own = std::fs::read(&b_path).expect("b's artifact");

    std::fs::copy(&a_path, &b_path).expect("a's artifact under b's key");
    let (plugin, outcome) = cache.load(&runtime, &b).await.expect("b loads");
    assert_eq!(
        outcome,
        CacheOutcome::Miss,
        "a's artifact is not a hit for b"
    );
    assert_eq!(plugin.name(), "process", "b runs as itself");
    assert_eq!(std::fs::read(&b_path).expect("rewritten"), b_own);

    // A's artifact relabelled as compiled from B, without the checksum
    // that covers the label: refused too.
    let mut relabelled = std::fs::read(&a_path).expect("a's artifact");
    relabelled[8..40].copy_from_slice(&cache_file(&b, b"")[8..40]);
    std::fs::write(&b_path, &relabelled).expect("write");
    let (plugin, outcome) = cache.load(&runtime, &b).await.expect("b loads");
    assert_eq!(outcome, CacheOutcome::Miss);
    assert_eq!(plugin.name(), "process");

    // A symbolic link under b's key, to a's artifact: not followed,
    // replaced by a file of b's own.
    std::fs::remove_file(&b_path).expect("rm");
    std::os::unix::fs::symlink(&a_path, &b_path).expect("symlink");
    let (plugin, outcome) = cache.load(&runtime, &b).await.expect("b loads");
    assert_eq!(outcome, CacheOutcome::Miss);
    assert_eq!(plugin.name(), "process");
    let meta = std::fs::symlink_metadata(&b_path).expect("stat");
    assert!(meta.is_file(), "the link was replaced by a file");
    assert_eq!(std::fs::read(&b_path).expect("read"), b_own);
}

/// Files others may write are not trusted, and the cache directory is the
/// agent's alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_is_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let compiled = dir.path().join("compiled");
    std::fs::create_dir(&compiled).expect("mkdir");
    std::fs::set_permissions(&compiled, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let cache = CompileCache::open(&compiled).expect("open");
    let mode = std::fs::metadata(&compiled)
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "narrowed to owner-only");

    let runtime = runtime();
    let bytes = chaos();
    let path = cache.artifact_path(&CompileCache::key(&runtime, &bytes));
    cache.load(&runtime, &bytes).await.expect("loads");
    let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
    assert_eq!(mode & 0o077, 0, "artifacts are written owner-only");

    // An artifact anyone may write is refused and rewritten.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let (_, outcome) = cache.load(&runtime, &bytes).await.expect("loads");
    assert_eq!(outcome, CacheOutcome::Miss);
    let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
    assert_eq!(mode & 0o077, 0);
    let (_, outcome) = cache.load(&runtime, &bytes).await.expect("loads");
    assert_eq!(outcome, CacheOutcome::Hit);

    // A cache directory that is a link elsewhere is refused, named.
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).expect("mkdir");
    let link = dir.path().join("linked");
    std::os::unix::fs::symlink(&elsewhere, &link).expect("symlink");
    let err = CompileCache::open(&link).expect_err("a link");
    assert!(format!("{err:#}").contains("linked"), "{err:#}");
}
