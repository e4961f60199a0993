//! A worker paused past its session timeout (a GC pause, a VM stall, a network split) and then
//! resumed cannot make rows of the partitions it lost visible: its commit finds the position
//! its successor committed, is refused, and the worker stops. Every record ends in the lake
//! once.

use std::collections::BTreeMap;
use std::time::Duration;

use rade_integration_tests::*;

/// A short session: the paused worker is evicted quickly.
const SHORT_SESSION: &str = "[kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"1000\"\n";

/// Records the worker at `addr` has read (its `/metrics`).
async fn consumed(addr: &str) -> i64 {
    let Some((200, body)) = http_get(&format!("http://{addr}/metrics")).await else {
        return -1;
    };
    body.lines()
        .filter(|l| l.starts_with("rade_records_consumed_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as i64
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_worker_resumed_after_losing_its_partitions_commits_nothing() {
    let setup = Setup::new(&["noise"], 2).await;
    let config = setup.config(SHORT_SESSION);
    let c = config.to_str().expect("utf-8").to_owned();
    let table = setup.lake().join("raw/noise");
    let producer = paced_producer(setup.prefix.clone(), setup.simulator(41), 120, 50);

    let (first_log, second_log) = (setup.log("first.log"), setup.log("second.log"));
    let mut first = spawn_rade(&["run", "--config", &c], &first_log);
    let ours = |txns: &BTreeMap<String, i64>| -> Vec<i64> {
        (0..2)
            .filter_map(|p| txns.get(&format!("rade:{}:{}:{p}", setup.group, setup.raw_topics[0])).copied())
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(90), || ours(&delta_txns(&table)).len() == 2
            && log_value(&first_log, "addr").is_some()),
        "the first worker never committed both partitions: {}",
        std::fs::read_to_string(&first_log).unwrap_or_default()
    );
    // Frozen while it has records in hand (read, not yet in the table): no heartbeat, no
    // poll. Offsets start at 0, so the table's positions add up to the records committed.
    let addr = log_value(&first_log, "addr").expect("metrics address");
    assert!(
        wait_until_async(Duration::from_secs(60), || async {
            let committed: i64 = ours(&delta_txns(&table)).iter().sum();
            consumed(&addr).await >= committed + 50
        })
        .await,
        "the first worker never held 50 records beyond its commits"
    );
    signal(&first, 19); // SIGSTOP
    let frozen_at = ours(&delta_txns(&table));
    let mut second = spawn_rade(&["run", "--config", &c], &second_log);
    // The group evicts the frozen member; the second worker takes both partitions and
    // commits past where the first one stopped.
    assert!(
        wait_until(Duration::from_secs(120), || {
            let now = ours(&delta_txns(&table));
            now.len() == 2 && now.iter().zip(&frozen_at).all(|(n, f)| n > f)
        }),
        "the second worker never committed past the frozen one: {}",
        std::fs::read_to_string(&second_log).unwrap_or_default()
    );
    signal(&first, 18); // SIGCONT
    let status = wait_exit(&mut first, Duration::from_secs(60), &first_log);
    let first_text = std::fs::read_to_string(&first_log).unwrap_or_default();
    assert!(!status.success(), "the resumed worker went on: {first_text}");
    assert!(first_text.contains("fenced"), "{first_text}");

    let produced = producer.await.expect("producer");
    assert!(
        wait_committed_to_end(&setup.group, &setup.raw_topics, Duration::from_secs(120)),
        "the second worker never committed to the end"
    );
    signal(&second, 15);
    assert!(wait_exit(&mut second, Duration::from_secs(40), &second_log).success());
    let checked = check_lake_and_dlq(&catalog(), &produced, &read_lake(&setup.lake()), &read_topic(&setup.dlq));
    assert_eq!(checked.valid + checked.rejected, produced.len());
}
