//! The scenarios of `rade simulate`, played on the real broker by the binary itself and read by
//! `rade run --until-caught-up`, raise exactly the alerts each states; a healthy fleet raises no
//! silence alert over a day; and a fault-free backfill into new topics has no late record.

use std::process::Command;
use std::time::Duration;

use rade_integration_tests::*;
use rade_sim::{ExpectedAlert, Fleet, Scenario};

const SEED: u64 = 42;
/// Few sensors, so that each scenario runs in seconds.
const SCALE: f64 = 0.5;

/// A run of `rade simulate` then `rade run --until-caught-up` on topics of its own.
struct Played {
    alerts: Vec<(String, String, String)>,
    dlq: Vec<DlqMessage>,
    raw_rows: usize,
    _dir: tempfile::TempDir,
}

fn play(kinds: &[&str], scale: f64, partitions: u32, simulate: &[&str]) -> Played {
    let dir = tempfile::tempdir().expect("tempdir");
    let id = unique("scn");
    let prefix = format!("{id}.raw.");
    let dlq = format!("{id}.dlq");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(create_topics(std::slice::from_ref(&dlq), 1));
    // The raw topics do not exist yet: `rade simulate` creates them.
    let scale = scale.to_string();
    let partitions = partitions.to_string();
    let seed = SEED.to_string();
    let kinds_arg = kinds.join(",");
    let schemas = schemas_dir();
    let mut args = vec![
        "simulate",
        "--bootstrap",
        &bootstrap(),
        "--topic-prefix",
        &prefix,
        "--schemas",
        schemas.to_str().expect("utf-8"),
        "--kinds",
        &kinds_arg,
        "--scale",
        &scale,
        "--seed",
        &seed,
        "--partitions",
        &partitions,
    ]
    .into_iter()
    .map(str::to_owned)
    .collect::<Vec<String>>();
    args.extend(simulate.iter().map(|s| s.to_string()));
    let out = Command::new(rade_bin())
        .args(&args)
        .output()
        .expect("rade simulate runs");
    assert!(
        out.status.success(),
        "rade simulate {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lake = dir.path().join("lake");
    let group = format!("{id}-group");
    let config = write_config(dir.path(), &prefix, kinds, &group, &dlq, &lake, "");
    run_until_caught_up(&config, &[], &dir.path().join("run.log"));
    let rows = |sql: &str| csv_rows(&query_lake(&lake, sql));
    // No alert at all, no alerts/ table.
    let alerts = if lake.join("alerts").is_dir() {
        rows("SELECT rule, sensor_id, state FROM alerts ORDER BY rule, sensor_id, window_end, state")
            .into_iter()
            .map(|r| (r[0].clone(), r[1].clone(), r[2].clone()))
            .collect()
    } else {
        Vec::new()
    };
    let raw_rows = kinds
        .iter()
        .map(|k| {
            rows(&format!("SELECT count(*) FROM raw_{k}"))
                .first()
                .and_then(|r| r[0].parse::<usize>().ok())
                .expect("a count")
        })
        .sum();
    Played {
        alerts,
        dlq: read_topic(&dlq),
        raw_rows,
        _dir: dir,
    }
}

fn as_tuples(expected: &[ExpectedAlert]) -> Vec<(String, String, String)> {
    expected
        .iter()
        .map(|e| (e.rule.to_owned(), e.sensor_id.clone(), e.state.to_owned()))
        .collect()
}

#[test]
fn each_scenario_raises_exactly_the_alerts_it_states() {
    for scenario in Scenario::ALL {
        let kinds: Vec<String> = scenario.kinds().iter().map(|k| k.to_string()).collect();
        let span = Duration::from_millis((scenario.duration_ms() + scenario.tail_ms()) as u64 + 1_800_000);
        let backfill = humantime_secs(span);
        let played = play(
            scenario.kinds(),
            SCALE,
            2,
            &["--backfill", &backfill, "--scenario", scenario.name()],
        );
        // Sorted as the query sorts them: by rule and sensor, RAISED before RESOLVED.
        let expected = as_tuples(&scenario.expected(&Fleet::new(&kinds, SCALE, SEED)));
        assert!(!expected.is_empty());
        assert_eq!(played.alerts, expected, "scenario {scenario}");
        assert!(played.raw_rows > 100, "scenario {scenario}: {} rows", played.raw_rows);
        // Fault-free traffic into topics `rade simulate` created: nothing late, nothing rejected.
        let reasons: Vec<_> = played
            .dlq
            .iter()
            .map(|m| m.headers.get("rade.reason").cloned())
            .collect();
        assert!(reasons.is_empty(), "scenario {scenario}: DLQ {reasons:?}");
    }
}

#[test]
fn a_healthy_fleet_raises_no_silence_alert_over_a_day() {
    // Every kind, each on its schedule: waste bins twice in 12 h, parking bays on change.
    let kinds: Vec<&str> = Fleet::kinds().collect();
    // One partition per topic: every partition has sensors, so the watermark, and the
    // silence checks with it, move all along the day.
    let played = play(&kinds, 0.1, 1, &["--backfill", "1day"]);
    let silent: Vec<_> = played.alerts.iter().filter(|a| a.0 == "sensor_silent").collect();
    assert!(silent.is_empty(), "a healthy fleet fell silent: {silent:?}");
    assert!(played.raw_rows > 10_000, "{} rows", played.raw_rows);
    let late: Vec<_> = played.dlq.iter().filter_map(|m| m.headers.get("rade.reason")).collect();
    assert!(late.is_empty(), "fault-free backfill rejected: {late:?}");
}

#[test]
fn the_scenarios_are_listed_with_their_alerts() {
    let out = Command::new(rade_bin())
        .args(["simulate", "--list-scenarios"])
        .output()
        .expect("rade simulate runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for scenario in Scenario::ALL {
        assert!(text.contains(&format!("{}:", scenario.name())), "{text}");
    }
    assert!(text.contains("flood_alarm wl-0001 RAISED"), "{text}");
}

fn humantime_secs(d: Duration) -> String {
    format!("{}s", d.as_secs())
}
