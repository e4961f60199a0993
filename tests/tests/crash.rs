//! SIGKILL at chosen moments of a run, on the real broker: after restarts, the lake holds each
//! record exactly once, proven with the lineage columns.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use rade_integration_tests::*;

const KINDS: [&str; 3] = ["water_level", "noise", "air_quality"];
/// Two hours of readings arrive in order of event time; no reading is late.
const WIDE_LATENESS: &str = "[windows]\nallowed_lateness = \"4h\"\n";

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_at_every_step_of_a_flush_loses_and_doubles_nothing() {
    let setup = Setup::new(&KINDS, 3).await;
    let config = setup.config(WIDE_LATENESS);
    let cfg = config.to_str().expect("utf-8");
    let producer = paced_producer(setup.prefix.clone(), setup.simulator(21), 80, 500);
    // Each worker kills itself with SIGKILL at the n-th time it reaches a point:
    // - after-raw-file: one raw file of a flush written, the others not, nothing committed;
    // - after-raw-commit: a raw table's commit made (files and positions), the other tables'
    //   and Kafka's not;
    // - after-files: every file of a flush written and committed to its table, the window
    //   state not saved, the Kafka offsets not committed;
    // - after-state: window state saved too, the Kafka offsets not committed.
    for point in [
        "after-raw-file:2",
        "after-raw-commit:2",
        "after-files:2",
        "after-state:2",
        "after-raw-file:5",
    ] {
        let log = setup.log(&format!("{point}.log"));
        let mut child = spawn_rade_env(&["run", "--config", cfg], &[("RADE_CRASH_AT", point)], &log);
        let status = wait_exit(&mut child, Duration::from_secs(120), &log);
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert_eq!(
            status.signal(),
            Some(9),
            "{point}: not killed by SIGKILL: {status:?}\n{text}"
        );
        assert!(text.contains("RADE_CRASH_AT"), "{point}: {text}");
    }
    let produced = producer.await.expect("producer task");
    run_until_caught_up(&config, &[], &setup.log("last.log"));

    // Every produced record is in the lake (valid) or the DLQ (invalid) with its values, and
    // no (_topic, _partition, _offset) is there twice: no duplicate and no gap.
    let rows = read_lake(&setup.lake());
    let dlq = read_topic(&setup.dlq);
    let checked = check_lake_and_dlq(&catalog(), &produced, &rows, &dlq);
    assert_eq!(checked.valid + checked.rejected, 40_000);
    assert_eq!(rows.len(), checked.valid);
    // The same through the SQL tables, as a data scientist would check it.
    for kind in KINDS {
        let csv = query_lake(
            &setup.lake(),
            &format!("SELECT count(*) - count(DISTINCT {LINEAGE_KEY}) AS dup FROM raw_{kind}"),
        );
        assert_eq!(csv.lines().nth(1), Some("0"), "{kind}: {csv}");
    }
    assert_committed_to_end(&setup.group, &setup.raw_topics);
}
