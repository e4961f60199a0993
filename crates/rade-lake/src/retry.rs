//! Create-only PUTs retried after a dropped connection or a timeout, like every other request.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::client::HttpErrorKind;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt, PutMode,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

use crate::error::{Cause, cause};
use crate::store::LakeOptions;

/// An S3 store whose create-only PUTs are retried after a dropped connection or a timeout.
///
/// object_store retries such errors only for idempotent requests, and does not count a
/// create-only PUT (`If-None-Match: *`) as one: a retry may find the object that the lost
/// attempt stored. For this lake that answer is the right one: the retry sends the same
/// bytes, and `AlreadyExists` tells the writer that the file is durable. So a connection
/// reset in the middle of a flush costs a retry, not the worker. Everything else (5xx, 429
/// and the other requests) is already retried by object_store and goes through unchanged.
#[derive(Debug)]
pub(crate) struct RetryCreate {
    inner: Arc<dyn ObjectStore>,
    options: LakeOptions,
}

impl RetryCreate {
    pub(crate) fn new(inner: Arc<dyn ObjectStore>, options: LakeOptions) -> RetryCreate {
        RetryCreate { inner, options }
    }
}

impl fmt::Display for RetryCreate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

/// Whether object_store gave up on `e` only because the request was not idempotent: the
/// connection dropped or timed out after the request was sent.
fn interrupted(e: &object_store::Error) -> bool {
    matches!(
        cause(e),
        Cause::Http(HttpErrorKind::Interrupted | HttpErrorKind::Timeout)
    )
}

#[async_trait]
impl ObjectStore for RetryCreate {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        if !matches!(opts.mode, PutMode::Create) {
            return self.inner.put_opts(location, payload, opts).await;
        }
        let start = Instant::now();
        let mut backoff = self.options.backoff_initial;
        let mut retries = 0;
        loop {
            // Cloning a payload clones references to its bytes, not the bytes.
            match self.inner.put_opts(location, payload.clone(), opts.clone()).await {
                Err(e)
                    if interrupted(&e)
                        && retries < self.options.max_retries
                        && start.elapsed() < self.options.retry_timeout =>
                {
                    retries += 1;
                    tracing::info!(
                        path = %location,
                        retry = retries,
                        max_retries = self.options.max_retries,
                        backoff = ?backoff,
                        error = %e,
                        "create-only PUT interrupted, backing off"
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.options.backoff_max);
                }
                // A retry (ours, or object_store's own after a 5xx) that finds the object may
                // find the one an earlier attempt stored: when its bytes are ours, the create
                // succeeded. A Delta commit (each unique: it holds its time and an operation
                // id) must not read as lost to another writer, which would count its own
                // commit as a conflicting one and refuse it.
                Err(object_store::Error::AlreadyExists { path, source }) => {
                    let ours: Vec<u8> = payload.iter().flat_map(|b| b.iter().copied()).collect();
                    let stored = match self.inner.get(location).await {
                        Ok(got) => got.bytes().await.ok(),
                        Err(_) => None,
                    };
                    if stored.is_some_and(|s| s.as_ref() == ours.as_slice()) {
                        return Ok(PutResult {
                            e_tag: None,
                            version: None,
                        });
                    }
                    return Err(object_store::Error::AlreadyExists { path, source });
                }
                done => return done,
            }
        }
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(&self, prefix: Option<&Path>, offset: &Path) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::tests::generic;

    #[test]
    fn only_dropped_connections_and_timeouts_are_retried_here() {
        assert!(interrupted(&generic(HttpErrorKind::Interrupted)));
        assert!(interrupted(&generic(HttpErrorKind::Timeout)));
        // object_store retries these itself, or they are not transient.
        assert!(!interrupted(&generic(HttpErrorKind::Connect)));
        assert!(!interrupted(&generic(HttpErrorKind::Decode)));
        assert!(!interrupted(&object_store::Error::AlreadyExists {
            path: "p".into(),
            source: "exists".into(),
        }));
    }
}
