//! The lake's tables are Delta Lake tables (delta-rs): rade writes its own Parquet files and
//! makes them visible by committing them, with their statistics, to the table's transaction
//! log, together with the Kafka position each of its partitions has reached (a `txn` action,
//! app id `rade:<group>:<topic>:<partition>`, version the next offset). A file no commit
//! names is invisible to every reader and removed by vacuum.
//!
//! Tables: `raw/<kind>` (`raw_<kind>`, partitioned by `date`, `hour`), `aggregates`
//! (by `window`, `kind`, `date`) and `alerts` (by `date`).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use deltalake::DeltaTable;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Add, Remove, StructField, StructType, Transaction};
use deltalake::logstore::{LogStore, LogStoreFactory, ObjectStoreRef, StorageConfig, default_logstore};
use deltalake::protocol::{DeltaOperation, OutputMode, SaveMode};
use deltalake::{DeltaTableBuilder, DeltaTableError};
use serde_json::{Map, Value, json};
use url::Url;

use crate::location::LakeLocation;
use crate::store::Lake;
use crate::{Error, Result};

/// One of the lake's tables.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TableId {
    /// `raw_<kind>`, at `raw/<kind>/`.
    Raw(String),
    /// Closed windows of every kind, at `aggregates/`.
    Aggregates,
    /// Alert transitions, at `alerts/`.
    Alerts,
}

impl TableId {
    /// The table's directory under the lake's root.
    pub fn dir(&self) -> String {
        match self {
            TableId::Raw(kind) => format!("raw/{kind}"),
            TableId::Aggregates => "aggregates".into(),
            TableId::Alerts => "alerts".into(),
        }
    }

    /// The name queries use.
    pub fn name(&self) -> String {
        match self {
            TableId::Raw(kind) => format!("raw_{kind}"),
            TableId::Aggregates => "aggregates".into(),
            TableId::Alerts => "alerts".into(),
        }
    }

    /// The table named `name` (`raw_<kind>`, `aggregates`, `alerts`).
    pub fn parse(name: &str) -> Option<TableId> {
        match name {
            "aggregates" => Some(TableId::Aggregates),
            "alerts" => Some(TableId::Alerts),
            _ => name
                .strip_prefix("raw_")
                .filter(|k| !k.is_empty())
                .map(|k| TableId::Raw(k.to_owned())),
        }
    }

    /// The Hive partition columns, in path order (strings in the table schema).
    pub fn partition_columns(&self) -> &'static [&'static str] {
        match self {
            TableId::Raw(_) => &["date", "hour"],
            TableId::Aggregates => &["window", "kind", "date"],
            TableId::Alerts => &["date"],
        }
    }
}

/// A data file of a table, written and waiting for its commit.
#[derive(Debug, Clone, PartialEq)]
pub struct TableFile {
    pub table: TableId,
    /// Relative to the table's directory: `date=…/hour=…/<name>.parquet`.
    pub path: String,
    pub partition_values: Vec<(String, String)>,
    pub size: u64,
    /// Delta statistics (JSON): row count, min, max and null count per column.
    pub stats: String,
    /// The columns of the file.
    pub schema: SchemaRef,
}

impl TableFile {
    fn add(&self, now_ms: i64) -> Add {
        Add {
            path: self.path.clone(),
            size: self.size as i64,
            partition_values: self
                .partition_values
                .iter()
                .map(|(k, v)| (k.clone(), Some(v.clone())))
                .collect(),
            modification_time: now_ms,
            data_change: true,
            stats: Some(self.stats.clone()),
            tags: None,
            deletion_vector: None,
            base_row_id: None,
            default_row_commit_version: None,
            clustering_provider: None,
        }
    }
}

/// A file of a table as its snapshot lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveFile {
    /// Relative to the table's directory.
    pub path: String,
    pub partition_values: Vec<(String, String)>,
    pub size: i64,
    /// When its commit added it (ms since the epoch).
    pub modified_ms: i64,
}

/// The app id of a Kafka partition's position in a table.
pub fn app_id(group: &str, topic: &str, partition: i32) -> String {
    format!("rade:{group}:{topic}:{partition}")
}

/// S3 tables commit with conditional writes (`PutMode::Create`), like local ones: the default
/// log store, registered for `s3://` since rade brings its own S3 store.
#[derive(Debug, Default)]
struct ConditionalPutLogStores;

impl LogStoreFactory for ConditionalPutLogStores {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> deltalake::DeltaResult<Arc<dyn LogStore>> {
        Ok(default_logstore(prefixed_store, root_store, location, options))
    }
}

fn register_s3() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let url = Url::parse("s3://").expect("a valid scheme URL");
        deltalake::logstore::logstore_factories().insert(url, Arc::new(ConditionalPutLogStores));
    });
}

fn delta_err(table: &TableId, e: DeltaTableError) -> Error {
    Error::Table {
        table: table.name(),
        message: e.to_string(),
    }
}

/// The Delta schema of a table whose files have `file_schema`, the partition columns (strings)
/// added. Every column is nullable, so that a column one kind or schema version lacks is null
/// in its files.
pub fn table_schema(table: &TableId, file_schema: &Schema) -> Result<StructType> {
    let mut fields: Vec<Field> = file_schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    for p in table.partition_columns() {
        fields.push(Field::new(*p, DataType::Utf8, true));
    }
    (&Schema::new(fields))
        .try_into_kernel()
        .map_err(|e| Error::Table {
            table: table.name(),
            message: format!("no Delta schema for its columns: {e}"),
        })
}

impl Lake {
    /// The URL of a table's directory.
    pub fn delta_url(&self, table: &TableId) -> Result<Url> {
        let mut url = self.table_url(&format!("{}/", table.dir()))?;
        // delta-rs wants the directory without its trailing slash.
        let path = url.path().trim_end_matches('/').to_owned();
        url.set_path(&path);
        Ok(url)
    }

    fn table_handle(&self, table: &TableId) -> Result<DeltaTable> {
        let url = self.delta_url(table)?;
        if matches!(self.location(), LakeLocation::S3 { .. }) {
            register_s3();
        }
        let (store, _) = self.store();
        DeltaTableBuilder::from_url(url.clone())
            .map_err(|e| delta_err(table, e))?
            .with_storage_backend(store.clone(), url)
            .build()
            .map_err(|e| delta_err(table, e))
    }

    /// The table at its newest version; `None` when it was never created.
    pub async fn open_table(&self, table: &TableId) -> Result<Option<DeltaTable>> {
        let mut t = self.table_handle(table)?;
        match t.load().await {
            Ok(()) => Ok(Some(t)),
            Err(DeltaTableError::NotATable(_)) => Ok(None),
            // A local directory that does not exist yet reads as an invalid location.
            Err(e) => match t.verify_deltatable_existence().await {
                Ok(false) => Ok(None),
                _ => Err(delta_err(table, e)),
            },
        }
    }

    /// The table at a version or a time (RFC 3339), for reading.
    pub async fn open_table_as_of(&self, table: &TableId, as_of: &AsOf) -> Result<Option<DeltaTable>> {
        let Some(mut t) = self.open_table(table).await? else {
            return Ok(None);
        };
        match as_of {
            AsOf::Latest => {}
            AsOf::Version(v) => t.load_version(*v as u64).await.map_err(|e| delta_err(table, e))?,
            AsOf::Time(at) => t.load_with_datetime(*at).await.map_err(|e| delta_err(table, e))?,
        }
        Ok(Some(t))
    }

    /// Opens the table, creating it for files of `file_schema` when missing, and adds the
    /// columns of `file_schema` it does not have yet (a new schema version): every reader then
    /// sees them, null in older files. A column whose type changed is refused, naming it.
    pub async fn ensure_table(&self, table: &TableId, file_schema: &Schema) -> Result<DeltaTable> {
        let wanted = table_schema(table, file_schema)?;
        for _ in 0..5 {
            let existing = self.open_table(table).await?;
            let Some(t) = existing else {
                let created = self
                    .table_handle(table)?
                    .create()
                    .with_columns(wanted.fields().cloned())
                    .with_partition_columns(table.partition_columns().iter().copied())
                    .with_save_mode(SaveMode::Ignore)
                    .with_configuration_property(deltalake::TableProperty::CheckpointInterval, Some("50"))
                    .await;
                match created {
                    Ok(t) => return Ok(t),
                    // Another worker created it at the same time.
                    Err(e) if is_conflict(&e) => continue,
                    Err(e) => return Err(delta_err(table, e)),
                }
            };
            let current = t.snapshot().map_err(|e| delta_err(table, e))?.schema();
            let mut missing: Vec<StructField> = Vec::new();
            for f in wanted.fields() {
                match current.field(f.name()) {
                    Some(have) if have.data_type() == f.data_type() => {}
                    Some(have) => {
                        return Err(Error::Table {
                            table: table.name(),
                            message: format!(
                                "column {} is {} in the table and {} in the new files",
                                f.name(),
                                have.data_type(),
                                f.data_type()
                            ),
                        });
                    }
                    None => missing.push(f.clone()),
                }
            }
            if missing.is_empty() {
                return Ok(t);
            }
            tracing::info!(table = %table.name(), columns = ?missing.iter().map(|f| f.name().to_owned()).collect::<Vec<_>>(), "columns added to the table");
            match t.add_columns().with_fields(missing).await {
                Ok(t) => return Ok(t),
                Err(e) if is_conflict(&e) || e.to_string().contains("already exist") => continue,
                Err(e) => return Err(delta_err(table, e)),
            }
        }
        Err(Error::Table {
            table: table.name(),
            message: "its schema kept changing under concurrent writers".into(),
        })
    }

    /// Commits `files` (added) and `removed` (paths relative to the table) in one Delta commit
    /// with the positions `txns` (app id, version). `fence`: each app id's version the writer
    /// expects the table to hold before this commit; a commit finding another version (a
    /// successor wrote there) or racing one that sets the same app id is refused with
    /// [`Error::Fenced`] and changes nothing. Returns the table version committed.
    ///
    /// A table that does not exist yet is created for the files' columns; with no file to
    /// commit, nothing is committed to a table that does not exist (`Ok(None)`).
    pub async fn commit(
        &self,
        table: &TableId,
        files: &[TableFile],
        removed: &[LiveFile],
        txns: &[(String, i64)],
        fence: &HashMap<String, Option<i64>>,
    ) -> Result<Option<u64>> {
        let t = if files.is_empty() {
            match self.open_table(table).await? {
                Some(t) => t,
                None => return Ok(None),
            }
        } else {
            let mut fields: Vec<Field> = Vec::new();
            for f in files {
                for field in f.schema.fields() {
                    if !fields.iter().any(|have| have.name() == field.name()) {
                        fields.push(field.as_ref().clone());
                    }
                }
            }
            self.ensure_table(table, &Schema::new(fields)).await?
        };
        // The positions the table holds now: anything else than expected means another
        // member has committed this partition since.
        let state = t.snapshot().map_err(|e| delta_err(table, e))?.clone();
        for (app, expected) in fence {
            let now = position(&t, table, app).await?;
            if now != *expected && now.is_some_and(|v| expected.is_none_or(|e| v > e)) {
                return Err(Error::Fenced {
                    table: table.name(),
                    app_id: app.clone(),
                    why: format!(
                        "is at {} where this worker expected {}",
                        now.map_or("nothing".into(), |v| v.to_string()),
                        expected.map_or("nothing".into(), |v| v.to_string())
                    ),
                });
            }
        }
        let now_ms = chrono::Utc::now().timestamp_millis();
        let mut actions: Vec<Action> = files.iter().map(|f| Action::Add(f.add(now_ms))).collect();
        for r in removed {
            actions.push(Action::Remove(Remove {
                path: r.path.clone(),
                data_change: true,
                deletion_timestamp: Some(now_ms),
                extended_file_metadata: Some(true),
                partition_values: Some(
                    r.partition_values
                        .iter()
                        .map(|(k, v)| (k.clone(), Some(v.clone())))
                        .collect(),
                ),
                size: Some(r.size),
                tags: None,
                deletion_vector: None,
                base_row_id: None,
                default_row_commit_version: None,
            }));
        }
        let props = CommitProperties::default().with_application_transactions(
            txns.iter()
                .map(|(app, v)| Transaction::new_with_last_update(app, *v, Some(now_ms)))
                .collect(),
        );
        let operation = DeltaOperation::StreamingUpdate {
            output_mode: OutputMode::Append,
            query_id: "rade".into(),
            epoch_id: now_ms,
        };
        let done = CommitBuilder::from(props)
            .with_actions(actions)
            .build(Some(&state), t.log_store(), operation)
            .await;
        match done {
            Ok(c) => Ok(Some(c.version())),
            Err(e) if e.to_string().contains("oncurrent transaction") => Err(Error::Fenced {
                table: table.name(),
                app_id: txns.iter().map(|t| t.0.as_str()).collect::<Vec<_>>().join(", "),
                why: "was committed by another writer while this commit was being made".into(),
            }),
            Err(e) => Err(delta_err(table, e)),
        }
    }

    /// The versions the table holds for `apps` (`None`: never committed), and its files.
    pub async fn table_positions(&self, table: &TableId, apps: &[String]) -> Result<(Vec<Option<i64>>, Vec<LiveFile>)> {
        let Some(t) = self.open_table(table).await? else {
            return Ok((vec![None; apps.len()], Vec::new()));
        };
        let mut versions = Vec::with_capacity(apps.len());
        for app in apps {
            versions.push(position(&t, table, app).await?);
        }
        Ok((versions, live_files(&t).await.map_err(|e| delta_err(table, e))?))
    }

    /// The version the table holds for `app` (`None`: never committed, or no table), without
    /// listing its files.
    pub async fn table_position(&self, table: &TableId, app: &str) -> Result<Option<i64>> {
        match self.open_table(table).await? {
            Some(t) => position(&t, table, app).await,
            None => Ok(None),
        }
    }
}

/// The `txn` version a loaded table holds for `app`.
pub(crate) async fn position(t: &DeltaTable, table: &TableId, app: &str) -> Result<Option<i64>> {
    t.snapshot()
        .map_err(|e| delta_err(table, e))?
        .transaction_version(t.log_store().as_ref(), app)
        .await
        .map_err(|e| delta_err(table, e))
}

impl Lake {
    /// What `raw_<kind>` holds for Kafka partitions of `topic`, read from its snapshot (no
    /// listing): each partition's position (`None`: never committed by `group`) and the
    /// files of it the table names, in offset order.
    pub async fn raw_positions(
        &self,
        kind: &str,
        group: &str,
        topic: &str,
        partitions: &[i32],
    ) -> Result<HashMap<i32, (Option<i64>, Vec<crate::RawFile>)>> {
        let apps: Vec<String> = partitions.iter().map(|p| app_id(group, topic, *p)).collect();
        let (versions, files) = self.table_positions(&TableId::Raw(kind.to_owned()), &apps).await?;
        let mut out: HashMap<i32, (Option<i64>, Vec<crate::RawFile>)> = partitions
            .iter()
            .zip(versions)
            .map(|(p, v)| (*p, (v, Vec::new())))
            .collect();
        for f in files {
            if let Some(raw) = crate::RawFile::parse_in_table(kind, &f.path)
                && raw.topic == topic
                && let Some(entry) = out.get_mut(&raw.partition)
            {
                entry.1.push(raw);
            }
        }
        for (_, files) in out.values_mut() {
            files.sort_by_key(|f| (f.start, f.end, f.hour));
        }
        Ok(out)
    }

    /// The files of closed windows and alerts of `topic`/`partition` that a flush committed
    /// after the window state saved at `saved_offset`, `saved_watermark` (a crash between the
    /// two), from the tables' snapshots.
    pub async fn derived_after(
        &self,
        topic: &str,
        partition: i32,
        saved_offset: i64,
        saved_watermark: i64,
    ) -> Result<Vec<(TableId, LiveFile)>> {
        let mut found = Vec::new();
        for table in [TableId::Alerts, TableId::Aggregates] {
            let Some(t) = self.open_table(&table).await? else {
                continue;
            };
            for f in live_files(&t).await.map_err(|e| delta_err(&table, e))? {
                if let Some(d) = crate::DerivedFile::parse_in_table(&table, &f.path)
                    && d.topic == topic
                    && d.partition == partition
                    // A flush that only closed windows keeps the offset of the saved state
                    // but moves the watermark.
                    && (d.next_offset > saved_offset
                        || (d.next_offset == saved_offset && d.watermark_ms > saved_watermark))
                {
                    found.push((table.clone(), f));
                }
            }
        }
        Ok(found)
    }
}

/// Which version of the tables a query reads.
#[derive(Debug, Clone, PartialEq)]
pub enum AsOf {
    Latest,
    Version(i64),
    Time(chrono::DateTime<chrono::Utc>),
}

impl std::str::FromStr for AsOf {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if let Ok(v) = s.parse::<i64>() {
            return if v >= 0 {
                Ok(AsOf::Version(v))
            } else {
                Err(format!("{s}: a version is 0 or more"))
            };
        }
        chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| AsOf::Time(t.with_timezone(&chrono::Utc)))
            .map_err(|e| format!("{s}: neither a table version nor an RFC 3339 time ({e})"))
    }
}

pub(crate) async fn live_files(t: &DeltaTable) -> std::result::Result<Vec<LiveFile>, DeltaTableError> {
    use futures::TryStreamExt;
    let views: Vec<_> = t.get_active_add_actions_by_partitions(&[]).try_collect().await?;
    Ok(views
        .into_iter()
        .map(|v| {
            let mut partition_values: Vec<(String, String)> = v
                .partition_values_map()
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k, v)))
                .collect();
            partition_values.sort();
            LiveFile {
                path: v.path().into_owned(),
                partition_values,
                size: v.size(),
                modified_ms: v.modification_time(),
            }
        })
        .collect())
}

fn is_conflict(e: &DeltaTableError) -> bool {
    matches!(e, DeltaTableError::VersionAlreadyExists(_))
        || matches!(e, DeltaTableError::Transaction { .. })
        || e.to_string().contains("already exists")
}

/// Delta statistics of the rows of `batches` (the columns of the file): row count, and min,
/// max and null count of every column of a type Delta keeps statistics for.
pub fn stats_json(batches: &[RecordBatch]) -> String {
    let Some(schema): Option<SchemaRef> = batches.first().map(|b| b.schema()) else {
        return json!({"numRecords": 0}).to_string();
    };
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let (mut mins, mut maxs, mut nulls) = (Map::new(), Map::new(), Map::new());
    for (i, field) in schema.fields().iter().enumerate() {
        let mut null_count = 0usize;
        let mut lo: Option<Value> = None;
        let mut hi: Option<Value> = None;
        let mut keep = true;
        for b in batches {
            let col = b.column(i);
            null_count += col.null_count();
            let Some((l, h)) = min_max(col.as_ref()) else {
                if col.len() > col.null_count() {
                    keep = false;
                }
                continue;
            };
            lo = Some(match lo {
                Some(v) if cmp(&v, &l) != std::cmp::Ordering::Greater => v,
                _ => l,
            });
            hi = Some(match hi {
                Some(v) if cmp(&v, &h) != std::cmp::Ordering::Less => v,
                _ => h,
            });
        }
        nulls.insert(field.name().clone(), json!(null_count));
        if keep {
            if let Some(lo) = lo {
                mins.insert(field.name().clone(), lo);
            }
            if let Some(hi) = hi {
                maxs.insert(field.name().clone(), hi);
            }
        }
    }
    json!({"numRecords": rows, "minValues": mins, "maxValues": maxs, "nullCount": nulls}).to_string()
}

fn cmp(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .zip(y.as_f64())
            .and_then(|(x, y)| x.partial_cmp(&y))
            .unwrap_or(std::cmp::Ordering::Equal),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ => std::cmp::Ordering::Equal,
    }
}

/// Min and max of a column's non-null values as Delta writes them in statistics; `None` for
/// types without statistics (binary) or a column of nulls only or with NaN.
fn min_max(col: &dyn Array) -> Option<(Value, Value)> {
    use arrow::compute::{max, max_boolean, max_string, min, min_boolean, min_string};
    use arrow::datatypes::*;
    use arrow::datatypes::TimeUnit;
    fn num<T: ArrowNumericType>(col: &dyn Array) -> Option<(Value, Value)>
    where
        T::Native: Into<Value>,
    {
        let a = col.as_primitive::<T>();
        Some((min(a)?.into(), max(a)?.into()))
    }
    fn float<T: ArrowNumericType>(col: &dyn Array) -> Option<(Value, Value)>
    where
        T::Native: Into<f64>,
    {
        let a = col.as_primitive::<T>();
        let (lo, hi): (f64, f64) = (min(a)?.into(), max(a)?.into());
        if lo.is_nan() || hi.is_nan() {
            return None;
        }
        Some((json!(lo), json!(hi)))
    }
    match col.data_type() {
        DataType::Int8 => num::<Int8Type>(col),
        DataType::Int16 => num::<Int16Type>(col),
        DataType::Int32 => num::<Int32Type>(col),
        DataType::Int64 => num::<Int64Type>(col),
        DataType::Float32 => float::<Float32Type>(col),
        DataType::Float64 => float::<Float64Type>(col),
        DataType::Boolean => {
            let a = col.as_boolean();
            Some((json!(min_boolean(a)?), json!(max_boolean(a)?)))
        }
        DataType::Utf8 => {
            let a = col.as_string::<i32>();
            // Delta truncates long strings in statistics; rade's strings are short, longer
            // ones get no statistics rather than a wrong bound.
            let (lo, hi) = (min_string(a)?, max_string(a)?);
            (lo.len() <= 64 && hi.len() <= 64).then(|| (json!(lo), json!(hi)))
        }
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            let a = col.as_primitive::<TimestampMillisecondType>();
            let fmt = |ms: i64| {
                chrono::DateTime::from_timestamp_millis(ms)
                    .map(|t| json!(t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()))
            };
            Some((fmt(min(a)?)?, fmt(max(a)?)?))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, StringArray, TimestampMillisecondArray};

    #[test]
    fn statistics_of_a_file_as_delta_writes_them() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("sensor_id", DataType::Utf8, false),
            Field::new("height", DataType::Float64, true),
            Field::new(
                "observed_at",
                DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, Some("UTC".into())),
                false,
            ),
        ]));
        let b = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["b", "a"])),
                Arc::new(Float64Array::from(vec![Some(2.5), None])),
                Arc::new(TimestampMillisecondArray::from(vec![1_780_000_000_000, 1_780_000_000_001]).with_timezone("UTC")),
            ],
        )
        .expect("batch");
        let s: Value = serde_json::from_str(&stats_json(&[b])).expect("json");
        assert_eq!(s["numRecords"], 2);
        assert_eq!(s["minValues"]["sensor_id"], "a");
        assert_eq!(s["maxValues"]["height"], 2.5);
        assert_eq!(s["nullCount"]["height"], 1);
        assert_eq!(s["minValues"]["observed_at"], "2026-05-28T20:26:40.000Z");
        assert_eq!(s["maxValues"]["observed_at"], "2026-05-28T20:26:40.001Z");
    }

    #[test]
    fn table_names() {
        assert_eq!(TableId::parse("raw_noise"), Some(TableId::Raw("noise".into())));
        assert_eq!(TableId::parse("alerts"), Some(TableId::Alerts));
        assert_eq!(TableId::parse("raw_"), None);
        assert_eq!(TableId::Raw("noise".into()).dir(), "raw/noise");
    }
}
