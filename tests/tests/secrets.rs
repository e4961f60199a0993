//! No configuration error shows a secret: a value read from `env:` or `file:`, or one whose
//! key names a secret, is `[redacted]` in whatever `rade check` and `rade run` print, the
//! texts of librdkafka included, and never reaches /metrics.

use std::process::{Command, Stdio};
use std::time::Duration;

use rade_integration_tests::*;

/// What a command printed, stdout and stderr together, and whether it succeeded.
fn rade(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(rade_bin())
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "debug,rdkafka=debug")
        .env("RADE__WORKER__CONNECT_TIMEOUT", "5s")
        .output()
        .expect("rade runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn no_configuration_error_shows_a_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = format!("marker-{:08x}{:08x}", rand::random::<u32>(), rand::random::<u32>());
    let digits = format!("9{}", rand::random::<u32>());
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, format!("{secret}\n")).expect("secret file");
    let file = format!("file:{}", secret_file.display());
    let env = [("RADE_TEST_SECRET", secret.as_str())];
    // (what is tried, the [kafka.properties] lines, the key the message must name, the marker)
    let cases = [
        (
            "a misspelt property from env:",
            "\"sasl.pasword\" = \"env:RADE_TEST_SECRET\"".to_owned(),
            "sasl.pasword",
            &secret,
        ),
        (
            "a misspelt property from file:",
            format!("\"sasl.pasword\" = \"{file}\""),
            "sasl.pasword",
            &secret,
        ),
        (
            "a bad value from env:",
            "\"security.protocol\" = \"env:RADE_TEST_SECRET\"".to_owned(),
            "security.protocol",
            &secret,
        ),
        (
            "a bad value from file:",
            format!("\"broker.address.family\" = \"{file}\""),
            "broker.address.family",
            &secret,
        ),
        (
            "an unknown property named a secret",
            format!("\"sasl.jaas.config\" = \"{secret}\""),
            "sasl.jaas.config",
            &secret,
        ),
        (
            "a secret of the wrong type",
            format!("\"sasl.password\" = {digits}"),
            "sasl.password",
            &digits,
        ),
    ];
    for (what, lines, key, marker) in cases {
        let case = tempfile::tempdir().expect("tempdir");
        let config = write_config(
            case.path(),
            "it.raw.",
            &["noise"],
            "it-secrets",
            "it.dlq",
            &case.path().join("lake"),
            &format!("[kafka.properties]\n{lines}\n"),
        );
        let config = config.to_str().expect("utf-8");
        for args in [
            vec!["check", "--config", config, "--offline"],
            vec!["check", "--config", config],
            vec!["run", "--config", config, "--until-caught-up"],
        ] {
            let (ok, text) = rade(&args, &env);
            assert!(!ok, "{what}: `rade {}` accepted it:\n{text}", args[0]);
            assert!(
                !text.contains(marker.as_str()),
                "{what}: `rade {}` shows the secret:\n{text}",
                args[0]
            );
            assert!(
                text.contains(key),
                "{what}: `rade {}` does not name {key}:\n{text}",
                args[0]
            );
        }
    }

    // A valid configuration whose secret the broker refuses: `rade run` serves /metrics while
    // it tries, and neither its output nor /metrics shows the secret.
    let config = write_config(
        dir.path(),
        "it.raw.",
        &["noise"],
        "it-secrets",
        "it.dlq",
        &dir.path().join("lake"),
        "[kafka.properties]\n\"security.protocol\" = \"SASL_PLAINTEXT\"\n\"sasl.mechanism\" = \"SCRAM-SHA-256\"\n\"sasl.username\" = \"rade\"\n\"sasl.password\" = \"env:RADE_TEST_SECRET\"\n",
    );
    let log = dir.path().join("run.log");
    let out = dir.path().join("run.out");
    let sasl = std::env::var("RADE_TEST_SASL_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9094".into());
    let mut child = Command::new(rade_bin())
        .args(["run", "--config", config.to_str().expect("utf-8")])
        .env("RADE_TEST_SECRET", &secret)
        .env("RADE__KAFKA__BOOTSTRAP_SERVERS", &sasl)
        .env("RADE__WORKER__CONNECT_TIMEOUT", "10s")
        .env("RUST_LOG", "debug,rdkafka=debug")
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&log).expect("log file"))
        .stdin(Stdio::null())
        .spawn()
        .expect("rade starts");
    assert!(
        wait_until(Duration::from_secs(30), || log_value(&log, "addr").is_some()),
        "no metrics address: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let addr = log_value(&log, "addr").expect("address");
    let (_, metrics) = http_get(&format!("http://{addr}/metrics"))
        .await
        .expect("/metrics answers");
    let status = wait_exit(&mut child, Duration::from_secs(60), &log);
    let text = format!(
        "{}{}",
        std::fs::read_to_string(&out).unwrap_or_default(),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(!status.success(), "a wrong password was accepted: {text}");
    assert!(text.contains(&sasl), "{text}");
    assert!(!text.contains(&secret), "the secret is in the output:\n{text}");
    assert!(!metrics.contains(&secret), "the secret is in /metrics");
    assert!(metrics.contains("rade_"), "{metrics}");
}
