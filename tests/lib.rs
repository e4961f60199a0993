//! Helpers of the integration tests: the real broker that `make test` starts, unique
//! topics per test, producing simulated traffic with known positions, and reading back
//! the lake, the DLQ and the committed offsets to check them independently of rade.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{AsArray, 
    Array, BinaryArray, BooleanArray, Float32Array, Float64Array, Int32Array, Int64Array, StringArray,
    TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rade_schema::{Catalog, WireFormat};
use rade_sim::SimRecord;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value as J;

/// The broker of `make test` (deploy/local/kafka.sh); tests fail, never skip, without it.
pub fn bootstrap() -> String {
    std::env::var("RADE_TEST_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// A name no other test or run uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{:08x}", std::process::id(), rand::random::<u32>())
}

/// The repository's schema catalog.
pub fn schemas_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../schemas")
        .canonicalize()
        .expect("schemas/ exists")
}

pub fn catalog() -> Arc<Catalog> {
    Arc::new(Catalog::load(&schemas_dir()).expect("the shipped schemas load"))
}

/// The alert topic of a test, named after its DLQ.
pub fn alerts_topic(dlq: &str) -> String {
    format!("{}.alerts", dlq.trim_end_matches(".dlq"))
}

/// The shipped rules, `rules/` at the repository root.
pub fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules")
}

/// The `rade` binary of this build (built by `cargo build --workspace` before the tests);
/// `RADE_BIN` names another one (a copy that a parallel build of the shared target
/// directory cannot replace under the tests).
pub fn rade_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("RADE_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps/..");
    let bin = dir.join("rade");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p rade` first (make test does)",
        bin.display()
    );
    bin
}

/// Polls `cond` until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    cond()
}

fn client() -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap());
    c
}

/// Creates topics with `partitions` partitions each and waits until they are usable.
pub async fn create_topics(names: &[String], partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = client().create().expect("admin client");
    let topics: Vec<_> = names
        .iter()
        .map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(1)))
        .collect();
    let results = admin
        .create_topics(
            &topics,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await;
    for r in results.expect("create_topics request") {
        r.expect("topic created");
    }
    let consumer: BaseConsumer = client().create().expect("consumer");
    for n in names {
        assert!(
            wait_until(Duration::from_secs(30), || consumer
                .fetch_metadata(Some(n), Duration::from_secs(5))
                .map(|m| m
                    .topics()
                    .first()
                    .is_some_and(|t| t.partitions().len() == partitions as usize && t.error().is_none()))
                .unwrap_or(false)),
            "topic {n} never became visible"
        );
    }
}

/// A produced record with the position the broker gave it.
#[derive(Debug, Clone)]
pub struct Produced {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub record: SimRecord,
}

/// Produces every record to `<prefix><kind>` and returns where each landed.
pub async fn produce(prefix: &str, records: Vec<SimRecord>) -> Vec<Produced> {
    let producer: FutureProducer = client().set("linger.ms", "5").create().expect("producer");
    let mut pending = Vec::with_capacity(records.len());
    for r in records {
        let topic = format!("{prefix}{}", r.kind);
        let mut rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&topic).key(&r.key);
        if let Some(v) = &r.value {
            rec = rec.payload(v);
        }
        let delivery = producer.send_result(rec).map_err(|(e, _)| e).expect("enqueued");
        pending.push((delivery, topic.clone(), r));
    }
    let mut out = Vec::with_capacity(pending.len());
    for (delivery, topic, record) in pending {
        let d = delivery.await.expect("delivery not cancelled").expect("delivered");
        out.push(Produced {
            topic,
            partition: d.partition,
            offset: d.offset,
            record,
        });
    }
    out
}

/// Writes a worker config for a test into `dir` and returns its path.
pub fn write_config(
    dir: &Path,
    prefix: &str,
    kinds: &[&str],
    group: &str,
    dlq: &str,
    lake: &Path,
    extra: &str,
) -> PathBuf {
    let kinds: Vec<String> = kinds.iter().map(|k| format!("\"{k}\"")).collect();
    // Windows use the shipped rules and a per-test alert topic; `extra` may add its own keys.
    let mut windows = format!("[windows]\nalerts_topic = \"{}\"\n", alerts_topic(dlq));
    if !extra.contains("rules_dir") {
        windows.push_str(&format!("rules_dir = \"{}\"\n", rules_dir().display()));
    }
    let extra = if extra.contains("[windows]") {
        extra.replacen("[windows]\n", &windows, 1)
    } else {
        format!("{windows}{extra}")
    };
    let text = format!(
        r#"[kafka]
bootstrap_servers = "{}"
group_id = "{group}"
raw_topic_prefix = "{prefix}"
kinds = [{}]
dlq_topic = "{dlq}"

[worker]
flush_interval = "1s"
roll_interval = "1s"
connect_timeout = "10s"
shutdown_timeout = "30s"

[lake]
url = "{}"

[schemas]
dir = "{}"

[telemetry]
listen = "127.0.0.1:0"
{extra}"#,
        bootstrap(),
        kinds.join(", "),
        lake.display(),
        schemas_dir().display()
    );
    let path = dir.join("rade.toml");
    std::fs::write(&path, text).expect("config written");
    path
}

/// Starts `rade <args>`; its stderr goes to `log`.
pub fn spawn_rade(args: &[&str], log: &Path) -> Child {
    let log = std::fs::File::create(log).expect("log file");
    Command::new(rade_bin())
        .args(args)
        .env("RUST_LOG", RUST_LOG)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("rade starts")
}

/// Waits for a child up to `timeout`; kills it and fails past that.
pub fn wait_exit(child: &mut Child, timeout: Duration, log: &Path) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "rade did not exit within {timeout:?}; log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends a signal to a child process.
pub fn signal(child: &Child, sig: i32) {
    // The workspace forbids unsafe code, so no libc::kill: the kill command does the same.
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{sig} failed");
}

/// One lake row: its lineage position and every column as JSON.
#[derive(Debug, Clone)]
pub struct LakeRow {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub kind: String,
    pub values: BTreeMap<String, J>,
}

/// The log filter of the rade processes the tests start: rade's default (info; librdkafka and
/// delta-rs at warn, the Delta kernel's snapshot chatter off).
pub const RUST_LOG: &str = "info,rdkafka=warn,deltalake_core=warn,buoyant_kernel=off,buoyant_kernel_engine=off";

/// Every Parquet file under `dir`, recursively.
pub fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn cell(array: &dyn Array, i: usize) -> J {
    if array.is_null(i) {
        return J::Null;
    }
    let any = array.as_any();
    match array.data_type() {
        DataType::Float64 => serde_json::json!(any.downcast_ref::<Float64Array>().expect("f64").value(i)),
        DataType::Float32 => serde_json::json!(any.downcast_ref::<Float32Array>().expect("f32").value(i) as f64),
        DataType::Int32 => serde_json::json!(any.downcast_ref::<Int32Array>().expect("i32").value(i)),
        DataType::Int64 => serde_json::json!(any.downcast_ref::<Int64Array>().expect("i64").value(i)),
        DataType::Boolean => serde_json::json!(any.downcast_ref::<BooleanArray>().expect("bool").value(i)),
        DataType::Utf8 => serde_json::json!(any.downcast_ref::<StringArray>().expect("utf8").value(i)),
        // Files a compaction rewrote (delta-rs's writer) hold views and the table's microseconds.
        DataType::Utf8View => serde_json::json!(array.as_string_view().value(i)),
        DataType::Timestamp(TimeUnit::Microsecond, _) => serde_json::json!(
            array.as_primitive::<arrow::datatypes::TimestampMicrosecondType>().value(i).div_euclid(1000)
        ),
        DataType::Timestamp(_, _) => {
            serde_json::json!(any.downcast_ref::<TimestampMillisecondArray>().expect("ts ms").value(i))
        }
        DataType::BinaryView => match wkb_point(array.as_binary_view().value(i)) {
            Some((x, y)) => serde_json::json!({"x": x, "y": y}),
            None => panic!("a geometry that is not a little-endian 2D WKB point"),
        },
        // The GeoParquet `geometry` column: a WKB point, read here on its own (see `wkb_point`).
        DataType::Binary => match wkb_point(any.downcast_ref::<BinaryArray>().expect("binary").value(i)) {
            Some((x, y)) => serde_json::json!({"x": x, "y": y}),
            None => panic!("a geometry that is not a little-endian 2D WKB point"),
        },
        other => panic!("unexpected lake column type {other}"),
    }
}

/// (x, y) of a WKB point (OGC Simple Features: byte order 1 = little-endian, type 1 = Point,
/// then two doubles), decoded by hand so that the lake is checked against the spec itself.
pub fn wkb_point(wkb: &[u8]) -> Option<(f64, f64)> {
    if wkb.len() != 21 || wkb[0] != 1 || wkb[1..5] != [1, 0, 0, 0] {
        return None;
    }
    let x = f64::from_le_bytes(wkb[5..13].try_into().ok()?);
    let y = f64::from_le_bytes(wkb[13..21].try_into().ok()?);
    Some((x, y))
}

/// Every action of a Delta table's log, commit by commit in version order (each
/// `_delta_log/<version>.json`, one JSON action per line), read by hand so that the lake is
/// checked against the Delta protocol itself rather than through delta-rs. Empty when the
/// directory is not a table.
fn delta_actions(table: &Path) -> Vec<J> {
    let mut commits: Vec<PathBuf> = std::fs::read_dir(table.join("_delta_log"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    commits.retain(|p| {
        p.extension().is_some_and(|x| x == "json")
            && p.file_stem()
                .and_then(|s| s.to_str())
                .is_some_and(|s| s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit()))
    });
    commits.sort();
    commits
        .iter()
        .flat_map(|commit| {
            let text = std::fs::read_to_string(commit).expect("a commit of the log");
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| serde_json::from_str::<J>(l).expect("a JSON action per line"))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A path of the log (a URI, RFC 2396), percent-decoded.
fn uri_path(p: &str) -> String {
    let (b, mut out, mut i) = (p.as_bytes(), Vec::new(), 0);
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).expect("hex");
            out.push(u8::from_str_radix(hex, 16).expect("hex"));
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).expect("utf-8 path")
}

/// The data files a Delta table names at its newest version: its log's `add` and `remove`
/// actions, applied in order.
pub fn delta_files(table: &Path) -> Vec<PathBuf> {
    let mut live = std::collections::BTreeSet::new();
    for action in delta_actions(table) {
        if let Some(add) = action.get("add") {
            live.insert(uri_path(add["path"].as_str().expect("a path")));
        } else if let Some(remove) = action.get("remove") {
            live.remove(&uri_path(remove["path"].as_str().expect("a path")));
        }
    }
    live.into_iter().map(|p| table.join(p)).collect()
}

/// The positions a Delta table holds: the newest `txn` version of each app id in its log
/// (`rade:<group>:<topic>:<partition>` for a raw table).
pub fn delta_txns(table: &Path) -> BTreeMap<String, i64> {
    delta_actions(table)
        .iter()
        .filter_map(|a| a.get("txn"))
        .map(|txn| {
            (
                txn["appId"].as_str().expect("an app id").to_owned(),
                txn["version"].as_i64().expect("a version"),
            )
        })
        .collect()
}

/// The raw tables of a lake: (kind, table directory).
pub fn raw_tables(lake: &Path) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(lake.join("raw"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().join("_delta_log").is_dir())
                .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Reads every row of the raw tables under `lake` (the files their logs name), with the kind
/// from the table's directory. A row with a position must carry it as its `geometry` point too
/// (x = longitude, y = latitude).
pub fn read_lake(lake: &Path) -> Vec<LakeRow> {
    let mut rows = Vec::new();
    let files: Vec<(String, PathBuf)> = raw_tables(lake)
        .into_iter()
        .flat_map(|(kind, dir)| delta_files(&dir).into_iter().map(move |f| (kind.clone(), f)))
        .collect();
    for (kind, path) in files {
        let file = std::fs::File::open(&path).expect("open parquet");
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .expect("parquet")
            .build()
            .expect("reader");
        for batch in reader {
            let batch = batch.expect("batch");
            let schema = batch.schema();
            for i in 0..batch.num_rows() {
                let values: BTreeMap<String, J> = schema
                    .fields()
                    .iter()
                    .zip(batch.columns())
                    .map(|(f, c)| (f.name().clone(), cell(c.as_ref(), i)))
                    .collect();
                if let (Some(lat), Some(lon)) = (values.get("latitude"), values.get("longitude"))
                    && !lat.is_null()
                {
                    assert_eq!(
                        values.get("geometry"),
                        Some(&serde_json::json!({"x": lon, "y": lat})),
                        "the geometry of a row of {} is its position",
                        path.display()
                    );
                }
                rows.push(LakeRow {
                    topic: values["_topic"].as_str().expect("topic").to_owned(),
                    partition: values["_partition"].as_i64().expect("partition") as i32,
                    offset: values["_offset"].as_i64().expect("offset"),
                    kind: kind.clone(),
                    values,
                });
            }
        }
    }
    rows
}

/// A message read back from the DLQ.
#[derive(Debug, Clone)]
pub struct DlqMessage {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: BTreeMap<String, String>,
}

/// Reads the whole DLQ topic (every partition, from the beginning to its end).
pub fn read_topic(topic: &str) -> Vec<DlqMessage> {
    let consumer: BaseConsumer = client()
        .set("group.id", unique("it-reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let meta = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut tpl = TopicPartitionList::new();
    let mut remaining = 0i64;
    for p in meta.topics()[0].partitions() {
        let (low, high) = consumer
            .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
            .expect("watermarks");
        remaining += high - low;
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning).expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while (out.len() as i64) < remaining && Instant::now() < deadline {
        let Some(m) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let m = m.expect("message");
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|x| {
                        (
                            x.key.to_owned(),
                            String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(DlqMessage {
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            headers,
        });
    }
    assert_eq!(
        out.len() as i64,
        remaining,
        "could not read the whole DLQ topic {topic}"
    );
    out
}

/// The committed offset of `group` on each partition of `topic`, and each partition's end.
pub fn committed_and_ends(group: &str, topic: &str) -> Vec<(i32, Option<i64>, i64)> {
    let consumer: BaseConsumer = client().set("group.id", group).create().expect("consumer");
    let meta = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut tpl = TopicPartitionList::new();
    for p in meta.topics()[0].partitions() {
        tpl.add_partition(topic, p.id());
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    committed
        .elements()
        .iter()
        .map(|e| {
            let (_, high) = consumer
                .fetch_watermarks(topic, e.partition(), Duration::from_secs(10))
                .expect("watermarks");
            let c = match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            };
            (e.partition(), c, high)
        })
        .collect()
}

/// The fields of an original message, parsed without rade: apache-avro for Avro, serde_json
/// for JSON; timestamps as epoch milliseconds.
pub fn original_fields(catalog: &Catalog, kind: &str, value: &[u8]) -> BTreeMap<String, J> {
    use apache_avro::types::Value as A;
    let schema = catalog.kind(kind).expect("kind");
    fn avro_json(v: &A) -> J {
        match v {
            A::Null => J::Null,
            A::Boolean(b) => J::from(*b),
            A::Int(i) => J::from(*i),
            A::Long(i) | A::TimestampMillis(i) => J::from(*i),
            A::Float(f) => J::from(*f as f64),
            A::Double(f) => J::from(*f),
            A::String(s) => J::from(s.as_str()),
            A::Enum(_, s) => J::from(s.as_str()),
            A::Union(_, inner) => avro_json(inner),
            other => panic!("unexpected Avro value {other:?}"),
        }
    }
    match WireFormat::detect(value).expect("a known format") {
        WireFormat::Confluent | WireFormat::SingleObject => {
            let skip = if value[0] == 0 { 5 } else { 10 };
            let mut body = &value[skip..];
            let A::Record(fields) = apache_avro::from_avro_datum(&schema.avro, &mut body, None).expect("valid Avro")
            else {
                panic!("not a record")
            };
            fields.iter().map(|(k, v)| (k.clone(), avro_json(v))).collect()
        }
        WireFormat::Json => {
            let J::Object(map) = serde_json::from_slice::<J>(value).expect("JSON") else {
                panic!("not an object")
            };
            schema
                .fields
                .iter()
                .map(|f| {
                    let v = map.get(&f.name).cloned().unwrap_or(J::Null);
                    let v = match (&v, f.name.as_str()) {
                        (J::String(s), "observed_at") => J::from(
                            chrono::DateTime::parse_from_rfc3339(s)
                                .expect("RFC 3339")
                                .timestamp_millis(),
                        ),
                        (J::Number(n), _) if matches!(f.ty, rade_schema::FieldType::Double) => {
                            J::from(n.as_f64().expect("f64"))
                        }
                        _ => v,
                    };
                    (f.name.clone(), v)
                })
                .collect()
        }
    }
}

/// What the checks of [`check_lake_and_dlq`] found.
#[derive(Debug, Default)]
pub struct Checked {
    pub valid: usize,
    pub rejected: usize,
    pub dlq_duplicates: usize,
}

/// Checks the promise of the pipeline for `produced`: each valid record is in the lake exactly
/// once with the values of the original message, each invalid one is in the DLQ with its
/// reason, key and original bytes, and nothing else is in either.
pub fn check_lake_and_dlq(catalog: &Catalog, produced: &[Produced], lake: &[LakeRow], dlq: &[DlqMessage]) -> Checked {
    use std::collections::HashMap;
    let mut rows: HashMap<(String, i32, i64), &LakeRow> = HashMap::new();
    for r in lake {
        let previous = rows.insert((r.topic.clone(), r.partition, r.offset), r);
        assert!(
            previous.is_none(),
            "duplicate lake row for {}/{}@{}",
            r.topic,
            r.partition,
            r.offset
        );
    }
    let mut dead: HashMap<(String, i32, i64), Vec<&DlqMessage>> = HashMap::new();
    for m in dlq {
        let h = |k: &str| {
            m.headers
                .get(k)
                .unwrap_or_else(|| panic!("DLQ message without header {k}: {:?}", m.headers))
        };
        let pos = (
            h("rade.source.topic").clone(),
            h("rade.source.partition").parse().expect("partition"),
            h("rade.source.offset").parse().expect("offset"),
        );
        dead.entry(pos).or_default().push(m);
    }
    let mut checked = Checked::default();
    for p in produced {
        let pos = (p.topic.clone(), p.partition, p.offset);
        match p.record.expect {
            rade_sim::Expect::Valid => {
                let row = rows
                    .remove(&pos)
                    .unwrap_or_else(|| panic!("valid record {pos:?} is not in the lake"));
                assert_eq!(row.kind, p.record.kind);
                let original = original_fields(catalog, &p.record.kind, p.record.value.as_deref().expect("a value"));
                for (field, expected) in &original {
                    assert_eq!(row.values.get(field), Some(expected), "field {field} of {pos:?}");
                }
                checked.valid += 1;
            }
            rade_sim::Expect::Reject(reason) => {
                let msgs = dead
                    .remove(&pos)
                    .unwrap_or_else(|| panic!("invalid record {pos:?} ({reason}) is not in the DLQ"));
                checked.dlq_duplicates += msgs.len() - 1;
                for m in msgs {
                    assert_eq!(
                        m.headers["rade.reason"],
                        reason.as_str(),
                        "reason of {pos:?}: {:?}",
                        m.headers
                    );
                    assert!(!m.headers["rade.detail"].is_empty());
                    assert_eq!(m.value.as_deref(), p.record.value.as_deref(), "bytes of {pos:?}");
                    assert_eq!(m.key.as_deref(), Some(p.record.key.as_slice()));
                    if reason == rade_schema::RejectReason::UnknownSchema {
                        assert_eq!(m.headers.get("rade.schema.id").map(String::as_str), Some("9999"));
                    }
                    // Found after decoding: the schema the value was read with is known.
                    if matches!(
                        reason,
                        rade_schema::RejectReason::OutOfRange
                            | rade_schema::RejectReason::MissingField
                            | rade_schema::RejectReason::BadTimestamp
                    ) {
                        assert!(
                            m.headers.contains_key("rade.schema.id"),
                            "{reason} {pos:?} without rade.schema.id: {:?}",
                            m.headers
                        );
                    }
                }
                checked.rejected += 1;
            }
        }
    }
    assert!(rows.is_empty(), "{} lake rows match no produced record", rows.len());
    assert!(dead.is_empty(), "{} DLQ messages match no produced record", dead.len());
    checked
}

/// Asserts that `group` committed every partition of each topic up to its end.
pub fn assert_committed_to_end(group: &str, topics: &[String]) {
    for t in topics {
        for (partition, committed, end) in committed_and_ends(group, t) {
            if end > 0 {
                assert_eq!(
                    committed,
                    Some(end),
                    "{t}/{partition}: committed {committed:?}, end {end}"
                );
            }
        }
    }
}

/// Waits until `group` has committed every non-empty partition of `topics` to its end.
pub fn wait_committed_to_end(group: &str, topics: &[String], timeout: Duration) -> bool {
    wait_until(timeout, || {
        topics
            .iter()
            .flat_map(|t| committed_and_ends(group, t))
            .all(|(_, committed, end)| committed == Some(end) || end == 0)
    })
}

/// Unique raw topics, DLQ, group and lake of one test.
pub struct Setup {
    pub prefix: String,
    pub dlq: String,
    pub group: String,
    pub kinds: Vec<&'static str>,
    pub raw_topics: Vec<String>,
    pub dir: tempfile::TempDir,
}

impl Setup {
    /// Creates the raw topics of `kinds` and the DLQ, `partitions` each.
    pub async fn new(kinds: &[&'static str], partitions: i32) -> Setup {
        let id = unique("it");
        let prefix = format!("{id}.raw.");
        let dlq = format!("{id}.dlq");
        let raw_topics: Vec<String> = kinds.iter().map(|k| format!("{prefix}{k}")).collect();
        let mut all = raw_topics.clone();
        all.push(dlq.clone());
        create_topics(&all, partitions).await;
        Setup {
            prefix,
            dlq,
            group: format!("{id}-group"),
            kinds: kinds.to_vec(),
            raw_topics,
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn lake(&self) -> PathBuf {
        self.dir.path().join("lake")
    }

    /// A worker config for this setup; `extra` is appended (more TOML tables).
    pub fn config(&self, extra: &str) -> PathBuf {
        write_config(
            self.dir.path(),
            &self.prefix,
            &self.kinds,
            &self.group,
            &self.dlq,
            &self.lake(),
            extra,
        )
    }

    pub fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A simulator over the fleet of this setup's kinds.
    pub fn simulator(&self, seed: u64) -> rade_sim::Simulator {
        let kinds: Vec<String> = self.kinds.iter().map(|k| k.to_string()).collect();
        rade_sim::Simulator::new(catalog(), rade_sim::Fleet::new(&kinds, 0.2, seed), seed).expect("simulator")
    }
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Produces `batches` × `n` records (about 1 % invalid, every reason) in the background,
/// paced so that workers are mid-stream while it runs.
pub fn paced_producer(
    prefix: String,
    mut sim: rade_sim::Simulator,
    batches: usize,
    n: usize,
) -> tokio::task::JoinHandle<Vec<Produced>> {
    use rade_sim::{FormatChoice, SIMULATED_REASONS};
    let mut all = Vec::new();
    let now = now_ms();
    for b in 0..batches {
        let mut batch = Vec::with_capacity(n);
        for i in 0..n {
            let t = (now - 7_200_000 + ((b * n + i) as i64 * 1000)).min(now);
            let r = if i % 97 == 0 {
                sim.invalid(t, SIMULATED_REASONS[(b + i) % SIMULATED_REASONS.len()])
            } else {
                sim.valid(t, FormatChoice::Mixed)
            };
            batch.push(r);
        }
        all.push(batch);
    }
    tokio::spawn(async move {
        let mut out = Vec::new();
        for batch in all {
            out.extend(produce(&prefix, batch).await);
            // Pacing the load generator, not waiting for a condition.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        out
    })
}

/// Starts `rade <args>` with extra environment variables; its stderr goes to `log`.
pub fn spawn_rade_env(args: &[&str], env: &[(&str, &str)], log: &Path) -> Child {
    let file = std::fs::File::create(log).expect("log file");
    let mut c = Command::new(rade_bin());
    c.args(args)
        .env("RUST_LOG", RUST_LOG)
        .stdout(Stdio::null())
        .stderr(file);
    for (k, v) in env {
        c.env(k, v);
    }
    c.spawn().expect("rade starts")
}

/// Runs `rade run --config <config> --until-caught-up` to its end, asserts a clean exit, and
/// returns its log.
pub fn run_until_caught_up(config: &Path, env: &[(&str, &str)], log: &Path) -> String {
    let args = [
        "run",
        "--config",
        config.to_str().expect("a UTF-8 path"),
        "--until-caught-up",
    ];
    let mut child = spawn_rade_env(&args, env, log);
    let status = wait_exit(&mut child, Duration::from_secs(180), log);
    let text = std::fs::read_to_string(log).unwrap_or_default();
    assert!(status.success(), "rade run failed: {text}");
    text
}

/// A TCP port free right now on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The value of `key=` in the first log line that has it.
pub fn log_value(log: &Path, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    let needle = format!("{key}=");
    text.lines().find_map(|l| {
        let rest = &l[l.find(&needle)? + needle.len()..];
        Some(rest.split_whitespace().next()?.trim_matches('"').to_owned())
    })
}

/// GET over plain HTTP: status and body.
pub async fn http_get(url: &str) -> Option<(u16, String)> {
    let response = reqwest::get(url).await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

/// Waits asynchronously until `cond` holds or `timeout` passes.
pub async fn wait_until_async<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cond().await
}

/// Runs `rade query` over a local lake with the repository's schemas; the CSV answer.
pub fn query_lake(lake: &Path, sql: &str) -> String {
    query_lake_with(lake, &schemas_dir(), sql)
}

/// Runs `rade query` over a local lake with the schemas of `schemas`; the CSV answer.
pub fn query_lake_with(lake: &Path, schemas: &Path, sql: &str) -> String {
    let out = Command::new(rade_bin())
        .args(["query", "--lake", lake.to_str().expect("a UTF-8 path"), "--schemas"])
        .arg(schemas)
        .args(["--format", "csv", sql])
        .output()
        .expect("rade query runs");
    assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The lineage key of a raw row as one SQL value: `(_topic, _partition, _offset)`.
pub const LINEAGE_KEY: &str = "concat(_topic, '/', CAST(_partition AS VARCHAR), '/', CAST(_offset AS VARCHAR))";

/// SQL giving the rows `n` and the distinct lineage keys `d` of a raw table: equal when no
/// record is there twice.
pub fn lineage_counts_sql(table: &str) -> String {
    format!("SELECT count(*) AS n, count(DISTINCT {LINEAGE_KEY}) AS d FROM {table}")
}

/// Runs `rade lake compact --config <config> <args>` with `env`, to its end.
pub fn rade_lake_compact(config: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    Command::new(rade_bin())
        .args(["lake", "compact", "--config", config.to_str().expect("a UTF-8 path")])
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", RUST_LOG)
        .output()
        .expect("rade lake compact runs")
}

/// The Python of the test venv, where `make test` installs pyarrow, DuckDB and Polars
/// (`RADE_TEST_PYTHON` overrides it).
pub fn python() -> String {
    std::env::var("RADE_TEST_PYTHON").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_default();
        format!("{home}/.cache/rade/venv/bin/python")
    })
}

/// A CSV answer of `rade query` as rows of cells, header dropped.
pub fn csv_rows(csv: &str) -> Vec<Vec<String>> {
    csv.lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect()
}

/// Raises a topic's `max.message.bytes` and waits until the broker reports it.
pub async fn set_max_message_bytes(topic: &str, bytes: usize) {
    use rdkafka::admin::{AlterConfig, ResourceSpecifier};
    let admin: AdminClient<DefaultClientContext> = client().create().expect("admin client");
    let value = bytes.to_string();
    let alter = AlterConfig::new(ResourceSpecifier::Topic(topic)).set("max.message.bytes", &value);
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in admin
        .alter_configs(&[alter], &opts)
        .await
        .expect("alter_configs request")
    {
        r.expect("topic config altered");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let described = admin
            .describe_configs(&[ResourceSpecifier::Topic(topic)], &opts)
            .await
            .expect("describe_configs request");
        let now = described
            .into_iter()
            .next()
            .and_then(|r| r.ok())
            .and_then(|c| c.get("max.message.bytes").and_then(|e| e.value.clone()));
        if now.as_deref() == Some(value.as_str()) {
            return;
        }
        assert!(Instant::now() < deadline, "{topic}: max.message.bytes is still {now:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Produces `(key, value)` pairs one after the other to partition 0 of `topic`, with a producer
/// that takes messages of up to `max_bytes`; returns their offsets.
pub async fn produce_in_order(topic: &str, records: &[(Vec<u8>, Vec<u8>)], max_bytes: usize) -> Vec<i64> {
    let producer: FutureProducer = client()
        .set("message.max.bytes", max_bytes.to_string())
        .set("compression.type", "none")
        .create()
        .expect("producer");
    let mut offsets = Vec::with_capacity(records.len());
    for (key, value) in records {
        let rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic)
            .partition(0)
            .key(key.as_slice())
            .payload(value.as_slice());
        let d = producer
            .send(rec, Duration::from_secs(60))
            .await
            .map_err(|(e, _)| e)
            .expect("delivered");
        offsets.push(d.offset);
    }
    offsets
}

/// The SHA-256 of a file as `sha256sum` (coreutils) computes it.
pub fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().expect("sha256sum runs");
    assert!(out.status.success(), "sha256sum {}", path.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("a digest")
        .to_owned()
}
