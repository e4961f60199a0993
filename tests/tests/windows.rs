//! Windows and alerts on the real broker: a simulated flood on one river gauge.

use std::collections::BTreeMap;

use rade_integration_tests::*;
use rade_schema::RejectReason;
use rade_sim::{Expect, SimRecord};

const FLOOD: &str = "wl-flood";
const CALM: [&str; 5] = ["wl-calm-1", "wl-calm-2", "wl-calm-3", "wl-calm-4", "wl-calm-5"];
const MIN: i64 = 60_000;
/// Every gauge reports every 20 s for 90 minutes.
const STEPS: i64 = 90 * 3;

/// The flood: 80 cm, rising 15 cm/min from minute 10 to a 380 cm peak at minute 30, back to
/// 80 cm by minute 50.
fn flood_height(m: f64) -> f64 {
    if m < 10.0 {
        80.0
    } else if m < 30.0 {
        80.0 + (m - 10.0) * 15.0
    } else if m < 50.0 {
        380.0 - (m - 30.0) * 15.0
    } else {
        80.0
    }
}

fn reading(sensor: &str, t: i64, height: f64) -> SimRecord {
    let value = format!(
        r#"{{"sensor_id":"{sensor}","observed_at":{t},"latitude":43.13,"longitude":5.98,"height":{height:.1},"flow":null}}"#
    );
    SimRecord {
        kind: "water_level".into(),
        key: sensor.as_bytes().to_vec(),
        value: Some(value.into_bytes()),
        observed_at_ms: t,
        expect: Expect::Valid,
    }
}

/// The readings of steps `from..to`, in time order; `t0` is an hour boundary in the past.
fn readings(t0: i64, from: i64, to: i64) -> Vec<SimRecord> {
    let mut out = Vec::new();
    for step in from..to {
        let t = t0 + step * 20_000;
        out.push(reading(FLOOD, t, flood_height((t - t0) as f64 / MIN as f64)));
        for (i, s) in CALM.iter().enumerate() {
            out.push(reading(
                s,
                t + 1_000 * (i as i64 + 1),
                60.0 + (step % 4) as f64 + i as f64,
            ));
        }
    }
    out
}

/// An alert read back from the alert topic (Confluent-framed Avro per schemas/alert.avsc).
#[derive(Debug, Clone, PartialEq)]
struct AlertSeen {
    id: String,
    rule: String,
    state: String,
    sensor: String,
    window_start: i64,
    key: String,
}

fn read_alerts(topic: &str) -> Vec<AlertSeen> {
    let catalog = catalog();
    let schema = catalog.alert().expect("alert schema");
    read_topic(topic)
        .into_iter()
        .map(|m| {
            let value = m.value.expect("alert value");
            assert_eq!(value[0], 0, "Confluent magic byte");
            assert_eq!(u32::from_be_bytes(value[1..5].try_into().expect("4 bytes")), schema.id);
            let datum = apache_avro::from_avro_datum(&schema.avro, &mut &value[5..], None).expect("Avro alert");
            let apache_avro::types::Value::Record(fields) = datum else {
                panic!("an alert is a record")
            };
            let f: BTreeMap<String, apache_avro::types::Value> = fields.into_iter().collect();
            let text = |k: &str| match &f[k] {
                apache_avro::types::Value::String(s) => s.clone(),
                apache_avro::types::Value::Enum(_, s) => s.clone(),
                other => panic!("{k}: {other:?}"),
            };
            let apache_avro::types::Value::TimestampMillis(window_start) = f["window_start"] else {
                panic!("window_start is a timestamp")
            };
            let seen = AlertSeen {
                id: text("alert_id"),
                rule: text("rule"),
                state: text("state"),
                sensor: text("sensor_id"),
                window_start,
                key: String::from_utf8(m.key.expect("alert key")).expect("utf-8 key"),
            };
            assert_eq!(seen.key, format!("{}/{}", seen.rule, seen.sensor));
            assert_eq!(m.headers.get("rade.alert.id"), Some(&seen.id));
            seen
        })
        .collect()
}

/// The single value of a one-cell CSV answer.
fn scalar(csv: &str) -> i64 {
    csv.lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("not a count: {csv}"))
}

/// The expected alerts of the flood: for each flood rule, one RAISED then one RESOLVED, and
/// nothing at all for the calm gauges.
fn assert_one_incident_per_rule(alerts: &[AlertSeen]) {
    let others: Vec<_> = alerts.iter().filter(|a| a.sensor != FLOOD).collect();
    assert!(others.is_empty(), "alerts for calm gauges: {others:?}");
    let mut by_rule: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for a in alerts {
        by_rule.entry(a.rule.as_str()).or_default().push(a.state.as_str());
    }
    for rule in ["flood_warning", "flood_alarm", "water_rising_fast"] {
        assert_eq!(
            by_rule.get(rule).cloned().unwrap_or_default(),
            vec!["RAISED", "RESOLVED"],
            "{rule}: {alerts:?}"
        );
    }
    assert_eq!(by_rule.len(), 3, "unexpected rules fired: {alerts:?}");
    let mut ids: Vec<_> = alerts.iter().map(|a| &a.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), alerts.len(), "an alert id repeats");
}

fn t0() -> i64 {
    // Two hours ago, on an hour boundary: every window of the run is in the past.
    let h = 3_600_000;
    (now_ms() - 2 * h).div_euclid(h) * h
}

const SETTINGS: &str = "[windows]\nidle_timeout = \"2s\"\n";

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_raises_and_resolves_once_and_the_aggregates_match_the_raw_lake() {
    // One partition: the gauges share it, so the watermark moves with all of them.
    let setup = Setup::new(&["water_level"], 1).await;
    let t0 = t0();
    let produced = produce(&setup.prefix, readings(t0, 0, STEPS)).await;
    let config = setup.config(SETTINGS);
    let text = run_until_caught_up(&config, &[], &setup.log("run.log"));
    assert!(text.contains("alert"), "{text}");

    let alerts = read_alerts(&alerts_topic(&setup.dlq));
    assert_one_incident_per_rule(&alerts);
    let raised = alerts
        .iter()
        .find(|a| a.rule == "flood_warning" && a.state == "RAISED")
        .expect("raised");
    // 250 cm is crossed during minute 21 (80 + 11 × 15 = 245 at 21:00, 250 at 21:20).
    assert_eq!(raised.window_start, t0 + 21 * MIN);

    // Nothing late, nothing rejected: the raw lake has every reading.
    let lake = read_lake(&setup.lake());
    assert_eq!(lake.len(), produced.len());
    assert!(read_topic(&setup.dlq).is_empty());

    // The aggregates equal a plain SQL aggregation of the raw lake, window by window.
    let last_event = t0 + (STEPS - 1) * 20_000 + 5_000;
    let watermark = last_event - 60_000;
    for (window, size) in [("1m", MIN), ("15m", 15 * MIN), ("1h", 60 * MIN)] {
        let raw = format!(
            "SELECT sensor_id, arrow_cast(date_bin(INTERVAL '{size} milliseconds', observed_at, TIMESTAMP '1970-01-01T00:00:00Z'), 'Int64') / 1000000 AS ws, \
             count(*) AS n, min(height) AS mn, max(height) AS mx, sum(height) AS s, avg(height) AS av \
             FROM raw_water_level GROUP BY 1, 2"
        );
        let closed_raw = scalar(&query_lake(
            &setup.lake(),
            &format!("WITH r AS ({raw}) SELECT count(*) FROM r WHERE ws + {size} <= {watermark}"),
        ));
        let aggregates = scalar(&query_lake(
            &setup.lake(),
            &format!("SELECT count(*) FROM aggregates WHERE \"window\" = '{window}' AND kind = 'water_level'"),
        ));
        assert!(closed_raw > 0);
        assert_eq!(
            aggregates, closed_raw,
            "{window}: closed windows in the lake vs raw groups"
        );
        // Every aggregate row has its raw group, with the same statistics. The tables give
        // Delta's timestamps (microseconds), date_bin nanoseconds: both compared in ms.
        let joined = |condition: &str| {
            scalar(&query_lake(
                &setup.lake(),
                &format!(
                    "WITH r AS ({raw}) SELECT count(*) FROM aggregates a JOIN r ON a.sensor_id = r.sensor_id \
                     AND arrow_cast(a.window_start, 'Int64') / 1000 = r.ws WHERE a.\"window\" = '{window}' AND ({condition})"
                ),
            ))
        };
        assert_eq!(
            joined("true"),
            aggregates,
            "{window}: aggregate rows without a raw group"
        );
        let differ = joined(
            "a.records <> r.n OR a.height_min <> r.mn OR a.height_max <> r.mx \
             OR abs(a.height_sum - r.s) > 1e-6 OR abs(a.height_mean - r.av) > 1e-9",
        );
        assert_eq!(differ, 0, "{window}: aggregates differ from the raw lake");
    }
    // The alerts table of the lake holds what the topic holds.
    let in_lake = scalar(&query_lake(
        &setup.lake(),
        "SELECT count(DISTINCT alert_id) FROM alerts",
    ));
    assert_eq!(in_lake as usize, alerts.len());
    // And a late reading is kept in the raw lake, reported, and changes no closed window.
    let late = reading(FLOOD, t0 + 5 * MIN, 999.0);
    let before = query_lake(&setup.lake(), "SELECT count(*) FROM aggregates");
    produce(&setup.prefix, vec![late]).await;
    run_until_caught_up(&config, &[], &setup.log("late.log"));
    let dlq = read_topic(&setup.dlq);
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].headers["rade.reason"], RejectReason::Late.as_str());
    assert_eq!(read_lake(&setup.lake()).len(), produced.len() + 1);
    assert_eq!(query_lake(&setup.lake(), "SELECT count(*) FROM aggregates"), before);
    assert_eq!(
        scalar(&query_lake(
            &setup.lake(),
            "SELECT count(*) FROM aggregates WHERE height_max >= 999"
        )),
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_restarted_during_the_flood_neither_loses_nor_repeats_an_alert() {
    let setup = Setup::new(&["water_level"], 1).await;
    let t0 = t0();
    let config = setup.config(SETTINGS);
    // Up to minute 35: the alarm is raised, nothing is resolved yet.
    produce(&setup.prefix, readings(t0, 0, 35 * 3)).await;
    run_until_caught_up(&config, &[], &setup.log("first.log"));
    let first = read_alerts(&alerts_topic(&setup.dlq));
    assert!(
        first.iter().any(|a| a.rule == "flood_alarm" && a.state == "RAISED"),
        "{first:?}"
    );
    assert!(first.iter().all(|a| a.state == "RAISED"), "{first:?}");
    // A new worker process takes over; the rest of the flood arrives.
    produce(&setup.prefix, readings(t0, 35 * 3, STEPS)).await;
    let text = run_until_caught_up(&config, &[], &setup.log("second.log"));
    assert!(text.contains("window state restored"), "{text}");
    let alerts = read_alerts(&alerts_topic(&setup.dlq));
    assert_one_incident_per_rule(&alerts);
    for a in &first {
        assert!(
            alerts.contains(a),
            "the first worker's alert {a:?} is not on the topic once"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_at_any_step_of_a_flush_leaves_each_window_and_alert_once_in_the_lake() {
    // RADE_CRASH_AT kills the worker with SIGKILL after a flush's alerts are committed but
    // not its aggregates, after its files are committed but before the window state is saved,
    // or after the state is saved but before the Kafka commit. A first worker has saved a
    // state at minute 35 of the flood; the crash comes later. `first:`: the crash comes in
    // the very first flush, with no saved state at all.
    for point in ["after-derived-commit", "after-files", "after-state", "first:after-derived-commit"] {
        let setup = Setup::new(&["water_level"], 1).await;
        let t0 = t0();
        let config = setup.config(SETTINGS);
        let first_flush = point.starts_with("first:");
        let point = point.trim_start_matches("first:");
        let mut produced = Vec::new();
        if !first_flush {
            produced.extend(produce(&setup.prefix, readings(t0, 0, 35 * 3)).await);
            run_until_caught_up(&config, &[], &setup.log(&format!("before-{point}.log")));
            produced.extend(produce(&setup.prefix, readings(t0, 35 * 3, STEPS)).await);
        } else {
            produced.extend(produce(&setup.prefix, readings(t0, 0, STEPS)).await);
        }
        let args = ["run", "--config", config.to_str().expect("utf-8"), "--until-caught-up"];
        let log = setup.log(&format!("crash-{point}.log"));
        let mut child = spawn_rade_env(&args, &[("RADE_CRASH_AT", point)], &log);
        let status = wait_exit(&mut child, std::time::Duration::from_secs(120), &log);
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            !status.success() && text.contains("RADE_CRASH_AT"),
            "{point}: no crash: {text}"
        );
        let crashed = text;
        let text = run_until_caught_up(&config, &[], &setup.log(&format!("after-{point}.log")));
        assert!(
            first_flush || text.contains("window state restored"),
            "{point}: {crashed}\n---\n{text}"
        );

        // The topic may carry an alert of the crashed flush twice, with the same alert_id
        // (consumers drop repeated ids); deduplicated, it holds one incident per rule.
        let mut alerts = read_alerts(&alerts_topic(&setup.dlq));
        let mut seen = std::collections::BTreeSet::new();
        alerts.retain(|a| seen.insert(a.id.clone()));
        assert_one_incident_per_rule(&alerts);
        assert_eq!(read_lake(&setup.lake()).len(), produced.len(), "{point}: raw rows");
        let duplicates = scalar(&query_lake(
            &setup.lake(),
            "SELECT count(*) FROM (SELECT sensor_id, \"window\", window_start FROM aggregates \
             GROUP BY sensor_id, \"window\", window_start HAVING count(*) > 1)",
        ));
        assert_eq!(duplicates, 0, "{point}: a closed window is in the lake twice");
        let lake_alerts = scalar(&query_lake(&setup.lake(), "SELECT count(*) FROM alerts"));
        assert_eq!(lake_alerts as usize, alerts.len(), "{point}: alerts in the lake");
        // Every 1m window the watermark passed is there once.
        let watermark = t0 + (STEPS - 1) * 20_000 + 5_000 - 60_000;
        let expected = (watermark - t0) / MIN * (CALM.len() as i64 + 1);
        let one_minute = scalar(&query_lake(
            &setup.lake(),
            "SELECT count(*) FROM aggregates WHERE \"window\" = '1m'",
        ));
        assert_eq!(one_minute, expected, "{point}: 1m windows");
    }
}
