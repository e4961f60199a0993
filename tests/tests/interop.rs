//! The lake read by the data scientists' tools through Delta table readers: pyarrow (the
//! `deltalake` package's dataset), delta-rs's own SQL, DuckDB (`delta_scan`) and Polars
//! (`scan_delta`) find the same rows and values as `rade query`.

use std::process::Command;

use rade_integration_tests::*;
use rade_sim::FormatChoice;

/// The same figures from each Python engine, as JSON: {engine: {figure: value}}.
const SCRIPT: &str = r#"
import importlib.util, json, os, sys
import duckdb, polars as pl, pyarrow as pa, pyarrow.compute as pc
from deltalake import DeltaTable, QueryBuilder

lake = sys.argv[1]
out = {}
table = lambda kind: f"{lake}/raw/{kind}"

def raw(kind):
    return DeltaTable(table(kind)).to_pyarrow_dataset().to_table()

wl, nz, pb = raw("water_level"), raw("noise"), raw("parking_bay")
occupied = pb.filter(pc.equal(pb["status"], "occupied"))
hours = {}
for d, h in zip(occupied["date"].to_pylist(), occupied["hour"].to_pylist()):
    key = f"{d}/{int(h):02d}"
    hours[key] = hours.get(key, 0) + 1
out["pyarrow"] = {
    "wl_rows": wl.num_rows,
    "wl_sensors": len(set(wl["sensor_id"].to_pylist())),
    "wl_sum_height": pc.sum(wl["height"]).as_py(),
    "nz_max_laeq": pc.max(nz["LAeq"]).as_py(),
    "occupied_by_hour": hours,
}

# delta-rs's own SQL engine (DataFusion, inside the deltalake package).
def dl(sql, **tables):
    qb = QueryBuilder()
    for name, kind in tables.items():
        qb = qb.register(name, DeltaTable(table(kind)))
    return pa.table(qb.execute(sql).read_all()).to_pylist()
w = dl("SELECT count(*) AS n, count(DISTINCT sensor_id) AS s, sum(height) AS h FROM wl", wl="water_level")[0]
out["deltalake"] = {
    "wl_rows": w["n"],
    "wl_sensors": w["s"],
    "wl_sum_height": w["h"],
    "nz_max_laeq": dl('SELECT max("LAeq") AS m FROM nz', nz="noise")[0]["m"],
    "occupied_by_hour": {
        f"{r['date']}/{int(r['hour']):02d}": r["n"]
        for r in dl(
            "SELECT date, hour, count(*) AS n FROM pb WHERE status = 'occupied' GROUP BY date, hour", pb="parking_bay"
        )
    },
}

# The delta extension from PyPI (duckdb-ext-delta): no download at LOAD.
ext = os.path.join(list(importlib.util.find_spec("duckdb_ext").submodule_search_locations)[0], "extensions")
con = duckdb.connect(config={"extension_directory": ext, "autoinstall_known_extensions": False})
# No progress bar: past 2 s on a loaded machine DuckDB draws it on stdout, ahead of the JSON.
con.execute("SET enable_progress_bar = false")
con.execute("LOAD delta")
def q(sql):
    return con.execute(sql).fetchall()
scan = lambda kind: f"delta_scan('{table(kind)}')"
n, sensors, total = q(f"SELECT count(*), count(DISTINCT sensor_id), sum(height) FROM {scan('water_level')}")[0]
out["duckdb"] = {
    "wl_rows": n,
    "wl_sensors": sensors,
    "wl_sum_height": total,
    "nz_max_laeq": q(f"SELECT max(LAeq) FROM {scan('noise')}")[0][0],
    "occupied_by_hour": {
        f"{d}/{int(h):02d}": c
        for d, h, c in q(f"SELECT date, hour, count(*) FROM {scan('parking_bay')} WHERE status = 'occupied' GROUP BY 1, 2")
    },
    "lineage_duplicates": q(
        f"SELECT count(*) - count(DISTINCT (_topic, _partition, _offset)) FROM {scan('water_level')}"
    )[0][0],
    "aggregate_rows": q(f"SELECT count(*) FROM delta_scan('{lake}/aggregates')")[0][0],
}

# Polars' own scan of the table (its Parquet reader, not pyarrow's).
scan = lambda kind: pl.scan_delta(table(kind))
w = scan("water_level").select(pl.len(), pl.col("sensor_id").n_unique(), pl.col("height").sum()).collect().row(0)
occ = (
    scan("parking_bay").filter(pl.col("status") == "occupied").group_by("date", "hour").agg(pl.len()).collect()
)
out["polars"] = {
    "wl_rows": w[0],
    "wl_sensors": w[1],
    "wl_sum_height": w[2],
    "nz_max_laeq": scan("noise").select(pl.col("LAeq").max()).collect().item(),
    "occupied_by_hour": {f"{d}/{int(h):02d}": c for d, h, c in occ.iter_rows()},
}
print(json.dumps(out, default=str))
# deltalake 1.6's threads sometimes abort the interpreter's exit (rc 134 after the output):
# leave at once, the figures printed.
sys.stdout.flush()
os._exit(0)
"#;

#[tokio::test(flavor = "multi_thread")]
async fn pyarrow_duckdb_and_polars_read_what_rade_query_reads() {
    let setup = Setup::new(&["water_level", "noise", "parking_bay"], 3).await;
    let mut sim = setup.simulator(31);
    let now = now_ms();
    let records: Vec<_> = (0..6000)
        .map(|i| sim.valid(now - 3 * 3_600_000 + i * 1_800, FormatChoice::Mixed))
        .collect();
    let produced = produce(&setup.prefix, records).await;
    // In time order over three hours: windows close behind the readings.
    run_until_caught_up(&setup.config(""), &[], &setup.log("run.log"));
    let lake = setup.lake();
    assert_eq!(read_lake(&lake).len(), produced.len());

    // rade query's figures.
    let wl = csv_rows(&query_lake(
        &lake,
        "SELECT count(*), count(DISTINCT sensor_id), sum(height) FROM raw_water_level",
    ));
    let (wl_rows, wl_sensors, wl_sum): (i64, i64, f64) = (
        wl[0][0].parse().expect("count"),
        wl[0][1].parse().expect("count"),
        wl[0][2].parse().expect("sum"),
    );
    let nz_max: f64 = csv_rows(&query_lake(&lake, "SELECT max(LAeq) FROM raw_noise"))[0][0]
        .parse()
        .expect("max");
    let occupied: std::collections::BTreeMap<String, i64> = csv_rows(&query_lake(
        &lake,
        "SELECT date, hour, count(*) FROM raw_parking_bay WHERE status = 'occupied' GROUP BY date, hour",
    ))
    .into_iter()
    .map(|r| (format!("{}/{}", r[0], r[1]), r[2].parse().expect("count")))
    .collect();
    let aggregate_rows: i64 = csv_rows(&query_lake(&lake, "SELECT count(*) FROM aggregates"))[0][0]
        .parse()
        .expect("count");
    assert!(
        wl_rows > 10 && !occupied.is_empty() && aggregate_rows > 0,
        "too little to compare: {wl_rows} water levels, {} hours, {aggregate_rows} window rows",
        occupied.len()
    );

    let out = Command::new(python())
        .args(["-c", SCRIPT])
        .arg(&lake)
        .output()
        .expect("the test venv's Python runs (make test installs deltalake, duckdb-ext-delta, polars)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let engines: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON figures");
    for engine in ["pyarrow", "deltalake", "duckdb", "polars"] {
        let e = &engines[engine];
        assert_eq!(e["wl_rows"].as_i64(), Some(wl_rows), "{engine}: rows");
        assert_eq!(e["wl_sensors"].as_i64(), Some(wl_sensors), "{engine}: sensors");
        let sum = e["wl_sum_height"].as_f64().expect("sum");
        assert!(
            (sum - wl_sum).abs() <= 1e-9 * wl_sum.abs().max(1.0),
            "{engine}: sum {sum} vs {wl_sum}"
        );
        assert_eq!(e["nz_max_laeq"].as_f64(), Some(nz_max), "{engine}: max LAeq");
        let hours: std::collections::BTreeMap<String, i64> = e["occupied_by_hour"]
            .as_object()
            .expect("by hour")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_i64().expect("count")))
            .collect();
        assert_eq!(hours, occupied, "{engine}: occupied bays per hour");
    }
    assert_eq!(engines["duckdb"]["lineage_duplicates"].as_i64(), Some(0));
    assert_eq!(engines["duckdb"]["aggregate_rows"].as_i64(), Some(aggregate_rows));
}
