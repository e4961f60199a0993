//! The same ingest path on `s3://` through object_store, against a real S3-compatible server
//! (moto's server, started by `make test`), and `rade query` reading the lake back from S3.
//! Transient S3 errors come from `deploy/local/s3fault.py`, a proxy in front of that server.

use std::collections::BTreeSet;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rade_integration_tests::*;
use rade_sim::FormatChoice;
use serde_json::{Value as J, json};

/// Readings spread over three hours, in no order: windows wait for all of them (none is late).
const WIDE_LATENESS: &str = "[windows]\nallowed_lateness = \"4h\"\n";

fn endpoint() -> String {
    std::env::var("RADE_TEST_S3_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:9400".into())
}

/// Credentials and endpoint as every S3 tool reads them; the server accepts any key.
const AWS_ENV: [(&str, &str); 4] = [
    ("AWS_ACCESS_KEY_ID", "rade-test"),
    ("AWS_SECRET_ACCESS_KEY", "rade-test"),
    ("AWS_REGION", "us-east-1"),
    ("AWS_ALLOW_HTTP", "true"),
];

fn query(lake: &str, sql: &str) -> String {
    let out = Command::new(rade_bin())
        .current_dir(schemas_dir().parent().expect("repo root"))
        .args(["query", "--lake", lake, "--format", "csv", sql])
        .envs(AWS_ENV)
        .env("AWS_ENDPOINT", endpoint())
        .output()
        .expect("rade query runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A new bucket on the test server.
async fn create_bucket() -> String {
    let bucket = unique("rade-lake").to_lowercase();
    let created = reqwest::Client::new()
        .put(format!("{}/{bucket}", endpoint()))
        .send()
        .await
        .expect("S3 server up");
    assert!(created.status().is_success(), "bucket creation: {}", created.status());
    bucket
}

#[tokio::test(flavor = "multi_thread")]
async fn the_worker_writes_the_lake_on_s3_once_and_rade_query_reads_it() {
    let setup = Setup::new(&["noise", "weather"], 3).await;
    let bucket = create_bucket().await;
    let lake = format!("s3://{bucket}/lake");

    let mut sim = setup.simulator(51);
    let now = now_ms();
    // Rejects first: valid rows after them in each partition make their files prove to the
    // replay that the rejects are already in the DLQ.
    let mut records: Vec<_> = (0..7)
        .map(|i| sim.invalid(now, rade_sim::SIMULATED_REASONS[i]))
        .collect();
    records.extend((0..600).map(|i| sim.valid(now - 3_600_000 + i * 5000, FormatChoice::Mixed)));
    let produced = produce(&setup.prefix, records).await;

    let endpoint = endpoint();
    let mut env: Vec<(&str, &str)> = AWS_ENV.to_vec();
    env.push(("AWS_ENDPOINT", &endpoint));
    env.push(("RADE__LAKE__URL", &lake));
    for (round, group) in [
        ("first", setup.group.clone()),
        ("replay", format!("{}-replay", setup.group)),
    ] {
        let log = setup.log(&format!("{round}.log"));
        let config = setup.config(WIDE_LATENESS);
        let mut env = env.clone();
        env.push(("RADE__KAFKA__GROUP_ID", &group));
        run_until_caught_up(&config, &env, &log);

        // Every valid record once, proven with the lineage columns, read back from S3.
        let mut total = 0;
        for kind in ["noise", "weather"] {
            let csv = query(&lake, &lineage_counts_sql(&format!("raw_{kind}")));
            let line = csv.lines().nth(1).expect("a row");
            let (n, d) = line.split_once(',').expect("two columns");
            assert_eq!(n, d, "{round}: duplicate rows in raw_{kind}");
            total += n.parse::<usize>().expect("a count");
        }
        assert_eq!(total, 600, "{round}: rows in the S3 lake");
    }
    let dlq = read_topic(&setup.dlq);
    assert_eq!(dlq.len(), 7, "rejects sent once, the replay skipped them");
    assert_eq!(produced.len(), 607);

    // More readings of the same hours in two more runs: several small files per partition
    // and hour, which `rade lake compact` merges on S3 as on disk.
    let config = setup.config(WIDE_LATENESS);
    let mut total = 600;
    for round in 0..2i64 {
        let more: Vec<_> = (0..300)
            .map(|i| {
                sim.valid(
                    now - 3_600_000 + i * 10_000 + round * 3_000 + 1_000,
                    FormatChoice::Mixed,
                )
            })
            .collect();
        produce(&setup.prefix, more).await;
        total += 300;
        run_until_caught_up(&config, &env, &setup.log(&format!("more{round}.log")));
    }
    let before = raw_objects(&bucket).await;
    let out = rade_lake_compact(&config, &["--settle", "0s"], &env);
    let summary = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{summary}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The replaced files go with vacuum (kept 0 s here: nothing else reads this lake).
    let out = std::process::Command::new(rade_bin())
        .args(["lake", "vacuum", "--retention", "0s", "--config", config.to_str().expect("utf-8")])
        .envs(env.iter().copied())
        .output()
        .expect("rade lake vacuum runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let after = raw_objects(&bucket).await;
    assert!(
        after < before,
        "{before} raw objects before compaction, {after} after: {summary}"
    );
    let mut rows = 0;
    for kind in ["noise", "weather"] {
        let csv = query(&lake, &lineage_counts_sql(&format!("raw_{kind}")));
        let (n, d) = csv.lines().nth(1).and_then(|l| l.split_once(',')).expect("two columns");
        assert_eq!(n, d, "duplicate rows in raw_{kind} after compaction");
        rows += n.parse::<usize>().expect("a count");
    }
    assert_eq!(rows, total, "rows in the S3 lake after compaction");
}

/// The number of Parquet objects under `lake/raw/` in `bucket` (ListObjectsV2; the test lakes hold
/// far fewer than a page of 1,000).
async fn raw_objects(bucket: &str) -> usize {
    let listing = reqwest::get(format!("{}/{bucket}?list-type=2&prefix=lake/raw/", endpoint()))
        .await
        .expect("S3 server up")
        .text()
        .await
        .expect("listing");
    assert!(!listing.contains("<IsTruncated>true"), "more than a page of objects");
    listing.matches(".parquet</Key>").count()
}

/// `deploy/local/s3fault.py` in front of the test server, on a port of its choosing; killed
/// on drop. Every fault it injects is a line of its log.
struct FaultProxy {
    child: Child,
    endpoint: String,
    log: PathBuf,
}

impl FaultProxy {
    fn start(log: &Path) -> FaultProxy {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/local/s3fault.py");
        let python = std::env::var("RADE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let mut child = Command::new(&python)
            .arg(&script)
            .args(["--upstream", &endpoint(), "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).expect("proxy log"))
            .spawn()
            .unwrap_or_else(|e| panic!("{python} {} does not start: {e}", script.display()));
        // The first line names the port; it comes once the proxy accepts connections, and
        // end of file comes instead if the proxy dies.
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("proxy stdout");
        let port = serde_json::from_str::<J>(&line)
            .ok()
            .and_then(|j| j["listening"].as_u64())
            .unwrap_or_else(|| {
                panic!(
                    "s3fault.py did not start: {line:?}; log:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                )
            });
        FaultProxy {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            log: log.to_owned(),
        }
    }

    /// Sets the mode (see the script's doc); answers the proxy's state.
    async fn set(&self, mode: J) -> J {
        let answer = reqwest::Client::new()
            .post(format!("{}/_fault", self.endpoint))
            .body(mode.to_string())
            .send()
            .await
            .expect("proxy control");
        let status = answer.status();
        let body = answer.text().await.expect("proxy answer");
        assert!(status.is_success(), "{mode}: {status} {body}");
        serde_json::from_str(&body).expect("proxy state")
    }

    /// What the proxy did so far: requests forwarded, faults injected by kind.
    async fn stats(&self) -> J {
        let (status, body) = http_get(&format!("{}/_fault", self.endpoint))
            .await
            .expect("proxy control");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("proxy state")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The environment of a worker that reaches S3 through `proxy`, with short backoffs (the
/// retry keys of `[lake]`, set as `RADE__LAKE__*`).
fn proxied_env(proxy: &FaultProxy, lake: &str, retry_timeout: &str) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = AWS_ENV.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    env.extend(
        [
            ("AWS_ENDPOINT", proxy.endpoint.as_str()),
            ("RADE__LAKE__URL", lake),
            ("RADE__LAKE__MAX_RETRIES", "100"),
            ("RADE__LAKE__RETRY_TIMEOUT", retry_timeout),
            ("RADE__LAKE__BACKOFF_INITIAL", "10ms"),
            ("RADE__LAKE__BACKOFF_MAX", "200ms"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    env
}

fn borrowed(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

type Position = (String, i32, i64);

/// The lineage of every raw row of the S3 lake, read by `rade query` straight from the
/// server; fails on a duplicate `(_topic, _partition, _offset)`.
fn stored(lake: &str, kinds: &[&str]) -> BTreeSet<Position> {
    let mut seen = BTreeSet::new();
    for kind in kinds {
        let csv = query(lake, &format!("SELECT _topic, _partition, _offset FROM raw_{kind}"));
        for line in csv.lines().skip(1) {
            let mut cols = line.split(',');
            let (Some(topic), Some(partition), Some(offset)) = (cols.next(), cols.next(), cols.next()) else {
                panic!("raw_{kind}: unexpected row {line:?}");
            };
            let pos = (
                topic.to_owned(),
                partition.parse().expect("a partition"),
                offset.parse().expect("an offset"),
            );
            assert!(seen.insert(pos.clone()), "duplicate row in raw_{kind}: {pos:?}");
        }
    }
    seen
}

fn positions(produced: &[Produced]) -> BTreeSet<Position> {
    produced
        .iter()
        .map(|p| (p.topic.clone(), p.partition, p.offset))
        .collect()
}

/// Asserts that the lake holds exactly the `produced` records (all valid): no duplicate, no
/// gap, nothing else.
fn assert_exactly_once(lake: &str, kinds: &[&str], produced: &[Produced], when: &str) {
    let expected = positions(produced);
    let stored = stored(lake, kinds);
    let missing: Vec<_> = expected.difference(&stored).take(5).collect();
    let extra: Vec<_> = stored.difference(&expected).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{when}: {} rows stored, {} produced; missing e.g. {missing:?}; unexpected e.g. {extra:?}",
        stored.len(),
        expected.len()
    );
}

/// Valid readings spread over three hours up to now: several files per partition and flush.
fn readings(setup: &Setup, seed: u64, n: i64) -> Vec<rade_sim::SimRecord> {
    let mut sim = setup.simulator(seed);
    let now = now_ms();
    (0..n)
        .map(|i| sim.valid(now - 3 * 3_600_000 + i * 10_800_000 / n, FormatChoice::Mixed))
        .collect()
}

/// True when `group` committed every non-empty partition of `topics` up to its end.
fn committed_to_end(group: &str, topics: &[String]) -> bool {
    topics.iter().all(|t| {
        committed_and_ends(group, t)
            .iter()
            .all(|(_, committed, end)| *end == 0 || *committed == Some(*end))
    })
}

/// The faults of the flaky S3 test, in turn.
const FLAKY: [&str; 5] = ["503", "500", "503-after", "close", "reset"];

#[tokio::test(flavor = "multi_thread")]
async fn transient_s3_errors_are_retried_and_the_lake_holds_each_record_once() {
    let setup = Setup::new(&["noise", "weather"], 3).await;
    let bucket = create_bucket().await;
    let lake = format!("s3://{bucket}/lake");
    let proxy = FaultProxy::start(&setup.log("s3fault.log"));
    // Every second PUT fails: refused outright, stored and then answered with a 503, or its
    // connection closed or reset once the request was sent.
    proxy
        .set(json!({"mode": "flaky", "every": 2, "methods": ["PUT"], "faults": FLAKY}))
        .await;
    let produced = produce(&setup.prefix, readings(&setup, 61, 600)).await;

    let env = proxied_env(&proxy, &lake, "1m");
    let log = setup.log("flaky.log");
    let text = run_until_caught_up(&setup.config(WIDE_LATENESS), &borrowed(&env), &log);

    let stats = proxy.stats().await;
    let injected = stats["injected"].clone();
    for fault in FLAKY {
        assert!(
            injected[fault].as_u64().unwrap_or(0) > 0,
            "no `{fault}` fault was injected: {stats}\n{}",
            proxy.log()
        );
    }
    // object_store retried the 5xx and the closed connections.
    assert!(
        text.contains("Encountered server error"),
        "no retried server error in the worker's log: {text}"
    );
    assert_exactly_once(&lake, &setup.kinds, &produced, "after the flaky run");

    // The tables' commits themselves (create-only PUTs of `_delta_log/` entries): every second
    // one is stored and then answered with a 503 (object_store's retry finds it there), or
    // its connection is reset once sent (the lake's retry finds it there). Each retry must
    // recognise its own commit, not take it for another writer's and stop as fenced.
    let mut produced = produced;
    for (seed, fault) in [(62, "reset"), (63, "503-after")] {
        let before = proxy.stats().await["injected"][fault].as_u64().unwrap_or(0);
        proxy
            .set(json!({"mode": "flaky", "every": 2, "methods": ["PUT"], "paths": ["_delta_log/"], "faults": [fault]}))
            .await;
        produced.extend(produce(&setup.prefix, readings(&setup, seed, 300)).await);
        let text = run_until_caught_up(&setup.config(WIDE_LATENESS), &borrowed(&env), &setup.log(&format!("{fault}.log")));
        let stats = proxy.stats().await;
        assert!(
            stats["injected"][fault].as_u64().unwrap_or(0) > before,
            "no `{fault}` on a commit: {stats}\n{}",
            proxy.log()
        );
        if fault == "reset" {
            assert!(
                text.contains("create-only PUT interrupted, backing off"),
                "no retried commit in the worker's log: {text}"
            );
        }
        assert!(!text.contains("fenced"), "{text}");
    }
    assert_exactly_once(&lake, &setup.kinds, &produced, "after the flaky commits");
    assert!(
        committed_to_end(&setup.group, &setup.raw_topics),
        "offsets not committed to the end: {:?}",
        setup
            .raw_topics
            .iter()
            .map(|t| committed_and_ends(&setup.group, t))
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_s3_outage_stops_the_worker_without_committing_what_is_not_stored() {
    let setup = Setup::new(&["noise", "weather"], 3).await;
    let bucket = create_bucket().await;
    let lake = format!("s3://{bucket}/lake");
    let proxy = FaultProxy::start(&setup.log("s3fault.log"));
    let config = setup.config(WIDE_LATENESS);
    let config_arg = config.to_str().expect("a UTF-8 path");
    let env = proxied_env(&proxy, &lake, "2s");

    // A healthy start: the first readings stored and committed.
    let first = produce(&setup.prefix, readings(&setup, 71, 300)).await;
    let log = setup.log("outage.log");
    let mut worker = spawn_rade_env(&["run", "--config", config_arg], &borrowed(&env), &log);
    let caught_up = wait_until(Duration::from_secs(120), || {
        committed_to_end(&setup.group, &setup.raw_topics)
    });
    if !caught_up {
        let _ = worker.kill();
        panic!(
            "the first readings were never committed; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    let committed_before: Vec<_> = setup
        .raw_topics
        .iter()
        .map(|t| committed_and_ends(&setup.group, t))
        .collect();

    // S3 goes away; more readings arrive. The flush retries for `retry_timeout`, then the
    // worker stops, naming what it could not write.
    proxy.set(json!({"mode": "outage", "faults": ["503"]})).await;
    let second = produce(&setup.prefix, readings(&setup, 72, 300)).await;
    let status = wait_exit(&mut worker, Duration::from_secs(120), &log);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(status.code(), Some(1), "the worker did not stop with an error: {text}");
    let error = text
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line: {text}"));
    assert!(
        error.contains(&format!("/{bucket}/lake/")) && error.contains("503"),
        "the error names neither the S3 path nor the answer: {error}"
    );
    let stats = proxy.stats().await;
    assert!(
        stats["injected"]["503"].as_u64().unwrap_or(0) > 0,
        "no fault injected: {stats}"
    );

    // Nothing committed beyond what the lake holds: the commits did not move, and every
    // record below a committed offset is in the lake (read straight from the server).
    let committed_after: Vec<_> = setup
        .raw_topics
        .iter()
        .map(|t| committed_and_ends(&setup.group, t))
        .collect();
    let stored_now = stored(&lake, &setup.kinds);
    for ((before, after), topic) in committed_before.iter().zip(&committed_after).zip(&setup.raw_topics) {
        for ((partition, was, _), (_, now, end)) in before.iter().zip(after) {
            assert_eq!(was, now, "{topic}/{partition}: a commit during the outage (end {end})");
            let below = now.unwrap_or(0);
            for p in first.iter().chain(&second) {
                if &p.topic == topic && p.partition == *partition && p.offset < below {
                    assert!(
                        stored_now.contains(&(p.topic.clone(), p.partition, p.offset)),
                        "{topic}/{partition}@{} committed ({below}) but not in the lake",
                        p.offset
                    );
                }
            }
        }
    }
    assert_exactly_once(&lake, &setup.kinds, &first, "after the outage");

    // S3 is back: a new worker replays what was not committed, and the lake is whole.
    proxy.set(json!({"mode": "pass"})).await;
    run_until_caught_up(&config, &borrowed(&env), &setup.log("after-outage.log"));
    let all: Vec<Produced> = first.into_iter().chain(second).collect();
    assert_exactly_once(&lake, &setup.kinds, &all, "after the restart");
    assert_committed_to_end(&setup.group, &setup.raw_topics);
}
