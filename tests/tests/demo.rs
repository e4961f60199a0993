//! `rade demo` runs to completion with no broker and no configuration, as the README says, and
//! tells the story of its flood: each threshold crossed, each alert, no silence alert.

use std::process::Command;

use rade_integration_tests::*;

#[test]
fn the_demo_runs_to_completion_and_explains_what_happened() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("demo-lake");
    let out = Command::new(rade_bin())
        .current_dir(schemas_dir().parent().expect("repo root"))
        .args(["demo", "--scale", "0.3", "--lake", lake.to_str().expect("utf-8")])
        .output()
        .expect("rade demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for section in [
        "== what came in ==",
        "== what was rejected, and why",
        "== alert timeline",
        "== where it is ==",
        "== try next ==",
    ] {
        assert!(stdout.contains(section), "missing {section}:\n{stdout}");
    }
    let timeline = &stdout[stdout.find("== alert timeline").expect("a timeline")..];
    let timeline = &timeline[..timeline.find("== where it is ==").expect("sections in order")];
    for line in [
        "water at wl-0001 reaches 250 cm (flood_warning threshold)",
        "water at wl-0001 reaches 350 cm (flood_alarm threshold)",
        "flood_warning      RAISED   wl-0001  raised at the crossing reading (eager rule)",
        "flood_alarm        RAISED   wl-0001  raised at the crossing reading (eager rule)",
        "flood_warning      RESOLVED wl-0001",
        "flood_alarm        RESOLVED wl-0001",
        "heavy_rain         RAISED   rf-0001",
        "water_rising_fast  RAISED   wl-0001",
        "silence alerts (sensor_silent, 3 missed heartbeats of the kind's schedule): 0",
    ] {
        assert!(timeline.contains(line), "missing `{line}` in:\n{timeline}");
    }
    assert!(
        timeline.contains("s (wall clock) after the crossing reading was sent"),
        "{timeline}"
    );
    // The crossing comes before its alert in the timeline.
    let at = |needle: &str| timeline.find(needle).expect("present");
    assert!(at("reaches 250 cm") < at("flood_warning      RAISED"), "{timeline}");
    let consumed: u64 = stdout
        .split("consumed ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("a consumed count");
    assert!(consumed > 5_000, "{stdout}");
    assert!(
        stdout.contains("out_of_range") && stdout.contains("rade query --lake"),
        "{stdout}"
    );
    let rows = read_lake(&lake);
    assert!(
        rows.len() as u64 > consumed * 9 / 10 && (rows.len() as u64) < consumed,
        "{} rows",
        rows.len()
    );
}
