//! Compaction of raw files: many small files of one partition and hour become one.
//!
//! # The protocol
//! A raw file `<topic>__p<n>__<start>-<end>.parquet` holds every row of its Kafka partition
//! and event hour with an offset in `[start, end]` (except those an older file of that hour
//! holds). Files of one partition and hour never overlap.
//!
//! 1. **Only settled files are merged**: those whose `end` is below the consumer group's
//!    committed offset for their partition. No worker will write an offset in their range
//!    again: a replay starts at the committed offset.
//! 2. **The merged file is written create-only** under the same scheme, its range the union
//!    of its inputs' (`[first start, last end]`). Its inputs are now *shadowed*: their range
//!    is inside another file's of the same partition and hour.
//! 3. **Readers skip shadowed files.** `rade query` lists through [`visible_store`], so a
//!    listing that sees the merged file and its inputs reads the merged file only: no row is
//!    seen twice. A worker's recovery reads both and finds the same rows durable either way.
//! 4. **Inputs are deleted after a grace period** (`grace`, 5 min by default), counted from
//!    the merged file's creation: a query that listed the inputs before the merged file
//!    existed has finished reading them by then, so no row goes missing under it.
//!
//! A crash at any step leaves a lake that readers see whole: before step 2 nothing changed;
//! after it the merged file shadows its inputs, and the next run deletes them. Two runs at
//! once write the same merged name (create-only: the second finds it there). Plain Hive
//! readers (DuckDB, pyarrow) that do not skip shadowed files may see a partition-hour twice
//! between steps 2 and 4; they can deduplicate on the lineage columns, or compaction can
//! run with a grace of zero when nothing reads.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, new_null_array};
use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::layout::RawFile;
use crate::store::{Lake, Written};
use crate::{Error, Result};

/// How [`Lake::compact`] merges.
#[derive(Debug, Clone)]
pub struct CompactOptions {
    /// A partition-hour is merged once it has at least this many visible settled files.
    pub min_files: usize,
    /// A merged file takes inputs up to about this many bytes in all.
    pub target_size: u64,
    /// Shadowed inputs are deleted once their merged file is this old.
    pub grace: Duration,
    /// Report what would be done, change nothing.
    pub dry_run: bool,
}

impl Default for CompactOptions {
    fn default() -> Self {
        CompactOptions {
            min_files: 2,
            target_size: 128 * 1024 * 1024,
            grace: Duration::from_secs(300),
            dry_run: false,
        }
    }
}

/// What one compaction run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactReport {
    /// Merged files created.
    pub merged: usize,
    /// Files they replace.
    pub inputs: usize,
    pub rows: u64,
    pub bytes_written: u64,
    /// Shadowed files deleted (their grace period over).
    pub deleted: usize,
    /// Shadowed files left for a later run (still in their grace period).
    pub waiting: usize,
    /// Partitions whose files were left alone because no committed offset is known for them.
    pub unsettled_partitions: usize,
}

#[derive(Debug, Clone)]
struct Listed {
    file: RawFile,
    meta: ObjectMeta,
}

/// (kind, hour, topic, partition): the files that may be merged together.
type Group = (String, i64, String, i32);

impl Lake {
    /// Merges the settled small raw files of each partition and hour, and deletes the files
    /// that merged files have shadowed for longer than the grace period. `committed` holds
    /// the consumer group's committed offset per (topic, partition); partitions without one
    /// are left alone.
    pub async fn compact(
        &self,
        committed: &HashMap<(String, i32), i64>,
        options: &CompactOptions,
    ) -> Result<CompactReport> {
        let (store, root) = self.store();
        let metas: Vec<ObjectMeta> = store
            .list(Some(&root.clone().join("raw")))
            .try_collect()
            .await
            .map_err(|source| Error::Store {
                path: root.to_string(),
                source,
            })?;
        let mut groups: BTreeMap<Group, Vec<Listed>> = BTreeMap::new();
        for meta in metas {
            if let Some(file) = RawFile::parse(&meta.location) {
                groups
                    .entry((file.kind.clone(), file.hour, file.topic.clone(), file.partition))
                    .or_default()
                    .push(Listed { file, meta });
            }
        }
        let mut report = CompactReport::default();
        let mut unsettled = std::collections::HashSet::new();
        let now = chrono::Utc::now();
        for ((_, _, topic, partition), mut files) in groups {
            files.sort_by_key(|l| (l.file.start, std::cmp::Reverse(l.file.end)));
            // Step 4: delete what merged files have shadowed long enough.
            let mut visible: Vec<Listed> = Vec::new();
            for l in files {
                match visible.last() {
                    Some(cover) if cover.file.end >= l.file.end => {
                        let age = (now - cover.meta.last_modified).to_std().unwrap_or_default();
                        if age >= options.grace {
                            if !options.dry_run {
                                self.delete_object(&l.meta.location).await?;
                            }
                            report.deleted += 1;
                        } else {
                            report.waiting += 1;
                        }
                    }
                    _ => visible.push(l),
                }
            }
            // Steps 1 and 2: merge runs of settled files.
            let Some(&settled_before) = committed.get(&(topic.clone(), partition)) else {
                unsettled.insert((topic, partition));
                continue;
            };
            let settled: Vec<Listed> = visible.into_iter().filter(|l| l.file.end < settled_before).collect();
            for run in runs(settled, options.target_size) {
                if run.len() < options.min_files.max(2) {
                    continue;
                }
                report.inputs += run.len();
                report.merged += 1;
                if options.dry_run {
                    continue;
                }
                let (rows, written) = self.merge(&run).await?;
                crate::crash::crash_point("after-merge");
                report.rows += rows;
                if let Written::Created { bytes } = written {
                    report.bytes_written += bytes;
                }
                if options.grace.is_zero() {
                    for l in &run {
                        self.delete_object(&l.meta.location).await?;
                        report.deleted += 1;
                    }
                } else {
                    report.waiting += run.len();
                }
            }
        }
        report.unsettled_partitions = unsettled.len();
        Ok(report)
    }

    /// Writes one file with every row of `run` (files of one partition and hour, in offset
    /// order), named by the union of their ranges. Files written before a schema change lack
    /// its new columns: they are filled with nulls.
    async fn merge(&self, run: &[Listed]) -> Result<(u64, Written)> {
        let (store, _) = self.store();
        let mut batches = Vec::new();
        for l in run {
            let path = l.meta.location.to_string();
            let bytes = store
                .get(&l.meta.location)
                .await
                .map_err(|source| Error::Store {
                    path: path.clone(),
                    source,
                })?
                .bytes()
                .await
                .map_err(|source| Error::Store {
                    path: path.clone(),
                    source,
                })?;
            batches.push((path, bytes));
        }
        let first = &run[0].file;
        let last = &run[run.len() - 1].file;
        let merged = RawFile {
            start: first.start,
            end: last.end,
            ..first.clone()
        };
        let path = merged.path(self.store().1);
        let shown = path.to_string();
        let props = self.writer_properties();
        let (rows, bytes) = tokio::task::spawn_blocking(move || rewrite(batches, props))
            .await?
            .map_err(|source| Error::Parquet { path: shown, source })?;
        let written = self.put_create_only(path, bytes).await?;
        Ok((rows, written))
    }

    async fn delete_object(&self, path: &Path) -> Result<()> {
        match self.store().0.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(Error::Store {
                path: path.to_string(),
                source,
            }),
        }
    }
}

/// Splits settled files (in offset order) into runs of about `target` bytes; a file already
/// that large stays alone.
fn runs(files: Vec<Listed>, target: u64) -> Vec<Vec<Listed>> {
    let mut out: Vec<Vec<Listed>> = Vec::new();
    let mut current: Vec<Listed> = Vec::new();
    let mut size = 0;
    for l in files {
        if !current.is_empty() && size + l.meta.size > target {
            out.push(std::mem::take(&mut current));
            size = 0;
        }
        size += l.meta.size;
        current.push(l);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Decodes the inputs and encodes them as one Parquet file, under the union of their schemas.
fn rewrite(
    inputs: Vec<(String, Bytes)>,
    props: parquet::file::properties::WriterProperties,
) -> Result<(u64, Bytes), parquet::errors::ParquetError> {
    let mut readers = Vec::with_capacity(inputs.len());
    let mut schemas = Vec::with_capacity(inputs.len());
    for (path, bytes) in inputs {
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .map_err(|e| parquet::errors::ParquetError::General(format!("{path}: {e}")))?;
        schemas.push(builder.schema().as_ref().clone().with_metadata(HashMap::new()));
        readers.push(builder.with_batch_size(64 * 1024).build()?);
    }
    let schema: SchemaRef =
        Arc::new(Schema::try_merge(schemas).map_err(|e| parquet::errors::ParquetError::General(e.to_string()))?);
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, schema.clone(), Some(props))?;
    let mut rows = 0;
    for reader in readers {
        for batch in reader {
            let batch = conform(&batch?, &schema)?;
            rows += batch.num_rows() as u64;
            writer.write(&batch)?;
        }
    }
    writer.close()?;
    Ok((rows, Bytes::from(out)))
}

/// `batch` with the columns of `schema`, in its order; a column it lacks is null.
fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, parquet::errors::ParquetError> {
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) => c.clone(),
            None => new_null_array(f.data_type(), batch.num_rows()),
        })
        .collect();
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| parquet::errors::ParquetError::General(e.to_string()))
}

/// A view of a store in which raw files shadowed by a merged file are not listed, for
/// readers: see the module's protocol.
pub fn visible_store(inner: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
    Arc::new(Visible { inner })
}

#[derive(Debug)]
struct Visible {
    inner: Arc<dyn ObjectStore>,
}

impl std::fmt::Display for Visible {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Visible({})", self.inner)
    }
}

/// Drops the raw files whose range lies inside another listed file's of the same partition
/// and hour.
fn without_shadowed(metas: Vec<ObjectMeta>) -> Vec<ObjectMeta> {
    let mut ranges: HashMap<Group, Vec<(i64, i64)>> = HashMap::new();
    let parsed: Vec<Option<RawFile>> = metas.iter().map(|m| RawFile::parse(&m.location)).collect();
    for f in parsed.iter().flatten() {
        ranges
            .entry((f.kind.clone(), f.hour, f.topic.clone(), f.partition))
            .or_default()
            .push((f.start, f.end));
    }
    metas
        .into_iter()
        .zip(parsed)
        .filter(|(_, f)| {
            let Some(f) = f else { return true };
            let group = (f.kind.clone(), f.hour, f.topic.clone(), f.partition);
            !ranges[&group]
                .iter()
                .any(|&(s, e)| s <= f.start && f.end <= e && (s, e) != (f.start, f.end))
        })
        .map(|(m, _)| m)
        .collect()
}

#[async_trait]
impl ObjectStore for Visible {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[std::ops::Range<u64>]) -> object_store::Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let all = self.inner.list(prefix);
        futures::stream::once(async move {
            let metas: Vec<ObjectMeta> = all.try_collect().await?;
            Ok::<_, object_store::Error>(futures::stream::iter(without_shadowed(metas).into_iter().map(Ok)))
        })
        .try_flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let mut listed = self.inner.list_with_delimiter(prefix).await?;
        listed.objects = without_shadowed(listed.objects);
        Ok(listed)
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field};
    use object_store::memory::InMemory;

    use super::*;
    use crate::layout::hour_of;

    fn batch(offsets: std::ops::Range<i64>, extra: bool) -> RecordBatch {
        let mut fields = vec![Field::new("_offset", DataType::Int64, false)];
        let mut columns: Vec<ArrayRef> = vec![Arc::new(Int64Array::from_iter_values(offsets.clone()))];
        if extra {
            fields.push(Field::new("battery", DataType::Utf8, true));
            columns.push(Arc::new(StringArray::from_iter_values(
                offsets.map(|o| format!("b{o}")),
            )));
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).expect("batch")
    }

    fn file(start: i64, end: i64) -> RawFile {
        RawFile {
            kind: "noise".into(),
            hour: hour_of(1_780_000_000_000),
            topic: "t".into(),
            partition: 0,
            start,
            end,
        }
    }

    async fn visible_names(lake: &Lake) -> Vec<(i64, i64)> {
        let (store, root) = lake.store();
        let metas: Vec<ObjectMeta> = visible_store(store.clone())
            .list(Some(root))
            .try_collect()
            .await
            .expect("listed");
        let mut v: Vec<_> = metas
            .iter()
            .filter_map(|m| RawFile::parse(&m.location))
            .map(|f| (f.start, f.end))
            .collect();
        v.sort();
        v
    }

    #[tokio::test]
    async fn merges_settled_files_and_readers_never_see_a_row_twice() {
        let lake = Lake::new(Arc::new(InMemory::new()), Path::from("lake"), "memory://");
        lake.write_raw(&file(0, 9), vec![batch(0..10, false)])
            .await
            .expect("written");
        lake.write_raw(&file(10, 19), vec![batch(10..20, true)])
            .await
            .expect("written");
        lake.write_raw(&file(20, 29), vec![batch(20..30, true)])
            .await
            .expect("written");
        // Committed at 25: the last file is not settled yet.
        let committed = HashMap::from([(("t".to_owned(), 0), 25)]);
        let options = CompactOptions {
            grace: Duration::from_secs(3600),
            ..CompactOptions::default()
        };
        let report = lake.compact(&committed, &options).await.expect("compacted");
        assert_eq!(
            (report.merged, report.inputs, report.rows, report.deleted),
            (1, 2, 20, 0)
        );
        // The merged file shadows its inputs, which wait for their grace period.
        assert_eq!(visible_names(&lake).await, vec![(0, 19), (20, 29)]);
        assert_eq!(lake.raw_files("noise", "t").await.expect("listed").len(), 4);
        // Old rows get nulls for the column they lack.
        let (store, root) = lake.store();
        let bytes = store
            .get(&file(0, 19).path(root))
            .await
            .expect("merged")
            .bytes()
            .await
            .expect("bytes");
        let rows: Vec<RecordBatch> = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .expect("parquet")
            .build()
            .expect("reader")
            .collect::<Result<_, _>>()
            .expect("rows");
        let all = arrow::compute::concat_batches(&rows[0].schema(), &rows).expect("concat");
        assert_eq!(all.num_rows(), 20);
        assert_eq!(all.column_by_name("battery").expect("column").null_count(), 10);
        // A second run is a no-op but for the deletions, which wait.
        let again = lake.compact(&committed, &options).await.expect("compacted");
        assert_eq!((again.merged, again.deleted, again.waiting), (0, 0, 2));
        // With the grace over, the inputs go.
        let now = CompactOptions {
            grace: Duration::ZERO,
            ..options
        };
        let last = lake.compact(&committed, &now).await.expect("compacted");
        assert_eq!((last.merged, last.deleted), (0, 2));
        let left: Vec<_> = lake
            .raw_files("noise", "t")
            .await
            .expect("listed")
            .iter()
            .map(|f| (f.start, f.end))
            .collect();
        assert_eq!(left, vec![(0, 19), (20, 29)]);
    }

    #[tokio::test]
    async fn partitions_without_a_committed_offset_are_left_alone() {
        let lake = Lake::new(Arc::new(InMemory::new()), Path::from("lake"), "memory://");
        lake.write_raw(&file(0, 9), vec![batch(0..10, false)])
            .await
            .expect("written");
        lake.write_raw(&file(10, 19), vec![batch(10..20, false)])
            .await
            .expect("written");
        let report = lake
            .compact(&HashMap::new(), &CompactOptions::default())
            .await
            .expect("compacted");
        assert_eq!((report.merged, report.unsettled_partitions), (0, 1));
    }
}
