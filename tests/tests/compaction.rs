//! `rade lake compact` (delta-rs OPTIMIZE) beside a running worker and concurrent queries;
//! other engines' table readers during and after it; time travel; `rade lake vacuum`.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rade_integration_tests::*;
use rade_sim::FormatChoice;

const KINDS: [&str; 2] = ["noise", "water_level"];
const WIDE_LATENESS: &str = "[windows]\nallowed_lateness = \"4h\"\n";

/// (rows, distinct lineage keys) over both raw tables.
fn counts(lake: &Path) -> (i64, i64) {
    let sql = format!(
        "SELECT (SELECT count(*) FROM raw_noise) + (SELECT count(*) FROM raw_water_level) AS n, \
         (SELECT count(DISTINCT {LINEAGE_KEY}) FROM raw_noise) + (SELECT count(DISTINCT {LINEAGE_KEY}) FROM raw_water_level) AS d"
    );
    let csv = query_lake(lake, &sql);
    let line = csv.lines().nth(1).unwrap_or_default().to_owned();
    let mut it = line.split(',').map(|v| v.parse::<i64>().unwrap_or(-1));
    (it.next().unwrap_or(-1), it.next().unwrap_or(-1))
}

/// Runs `rade lake <args>` with the test's config; its exit status and what it printed.
fn lake_cmd(config: &Path, args: &[&str], log: &Path) -> (std::process::ExitStatus, String) {
    let out = std::process::Command::new(rade_bin())
        .arg("lake")
        .args(args)
        .args(["--config", config.to_str().expect("a UTF-8 path")])
        .output()
        .expect("rade lake runs");
    std::fs::write(log, &out.stderr).expect("log written");
    (out.status, String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The number after `word` in a summary line of `table` ("raw_noise: compacted 3 partitions, 12 files into 3; ...").
fn figure(summary: &str, table: &str, before: &str) -> usize {
    let line = summary
        .lines()
        .find(|l| l.starts_with(&format!("{table}:")))
        .unwrap_or_else(|| panic!("no line for {table} in: {summary}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    words
        .windows(2)
        .find(|w| w[1].trim_end_matches([',', ';']) == before)
        .and_then(|w| w[0].parse().ok())
        .unwrap_or_else(|| panic!("no figure before `{before}` in: {line}"))
}

/// Rows of `raw_noise` and `raw_water_level` as Python's table readers count them (the
/// `deltalake` package, DuckDB's `delta_scan`, Polars' `scan_delta`), and as a plain Parquet
/// glob does (which also reads the files a compaction replaced until vacuum deletes them).
const READERS: &str = r#"
import importlib.util, json, os, sys
import duckdb, polars as pl
from deltalake import DeltaTable
lake = sys.argv[1]
tables = [f"{lake}/raw/{k}" for k in ("noise", "water_level")]
ext = os.path.join(list(importlib.util.find_spec("duckdb_ext").submodule_search_locations)[0], "extensions")
con = duckdb.connect(config={"extension_directory": ext, "autoinstall_known_extensions": False})
con.execute("SET enable_progress_bar = false")
con.execute("LOAD delta")
out = {
    "deltalake": sum(DeltaTable(t).to_pyarrow_dataset().count_rows() for t in tables),
    "duckdb": sum(con.execute(f"SELECT count(*) FROM delta_scan('{t}')").fetchone()[0] for t in tables),
    "polars": sum(pl.scan_delta(t).select(pl.len()).collect().item() for t in tables),
    "glob": sum(con.execute(f"SELECT count(*) FROM read_parquet('{t}/*/*/*.parquet')").fetchone()[0] for t in tables),
}
print(json.dumps(out))
# deltalake 1.6's threads sometimes abort the interpreter's exit (rc 134 after the output):
# leave at once, the figures printed.
sys.stdout.flush()
os._exit(0)
"#;

fn python_counts(lake: &Path) -> serde_json::Value {
    let out = std::process::Command::new(python())
        .args(["-c", READERS])
        .arg(lake)
        .output()
        .expect("the test venv's Python runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON counts")
}

#[tokio::test(flavor = "multi_thread")]
async fn compaction_beside_a_worker_and_queries_never_changes_a_count() {
    let setup = Setup::new(&KINDS, 2).await;
    let config = setup.config(WIDE_LATENESS);
    let lake = setup.lake();
    let mut sim = setup.simulator(5);
    let now = now_ms();
    // Four runs over the same hours: several small files per partition and hour.
    let mut produced = Vec::new();
    for round in 0..4i64 {
        let records: Vec<_> = (0..600i64)
            .map(|i| sim.valid(now - 5_400_000 + (i * 4 + round) * 2_000, FormatChoice::Mixed))
            .collect();
        produced.extend(produce(&setup.prefix, records).await);
        run_until_caught_up(&config, &[], &setup.log(&format!("run{round}.log")));
    }
    let expected = produced.len() as i64;
    assert_eq!(counts(&lake), (expected, expected));
    let files_before: usize = raw_tables(&lake).iter().map(|(_, t)| delta_files(t).len()).sum();

    // A worker keeps running beside the compaction, and queries run in a loop.
    let worker_log = setup.log("worker.log");
    let mut worker = spawn_rade(&["run", "--config", config.to_str().expect("utf-8")], &worker_log);
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, lake) = (stop.clone(), lake.clone());
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                seen.push(counts(&lake));
            }
            seen
        })
    };

    // New readings of the last half hour arrive while the compaction runs: the worker appends
    // to the same tables (blind appends) as OPTIMIZE rewrites their older partitions.
    let more: Vec<_> = (0..300i64)
        .map(|i| sim.valid(now - 1_800_000 + i * 1_000, FormatChoice::Mixed))
        .collect();
    let appending = {
        let prefix = setup.prefix.clone();
        tokio::spawn(async move {
            let mut out = Vec::new();
            for chunk in more.chunks(30) {
                out.extend(produce(&prefix, chunk.to_vec()).await);
                // Pacing the load over the compaction, not waiting for a condition.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            out
        })
    };

    // Compaction of every table, beside the worker and the queries. The worker's position
    // has passed every raw file of the older hours: those raw partitions are settled.
    let (status, summary) = lake_cmd(&config, &["compact", "--settle", "0s"], &setup.log("compact.log"));
    assert!(status.success(), "{summary}");
    assert!(figure(&summary, "raw_noise", "files") > 0, "nothing compacted: {summary}");
    assert!(figure(&summary, "raw_water_level", "files") > 0, "nothing compacted: {summary}");
    stop.store(true, Ordering::Relaxed);
    let seen = reader.join().expect("reader thread");
    assert!(seen.len() >= 2, "only {} queries ran during the compaction", seen.len());
    let total = expected + 300;
    assert!(
        seen.iter().all(|&(n, d)| n == d && (expected..=total).contains(&n)),
        "a query saw a duplicate or a missing row: {seen:?}"
    );
    produced.extend(appending.await.expect("producer"));
    assert!(
        wait_until(Duration::from_secs(60), || counts(&lake) == (total, total)),
        "the worker's new records: {:?} of {total}",
        counts(&lake)
    );
    let expected = total;

    // Until vacuum, the replaced files are still on disk: a plain Parquet glob counts their rows
    // twice, the table readers of other engines count each row once.
    let counts_py = python_counts(&lake);
    for engine in ["deltalake", "duckdb", "polars"] {
        assert_eq!(counts_py[engine].as_i64(), Some(expected), "{engine}: {counts_py}");
    }
    assert!(counts_py["glob"].as_i64().unwrap_or(0) > expected, "{counts_py}");
    check_lake_and_dlq(&catalog(), &produced, &read_lake(&lake), &[]);
    let live: usize = raw_tables(&lake).iter().map(|(_, t)| delta_files(t).len()).sum();
    assert!(live < files_before, "{files_before} files before, {live} after");

    // Time travel, through `rade lake history` and `rade query --as-of`.
    let history = std::process::Command::new(rade_bin())
        .args(["lake", "history", "raw_noise", "--config", config.to_str().expect("utf-8")])
        .output()
        .expect("rade lake history runs");
    let history = String::from_utf8_lossy(&history.stdout).into_owned();
    let optimize = history
        .lines()
        .find(|l| l.contains(",OPTIMIZE,"))
        .unwrap_or_else(|| panic!("no OPTIMIZE in the history: {history}"));
    let version: i64 = optimize.split(',').next().and_then(|v| v.parse().ok()).expect("a version");
    // OPTIMIZE changes files, not rows: the version before it and the version it made read
    // the same rows (the worker appended around them).
    let count_as_of = |v: i64| {
        let out = std::process::Command::new(rade_bin())
            .args(["query", "--format", "csv", "--lake", lake.to_str().expect("utf-8")])
            .args(["--as-of", &v.to_string()])
            .arg("SELECT count(*) FROM raw_noise")
            .output()
            .expect("rade query runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(count_as_of(version - 1), count_as_of(version), "the same rows before the compaction");

    // Vacuum deletes the replaced files: then every Parquet file on disk is a live one.
    let (status, vacuumed) = lake_cmd(&config, &["vacuum", "--retention", "0s"], &setup.log("vacuum.log"));
    assert!(status.success(), "{vacuumed}");
    assert!(figure(&vacuumed, "raw_noise", "files") > 0, "{vacuumed}");
    let counts_py = python_counts(&lake);
    assert_eq!(counts_py["glob"].as_i64(), Some(expected), "{counts_py}");
    for (_, table) in raw_tables(&lake) {
        let on_disk = parquet_files(&table);
        let mut live = delta_files(&table);
        live.sort();
        assert_eq!(on_disk, live, "files on disk that the table does not name");
    }

    signal(&worker, 15);
    assert!(wait_exit(&mut worker, Duration::from_secs(40), &worker_log).success());
    check_lake_and_dlq(&catalog(), &produced, &read_lake(&lake), &[]);
}
