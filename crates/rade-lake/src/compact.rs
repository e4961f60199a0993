//! Compaction of raw files: many small files of one partition and hour become one.
//!
//! # The protocol
//! A raw file `<topic>__p<n>__<start>-<end>.parquet` holds every row of its Kafka partition
//! and event hour with an offset in `[start, end]`. Workers cut their open files short where a
//! file of the lake starts (a replay), so the files of one partition and hour never overlap.
//!
//! 0. **One run at a time**: a run holds the lease `_rade/compact.lease` (create-only, with
//!    its expiry); another run finds it and stops. An expired lease is taken over.
//! 1. **Only settled files are merged**: those whose `end` is below the consumer group's
//!    committed offset for their partition. No worker will write an offset in their range
//!    again: a replay starts at the committed offset.
//! 2. **The merged file is written create-only**, named by the range of its inputs and marked
//!    merged (`…__<start>-<end>__m.parquet`). Its inputs are a run of consecutive unmerged
//!    settled files; any other file ends the run, so the merged range holds exactly them.
//! 3. **Readers skip hidden files**: those inside a merged file's range. `rade query` lists
//!    through [`visible_store`], so a listing that sees the merged file and its inputs reads
//!    the merged file only: no row is seen twice. A worker's recovery reads both and finds
//!    the same rows durable either way.
//! 4. **Inputs are deleted after a grace period** (`grace`, 5 min by default), counted from
//!    the merged file's creation: a query that listed the inputs before the merged file
//!    existed has finished reading them by then, so no row goes missing under it.
//!
//! A crash at any step leaves a lake that readers see whole: before step 2 nothing changed;
//! after it the merged file hides its inputs, and the next run deletes them. Plain Hive
//! readers (DuckDB, pyarrow) that do not skip hidden files may see a partition-hour twice
//! between steps 2 and 4; they can deduplicate on the lineage columns, or compaction can
//! run with a grace of zero when nothing reads.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, new_null_array};
use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::geo::FileWriter;
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
    /// How long the compaction lease lasts; a run renews it halfway, so a run that dies
    /// blocks the next ones this long at most.
    pub lease: Duration,
}

impl Default for CompactOptions {
    fn default() -> Self {
        CompactOptions {
            min_files: 2,
            target_size: 128 * 1024 * 1024,
            grace: Duration::from_secs(300),
            dry_run: false,
            lease: Duration::from_secs(120),
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
    /// Partition-hours that could not be merged, and why.
    pub failed: Vec<String>,
}

#[derive(Debug, Clone)]
struct Listed {
    file: RawFile,
    meta: ObjectMeta,
}

/// (kind, hour, topic, partition): the files that may be merged together.
type Group = (String, i64, String, i32);

fn group(f: &RawFile) -> Group {
    (f.kind.clone(), f.hour, f.topic.clone(), f.partition)
}

impl Lake {
    /// Merges the settled small raw files of each partition and hour, and deletes the files
    /// that merged files have hidden for longer than the grace period. `committed` holds
    /// the consumer group's committed offset per (topic, partition); partitions without one
    /// are left alone. A partition-hour that cannot be merged (an unreadable file, columns
    /// that do not convert) is reported and skipped; the others go on.
    pub async fn compact(
        &self,
        committed: &HashMap<(String, i32), i64>,
        options: &CompactOptions,
    ) -> Result<CompactReport> {
        let lease = if options.dry_run {
            None
        } else {
            Some(self.take_lease(options).await?)
        };
        let metas = self.list_all(&self.store().1.clone().join("raw")).await?;
        let mut groups: BTreeMap<Group, Vec<Listed>> = BTreeMap::new();
        for meta in metas {
            if let Some(file) = RawFile::parse(&meta.location) {
                groups.entry(group(&file)).or_default().push(Listed { file, meta });
            }
        }
        let mut report = CompactReport::default();
        let mut unsettled = std::collections::HashSet::new();
        let mut renewed = std::time::Instant::now();
        for ((_, _, topic, partition), files) in groups {
            // The lease is renewed halfway through its time: a run that dies frees it soon.
            if let Some(lease) = &lease
                && renewed.elapsed() >= options.lease / 2
            {
                self.renew_lease(lease, options).await?;
                renewed = std::time::Instant::now();
            }
            let settled_before = committed.get(&(topic.clone(), partition)).copied();
            if settled_before.is_none() {
                unsettled.insert((topic.clone(), partition));
            }
            if let Err(e) = self.compact_group(files, settled_before, options, &mut report).await {
                tracing::warn!(error = %e, "a partition-hour was not compacted");
                report.failed.push(e.to_string());
            }
        }
        report.unsettled_partitions = unsettled.len();
        if let Some(lease) = lease {
            self.delete_object(&lease).await?;
        }
        Ok(report)
    }

    /// One partition and hour: deletes the files hidden long enough, then merges runs of
    /// settled unmerged files.
    async fn compact_group(
        &self,
        mut files: Vec<Listed>,
        settled_before: Option<i64>,
        options: &CompactOptions,
        report: &mut CompactReport,
    ) -> Result<()> {
        let now = chrono::Utc::now();
        files.sort_by_key(|l| (l.file.start, std::cmp::Reverse(l.file.end)));
        // Step 4: files inside a merged file's range go once that file is `grace` old.
        let mut visible: Vec<Listed> = Vec::new();
        for l in &files {
            let cover = files
                .iter()
                .filter(|m| hides(&m.file, &l.file))
                .map(|m| m.meta.last_modified)
                .min();
            let Some(merged_at) = cover else {
                visible.push(l.clone());
                continue;
            };
            if (now - merged_at).to_std().unwrap_or_default() >= options.grace {
                if !options.dry_run {
                    self.delete_object(&l.meta.location).await?;
                }
                report.deleted += 1;
            } else {
                report.waiting += 1;
            }
        }
        // Steps 1 and 2: runs of consecutive visible files that are settled and not merged
        // yet. Any other visible file ends a run, so a merged file's range holds its inputs
        // and nothing else (the files of an hour never overlap).
        let Some(settled_before) = settled_before else {
            return Ok(());
        };
        let mut candidates: Vec<Vec<Listed>> = vec![Vec::new()];
        for l in visible {
            if !l.file.merged && l.file.end < settled_before {
                candidates.last_mut().expect("never empty").push(l);
            } else {
                candidates.push(Vec::new());
            }
        }
        for run in candidates.into_iter().flat_map(|c| runs(c, options.target_size)) {
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
        Ok(())
    }

    async fn renew_lease(&self, path: &Path, options: &CompactOptions) -> Result<()> {
        let until = chrono::Utc::now().timestamp_millis() + options.lease.as_millis() as i64;
        self.put_object(path, PutPayload::from(until.to_string())).await
    }

    /// Takes the lake's compaction lease, `_rade/compact.lease`: created only if absent, it
    /// holds the time it expires. A lease past its time (a compaction that died) is taken
    /// over. Two compactions at once would write merged files whose ranges overlap.
    async fn take_lease(&self, options: &CompactOptions) -> Result<Path> {
        let path = self.store().1.clone().join("_rade").join("compact.lease");
        let ttl = options.lease.as_millis() as i64;
        for _ in 0..2 {
            let until = chrono::Utc::now().timestamp_millis() + ttl;
            match self
                .put_create_only(path.clone(), Bytes::from(until.to_string()))
                .await?
            {
                Written::Created { .. } => return Ok(path),
                Written::AlreadyThere => {}
            }
            let held_until = match self.read_object(&path).await {
                Ok(b) => std::str::from_utf8(&b)
                    .ok()
                    .and_then(|t| t.trim().parse::<i64>().ok())
                    .unwrap_or(0),
                // Released between the two requests: try again.
                Err(Error::Store {
                    source: object_store::Error::NotFound { .. },
                    ..
                }) => continue,
                Err(e) => return Err(e),
            };
            if held_until > chrono::Utc::now().timestamp_millis() {
                let at = chrono::DateTime::from_timestamp_millis(held_until).unwrap_or_default();
                return Err(Error::Busy(format!(
                    "another compaction holds {path} until {at}; if none runs, delete that object"
                )));
            }
            tracing::warn!(%path, "taking over the lease of a compaction that did not finish");
            self.delete_object(&path).await?;
        }
        Err(Error::Busy(format!("{path}: another compaction took the lease")))
    }

    /// Writes one file with every row of `run` (files of one partition and hour, in offset
    /// order), named by the union of their ranges. Files written before a schema change lack
    /// its new columns: they are filled with nulls.
    async fn merge(&self, run: &[Listed]) -> Result<(u64, Written)> {
        let mut batches = Vec::new();
        for l in run {
            batches.push((l.meta.location.to_string(), self.read_object(&l.meta.location).await?));
        }
        let first = &run[0].file;
        let merged = RawFile {
            start: first.start,
            end: run.iter().map(|l| l.file.end).max().unwrap_or(first.end),
            merged: true,
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

/// Decodes the inputs and encodes them as one Parquet file. Inputs written before a schema
/// change differ: the columns are those of the newest input (the last), then any that only
/// older ones have; a column an input lacks is null there, and older types are cast to the
/// newest (an Avro int widened to long).
fn rewrite(
    inputs: Vec<(String, Bytes)>,
    props: parquet::file::properties::WriterProperties,
) -> Result<(u64, Bytes), parquet::errors::ParquetError> {
    let general = |m: String| parquet::errors::ParquetError::General(m);
    let mut readers = Vec::with_capacity(inputs.len());
    let mut schemas: Vec<SchemaRef> = Vec::with_capacity(inputs.len());
    for (path, bytes) in inputs {
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| general(format!("{path}: {e}")))?;
        schemas.push(builder.schema().clone());
        readers.push((path, builder.with_batch_size(64 * 1024).build()?));
    }
    let mut fields: Vec<Field> = Vec::new();
    for schema in schemas.iter().rev() {
        for f in schema.fields() {
            if !fields.iter().any(|g| g.name() == f.name()) {
                fields.push(f.as_ref().clone());
            }
        }
    }
    let fields: Vec<Field> = fields
        .into_iter()
        .map(|f| {
            let everywhere = schemas.iter().all(|s| s.field_with_name(f.name()).is_ok());
            let nullable = f.is_nullable() || !everywhere;
            f.with_nullable(nullable)
        })
        .collect();
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    let mut out = Vec::new();
    // Raw files: the GeoParquet point column is derived again from latitude and longitude.
    let mut writer = FileWriter::try_new(&mut out, &schema, props, true)?;
    let mut rows = 0;
    for (path, reader) in readers {
        for batch in reader {
            let batch = conform(&batch?, &schema).map_err(|e| general(format!("{path}: {e}")))?;
            rows += batch.num_rows() as u64;
            writer.write(&batch)?;
        }
    }
    writer.close()?;
    Ok((rows, Bytes::from(out)))
}

/// `batch` with the columns of `schema`, in its order; a column it lacks is null, one of
/// another type is cast.
fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, arrow::error::ArrowError> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => Ok(c.clone()),
            Some(c) => arrow::compute::cast(c, f.data_type()),
            None => Ok(new_null_array(f.data_type(), batch.num_rows())),
        })
        .collect::<Result<Vec<ArrayRef>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns)
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

/// Drops the raw files whose range lies inside a listed merged file's of the same partition
/// and hour.
fn without_shadowed(metas: Vec<ObjectMeta>) -> Vec<ObjectMeta> {
    let parsed: Vec<Option<RawFile>> = metas.iter().map(|m| RawFile::parse(&m.location)).collect();
    let mut merged: HashMap<Group, Vec<&RawFile>> = HashMap::new();
    for f in parsed.iter().flatten().filter(|f| f.merged) {
        merged.entry(group(f)).or_default().push(f);
    }
    let keep: Vec<bool> = parsed
        .iter()
        .map(|f| {
            let Some(f) = f else { return true };
            !merged.get(&group(f)).is_some_and(|ms| ms.iter().any(|m| hides(m, f)))
        })
        .collect();
    metas
        .into_iter()
        .zip(keep)
        .filter(|(_, keep)| *keep)
        .map(|(m, _)| m)
        .collect()
}

/// Whether merged file `m` replaces `f`: `f` is another file inside its range. Only merged
/// files hide others: a file a worker wrote may span a file it does not hold.
fn hides(m: &RawFile, f: &RawFile) -> bool {
    m.merged && m != f && m.start <= f.start && f.end <= m.end
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
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    use super::*;
    use crate::layout::hour_of;

    fn memory_lake() -> Lake {
        Lake::new(
            Arc::new(InMemory::new()),
            Path::from("lake"),
            crate::LakeLocation::Memory,
        )
    }

    async fn write(lake: &Lake, file: RawFile, batch: RecordBatch) {
        lake.write_raw(&file, vec![batch]).await.expect("written");
    }

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
            merged: false,
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
        let lake = memory_lake();
        write(&lake, file(0, 9), batch(0..10, false)).await;
        write(&lake, file(10, 19), batch(10..20, true)).await;
        write(&lake, file(20, 29), batch(20..30, true)).await;
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
            .get(
                &RawFile {
                    merged: true,
                    ..file(0, 19)
                }
                .path(root),
            )
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
    async fn only_merged_files_hide_others_and_one_compaction_runs_at_a_time() {
        let lake = memory_lake();
        // A replay before the worker cut its files short could span a file it does not hold.
        write(&lake, file(0, 9), batch(0..7, false)).await;
        write(&lake, file(3, 5), batch(7..10, false)).await;
        assert_eq!(visible_names(&lake).await, vec![(0, 9), (3, 5)]);
        // A lease held by another run: this one refuses to start.
        let (store, root) = lake.store();
        let lease = root.clone().join("_rade").join("compact.lease");
        let later = chrono::Utc::now().timestamp_millis() + 60_000;
        store
            .put(&lease, PutPayload::from(later.to_string()))
            .await
            .expect("lease");
        let committed = HashMap::from([(("t".to_owned(), 0), 10)]);
        let now = CompactOptions {
            grace: Duration::ZERO,
            ..CompactOptions::default()
        };
        assert!(matches!(lake.compact(&committed, &now).await, Err(Error::Busy(_))));
        // An expired lease (a run that died) is taken over.
        store
            .put(&lease, PutPayload::from((later - 120_000).to_string()))
            .await
            .expect("lease");
        let report = lake.compact(&committed, &now).await.expect("compacted");
        assert_eq!(
            (report.merged, report.inputs, report.rows, report.deleted),
            (1, 2, 10, 2)
        );
        let left = lake.raw_files("noise", "t").await.expect("listed");
        assert_eq!(left.len(), 1);
        assert!(left[0].merged && (left[0].start, left[0].end) == (0, 9));
        assert!(matches!(
            store.head(&lease).await,
            Err(object_store::Error::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn partitions_without_a_committed_offset_are_left_alone() {
        let lake = memory_lake();
        write(&lake, file(0, 9), batch(0..10, false)).await;
        write(&lake, file(10, 19), batch(10..20, false)).await;
        let report = lake
            .compact(&HashMap::new(), &CompactOptions::default())
            .await
            .expect("compacted");
        assert_eq!((report.merged, report.unsettled_partitions), (0, 1));
    }
}
