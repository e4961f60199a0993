//! The first slice on the real broker: raw topics -> validation -> DLQ and raw Parquet lake.

use std::time::{Duration, Instant};

use rade_integration_tests::*;

/// Readings spread over three hours, in no order: windows wait for all of them (none is late).
const WIDE_LATENESS: &str = "[windows]\nallowed_lateness = \"4h\"\n";
use rade_schema::{RejectReason, WireFormat};
use rade_sim::{Expect, Fleet, FormatChoice, SIMULATED_REASONS, SimRecord, Simulator};

const KINDS: [&str; 5] = ["water_level", "noise", "parking_bay", "car_park", "air_quality"];

fn simulator(seed: u64) -> Simulator {
    let kinds: Vec<String> = KINDS.iter().map(|k| k.to_string()).collect();
    Simulator::new(catalog(), Fleet::new(&kinds, 0.2, seed), seed).expect("simulator")
}

#[tokio::test(flavor = "multi_thread")]
async fn every_record_lands_once_in_the_lake_or_the_dlq_with_its_reason() {
    let setup = Setup::new(&KINDS, 3).await;
    let mut sim = simulator(11);
    let now = now_ms();
    let mut records = Vec::new();
    // Every sensor in every wire format, over the last three hours (several hour partitions).
    let sensors = sim.fleet().sensors.len();
    for i in 0..sensors {
        for (j, f) in [WireFormat::Confluent, WireFormat::SingleObject, WireFormat::Json]
            .into_iter()
            .enumerate()
        {
            // A spread over ~2.8 h that gives every kind readings in several hours.
            let t = now - ((i * 3 + j) as i64 * 7_919_003) % 10_000_000;
            records.push(sim.valid_of(i, t, FormatChoice::One(f)));
        }
    }
    for _ in 0..4 {
        for reason in SIMULATED_REASONS {
            records.push(sim.invalid(now - 1000, reason));
        }
    }
    // An empty value and a tombstone are malformed too.
    for value in [Some(Vec::new()), None] {
        records.push(SimRecord {
            kind: "noise".into(),
            key: b"nz-0001".to_vec(),
            value,
            observed_at_ms: now,
            expect: Expect::Reject(RejectReason::Malformed),
        });
    }
    let produced = produce(&setup.prefix, records).await;

    let config = setup.config(WIDE_LATENESS);
    run_until_caught_up(&config, &[], &setup.log("run.log"));

    let lake = read_lake(&setup.lake());
    let dlq = read_topic(&setup.dlq);
    let checked = check_lake_and_dlq(&catalog(), &produced, &lake, &dlq);
    assert_eq!(checked.valid, sensors * 3);
    assert_eq!(checked.rejected, SIMULATED_REASONS.len() * 4 + 2);
    assert_eq!(checked.dlq_duplicates, 0);
    // consumed = lake rows + DLQ messages, nothing more, nothing less.
    assert_eq!(produced.len(), lake.len() + dlq.len());
    assert_committed_to_end(&setup.group, &setup.raw_topics);
    // Files are laid out by event hour, so three hours of readings span several partitions.
    let hours: std::collections::BTreeSet<_> = parquet_files(&setup.lake().join("raw"))
        .iter()
        .filter_map(|p| p.parent().map(|d| d.to_path_buf()))
        .collect();
    assert!(hours.len() >= KINDS.len() * 3, "only {} hour directories", hours.len());

    // The worst crash: files written, no offset committed. A new group on the same lake
    // replays everything from offset 0 and must write and send nothing again.
    let replay = write_config(
        setup.dir.path(),
        &setup.prefix,
        &KINDS,
        &format!("{}-replay", setup.group),
        &setup.dlq,
        &setup.lake(),
        WIDE_LATENESS,
    );
    let text = run_until_caught_up(&replay, &[], &setup.log("replay.log"));
    let after = read_lake(&setup.lake());
    assert_eq!(after.len(), lake.len(), "the replay wrote rows again");
    let dlq_after = read_topic(&setup.dlq);
    assert_eq!(dlq_after.len(), dlq.len(), "the replay sent rejects again");
    // The lake and the DLQ hold every position: the replay passes over all of it.
    assert!(text.contains(&format!("replay_skipped={}", produced.len())), "{text}");
}

async fn restart_mid_stream(sig: i32) {
    let setup = Setup::new(&KINDS, 3).await;
    let config = setup.config(WIDE_LATENESS);
    let producer = paced_producer(setup.prefix.clone(), setup.simulator(sig as u64), 30, 1000);
    let first_log = setup.log("first.log");
    let mut first = spawn_rade(&["run", "--config", config.to_str().expect("utf-8")], &first_log);
    // Stop the worker once it has made some files durable and while records still arrive.
    let lake = setup.lake();
    assert!(
        wait_until(Duration::from_secs(120), || parquet_files(&lake.join("raw")).len()
            >= 10),
        "the worker wrote no file: {}",
        std::fs::read_to_string(&first_log).unwrap_or_default()
    );
    assert!(
        !producer.is_finished(),
        "the producer finished before the stop: not mid-stream"
    );
    let stopped_at = Instant::now();
    signal(&first, sig);
    let status = wait_exit(&mut first, Duration::from_secs(40), &first_log);
    if sig == 15 {
        assert!(
            status.success(),
            "SIGTERM must end in a clean exit: {}",
            std::fs::read_to_string(&first_log).unwrap_or_default()
        );
        assert!(
            stopped_at.elapsed() < Duration::from_secs(30),
            "shutdown took {:?}",
            stopped_at.elapsed()
        );
        let log = std::fs::read_to_string(&first_log).unwrap_or_default();
        assert!(log.contains("worker stopped"), "{log}");
    }
    let produced = producer.await.expect("producer task");

    run_until_caught_up(&config, &[], &setup.log("second.log"));

    let rows = read_lake(&setup.lake());
    let dlq = read_topic(&setup.dlq);
    let checked = check_lake_and_dlq(&catalog(), &produced, &rows, &dlq);
    assert_eq!(checked.valid + checked.rejected, 30_000);
    assert_eq!(rows.len(), checked.valid, "every valid record exactly once");
    if sig == 15 {
        assert_eq!(checked.dlq_duplicates, 0, "a clean stop sends no reject twice");
    }
    assert_committed_to_end(&setup.group, &setup.raw_topics);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_stopped_by_sigterm_mid_stream_and_restarted_writes_each_record_once() {
    restart_mid_stream(15).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_killed_mid_stream_and_restarted_writes_each_record_once() {
    restart_mid_stream(9).await;
}
