//! A resource's `/data` as WASI shows it, without a descriptor held while
//! the resource is idle.
//!
//! wasmtime-wasi opens a preopened directory when the store's `WasiCtx` is
//! built and keeps it open as long as the store lives: one open file per
//! live resource, idle or not, which capped a node at its open-file limit
//! (20 000 in a container whose root may not raise it; issue #19). Here
//! the agent answers `wasi:filesystem/preopens` itself ([`add_to_linker`]
//! shadows wasmtime-wasi's), and the directory is open only from the
//! first use within a call until that call returns:
//!
//! - `get-directories` opens the directory and hands the guest a
//!   wasmtime-wasi [`Descriptor::Dir`] on it, remembering the handle;
//! - when a call returns, [`DataPreopen::park`] points every such handle
//!   at [`parked_dir`] (one directory for the whole agent, removed, so that
//!   nothing is found or made in it) and closes the resource's descriptor;
//! - the next `wasi:filesystem/types` call of the guest (they all reach
//!   the store through `HostState::quota_filesystem`, which calls
//!   [`DataPreopen::unpark`] first) opens the directory again, by the same
//!   path, and points the handles back at it.
//!
//! What the guest sees is unchanged: the same handles, beneath the same
//! directory, with the same permissions, and whatever it opened beneath it
//! (files, subdirectories, their streams) keeps its own descriptor, as
//! before. Invariants: a handle is repointed only while it still holds the
//! exact descriptor this module gave it (`Arc::ptr_eq`), so a handle number
//! the guest dropped and the table reused for another descriptor is never
//! touched; and a guest call reaches `/data` only through
//! `quota_filesystem`, so it never runs on a parked handle (were it to,
//! the parked directory holds nothing and refuses every creation).

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::FsPerms;
use wasmtime_wasi::filesystem::{Descriptor, Dir, OpenMode};
use wasmtime_wasi::p2::bindings::filesystem::preopens;

use super::host_state::GUEST_DATA_DIR;

/// The `/data` preopen of one store: where the directory is, the guest's
/// handles to it, and the descriptor while a call uses it.
#[derive(Default)]
pub(crate) struct DataPreopen {
    /// The directory; `None` for a store that sees none (describe,
    /// validate, a fence call).
    path: Option<PathBuf>,
    /// The directory's device and inode when the store was made: a path
    /// that names another directory since (replaced, or swapped for a
    /// link) is not opened, as the descriptor wasmtime-wasi held would not
    /// have followed it either.
    identity: (u64, u64),
    /// The table entries (`Resource::rep`) `get-directories` made.
    handles: Vec<u32>,
    /// The directory while it is open (what each handle holds); `None`
    /// while parked.
    open: Option<Dir>,
}

impl DataPreopen {
    /// The preopen of `path` (`None`: the store sees no directory).
    /// Fails if `path` does not open as a directory now (a store is
    /// refused at once, naming it, as it always was).
    pub(crate) fn new(path: Option<PathBuf>) -> std::io::Result<DataPreopen> {
        let identity = match &path {
            Some(path) => identity(&open_dir(path)?)?,
            None => (0, 0),
        };
        Ok(DataPreopen {
            path,
            identity,
            handles: Vec::new(),
            open: None,
        })
    }

    /// `get-directories`: a new handle on the directory, opened now if it
    /// is not, or none without a directory.
    fn directories(
        &mut self,
        table: &mut ResourceTable,
    ) -> wasmtime::Result<Vec<(Resource<Descriptor>, String)>> {
        if self.path.is_none() {
            return Ok(Vec::new());
        }
        let dir = match &self.open {
            Some(dir) => dir.clone(),
            None => self.reopen(table).map_err(wasmtime::Error::msg)?,
        };
        let handle = table.push(Descriptor::Dir(dir))?;
        self.handles.push(handle.rep());
        Ok(vec![(handle, GUEST_DATA_DIR.to_string())])
    }

    /// Before a guest's filesystem call: reopen the directory and point the
    /// parked handles back at it. Nothing to do unless parked.
    pub(crate) fn unpark(&mut self, table: &mut ResourceTable) {
        if self.open.is_some() || self.handles.is_empty() {
            return;
        }
        // On failure the call goes on with the parked directory: every
        // lookup in it fails, which the guest sees as errors of its calls.
        if let Err(e) = self.reopen(table) {
            tracing::warn!("{e}");
        }
    }

    /// Open the directory, point the parked handles at it, and keep it.
    fn reopen(&mut self, table: &mut ResourceTable) -> Result<Dir, String> {
        let Some(path) = &self.path else {
            return Err("this store has no data directory".to_string());
        };
        let file = open_dir(path)
            .and_then(|file| {
                if identity(&file)? == self.identity {
                    Ok(file)
                } else {
                    Err(std::io::Error::other(
                        "it is no longer the directory the store was made with",
                    ))
                }
            })
            .map_err(|e| {
                format!(
                    "cannot open the data directory {} for the sandbox: {e}",
                    path.display()
                )
            })?;
        // The permissions `/data` always had (`WasiCtxBuilder::preopened_dir`
        // with `FsPerms::ReadWrite`).
        let dir = Dir::new(
            file,
            FsPerms::ReadWrite,
            OpenMode::READ | OpenMode::WRITE,
            false,
        );
        if let Some(parked) = parked_dir() {
            self.repoint(table, parked, &dir.dir);
        }
        self.open = Some(dir.clone());
        Ok(dir)
    }

    /// After a call: point the guest's handles at the parked directory and
    /// close the resource's. Nothing to do if no call opened it (or if the
    /// agent has no parked directory: then the descriptor stays open).
    pub(crate) fn park(&mut self, table: &mut ResourceTable) {
        let Some(parked) = parked_dir() else { return };
        let Some(open) = self.open.take() else { return };
        self.repoint(table, &open.dir, parked);
    }

    /// Point every handle that holds exactly `from` at `to`; forget the
    /// handles that hold anything else (dropped by the guest, their number
    /// reused).
    fn repoint(
        &mut self,
        table: &mut ResourceTable,
        from: &Arc<std::fs::File>,
        to: &Arc<std::fs::File>,
    ) {
        self.handles.retain(
            |rep| match table.get_mut::<Descriptor>(&Resource::new_borrow(*rep)) {
                Ok(Descriptor::Dir(dir)) if Arc::ptr_eq(&dir.dir, from) => {
                    dir.dir = to.clone();
                    true
                }
                _ => false,
            },
        );
    }
}

/// Open `path` as a directory, as wasmtime-wasi's preopen did (following
/// the agent's own path; close-on-exec).
fn open_dir(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(path)
}

/// A directory's device and inode.
fn identity(file: &std::fs::File) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata()?;
    Ok((meta.dev(), meta.ino()))
}

/// The directory parked handles hold: one for the whole agent, made empty
/// in a private temporary directory and removed while open, so that
/// nothing can be found in it and nothing created (Linux refuses new
/// entries in a removed directory). `None` if it cannot be made (no
/// writable temporary directory): then nothing is parked, and every store
/// keeps its descriptor as before.
pub(crate) fn parked_dir() -> Option<&'static Arc<std::fs::File>> {
    static PARKED: OnceLock<Option<Arc<std::fs::File>>> = OnceLock::new();
    PARKED
        .get_or_init(|| {
            let made = tempfile::Builder::new()
                .prefix("warden-parked-")
                .tempdir()
                .and_then(|dir| {
                    let open = open_dir(dir.path())?;
                    dir.close()?;
                    Ok(open)
                });
            match made {
                Ok(open) => Some(Arc::new(open)),
                Err(e) => {
                    tracing::warn!(
                        "cannot make the empty directory idle resources' /data handles \
                         are parked on ({e}): each live resource keeps its /data open"
                    );
                    None
                }
            }
        })
        .as_ref()
}

/// The `HasData` of the shadowed interface.
struct Preopens;

/// What `get-directories` reaches: the store's preopen and table.
pub(crate) struct PreopensView<'a> {
    pub preopen: &'a mut DataPreopen,
    pub table: &'a mut ResourceTable,
}

impl HasData for Preopens {
    type Data<'a> = PreopensView<'a>;
}

impl preopens::Host for PreopensView<'_> {
    fn get_directories(&mut self) -> wasmtime::Result<Vec<(Resource<Descriptor>, String)>> {
        self.preopen.directories(self.table)
    }
}

/// Replace `wasi:filesystem/preopens` in `linker` (added by
/// `wasmtime_wasi::p2::add_to_linker_async`) with the one above.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> PreopensView<'_>,
) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let added = preopens::add_to_linker::<T, Preopens>(linker, view);
    linker.allow_shadowing(false);
    added
}
