//! `wasi:filesystem/types` with the quota checked before every call that
//! grows `/data`.
//!
//! wasmtime-wasi implements the interface on `WasiFilesystemCtxView`; the
//! generated `add_to_linker` takes any type that implements the host
//! traits. [`QuotaFilesystem`] is that view plus the resource's quota: each
//! method delegates to wasmtime-wasi's own implementation, after charging
//! the quota for the ones that grow `/data` (`write`, `set-size`, `open-at`
//! with `create`, `create-directory-at`, `link-at`, `symlink-at`) and
//! wrapping the streams of `write-via-stream` and `append-via-stream` in a
//! [`QuotaStream`]. Calls that remove or shrink mark the estimate stale;
//! everything else passes through untouched. [`add_to_linker`] puts this
//! interface in the linker over the one `add_to_linker_async` added.

use std::sync::Arc;

use wasmtime::component::{HasData, Linker, Resource};
use wasmtime_wasi::filesystem::WasiFilesystemCtxView;
use wasmtime_wasi::p2::bindings::filesystem::types::{
    self, ErrorCode, HostDescriptor, HostDirectoryEntryStream,
};
use wasmtime_wasi::p2::{DynOutputStream, FsError, FsResult};

use super::stream::QuotaStream;
use super::{DataQuota, Growth, Verdict};

/// wasmtime-wasi's filesystem view of one store, with its resource's quota.
pub(crate) struct QuotaFilesystem<'a> {
    pub fs: WasiFilesystemCtxView<'a>,
    pub quota: &'a Arc<DataQuota>,
}

/// The `HasData` of the intercepted interface.
struct WithQuota;

impl HasData for WithQuota {
    type Data<'a> = QuotaFilesystem<'a>;
}

/// Replace `wasi:filesystem/types` in `linker` (added by
/// `wasmtime_wasi::p2::add_to_linker_async`) with the quota-checking one.
/// Every other WASI interface stays wasmtime-wasi's.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> QuotaFilesystem<'_>,
) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let added = types::add_to_linker::<T, WithQuota>(linker, view);
    linker.allow_shadowing(false);
    added
}

/// Charge `quota`; `Err(insufficient-space)` if the growth does not fit.
/// (A free function: a future holding `&QuotaFilesystem` would not be
/// `Send`, the resource table is not `Sync`.)
async fn charge(quota: &DataQuota, growth: Growth) -> FsResult<()> {
    quota
        .charge(growth)
        .await
        .map_err(|_| FsError::from(ErrorCode::InsufficientSpace))
}

impl QuotaFilesystem<'_> {
    /// Wrap a stream the guest will write `/data` through.
    fn guard(&mut self, stream: Resource<DynOutputStream>) -> FsResult<Resource<DynOutputStream>> {
        let inner = self.fs.table.delete(stream)?;
        let guarded: DynOutputStream = Box::new(QuotaStream::new(inner, self.quota.clone()));
        Ok(self.fs.table.push(guarded)?)
    }
}

/// A borrow of `fd` to pass to a delegated call while keeping `fd`.
fn again(fd: &Resource<types::Descriptor>) -> Resource<types::Descriptor> {
    Resource::new_borrow(fd.rep())
}

impl types::Host for QuotaFilesystem<'_> {
    fn convert_error_code(&mut self, err: FsError) -> wasmtime::Result<ErrorCode> {
        types::Host::convert_error_code(&mut self.fs, err)
    }

    fn filesystem_error_code(
        &mut self,
        err: Resource<wasmtime::Error>,
    ) -> wasmtime::Result<Option<ErrorCode>> {
        types::Host::filesystem_error_code(&mut self.fs, err)
    }
}

impl HostDescriptor for QuotaFilesystem<'_> {
    async fn advise(
        &mut self,
        fd: Resource<types::Descriptor>,
        offset: types::Filesize,
        len: types::Filesize,
        advice: types::Advice,
    ) -> FsResult<()> {
        HostDescriptor::advise(&mut self.fs, fd, offset, len, advice).await
    }

    async fn sync_data(&mut self, fd: Resource<types::Descriptor>) -> FsResult<()> {
        HostDescriptor::sync_data(&mut self.fs, fd).await
    }

    async fn get_flags(
        &mut self,
        fd: Resource<types::Descriptor>,
    ) -> FsResult<types::DescriptorFlags> {
        HostDescriptor::get_flags(&mut self.fs, fd).await
    }

    async fn get_type(
        &mut self,
        fd: Resource<types::Descriptor>,
    ) -> FsResult<types::DescriptorType> {
        HostDescriptor::get_type(&mut self.fs, fd).await
    }

    /// Growing a file counts its new length, sparse or not (the plugin may
    /// fill it); shrinking it makes room at the next walk.
    async fn set_size(
        &mut self,
        fd: Resource<types::Descriptor>,
        size: types::Filesize,
    ) -> FsResult<()> {
        let now = HostDescriptor::stat(&mut self.fs, again(&fd)).await?.size;
        if size > now {
            charge(self.quota, Growth::bytes(size - now)).await?;
        }
        HostDescriptor::set_size(&mut self.fs, fd, size).await?;
        if size < now {
            self.quota.note_change();
        }
        Ok(())
    }

    async fn set_times(
        &mut self,
        fd: Resource<types::Descriptor>,
        atim: types::NewTimestamp,
        mtim: types::NewTimestamp,
    ) -> FsResult<()> {
        HostDescriptor::set_times(&mut self.fs, fd, atim, mtim).await
    }

    async fn read(
        &mut self,
        fd: Resource<types::Descriptor>,
        len: types::Filesize,
        offset: types::Filesize,
    ) -> FsResult<(Vec<u8>, bool)> {
        HostDescriptor::read(&mut self.fs, fd, len, offset).await
    }

    /// Every byte written counts as growth, overwrites too: cheap, and the
    /// walk that follows a full estimate corrects it. Where that estimate
    /// says no, only what the write adds to the file's length is asked
    /// for (one `stat`), so rewriting a file in place near the quota works.
    async fn write(
        &mut self,
        fd: Resource<types::Descriptor>,
        buf: Vec<u8>,
        offset: types::Filesize,
    ) -> FsResult<types::Filesize> {
        let len = buf.len() as u64;
        if self.quota.try_charge(Growth::bytes(len)) != Verdict::Admitted {
            let size = HostDescriptor::stat(&mut self.fs, again(&fd)).await?.size;
            let beyond = offset.saturating_add(len).saturating_sub(size);
            charge(self.quota, Growth::bytes(beyond)).await?;
        }
        HostDescriptor::write(&mut self.fs, fd, buf, offset).await
    }

    async fn read_directory(
        &mut self,
        fd: Resource<types::Descriptor>,
    ) -> FsResult<Resource<types::DirectoryEntryStream>> {
        HostDescriptor::read_directory(&mut self.fs, fd).await
    }

    async fn sync(&mut self, fd: Resource<types::Descriptor>) -> FsResult<()> {
        HostDescriptor::sync(&mut self.fs, fd).await
    }

    async fn create_directory_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path: String,
    ) -> FsResult<()> {
        charge(self.quota, Growth::entry(0)).await?;
        HostDescriptor::create_directory_at(&mut self.fs, fd, path).await
    }

    async fn stat(&mut self, fd: Resource<types::Descriptor>) -> FsResult<types::DescriptorStat> {
        HostDescriptor::stat(&mut self.fs, fd).await
    }

    async fn stat_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path_flags: types::PathFlags,
        path: String,
    ) -> FsResult<types::DescriptorStat> {
        HostDescriptor::stat_at(&mut self.fs, fd, path_flags, path).await
    }

    async fn set_times_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path_flags: types::PathFlags,
        path: String,
        atim: types::NewTimestamp,
        mtim: types::NewTimestamp,
    ) -> FsResult<()> {
        HostDescriptor::set_times_at(&mut self.fs, fd, path_flags, path, atim, mtim).await
    }

    /// A hard link adds an entry, not bytes (a walk counts each link to a
    /// file at the file's size, so it errs high there).
    async fn link_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        old_path_flags: types::PathFlags,
        old_path: String,
        new_descriptor: Resource<types::Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        charge(self.quota, Growth::entry(0)).await?;
        HostDescriptor::link_at(
            &mut self.fs,
            fd,
            old_path_flags,
            old_path,
            new_descriptor,
            new_path,
        )
        .await
    }

    /// `create` may add an entry (counted even if the file exists: the
    /// walk corrects it); `truncate` may free bytes.
    async fn open_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path_flags: types::PathFlags,
        path: String,
        oflags: types::OpenFlags,
        flags: types::DescriptorFlags,
    ) -> FsResult<Resource<types::Descriptor>> {
        if oflags.contains(types::OpenFlags::CREATE) {
            charge(self.quota, Growth::entry(0)).await?;
        }
        let opened =
            HostDescriptor::open_at(&mut self.fs, fd, path_flags, path, oflags, flags).await?;
        if oflags.contains(types::OpenFlags::TRUNCATE) {
            self.quota.note_change();
        }
        Ok(opened)
    }

    fn drop(&mut self, fd: Resource<types::Descriptor>) -> wasmtime::Result<()> {
        HostDescriptor::drop(&mut self.fs, fd)
    }

    async fn readlink_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path: String,
    ) -> FsResult<String> {
        HostDescriptor::readlink_at(&mut self.fs, fd, path).await
    }

    async fn remove_directory_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path: String,
    ) -> FsResult<()> {
        HostDescriptor::remove_directory_at(&mut self.fs, fd, path).await?;
        self.quota.note_change();
        Ok(())
    }

    /// Neutral: nothing grows, but a target it replaces is freed.
    async fn rename_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        old_path: String,
        new_fd: Resource<types::Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        HostDescriptor::rename_at(&mut self.fs, fd, old_path, new_fd, new_path).await?;
        self.quota.note_change();
        Ok(())
    }

    /// A symbolic link is an entry whose size is its target's length.
    async fn symlink_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        src_path: String,
        dest_path: String,
    ) -> FsResult<()> {
        charge(self.quota, Growth::entry(src_path.len() as u64)).await?;
        HostDescriptor::symlink_at(&mut self.fs, fd, src_path, dest_path).await
    }

    async fn unlink_file_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path: String,
    ) -> FsResult<()> {
        HostDescriptor::unlink_file_at(&mut self.fs, fd, path).await?;
        self.quota.note_change();
        Ok(())
    }

    fn read_via_stream(
        &mut self,
        fd: Resource<types::Descriptor>,
        offset: types::Filesize,
    ) -> FsResult<Resource<wasmtime_wasi::p2::DynInputStream>> {
        HostDescriptor::read_via_stream(&mut self.fs, fd, offset)
    }

    fn write_via_stream(
        &mut self,
        fd: Resource<types::Descriptor>,
        offset: types::Filesize,
    ) -> FsResult<Resource<DynOutputStream>> {
        let stream = HostDescriptor::write_via_stream(&mut self.fs, fd, offset)?;
        self.guard(stream)
    }

    fn append_via_stream(
        &mut self,
        fd: Resource<types::Descriptor>,
    ) -> FsResult<Resource<DynOutputStream>> {
        let stream = HostDescriptor::append_via_stream(&mut self.fs, fd)?;
        self.guard(stream)
    }

    async fn is_same_object(
        &mut self,
        a: Resource<types::Descriptor>,
        b: Resource<types::Descriptor>,
    ) -> wasmtime::Result<bool> {
        HostDescriptor::is_same_object(&mut self.fs, a, b).await
    }

    async fn metadata_hash(
        &mut self,
        fd: Resource<types::Descriptor>,
    ) -> FsResult<types::MetadataHashValue> {
        HostDescriptor::metadata_hash(&mut self.fs, fd).await
    }

    async fn metadata_hash_at(
        &mut self,
        fd: Resource<types::Descriptor>,
        path_flags: types::PathFlags,
        path: String,
    ) -> FsResult<types::MetadataHashValue> {
        HostDescriptor::metadata_hash_at(&mut self.fs, fd, path_flags, path).await
    }
}

impl HostDirectoryEntryStream for QuotaFilesystem<'_> {
    async fn read_directory_entry(
        &mut self,
        stream: Resource<types::DirectoryEntryStream>,
    ) -> FsResult<Option<types::DirectoryEntry>> {
        HostDirectoryEntryStream::read_directory_entry(&mut self.fs, stream).await
    }

    fn drop(&mut self, stream: Resource<types::DirectoryEntryStream>) -> wasmtime::Result<()> {
        HostDirectoryEntryStream::drop(&mut self.fs, stream)
    }
}
