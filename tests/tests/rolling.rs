//! Raw files roll on the watermark, on size and on age, each open file on its own; offsets are
//! committed only up to the first row of the oldest file still open.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rade_integration_tests::*;
use rade_sim::FormatChoice;

const HOUR: i64 = 3_600_000;

/// The raw files of one event hour (`hour` in ms since the epoch).
fn files_of_hour(lake: &Path, hour: i64) -> Vec<PathBuf> {
    let t = chrono::DateTime::from_timestamp_millis(hour).expect("a time");
    let dir = lake.join(format!("raw/noise/{}", t.format("date=%Y-%m-%d/hour=%H")));
    parquet_files(&dir)
}

fn committed(setup: &Setup) -> Option<i64> {
    committed_and_ends(&setup.group, &setup.raw_topics[0])[0].1
}

/// Starts a worker with `[worker]` settings from the environment.
fn worker(setup: &Setup, config: &Path, name: &str, env: &[(&str, &str)]) -> std::process::Child {
    spawn_rade_env(
        &["run", "--config", config.to_str().expect("utf-8")],
        env,
        &setup.log(name),
    )
}

fn stop(setup: &Setup, mut child: std::process::Child, name: &str) {
    signal(&child, 15);
    assert!(wait_exit(&mut child, Duration::from_secs(40), &setup.log(name)).success());
}

#[tokio::test(flavor = "multi_thread")]
async fn files_roll_on_the_watermark_on_size_and_on_age() {
    let setup = Setup::new(&["noise"], 1).await;
    let config = setup.config("[windows]\nenabled = false\n");
    let lake = setup.lake();
    let mut sim = setup.simulator(3);
    let h0 = (now_ms() / HOUR - 8) * HOUR;

    // The watermark: readings of hour 0, then of hour 1 more than the lateness (1 min) past it.
    // Hour 0's file rolls at once; hour 1's stays open (it rolls after an hour of age), and
    // the commit waits at its first row.
    let env = [("RADE__WORKER__ROLL_INTERVAL", "1h")];
    let w = worker(&setup, &config, "watermark.log", &env);
    let first: Vec<_> = (0..200)
        .map(|i| sim.valid(h0 + i * 10_000, FormatChoice::Mixed))
        .collect();
    let second: Vec<_> = (0..20)
        .map(|i| sim.valid(h0 + HOUR + 120_000 + i * 1_000, FormatChoice::Mixed))
        .collect();
    produce(&setup.prefix, first).await;
    let produced = produce(&setup.prefix, second).await;
    assert!(
        wait_until(Duration::from_secs(60), || committed(&setup) == Some(200)),
        "committed {:?}: {}",
        committed(&setup),
        std::fs::read_to_string(setup.log("watermark.log")).unwrap_or_default()
    );
    assert_eq!(files_of_hour(&lake, h0).len(), 1, "hour 0 rolled in one file");
    assert!(files_of_hour(&lake, h0 + HOUR).is_empty(), "hour 1 is still open");
    assert_eq!(produced[0].offset, 200);
    // A clean stop rolls every open file and commits to the end.
    stop(&setup, w, "watermark.log");
    assert_eq!(files_of_hour(&lake, h0 + HOUR).len(), 1);
    assert_committed_to_end(&setup.group, &setup.raw_topics);

    // Size: 64 KiB files; readings of one hour keep coming.
    let env = [
        ("RADE__WORKER__ROLL_INTERVAL", "1h"),
        ("RADE__WORKER__ROLL_SIZE", "64KiB"),
    ];
    let w = worker(&setup, &config, "size.log", &env);
    let h2 = h0 + 2 * HOUR;
    for batch in 0..10i64 {
        let records: Vec<_> = (0..2_000i64)
            .map(|i| sim.valid(h2 + (batch * 2_000 + i) * 150, FormatChoice::Mixed))
            .collect();
        produce(&setup.prefix, records).await;
    }
    assert!(
        wait_until(Duration::from_secs(60), || files_of_hour(&lake, h2).len() >= 4),
        "{} files: {}",
        files_of_hour(&lake, h2).len(),
        std::fs::read_to_string(setup.log("size.log")).unwrap_or_default()
    );
    stop(&setup, w, "size.log");
    let sizes: Vec<u64> = files_of_hour(&lake, h2)
        .iter()
        .map(|p| std::fs::metadata(p).expect("file").len())
        .collect();
    // Every file but the one the stop rolled is near the target (the size is estimated from
    // the Arrow bytes buffered and the Parquet ratio of the files written before).
    let full = sizes.iter().filter(|&&s| (24 << 10..=192 << 10).contains(&s)).count();
    assert!(full + 1 >= sizes.len(), "file sizes {sizes:?}");

    // Age: a few readings, then silence; the file rolls after 3 s and the commit follows,
    // with no new record to trigger it.
    let env = [("RADE__WORKER__ROLL_INTERVAL", "3s")];
    let w = worker(&setup, &config, "age.log", &env);
    let h4 = h0 + 4 * HOUR;
    let records: Vec<_> = (0..5).map(|i| sim.valid(h4 + i * 1_000, FormatChoice::Mixed)).collect();
    produce(&setup.prefix, records).await;
    assert!(
        wait_until(Duration::from_secs(60), || files_of_hour(&lake, h4).len() == 1),
        "{}",
        std::fs::read_to_string(setup.log("age.log")).unwrap_or_default()
    );
    assert!(
        wait_until(Duration::from_secs(30), || {
            let (_, c, end) = committed_and_ends(&setup.group, &setup.raw_topics[0])[0];
            c == Some(end)
        }),
        "the idle partition was not committed"
    );
    stop(&setup, w, "age.log");
    // Each reading once.
    let rows = read_lake(&lake);
    let mut offsets: Vec<i64> = rows.iter().map(|r| r.offset).collect();
    offsets.sort();
    let end = committed_and_ends(&setup.group, &setup.raw_topics[0])[0].2;
    assert_eq!(offsets, (0..end).collect::<Vec<_>>());

    // `rade query --explain` names the files a query reads: a filter on the Hive columns
    // reads hour 0's file and no other.
    let t = chrono::DateTime::from_timestamp_millis(h0).expect("a time");
    let plan = explain(
        &lake,
        &format!(
            "SELECT avg(LAeq) FROM raw_noise WHERE date = '{}' AND hour = '{}'",
            t.format("%Y-%m-%d"),
            t.format("%H")
        ),
    );
    let name = |p: &PathBuf| p.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
    let hour0 = name(&files_of_hour(&lake, h0)[0]);
    assert!(plan.contains(&hour0), "{hour0} not in the plan:\n{plan}");
    for other in [h0 + HOUR, h2, h4].iter().flat_map(|h| files_of_hour(&lake, *h)) {
        assert!(!plan.contains(&name(&other)), "{} read:\n{plan}", name(&other));
    }

    // A filter on a data column prunes by the files' statistics in the table's log: the
    // readings of hour 4 only, without a word about the Hive columns.
    let t4 = chrono::DateTime::from_timestamp_millis(h4).expect("a time");
    let plan = explain(
        &lake,
        &format!(
            "SELECT avg(LAeq) FROM raw_noise WHERE observed_at >= TIMESTAMP '{}'",
            t4.format("%Y-%m-%dT%H:%M:%SZ")
        ),
    );
    let hour4 = name(&files_of_hour(&lake, h4)[0]);
    assert!(plan.contains(&hour4), "{hour4} not in the plan:\n{plan}");
    for other in [h0, h0 + HOUR, h2].iter().flat_map(|h| files_of_hour(&lake, *h)) {
        assert!(!plan.contains(&name(&other)), "{} read:\n{plan}", name(&other));
    }
}

/// The physical plan of `sql` over `lake` (`rade query --explain`), with the files it reads.
fn explain(lake: &Path, sql: &str) -> String {
    let out = std::process::Command::new(rade_bin())
        .args(["query", "--lake", lake.to_str().expect("utf-8"), "--schemas"])
        .arg(schemas_dir())
        .arg("--explain")
        .arg(sql)
        .output()
        .expect("rade query runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The sum of a counter over its labels in a worker's `/metrics`.
async fn counter(addr: &str, name: &str) -> f64 {
    let Some((200, body)) = http_get(&format!("http://{addr}/metrics")).await else {
        return -1.0;
    };
    body.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rebalance_rolls_the_files_of_the_partitions_that_move_only() {
    let setup = Setup::new(&["noise"], 2).await;
    let config = setup.config("[windows]\nenabled = false\n");
    let lake = setup.lake();
    let mut sim = setup.simulator(8);
    let h0 = (now_ms() / HOUR - 6) * HOUR;
    let env = [("RADE__WORKER__ROLL_INTERVAL", "1h")];
    let first = worker(&setup, &config, "first.log", &env);
    let records: Vec<_> = (0..400)
        .map(|i| sim.valid(h0 + i * 5_000, FormatChoice::Mixed))
        .collect();
    let produced = produce(&setup.prefix, records).await;
    let partitions: std::collections::BTreeSet<i32> = produced.iter().map(|p| p.partition).collect();
    assert_eq!(partitions.len(), 2, "both partitions have readings");
    // The first worker has read everything, its two files are open, nothing is committed.
    assert!(wait_until(Duration::from_secs(60), || log_value(
        &setup.log("first.log"),
        "addr"
    )
    .is_some()));
    let addr = log_value(&setup.log("first.log"), "addr").expect("metrics address");
    assert!(
        wait_until_async(Duration::from_secs(60), || async {
            counter(&addr, "rade_records_consumed_total").await == 400.0
        })
        .await
    );
    assert!(parquet_files(&lake.join("raw")).is_empty());

    // A second worker joins: one partition moves (cooperative rebalance). Its file rolls and
    // is committed; the partition that stays keeps its file open and its commit where it was.
    let second = worker(&setup, &config, "second.log", &env);
    // The file, then the table's commit, then Kafka's: wait for the last.
    assert!(
        wait_until(Duration::from_secs(60), || parquet_files(&lake.join("raw")).len() == 1
            && committed_and_ends(&setup.group, &setup.raw_topics[0])
                .iter()
                .any(|(_, c, end)| *end > 0 && *c == Some(*end))),
        "{}",
        std::fs::read_to_string(setup.log("first.log")).unwrap_or_default()
    );
    let state = committed_and_ends(&setup.group, &setup.raw_topics[0]);
    let moved: Vec<_> = state.iter().filter(|(_, c, end)| *c == Some(*end)).collect();
    // Its first offset is in the open file: nothing past it is committed.
    let kept: Vec<_> = state
        .iter()
        .filter(|(_, c, end)| c.unwrap_or(0) == 0 && *end > 0)
        .collect();
    assert_eq!((moved.len(), kept.len()), (1, 1), "{state:?}");
    let file = parquet_files(&lake.join("raw")).remove(0);
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
    assert!(name.contains(&format!("__p{}__", moved[0].0)), "{name}");

    // Both stop cleanly: the kept file rolls then, and every reading is there once.
    stop(&setup, second, "second.log");
    stop(&setup, first, "first.log");
    assert_committed_to_end(&setup.group, &setup.raw_topics);
    check_lake_and_dlq(&catalog(), &produced, &read_lake(&lake), &[]);
}
