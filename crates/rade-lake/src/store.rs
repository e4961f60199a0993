use std::sync::Arc;
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{BackoffConfig, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use crate::geo::FileWriter;
use crate::delta::{TableFile, TableId};
use crate::layout::{DerivedFile, RawFile, dlq_object_path, state_path};
use crate::location::LakeLocation;
use crate::retry::RetryCreate;
use crate::{Error, Result};

/// A Parquet lake on an object store, rooted at `root`.
#[derive(Debug, Clone)]
pub struct Lake {
    store: Arc<dyn ObjectStore>,
    root: Path,
    location: LakeLocation,
    props: Arc<WriterProperties>,
}

/// What one create-only write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The file was written with this many bytes.
    Created { bytes: u64 },
}

/// How a lake on S3 retries a request after a transient error; local lakes ignore it.
///
/// object_store retries 5xx, 429 and 408 answers, connection failures, and dropped
/// connections and timeouts of idempotent requests, each request on its own, with exponential
/// backoff and decorrelated jitter; the lake retries its create-only PUTs after a dropped
/// connection or a timeout too (`RetryCreate`). An error that outlasts these limits fails the
/// flush, and a failed flush commits nothing: its records are replayed by the next worker.
#[derive(Debug, Clone, PartialEq)]
pub struct LakeOptions {
    /// Retries of one request before its error reaches the worker (0: none).
    pub max_retries: usize,
    /// No retry starts later than this after a request's first attempt. object_store warns
    /// against more than about 5 minutes: retries reuse the first attempt's signature.
    pub retry_timeout: Duration,
    /// The first backoff; each later one is drawn between this and twice the previous one.
    pub backoff_initial: Duration,
    /// The longest backoff between two attempts.
    pub backoff_max: Duration,
}

impl Default for LakeOptions {
    /// object_store's own defaults: 10 retries within 3 minutes, backoff 100 ms to 15 s.
    fn default() -> Self {
        let retry = RetryConfig::default();
        LakeOptions {
            max_retries: retry.max_retries,
            retry_timeout: retry.retry_timeout,
            backoff_initial: retry.backoff.init_backoff,
            backoff_max: retry.backoff.max_backoff,
        }
    }
}

impl LakeOptions {
    fn retry_config(&self) -> RetryConfig {
        RetryConfig {
            backoff: BackoffConfig {
                init_backoff: self.backoff_initial,
                max_backoff: self.backoff_max,
                base: BackoffConfig::default().base,
            },
            max_retries: self.max_retries,
            retry_timeout: self.retry_timeout,
        }
    }
}

impl Lake {
    /// Opens the lake at `location`: creates a local directory if it is missing; on S3, the
    /// requests retry as `options` says.
    pub fn open(location: &LakeLocation, options: &LakeOptions) -> Result<Lake> {
        let bad = |message: String| Error::Open {
            location: location.to_string(),
            message,
        };
        match location {
            LakeLocation::S3 { bucket, prefix } => {
                let s3 = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_retry(options.retry_config())
                    .build()
                    .map_err(|e| bad(e.to_string()))?;
                let s3 = RetryCreate::new(Arc::new(s3), options.clone());
                Ok(Lake::new(Arc::new(s3), Path::from(prefix.as_str()), location.clone()))
            }
            LakeLocation::Memory => Ok(Lake::new(Arc::new(InMemory::new()), Path::default(), location.clone())),
            LakeLocation::Local(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| bad(format!("cannot create {}: {e}", dir.display())))?;
                let dir = dir
                    .canonicalize()
                    .map_err(|e| bad(format!("cannot resolve {}: {e}", dir.display())))?;
                // A plain local store with the directory as root path, so that DataFusion's own
                // file:// store and this one name files alike.
                let root = Path::from_absolute_path(&dir).map_err(|e| bad(e.to_string()))?;
                Ok(Lake::new(
                    Arc::new(LocalFileSystem::new()),
                    root,
                    LakeLocation::Local(dir),
                ))
            }
        }
    }

    /// A lake on a given store and root: tests give one that logs, delays or refuses writes.
    pub fn new(store: Arc<dyn ObjectStore>, root: Path, location: LakeLocation) -> Lake {
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(3).expect("3 is a valid zstd level"),
            ))
            // Page statistics and the page index let readers prune on sensor_id and observed_at.
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_max_row_group_row_count(Some(1024 * 1024))
            // Readers looking for one sensor skip row groups without it.
            .set_column_bloom_filter_enabled("sensor_id".into(), true)
            // Sized for the sensors of one kind in a row group (about 8 KiB at 5 % false positives).
            .set_column_bloom_filter_max_ndv("sensor_id".into(), 10_000)
            .set_created_by(concat!("rade ", env!("CARGO_PKG_VERSION")).to_owned())
            .build();
        Lake {
            store,
            root,
            location,
            props: Arc::new(props),
        }
    }

    /// Where the lake is; a local lake's directory is absolute and resolved.
    pub fn location(&self) -> &LakeLocation {
        &self.location
    }

    /// The underlying store and root, for readers.
    pub fn store(&self) -> (&Arc<dyn ObjectStore>, &Path) {
        (&self.store, &self.root)
    }

    /// Encodes `batches` as one zstd Parquet file and writes it, for a commit to the table
    /// `raw_<kind>` to make visible. A file of that name left by a flush that never committed
    /// (it holds the same rows) is replaced.
    pub async fn write_raw(&self, file: &RawFile, batches: Vec<RecordBatch>) -> Result<(Written, TableFile)> {
        let (table, rel, partition_values) = file.table_path();
        self.write_table_file(file.path(&self.root), table, rel, partition_values, batches, true)
            .await
    }

    /// Writes a file of closed windows or alerts, for a commit to `aggregates` or `alerts`.
    pub async fn write_derived(&self, file: &DerivedFile, batches: Vec<RecordBatch>) -> Result<(Written, TableFile)> {
        let (table, rel, partition_values) = file.table_path();
        self.write_table_file(file.path(&self.root), table, rel, partition_values, batches, false)
            .await
    }

    /// Replaces the window state of a partition (a single PUT: readers see the old or the new).
    pub async fn put_state(&self, topic: &str, partition: i32, bytes: Vec<u8>) -> Result<u64> {
        let size = bytes.len() as u64;
        self.put_object(&state_path(&self.root, topic, partition), PutPayload::from(bytes))
            .await?;
        Ok(size)
    }

    /// The window state of a partition, if one was saved.
    pub async fn get_state(&self, topic: &str, partition: i32) -> Result<Option<Vec<u8>>> {
        match self.read_object(&state_path(&self.root, topic, partition)).await {
            Ok(bytes) => Ok(Some(bytes.to_vec())),
            Err(Error::Store {
                source: object_store::Error::NotFound { .. },
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Keeps the value of a DLQ record too large for the DLQ topic (the claim check), replacing
    /// any earlier copy of the same position (a replay writes the same bytes). Returns the
    /// object's URL, for the DLQ record that points to it.
    pub async fn put_dlq_object(&self, topic: &str, partition: i32, offset: i64, bytes: Bytes) -> Result<String> {
        let path = dlq_object_path(&self.root, topic, partition, offset);
        self.put_object(&path, PutPayload::from(bytes)).await?;
        Ok(self.object_url(&path))
    }

    /// A value kept by [`Lake::put_dlq_object`].
    pub async fn read_dlq_object(&self, topic: &str, partition: i32, offset: i64) -> Result<Bytes> {
        self.read_object(&dlq_object_path(&self.root, topic, partition, offset))
            .await
    }

    /// The URL of an object of this lake: `file:///…` for a local lake, `s3://bucket/…` on S3.
    pub fn object_url(&self, path: &Path) -> String {
        match &self.location {
            // The root of a local store is the absolute directory itself.
            LakeLocation::Local(_) => format!("file:///{path}"),
            LakeLocation::S3 { bucket, .. } => format!("s3://{bucket}/{path}"),
            LakeLocation::Memory => format!("memory:///{path}"),
        }
    }

    /// The whole of an object.
    pub(crate) async fn read_object(&self, path: &Path) -> Result<Bytes> {
        let err = |source| Error::Store {
            path: path.to_string(),
            source,
        };
        self.store.get(path).await.map_err(err)?.bytes().await.map_err(err)
    }

    /// Creates or replaces an object (a single PUT: readers see the old or the new).
    pub(crate) async fn put_object(&self, path: &Path, payload: PutPayload) -> Result<()> {
        self.store
            .put(path, payload)
            .await
            .map(|_| ())
            .map_err(|source| Error::Store {
                path: path.to_string(),
                source,
            })
    }

    /// `geometry`: raw rows, which get the GeoParquet point column when they have a position.
    async fn write_table_file(
        &self,
        path: Path,
        table: TableId,
        rel: String,
        partition_values: Vec<(String, String)>,
        batches: Vec<RecordBatch>,
        geometry: bool,
    ) -> Result<(Written, TableFile)> {
        let props = self.props.clone();
        let shown = path.to_string();
        let schema = match batches.first() {
            Some(b) if geometry => crate::geo::raw_file_schema(&b.schema()),
            Some(b) => b.schema(),
            None => Arc::new(arrow::datatypes::Schema::empty()),
        };
        // Encoding is CPU work: keep it off the async workers.
        let (bytes, stats) = tokio::task::spawn_blocking(move || {
            let stats = crate::delta::stats_json(&batches);
            encode(&batches, props, geometry).map(|b| (b, stats))
        })
        .await?
        .map_err(|source| Error::Parquet { path: shown, source })?;
        let size = bytes.len() as u64;
        self.put_object(&path, PutPayload::from(bytes)).await?;
        Ok((
            Written::Created { bytes: size },
            TableFile {
                table,
                path: rel,
                partition_values,
                size,
                stats,
                schema,
            },
        ))
    }

    /// The Parquet writer settings of every file of the lake.
    pub(crate) fn writer_properties(&self) -> WriterProperties {
        (*self.props).clone()
    }

    /// Writes and deletes a probe object, to tell at startup that the lake takes writes.
    pub async fn check_writable(&self) -> Result<()> {
        let path = self
            .root
            .clone()
            .join("_rade")
            .join(format!("probe-{}", std::process::id()));
        let err = |source| Error::Store {
            path: path.to_string(),
            source,
        };
        self.store
            .put(&path, PutPayload::from_static(b"ok"))
            .await
            .map_err(err)?;
        self.store.delete(&path).await.map_err(err)?;
        Ok(())
    }
}

fn encode(
    batches: &[RecordBatch],
    props: Arc<WriterProperties>,
    geometry: bool,
) -> Result<Bytes, parquet::errors::ParquetError> {
    let schema = batches
        .first()
        .map(|b| b.schema())
        .ok_or_else(|| parquet::errors::ParquetError::General("no rows to write".into()))?;
    let mut buf = Vec::with_capacity(batches.iter().map(|b| b.get_array_memory_size()).sum::<usize>() / 4);
    let mut writer = FileWriter::try_new(&mut buf, &schema, (*props).clone(), geometry)?;
    for b in batches {
        writer.write(b)?;
    }
    writer.close()?;
    Ok(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;
    use crate::layout::hour_of;

    fn batch(n: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("_offset", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from_iter_values(0..n))]).expect("batch")
    }

    fn file(start: i64, end: i64) -> RawFile {
        RawFile {
            kind: "noise".into(),
            hour: hour_of(1_780_000_000_000),
            topic: "t".into(),
            partition: 1,
            start,
            end,
        }
    }

    #[tokio::test]
    async fn the_log_gets_a_checkpoint_every_50_commits_and_vacuum_removes_what_no_commit_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake = Lake::open(&LakeLocation::Local(dir.path().to_path_buf()), &LakeOptions::default()).expect("lake");
        let table = crate::TableId::Raw("noise".into());
        let app = crate::app_id("g", "t", 1);
        for i in 0..50 {
            let (_, f) = lake.write_raw(&file(i * 10, i * 10 + 9), vec![batch(10)]).await.expect("written");
            lake.commit(&table, &[f], &[], &[(app.clone(), i * 10 + 10)], &Default::default())
                .await
                .expect("committed");
        }
        // Version 0 created the table, 1 to 50 added the files: a checkpoint after 50 commits
        // (delta-rs checkpoints version v when v + 1 is a multiple of the interval).
        let log = dir.path().join("raw/noise/_delta_log");
        assert!(log.join("00000000000000000049.checkpoint.parquet").exists());
        assert!(log.join("_last_checkpoint").exists());
        let held = lake.raw_positions("noise", "g", "t", &[1]).await.expect("read");
        assert_eq!(held[&1].0, Some(500));
        assert_eq!(held[&1].1.len(), 50, "the snapshot from the checkpoint names every file");
        // A file a flush wrote and never committed: invisible, and vacuum deletes it.
        let (_, orphan) = lake.write_raw(&file(500, 509), vec![batch(10)]).await.expect("written");
        let orphan_path = dir.path().join("raw/noise").join(&orphan.path);
        assert!(orphan_path.exists());
        let report = lake
            .vacuum_table(&table, std::time::Duration::ZERO, false)
            .await
            .expect("vacuumed");
        assert_eq!(report.files_deleted, 1);
        assert!(!orphan_path.exists());
        assert_eq!(lake.raw_positions("noise", "g", "t", &[1]).await.expect("read")[&1].1.len(), 50);
    }

    #[tokio::test]
    async fn files_are_visible_once_committed_with_their_position() {
        let lake = Lake::new(Arc::new(InMemory::new()), Path::from("root"), LakeLocation::Memory);
        let (_, f1) = lake.write_raw(&file(0, 9), vec![batch(10)]).await.expect("written");
        let (_, f2) = lake.write_raw(&file(10, 19), vec![batch(3)]).await.expect("written");
        let table = crate::TableId::Raw("noise".into());
        // Written, not committed: the table does not even exist.
        let held = lake.raw_positions("noise", "g", "t", &[1]).await.expect("read");
        assert_eq!(held[&1], (None, vec![]));
        let app = crate::app_id("g", "t", 1);
        lake.commit(&table, &[f1], &[], &[(app.clone(), 10)], &Default::default())
            .await
            .expect("committed");
        let held = lake.raw_positions("noise", "g", "t", &[1, 2]).await.expect("read");
        assert_eq!(held[&1], (Some(10), vec![file(0, 9)]));
        assert_eq!(held[&2], (None, vec![]));
        // A writer expecting an older position is fenced, and commits nothing.
        let stale = [(app.clone(), Some(5))].into_iter().collect();
        let refused = lake.commit(&table, std::slice::from_ref(&f2), &[], &[(app.clone(), 20)], &stale).await;
        assert!(matches!(refused, Err(Error::Fenced { .. })), "{refused:?}");
        let current = [(app.clone(), Some(10))].into_iter().collect();
        lake.commit(&table, &[f2], &[], &[(app.clone(), 20)], &current)
            .await
            .expect("committed");
        let held = lake.raw_positions("noise", "g", "t", &[1]).await.expect("read");
        assert_eq!(held[&1], (Some(20), vec![file(0, 9), file(10, 19)]));

        let (store, _) = lake.store();
        let bytes = store
            .get(&file(0, 9).path(&Path::from("root")))
            .await
            .expect("get")
            .bytes()
            .await
            .expect("bytes");
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes.clone()).expect("parquet");
        let meta = reader.metadata().clone();
        assert_eq!(meta.file_metadata().num_rows(), 10);
        assert!(
            meta.row_group(0)
                .column(0)
                .compression()
                .to_string()
                .starts_with("ZSTD")
        );
        assert!(meta.row_group(0).column(0).statistics().is_some());
        // The page index (column and offset indexes) is there for readers to prune pages.
        let with_index = parquet::arrow::arrow_reader::ArrowReaderMetadata::load(
            &bytes,
            parquet::arrow::arrow_reader::ArrowReaderOptions::new()
                .with_page_index_policy(parquet::file::metadata::PageIndexPolicy::Required),
        )
        .expect("metadata");
        assert!(with_index.metadata().column_index().is_some());
        assert!(with_index.metadata().offset_index().is_some());
    }
}
