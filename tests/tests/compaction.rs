//! `rade lake compact` beside a running worker and concurrent queries, with a crash halfway.

use std::os::unix::process::ExitStatusExt;
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

/// Runs `rade lake compact`; its exit status and what it printed.
fn compact(config: &Path, grace: &str, env: &[(&str, &str)], log: &Path) -> (std::process::ExitStatus, String) {
    // A run that dies blocks the next ones for the lease's time.
    let out = rade_lake_compact(config, &["--grace", grace, "--lease", "2s"], env);
    std::fs::write(log, &out.stderr).expect("log written");
    (out.status, String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The number after `word` in the compaction summary ("merged 12 files into 3 ...").
fn figure(summary: &str, before: &str) -> usize {
    let words: Vec<&str> = summary.split_whitespace().collect();
    words
        .windows(2)
        .find(|w| w[1] == before)
        .and_then(|w| w[0].parse().ok())
        .unwrap_or_else(|| panic!("no figure before `{before}` in: {summary}"))
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
    let files_before = parquet_files(&lake.join("raw")).len();

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

    // A compaction killed after its second merged file: the merged files shadow their inputs.
    let (status, _) = compact(
        &config,
        "3s",
        &[("RADE_CRASH_AT", "after-merge:2")],
        &setup.log("crashed.log"),
    );
    assert_eq!(
        status.signal(),
        Some(9),
        "{}",
        std::fs::read_to_string(setup.log("crashed.log")).unwrap_or_default()
    );
    // The killed run still holds the lake's lease: the next runs do nothing until it expires,
    // then one merges the rest; inputs wait 3 s after their merged file before they go.
    let mut summary = String::new();
    assert!(
        wait_until(Duration::from_secs(30), || {
            let (status, out) = compact(&config, "3s", &[], &setup.log("compact.log"));
            assert!(status.success(), "{out}");
            summary = out;
            !summary.is_empty()
        }),
        "the lease of the killed run was never taken over"
    );
    assert!(
        std::fs::read_to_string(setup.log("compact.log"))
            .unwrap_or_default()
            .contains("taking over the lease"),
        "{summary}"
    );
    assert!(figure(&summary, "files") > 0, "nothing merged: {summary}");
    let mut last = summary;
    assert!(
        wait_until(Duration::from_secs(60), || {
            let (status, summary) = compact(&config, "3s", &[], &setup.log("again.log"));
            assert!(status.success(), "{summary}");
            last = summary;
            figure(&last, "waiting") == 0 && figure(&last, "files") == 0
        }),
        "inputs still waiting: {last}"
    );
    stop.store(true, Ordering::Relaxed);
    let seen = reader.join().expect("reader thread");
    assert!(seen.len() >= 3, "only {} queries ran during the compaction", seen.len());
    assert!(
        seen.iter().all(|&c| c == (expected, expected)),
        "a query saw a duplicate or a missing row: {seen:?}"
    );

    // One file per partition and hour is left, and it holds each record once, with its values.
    let files = parquet_files(&lake.join("raw"));
    let groups: std::collections::BTreeSet<_> = files
        .iter()
        .map(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            (
                p.parent().map(Path::to_path_buf),
                name.rsplit_once("__").map(|x| x.0.to_owned()),
            )
        })
        .collect();
    assert_eq!(
        files.len(),
        groups.len(),
        "more than one file per partition and hour: {files:?}"
    );
    assert!(
        files.len() < files_before,
        "{} files before, {} after",
        files_before,
        files.len()
    );
    check_lake_and_dlq(&catalog(), &produced, &read_lake(&lake), &[]);

    // The worker went on beside it: new records land, counted once.
    let more: Vec<_> = (0..300i64)
        .map(|i| sim.valid(now - 1_800_000 + i * 1_000, FormatChoice::Mixed))
        .collect();
    produced.extend(produce(&setup.prefix, more).await);
    let total = produced.len() as i64;
    assert!(
        wait_until(Duration::from_secs(60), || counts(&lake) == (total, total)),
        "the worker's new records: {:?} of {total}",
        counts(&lake)
    );
    signal(&worker, 15);
    assert!(wait_exit(&mut worker, Duration::from_secs(40), &worker_log).success());
    check_lake_and_dlq(&catalog(), &produced, &read_lake(&lake), &[]);
}
