//! The output stream of `write-via-stream` and `append-via-stream`, with
//! the quota in its permits.
//!
//! A WASI output stream is written in two steps: `check-write` says how
//! much may be written now (0: wait on the stream's pollable), then `write`
//! writes at most that. [`QuotaStream`] never permits more than the quota
//! has left, so the guest's own protocol keeps it within the quota, and a
//! full estimate is corrected where waiting is allowed: `check-write`
//! answers 0 and the pollable walks the directory before it is ready.
//! When the quota is reached by a fresh measure, `write` fails with ENOSPC
//! (`last-operation-failed`, whose `filesystem-error-code` is
//! `insufficient-space`); `check-write` does not fail then, since a guest
//! also calls it to wait for a flush of bytes that did fit.

use std::sync::Arc;

use bytes::Bytes;
use wasmtime_wasi::p2::{DynOutputStream, OutputStream, Pollable, StreamError, StreamResult};

use super::{DataQuota, Growth, Permit, Verdict};

pub(super) struct QuotaStream {
    inner: DynOutputStream,
    quota: Arc<DataQuota>,
    /// `check-write` found the estimate full and stale: the next wait walks.
    measure: bool,
}

impl QuotaStream {
    pub(super) fn new(inner: DynOutputStream, quota: Arc<DataQuota>) -> QuotaStream {
        QuotaStream {
            inner,
            quota,
            measure: false,
        }
    }
}

/// ENOSPC as a stream error: `filesystem-error-code` maps the `io::Error`
/// to `insufficient-space`.
fn no_space() -> StreamError {
    StreamError::LastOperationFailed(wasmtime::Error::new(std::io::Error::from(
        super::QuotaExceeded,
    )))
}

#[wasmtime_wasi::async_trait]
impl Pollable for QuotaStream {
    async fn ready(&mut self) {
        if std::mem::take(&mut self.measure) {
            self.quota.measure().await;
        }
        self.inner.ready().await
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for QuotaStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        let growth = Growth::bytes(bytes.len() as u64);
        if !bytes.is_empty() && self.quota.try_charge(growth) != Verdict::Admitted {
            // Full, or more than the last permit.
            self.quota.refused(growth);
            return Err(no_space());
        }
        self.inner.write(bytes)
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.inner.flush()
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        let ready = self.inner.check_write()?;
        if ready == 0 {
            return Ok(0);
        }
        match self.quota.stream_permit() {
            Permit::Bytes(left) => Ok(ready.min(usize::try_from(left).unwrap_or(usize::MAX))),
            Permit::Measure => {
                self.measure = true;
                Ok(0)
            }
            // Not an error here: a guest also waits on check-write for a
            // flush to complete, and the bytes before it did fit. The
            // write that follows fails instead.
            Permit::Refused => Ok(ready),
        }
    }

    fn write_zeroes(&mut self, nelem: usize) -> StreamResult<()> {
        let growth = Growth::bytes(nelem as u64);
        if nelem > 0 && self.quota.try_charge(growth) != Verdict::Admitted {
            self.quota.refused(growth);
            return Err(no_space());
        }
        self.inner.write_zeroes(nelem)
    }

    async fn cancel(&mut self) {
        self.inner.cancel().await
    }
}
