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
        format!("[schemas]\ndir = \"{}\"\n{text}", schemas_dir().display()),
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
