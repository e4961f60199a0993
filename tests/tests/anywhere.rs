//! The binary works from any folder: the shipped schemas, rules and defaults are built in,
//! and relative paths of a configuration file are read from that file's folder.

use std::path::Path;
use std::process::{Command, Output};

use rade_integration_tests::*;

/// `rade <args>` run from `cwd`, with the test broker for the commands that reach Kafka.
fn rade_in(cwd: &Path, args: &[&str]) -> Output {
    let out = Command::new(rade_bin())
        .current_dir(cwd)
        .env("RADE__KAFKA__BOOTSTRAP_SERVERS", bootstrap())
        .args(args)
        .output()
        .expect("rade runs");
    assert!(
        out.status.success(),
        "rade {args:?} in {} failed:\n{}\n{}",
        cwd.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn copy_dir(from: &Path, to: &Path, only: impl Fn(&str) -> bool) {
    std::fs::create_dir_all(to).expect("create dir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let path = e.expect("entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).expect("a UTF-8 name");
        if only(name) {
            std::fs::copy(&path, to.join(name)).expect("copy");
        }
    }
}

#[test]
fn demo_check_and_query_run_from_an_empty_folder() {
    let root = tempfile::tempdir().expect("tempdir");
    let empty = root.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");

    // The demo: built-in schemas and rules, its lake in the working folder.
    let out = rade_in(&empty, &["demo", "--records", "3000"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("consumed 3000"), "{stdout}");
    let rules_line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("rules:"))
        .unwrap_or("");
    assert!(rules_line.contains("flood_warning"), "the shipped rules run: {stdout}");
    assert!(empty.join("demo-lake/raw").is_dir());

    // rade query needs only the lake.
    let out = rade_in(
        &empty,
        &[
            "query",
            "--lake",
            "demo-lake",
            "--format",
            "csv",
            "SELECT count(*) FROM raw_water_level",
        ],
    );
    let rows = csv_rows(&String::from_utf8_lossy(&out.stdout));
    let n: i64 = rows[0][0].parse().expect("a count");
    assert!(n > 0, "{rows:?}");
    assert_eq!(
        n as usize,
        read_lake(&empty.join("demo-lake"))
            .iter()
            .filter(|r| r.kind == "water_level")
            .count()
    );

    // rade check with no configuration file: the built-in schemas and rules, Kafka and a lake
    // in the working folder reached.
    let out = rade_in(&empty, &["check"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("configuration OK"), "{stdout}");
    assert!(stdout.contains("water_level (id 101)"), "{stdout}");
    assert!(stdout.contains("(built-in) rules"), "{stdout}");
    assert!(stdout.contains("lake writable"), "{stdout}");

    // A configuration in another folder, named by a relative path, whose relative paths are
    // read from its folder: its own rules (one file of the shipped ones) win over the
    // built-in ones, and its lake is beside it.
    let conf = root.path().join("conf");
    copy_dir(&schemas_dir(), &conf.join("my-schemas"), |_| true);
    copy_dir(&rules_dir(), &conf.join("my-rules"), |n| n == "weather.toml");
    std::fs::write(
        conf.join("rade.toml"),
        "[schemas]\ndir = \"my-schemas\"\n[windows]\nrules_dir = \"my-rules\"\n[lake]\nurl = \"my-lake\"\n[telemetry]\nlisten = \"\"\n",
    )
    .expect("write config");
    let out = rade_in(&empty, &["check", "--config", "../conf/rade.toml"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let conf = conf.canonicalize().expect("canonical");
    let lake_line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("lake:"))
        .unwrap_or("");
    assert!(
        lake_line.contains("conf/my-lake") || lake_line.contains(&conf.join("my-lake").display().to_string()),
        "the lake is beside the config: {stdout}"
    );
    assert!(
        stdout.contains("from 1 file(s) in") && stdout.contains("conf/my-rules"),
        "the config's rules folder wins: {stdout}"
    );
    assert!(
        root.path().join("conf/my-lake").is_dir(),
        "the lake beside the config was written to"
    );
    assert!(!empty.join("my-lake").exists(), "no lake in the working folder");

    // A configuration naming a schemas folder that is not there is refused, naming it.
    std::fs::write(root.path().join("conf/bad.toml"), "[schemas]\ndir = \"nowhere\"\n").expect("write");
    let out = Command::new(rade_bin())
        .current_dir(&empty)
        .args(["check", "--offline", "--config", "../conf/bad.toml"])
        .output()
        .expect("rade runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("schemas.dir") && stderr.contains("conf/nowhere"),
        "{stderr}"
    );
}

#[test]
fn the_version_names_the_commit_it_was_built_from() {
    let repo = schemas_dir().parent().expect("repo root").to_path_buf();
    let head = Command::new("git")
        .current_dir(&repo)
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .expect("git runs");
    assert!(head.status.success(), "the tests run in a git checkout");
    let head = String::from_utf8_lossy(&head.stdout).trim().to_owned();
    let out = Command::new(rade_bin()).arg("--version").output().expect("rade runs");
    assert!(out.status.success());
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(
        version.starts_with(&format!("rade {} (commit {head}", env!("CARGO_PKG_VERSION"))),
        "`{}` does not name HEAD {head}",
        version.trim()
    );
}

#[test]
fn query_reads_the_lake_and_the_retry_settings_of_its_config() {
    let root = tempfile::tempdir().expect("tempdir");
    let elsewhere = root.path().join("elsewhere");
    let conf = root.path().join("conf");
    std::fs::create_dir_all(&elsewhere).expect("mkdir");
    std::fs::create_dir_all(&conf).expect("mkdir");
    // A lake beside the config, named relatively in it; the query runs from another folder.
    rade_in(&conf, &["demo", "--records", "1000", "--lake", "my-lake"]);
    std::fs::write(conf.join("rade.toml"), "[lake]\nurl = \"my-lake\"\n").expect("write config");
    let sql = "SELECT count(*) FROM raw_water_level";
    let out = rade_in(
        &elsewhere,
        &["query", "--config", "../conf/rade.toml", "--format", "csv", sql],
    );
    let n: usize = csv_rows(&String::from_utf8_lossy(&out.stdout))[0][0]
        .parse()
        .expect("a count");
    let stored = read_lake(&conf.join("my-lake"))
        .iter()
        .filter(|r| r.kind == "water_level")
        .count();
    assert!(n > 0 && n == stored, "{n} rows counted, {stored} stored");
    assert!(!elsewhere.join("my-lake").exists(), "no lake in the working folder");
    // --lake names another lake than the config's.
    let out = rade_in(
        &elsewhere,
        &[
            "query",
            "--config",
            "../conf/rade.toml",
            "--lake",
            "empty-lake",
            "--format",
            "csv",
            sql,
        ],
    );
    assert_eq!(csv_rows(&String::from_utf8_lossy(&out.stdout))[0][0], "0");

    // The [lake] retry settings apply to the query's requests: object_store says which limits
    // it gave up at, against a port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    std::fs::write(
        conf.join("s3.toml"),
        "[lake]\nurl = \"s3://rade-nowhere/lake\"\nmax_retries = 1\nretry_timeout = \"7s\"\nbackoff_initial = \"10ms\"\nbackoff_max = \"20ms\"\n",
    )
    .expect("write config");
    let out = Command::new(rade_bin())
        .current_dir(&elsewhere)
        .args(["query", "--config", "../conf/s3.toml", sql])
        .envs([
            ("AWS_ACCESS_KEY_ID", "rade-test"),
            ("AWS_SECRET_ACCESS_KEY", "rade-test"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ALLOW_HTTP", "true"),
        ])
        .env("AWS_ENDPOINT", format!("http://{closed}"))
        .output()
        .expect("rade runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("max_retries: 1") && stderr.contains("retry_timeout: 7s"),
        "the config's retries, not the defaults (10 within 3m): {stderr}"
    );

    // A lake URL that does not parse is refused at load, with its key.
    std::fs::write(conf.join("bad.toml"), "[lake]\nurl = \"s3:///lake\"\n").expect("write config");
    let out = Command::new(rade_bin())
        .current_dir(&elsewhere)
        .args(["query", "--config", "../conf/bad.toml", sql])
        .output()
        .expect("rade runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("lake.url") && stderr.contains("needs a bucket"),
        "{stderr}"
    );
}
