//! Bad configuration stops startup with a message naming the key, the file or the address.

use std::process::{Command, Output};

use rade_integration_tests::*;

fn rade(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(rade_bin());
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("rade runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn config(dir: &std::path::Path, text: &str) -> String {
    let path = dir.join("rade.toml");
    std::fs::write(
        &path,
        format!(
            "[schemas]\ndir = \"{}\"\n[windows]\nrules_dir = \"{}\"\n{text}",
            schemas_dir().display(),
            rules_dir().display()
        ),
    )
    .expect("write");
    path.display().to_string()
}

#[test]
fn an_unknown_key_is_named_by_check_and_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = config(dir.path(), "[kafka]\nbootstrap_server = \"127.0.0.1:9092\"\n");
    for cmd in ["check", "run"] {
        let out = rade(&[cmd, "--config", &path], &[]);
        assert_eq!(out.status.code(), Some(2), "{cmd}");
        let err = stderr(&out);
        assert!(
            err.contains("bootstrap_server") && err.contains("rade.toml"),
            "{cmd}: {err}"
        );
    }
}

#[test]
fn environment_variables_override_the_file_and_unknown_ones_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = config(dir.path(), "[kafka]\ngroup_id = \"from-file\"\n");
    let out = rade(
        &["check", "--offline", "--config", &path],
        &[("RADE__KAFKA__GROUP_ID", "from-env")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("group from-env"));
    let out = rade(&["check", "--config", &path], &[("RADE__KAFKA__GROUPID", "x")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("groupid"), "{}", stderr(&out));
}

#[test]
fn a_missing_schema_file_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let schemas = dir.path().join("schemas");
    std::fs::create_dir(&schemas).expect("mkdir");
    for e in std::fs::read_dir(schemas_dir()).expect("schemas") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), schemas.join(e.file_name())).expect("copy");
    }
    std::fs::remove_file(schemas.join("noise.avsc")).expect("rm");
    let path = dir.path().join("rade.toml");
    std::fs::write(&path, format!("[schemas]\ndir = \"{}\"\n", schemas.display())).expect("write");
    let out = rade(&["check", "--offline", "--config", path.to_str().expect("utf-8")], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("noise.avsc"), "{}", stderr(&out));
}

#[test]
fn an_unreachable_broker_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = dir.path().join("lake");
    let path = config(
        dir.path(),
        &format!(
            "[kafka]\nbootstrap_servers = \"127.0.0.1:1\"\n[worker]\nconnect_timeout = \"2s\"\n[lake]\nurl = \"{}\"\n",
            lake.display()
        ),
    );
    for cmd in ["run", "check"] {
        let out = rade(&[cmd, "--config", &path], &[]);
        assert!(!out.status.success(), "{cmd}");
        let err = stderr(&out);
        assert!(
            err.contains("127.0.0.1:1") && err.contains("cannot reach Kafka"),
            "{cmd}: {err}"
        );
    }
}

#[test]
fn a_missing_config_file_is_named() {
    let out = rade(&["run", "--config", "/nowhere/rade.toml"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("/nowhere/rade.toml"));
}

#[test]
fn the_shipped_rules_load_and_check_lists_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = config(dir.path(), "");
    let out = rade(&["check", "--offline", "--config", &path], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    for rule in [
        "flood_warning",
        "flood_alarm",
        "water_rising_fast",
        "heavy_rain",
        "no2_information",
        "no2_alert",
        "pm10_information",
        "pm10_alert",
        "o3_information",
        "o3_alert",
        "night_noise",
        "car_park_nearly_full",
        "heat_wave",
        "sensor_silent",
    ] {
        assert!(text.contains(rule), "{rule} missing from: {text}");
    }
    // What each kind keeps of the configured windows, and which rules decide early.
    for line in [
        "windows per kind: water_level all, rainfall 15m 1h, air_quality 1h 1h_every_15m,",
        "parking_bay 1h,",
        "waste_bin none",
        "eager rules (raised at the crossing reading): flood_alarm, flood_warning",
    ] {
        assert!(text.contains(line), "`{line}` missing from: {text}");
    }
}

#[test]
fn a_bad_rule_stops_check_and_run_naming_its_file_and_rule() {
    let rule = |kinds: &str, window: &str, condition: &str| {
        format!(
            "[[rule]]\nname = \"bad_one\"\nkinds = [{kinds}]\nwindow = \"{window}\"\nseverity = \"warning\"\ncondition = \"{condition}\"\nmessage = \"{{sensor_id}}\"\n"
        )
    };
    let cases = [
        (rule("\"water_level\"", "15m", "heigth_max > 3"), "heigth_max"),
        (rule("\"water_level\"", "15m", "height_max >"), "bad_one"),
        (rule("\"water_level\"", "15m", "height_max"), "boolean"),
        (rule("\"lava_flow\"", "15m", "height_max > 3"), "lava_flow"),
        (rule("\"water_level\"", "2h", "height_max > 3"), "unknown window `2h`"),
        (
            "[[rule]]\nname = \"bad_one\"\nseverity = \"loud\"\nmessage = \"x\"\n".to_owned(),
            "loud",
        ),
    ];
    for (text, expected) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let rules = dir.path().join("rules");
        std::fs::create_dir(&rules).expect("mkdir");
        std::fs::write(rules.join("broken.toml"), &text).expect("write rule");
        let path = dir.path().join("rade.toml");
        std::fs::write(
            &path,
            format!(
                "[schemas]\ndir = \"{}\"\n[windows]\nrules_dir = \"{}\"\n",
                schemas_dir().display(),
                rules.display()
            ),
        )
        .expect("write config");
        let path = path.display().to_string();
        for cmd in [
            &["check", "--offline", "--config", &path][..],
            &["run", "--config", &path][..],
        ] {
            let out = rade(cmd, &[]);
            assert_eq!(out.status.code(), Some(2), "{cmd:?} {text}");
            let err = stderr(&out);
            assert!(err.contains("broken.toml"), "{cmd:?}: no file in {err}");
            assert!(err.contains(expected), "{cmd:?}: `{expected}` not in {err}");
            if !expected.contains("loud") {
                assert!(err.contains("bad_one"), "{cmd:?}: no rule name in {err}");
            }
        }
    }
}
