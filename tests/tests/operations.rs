//! What operators rely on, against the real broker and a real Prometheus: metrics and health,
//! scaling out by rebalance without losing or doubling a row, and a SASL/SCRAM listener.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rade_integration_tests::*;
use rade_sim::FormatChoice;

/// A Prometheus server scraping one target every second, stopped on drop.
struct Prometheus {
    child: Child,
    url: String,
}

impl Prometheus {
    fn start(dir: &std::path::Path, target: &str) -> Prometheus {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: rade\n    static_configs:\n      - targets: ['{target}']\n"),
        )
        .expect("prometheus config");
        let port = free_port();
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus starts (make deps installs it)");
        Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// The single value of an instant query, if there is one.
    async fn value(&self, query: &str) -> Option<f64> {
        let url = format!("{}/api/v1/query?query={}", self.url, urlencode(query));
        let (status, body) = http_get(&url).await?;
        if status != 200 {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_scrapes_the_worker_and_sees_what_it_did() {
    // Water levels keep every configured window (the other kinds name theirs in the catalog).
    let setup = Setup::new(&["noise", "water_level"], 3).await;
    let mut sim = setup.simulator(21);
    let now = now_ms();
    let mut records: Vec<_> = (0..1500)
        .map(|i| sim.valid(now - 60_000 + i, FormatChoice::Mixed))
        .collect();
    for i in 0..14 {
        records.push(sim.invalid(now, rade_sim::SIMULATED_REASONS[i % 7]));
    }
    let produced = produce(&setup.prefix, records).await;
    // One-second windows and one rule that holds for every water-level window, so that
    // windows close and alerts are raised within the test.
    let rules = setup.dir.path().join("rules");
    std::fs::create_dir(&rules).expect("rules dir");
    std::fs::write(
        rules.join("loud.toml"),
        "[[rule]]\nname = \"any_level\"\nkinds = [\"water_level\"]\nwindow = \"1s\"\nseverity = \"info\"\n\
         condition = \"records > 0\"\nmessage = \"{sensor_id}: {height_max} cm\"\n",
    )
    .expect("rule written");
    let config = setup.config(&format!(
        "[windows]\nwindows = [\"1s\"]\nallowed_lateness = \"0s\"\nrules_dir = \"{}\"\n",
        rules.display()
    ));
    let log = setup.log("run.log");
    let mut worker = spawn_rade(&["run", "--config", config.to_str().expect("utf-8")], &log);
    assert!(
        wait_until(Duration::from_secs(60), || log_value(&log, "addr").is_some()),
        "no metrics address logged: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let addr = log_value(&log, "addr").expect("address");
    let metrics_url = format!("http://{addr}/metrics");
    assert!(
        wait_until_async(Duration::from_secs(120), || async {
            http_get(&format!("http://{addr}/readyz"))
                .await
                .is_some_and(|(s, _)| s == 200)
        })
        .await,
        "never ready"
    );
    assert_eq!(
        http_get(&format!("http://{addr}/healthz")).await.map(|(s, _)| s),
        Some(200)
    );

    let prometheus = Prometheus::start(setup.dir.path(), &addr);
    let expect = |query: &'static str, want: f64| {
        let p = &prometheus;
        async move {
            let ok = wait_until_async(Duration::from_secs(90), || async { p.value(query).await == Some(want) }).await;
            assert!(
                ok,
                "{query}: Prometheus says {:?}, expected {want}",
                p.value(query).await
            );
        }
    };
    expect("up{job=\"rade\"}", 1.0).await;
    expect("sum(rade_records_consumed_total)", produced.len() as f64).await;
    expect("sum(rade_records_valid_total)", 1500.0).await;
    expect("sum(rade_records_rejected_total)", 14.0).await;
    expect("sum(rade_records_rejected_total{reason=\"too_large\"})", 2.0).await;
    expect("rade_dlq_produced_total", 14.0).await;
    expect("rade_assigned_partitions", 6.0).await;
    // Lag comes from librdkafka statistics (every 5 s) once everything is read.
    expect("count(rade_consumer_lag)", 6.0).await;
    expect("sum(rade_consumer_lag)", 0.0).await;
    assert!(
        prometheus
            .value("sum(rade_lake_files_written_total)")
            .await
            .unwrap_or(0.0)
            >= 1.0
    );
    assert!(
        prometheus
            .value("rade_commit_latency_seconds_count")
            .await
            .unwrap_or(0.0)
            >= 1.0
    );
    assert!(
        prometheus
            .value("rade_end_to_end_latency_seconds_count")
            .await
            .unwrap_or(0.0)
            >= 1.0
    );

    // Windows closed and alerts raised, as the alert topic shows them.
    let topic = alerts_topic(&setup.dlq);
    let agree = wait_until_async(Duration::from_secs(90), || {
        let p = &prometheus;
        let topic = topic.clone();
        async move {
            let on_topic = read_topic(&topic).len();
            let raised = p
                .value("sum(rade_alerts_total{rule=\"any_level\", state=\"RAISED\"})")
                .await;
            on_topic > 0 && raised == Some(on_topic as f64)
        }
    })
    .await;
    let on_topic = read_topic(&topic).len();
    assert!(
        agree,
        "alerts: {on_topic} on the topic, Prometheus says {:?}",
        prometheus.value("sum(rade_alerts_total)").await
    );
    assert!(
        prometheus
            .value("sum(rade_windows_closed_total{window=\"1s\"})")
            .await
            .unwrap_or(0.0)
            >= on_topic as f64
    );

    // The exposition passes Prometheus's own linter.
    let (_, body) = http_get(&metrics_url).await.expect("metrics");
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    use std::io::Write;
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("piped");
    let out = promtool.wait_with_output().expect("promtool ends");
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    signal(&worker, 15);
    assert!(wait_exit(&mut worker, Duration::from_secs(40), &log).success());
}

#[tokio::test(flavor = "multi_thread")]
async fn workers_joining_and_leaving_under_load_lose_and_double_nothing() {
    let setup = Setup::new(&["noise", "parking_bay"], 6).await;
    let config = setup.config("");
    let producer = paced_producer(setup.prefix.clone(), setup.simulator(31), 40, 1000);
    let c = config.to_str().expect("utf-8").to_owned();
    let start = |name: &str| {
        let log = setup.log(name);
        (spawn_rade(&["run", "--config", &c], &log), log)
    };
    let files = || parquet_files(&setup.lake().join("raw")).len();
    let (mut one, one_log) = start("one.log");
    assert!(
        wait_until(Duration::from_secs(90), || files() >= 4),
        "worker one wrote nothing"
    );
    let (mut two, two_log) = start("two.log");
    assert!(
        wait_until(Duration::from_secs(60), || std::fs::read_to_string(&two_log)
            .unwrap_or_default()
            .contains("partitions assigned")),
        "worker two never got partitions"
    );
    let before = files();
    assert!(
        wait_until(Duration::from_secs(60), || files() > before + 2),
        "no progress with two workers"
    );
    let (mut three, three_log) = start("three.log");
    assert!(
        wait_until(Duration::from_secs(60), || std::fs::read_to_string(&three_log)
            .unwrap_or_default()
            .contains("partitions assigned")),
        "worker three never got partitions"
    );
    assert!(!producer.is_finished(), "the load ended before the third worker joined");
    // One leaves while the load goes on: its partitions move to the others.
    signal(&one, 15);
    let status = wait_exit(&mut one, Duration::from_secs(40), &one_log);
    assert!(
        status.success(),
        "{status:?}: {}",
        std::fs::read_to_string(&one_log).unwrap_or_default()
    );
    let produced = producer.await.expect("producer");
    let total = produced.len() as i64;
    assert!(
        wait_committed_to_end(&setup.group, &setup.raw_topics, Duration::from_secs(120)),
        "the group never committed to the end"
    );
    for (child, log) in [(&mut two, &two_log), (&mut three, &three_log)] {
        signal(child, 15);
        let status = wait_exit(child, Duration::from_secs(40), log);
        assert!(
            status.success(),
            "{status:?}: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }
    let rows = read_lake(&setup.lake());
    let dlq = read_topic(&setup.dlq);
    let checked = check_lake_and_dlq(&catalog(), &produced, &rows, &dlq);
    assert_eq!((checked.valid + checked.rejected) as i64, total);
    assert_eq!(checked.dlq_duplicates, 0, "a clean handover sends no reject twice");
    assert_committed_to_end(&setup.group, &setup.raw_topics);
}

/// The SASL listener of deploy/local/kafka.sh and its SCRAM user.
fn sasl_bootstrap() -> String {
    std::env::var("RADE_TEST_SASL_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9094".into())
}

const SASL_PASSWORD: &str = "rade-secret";

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_authenticates_with_scram_and_never_shows_the_secret() {
    let setup = Setup::new(&["rainfall"], 2).await;
    let mut sim = setup.simulator(41);
    let now = now_ms();
    let produced = produce(
        &setup.prefix,
        (0..300).map(|i| sim.valid(now - i, FormatChoice::Mixed)).collect(),
    )
    .await;
    let secret_file = setup.dir.path().join("password");
    std::fs::write(&secret_file, format!("{SASL_PASSWORD}\n")).expect("secret file");
    for (mechanism, password) in [
        ("SCRAM-SHA-256", "env:RADE_TEST_PASSWORD".to_owned()),
        ("SCRAM-SHA-512", format!("file:{}", secret_file.display())),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = write_config(
            dir.path(),
            &setup.prefix,
            &setup.kinds,
            &format!("{}-{mechanism}", setup.group),
            &setup.dlq,
            &dir.path().join("lake"),
            &format!(
                "[kafka.properties]\n\"security.protocol\" = \"SASL_PLAINTEXT\"\n\"sasl.mechanism\" = \"{mechanism}\"\n\"sasl.username\" = \"rade\"\n\"sasl.password\" = \"{password}\"\n"
            ),
        );
        let log = dir.path().join("run.log");
        let env = [
            ("RADE__KAFKA__BOOTSTRAP_SERVERS", sasl_bootstrap()),
            ("RADE_TEST_PASSWORD", SASL_PASSWORD.to_owned()),
        ];
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut child = spawn_rade_env(
            &["run", "--config", config.to_str().expect("utf-8"), "--until-caught-up"],
            &env,
            &log,
        );
        let addr_seen = wait_until(Duration::from_secs(60), || log_value(&log, "addr").is_some());
        let metrics = match log_value(&log, "addr") {
            Some(addr) if addr_seen => http_get(&format!("http://{addr}/metrics"))
                .await
                .map(|(_, b)| b)
                .unwrap_or_default(),
            _ => String::new(),
        };
        let status = wait_exit(&mut child, Duration::from_secs(120), &log);
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(status.success(), "{mechanism}: {text}");
        assert_eq!(read_lake(&dir.path().join("lake")).len(), produced.len(), "{mechanism}");
        assert!(!text.contains(SASL_PASSWORD), "the password is in the log");
        assert!(!metrics.contains(SASL_PASSWORD), "the password is in /metrics");
    }

    // A wrong password stops startup with a message naming the address, not the password.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(
        dir.path(),
        &setup.prefix,
        &setup.kinds,
        &setup.group,
        &setup.dlq,
        &dir.path().join("lake"),
        "[kafka.properties]\n\"security.protocol\" = \"SASL_PLAINTEXT\"\n\"sasl.mechanism\" = \"SCRAM-SHA-256\"\n\"sasl.username\" = \"rade\"\n\"sasl.password\" = \"not-the-password\"\n",
    );
    let out = Command::new(rade_bin())
        .args(["run", "--config", config.to_str().expect("utf-8")])
        .env("RADE__KAFKA__BOOTSTRAP_SERVERS", sasl_bootstrap())
        .env("RADE__WORKER__CONNECT_TIMEOUT", "5s")
        .output()
        .expect("rade runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(&sasl_bootstrap()), "{err}");
    assert!(!err.contains("not-the-password"), "{err}");
}
