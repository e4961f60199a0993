//! Schema evolution on the real broker: water_level gains an optional `battery_pct` (version 2,
//! id 1101) between two worker runs. Old and new records of one hour share the new files, old
//! files stay as they were, and `rade query` (and pyarrow, DuckDB, Polars through the Delta
//! table, with no option: the column is in its schema) see nulls in the old rows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use apache_avro::types::Value as Avro;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rade_integration_tests::*;
use rade_schema::{Catalog, KindSchema, WireFormat};
use rade_sim::{Fleet, FormatChoice, SimRecord, Simulator};

const KIND: &str = "water_level";
const V2_ID: u32 = 1101;
/// Every reading of the test falls in one past hour; none of them is late.
const WIDE_LATENESS: &str = "[windows]\nallowed_lateness = \"4h\"\n";
/// Records per run.
const N: usize = 300;

/// A copy of the shipped schemas; with `v2`, water_level also gets version 2.
fn write_schemas(dir: &Path, v2: bool) {
    std::fs::create_dir_all(dir).expect("schemas dir");
    for e in std::fs::read_dir(schemas_dir()).expect("shipped schemas") {
        let p = e.expect("entry").path();
        std::fs::copy(&p, dir.join(p.file_name().expect("a file name"))).expect("schema copied");
    }
    if !v2 {
        return;
    }
    let mut avsc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("water_level.avsc")).expect("avsc")).expect("JSON");
    avsc["fields"].as_array_mut().expect("fields").push(serde_json::json!({
        "name": "battery_pct",
        "type": ["null", "double"],
        "default": null,
        "doc": "Charge of the gauge's battery (added in version 2).",
        "rade.unit": "%",
        "rade.min": 0,
        "rade.max": 100
    }));
    std::fs::write(dir.join("water_level.v2.avsc"), avsc.to_string()).expect("v2 written");
    let mut catalog = std::fs::read_to_string(dir.join("catalog.toml")).expect("catalog");
    catalog.push_str(&format!(
        "\n[[schema]]\nkind = \"{KIND}\"\nid = {V2_ID}\nversion = 2\nfile = \"water_level.v2.avsc\"\n"
    ));
    std::fs::write(dir.join("catalog.toml"), catalog).expect("catalog written");
}

/// A version-1 reading as a version-2 producer would send it, in the same wire format.
fn to_v2(v1: &KindSchema, v2: &KindSchema, value: &[u8], battery: f64) -> Vec<u8> {
    match WireFormat::detect(value).expect("a known format") {
        WireFormat::Json => {
            let mut j: serde_json::Value = serde_json::from_slice(value).expect("JSON");
            j["battery_pct"] = serde_json::json!(battery);
            serde_json::to_vec(&j).expect("JSON")
        }
        format => {
            let skip = if format == WireFormat::Confluent { 5 } else { 10 };
            let Avro::Record(mut fields) =
                apache_avro::from_avro_datum(&v1.avro, &mut &value[skip..], None).expect("v1 Avro")
            else {
                panic!("not a record")
            };
            fields.push(("battery_pct".into(), Avro::Union(1, Box::new(Avro::Double(battery)))));
            let body = apache_avro::to_avro_datum(&v2.avro, Avro::Record(fields)).expect("v2 Avro");
            format.frame(v2, &body)
        }
    }
}

/// `rade query` over the lake with the test's schemas; the CSV rows, header dropped.
fn query(lake: &Path, schemas: &Path, sql: &str) -> Vec<Vec<String>> {
    csv_rows(&query_lake_with(lake, schemas, sql))
}

/// The raw files of the test's hour, and whether each has the `battery_pct` column.
fn files_of_hour(lake: &Path, hour_ms: i64) -> BTreeMap<PathBuf, bool> {
    let t = chrono::DateTime::from_timestamp_millis(hour_ms).expect("a time");
    let dir = lake.join(format!(
        "raw/{KIND}/date={}/hour={}",
        t.format("%Y-%m-%d"),
        t.format("%H")
    ));
    parquet_files(&dir)
        .into_iter()
        .map(|p| {
            let file = std::fs::File::open(&p).expect("open parquet");
            let reader = ParquetRecordBatchReaderBuilder::try_new(file).expect("parquet");
            let has = reader.schema().field_with_name("battery_pct").is_ok();
            (p, has)
        })
        .collect()
}

/// Rows with and without a battery value in one file.
fn battery_values(path: &Path) -> (usize, usize) {
    let file = std::fs::File::open(path).expect("open parquet");
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("parquet")
        .build()
        .expect("reader");
    let (mut with, mut without) = (0, 0);
    for batch in reader {
        let batch = batch.expect("batch");
        let col = batch.column_by_name("battery_pct").expect("the column");
        without += col.null_count();
        with += col.len() - col.null_count();
    }
    (with, without)
}

/// Row count and battery values counted by pyarrow, DuckDB and Polars over files of both
/// versions, each told to merge the files' schemas.
const SCRIPT: &str = r#"
import importlib.util, json, os, sys
import duckdb, polars as pl
from deltalake import DeltaTable
root = sys.argv[1]
# The table's schema has the new column: every reader sees it with no option; the old files
# lack it, and it reads as null there.
dt = DeltaTable(root)
assert "battery_pct" in [f.name for f in dt.schema().fields], dt.schema()
table = dt.to_pyarrow_dataset().to_table()
ext = os.path.join(list(importlib.util.find_spec("duckdb_ext").submodule_search_locations)[0], "extensions")
con = duckdb.connect(config={"extension_directory": ext, "autoinstall_known_extensions": False})
con.execute("SET enable_progress_bar = false")  # it would draw on stdout, ahead of the JSON
con.execute("LOAD delta")
rows, values = con.execute(f"SELECT count(*), count(battery_pct) FROM delta_scan('{root}')").fetchone()
polars = pl.scan_delta(root).select(pl.len(), pl.col("battery_pct").count()).collect().row(0)
print(json.dumps({
    "pyarrow": [table.num_rows, table.num_rows - table["battery_pct"].null_count],
    "duckdb": [rows, values],
    "polars": list(polars),
}))
# deltalake 1.6's threads sometimes abort the interpreter's exit (rc 134 after the output).
sys.stdout.flush()
os._exit(0)
"#;

#[tokio::test(flavor = "multi_thread")]
async fn an_optional_field_added_to_a_kind_reads_as_null_in_old_rows_without_a_flood_of_files() {
    let setup = Setup::new(&[KIND], 1).await;
    let schemas = setup.dir.path().join("schemas");
    write_schemas(&schemas, false);
    let config = setup.config(WIDE_LATENESS);
    // The test's schemas, and files that roll only at the end of each run (not on the age of
    // their buffers), so that the two runs write comparable files whatever the machine's speed.
    let text = std::fs::read_to_string(&config)
        .expect("config")
        .replace(
            &format!("dir = \"{}\"", schemas_dir().display()),
            &format!("dir = \"{}\"", schemas.display()),
        )
        .replace("flush_interval = \"1s\"", "flush_interval = \"1h\"")
        .replace("roll_interval = \"1s\"", "roll_interval = \"1h\"");
    std::fs::write(&config, text).expect("config written");

    let v1_catalog = Arc::new(Catalog::load(&schemas).expect("v1 catalog"));
    let mut sim = Simulator::new(v1_catalog.clone(), Fleet::new(&[KIND.to_owned()], 1.0, 7), 7).expect("simulator");
    let hour = (now_ms() - 3 * 3_600_000) / 3_600_000 * 3_600_000;
    let at = |i: usize| hour + 60_000 + i as i64 * 1000;

    // Run 1: version 1 only, in every wire format.
    let first: Vec<SimRecord> = (0..N).map(|i| sim.valid(at(i), FormatChoice::Mixed)).collect();
    let first = produce(&setup.prefix, first).await;
    run_until_caught_up(&config, &[], &setup.log("v1.log"));
    let old_files = files_of_hour(&setup.lake(), hour);
    assert!(!old_files.is_empty(), "run 1 wrote no file");
    assert!(
        old_files.values().all(|has| !has),
        "a version-1 file has the new column"
    );

    // Run 2: the catalog gains version 2; a new worker reads old and new producers in the same hour.
    write_schemas(&schemas, true);
    let v2_catalog = Catalog::load(&schemas).expect("v2 catalog");
    let v1 = v2_catalog.by_id(101).expect("version 1 is still known").clone();
    let v2 = v2_catalog.kind(KIND).expect("the kind").clone();
    assert_eq!((v2.id, v2.version), (V2_ID, 2));
    let check = Command::new(rade_bin())
        .args(["check", "--offline", "--config", config.to_str().expect("utf-8")])
        .output()
        .expect("rade check runs");
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(said.contains("water_level v2 (id 1101, reads v1 id 101)"), "{said}");

    let mut second = Vec::with_capacity(N);
    let mut battery: BTreeMap<usize, f64> = BTreeMap::new();
    for i in 0..N {
        let mut r = sim.valid(at(N + i), FormatChoice::Mixed);
        if i % 2 == 1 {
            let pct = (i % 100) as f64 + 0.5;
            r.value = Some(to_v2(&v1, &v2, r.value.as_deref().expect("a value"), pct));
            battery.insert(i, pct);
        }
        second.push(r);
    }
    let second = produce(&setup.prefix, second).await;
    let log = run_until_caught_up(&config, &[], &setup.log("v2.log"));
    assert!(log.contains("window state restored"), "{log}");
    assert!(!log.contains("not restored"), "{log}");
    assert!(read_topic(&setup.dlq).is_empty(), "a record was rejected");

    // Files: the old ones untouched and without the column; the new ones with it, mixing
    // old and new records, and no more of them than run 1 wrote for as many records.
    let files = files_of_hour(&setup.lake(), hour);
    for (path, has) in &old_files {
        assert_eq!(files.get(path), Some(has), "{} changed", path.display());
    }
    let new_files: Vec<_> = files.iter().filter(|(p, _)| !old_files.contains_key(*p)).collect();
    assert!(!new_files.is_empty(), "run 2 wrote no file");
    assert!(
        new_files.len() <= old_files.len(),
        "run 2 wrote {} files for the hour, run 1 {}",
        new_files.len(),
        old_files.len()
    );
    let (mut with, mut without) = (0, 0);
    for (path, has) in &new_files {
        assert!(**has, "{} lacks the new column", path.display());
        let (w, wo) = battery_values(path);
        assert!(w > 0 && wo > 0, "{} holds only one version's records", path.display());
        (with, without) = (with + w, without + wo);
    }
    assert_eq!((with, without), (N / 2, N / 2));

    // rade query over both: every row, nulls in the old ones, the values in the new ones.
    let lake = setup.lake();
    let rows = query(
        &lake,
        &schemas,
        "SELECT _offset, battery_pct FROM raw_water_level ORDER BY _offset",
    );
    assert_eq!(rows.len(), 2 * N);
    let offsets: BTreeMap<i64, Option<f64>> = rows
        .iter()
        .map(|r| (r[0].parse().expect("offset"), r[1].parse().ok()))
        .collect();
    for p in &first {
        assert_eq!(offsets.get(&p.offset), Some(&None), "old row at {}", p.offset);
    }
    for (i, p) in second.iter().enumerate() {
        assert_eq!(
            offsets.get(&p.offset),
            Some(&battery.get(&i).copied()),
            "row {i} of run 2"
        );
    }
    // Filters on the column prune and read old files too, where it is missing.
    let counts = query(
        &lake,
        &schemas,
        "SELECT count(*), count(battery_pct), sum(CASE WHEN battery_pct IS NULL THEN 1 ELSE 0 END) \
         FROM raw_water_level",
    );
    assert_eq!(
        counts,
        vec![vec![(2 * N).to_string(), (N / 2).to_string(), (N + N / 2).to_string()]]
    );
    let filtered = query(
        &lake,
        &schemas,
        "SELECT count(*) FROM raw_water_level WHERE battery_pct >= 0",
    );
    assert_eq!(filtered, vec![vec![(N / 2).to_string()]]);
    let old = query(
        &lake,
        &schemas,
        "SELECT count(*) FROM raw_water_level WHERE battery_pct IS NULL",
    );
    assert_eq!(old, vec![vec![(N + N / 2).to_string()]]);

    // The table readers of other engines (deltalake's pyarrow dataset, DuckDB's delta_scan,
    // Polars' scan_delta) read the same, with no option: the column is in the table's schema.
    let out = Command::new(python())
        .args(["-c", SCRIPT])
        .arg(lake.join(format!("raw/{KIND}")))
        .output()
        .expect("the Python of the test venv runs (make test installs pyarrow, duckdb, polars)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let engines: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    for engine in ["pyarrow", "duckdb", "polars"] {
        assert_eq!(engines[engine], serde_json::json!([2 * N, N / 2]), "{engine}");
    }
}
