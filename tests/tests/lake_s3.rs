//! The same ingest path on `s3://` through object_store, against a real S3-compatible server
//! (moto's server, started by `make test`), and `rade query` reading the lake back from S3.

use std::process::Command;

use rade_integration_tests::*;

/// Readings spread over three hours, in no order: windows wait for all of them (none is late).
const WIDE_LATENESS: &str = "[windows]\nallowed_lateness = \"4h\"\n";
use rade_sim::FormatChoice;

fn endpoint() -> String {
    std::env::var("RADE_TEST_S3_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:9400".into())
}

/// Credentials and endpoint as every S3 tool reads them; the server accepts any key.
const AWS_ENV: [(&str, &str); 4] = [
    ("AWS_ACCESS_KEY_ID", "rade-test"),
    ("AWS_SECRET_ACCESS_KEY", "rade-test"),
    ("AWS_REGION", "us-east-1"),
    ("AWS_ALLOW_HTTP", "true"),
];

fn query(lake: &str, sql: &str) -> String {
    let out = Command::new(rade_bin())
        .current_dir(schemas_dir().parent().expect("repo root"))
        .args(["query", "--lake", lake, "--format", "csv", sql])
        .envs(AWS_ENV)
        .env("AWS_ENDPOINT", endpoint())
        .output()
        .expect("rade query runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_worker_writes_the_lake_on_s3_once_and_rade_query_reads_it() {
    let setup = Setup::new(&["noise", "weather"], 3).await;
    let bucket = unique("rade-lake").to_lowercase();
    let created = reqwest::Client::new()
        .put(format!("{}/{bucket}", endpoint()))
        .send()
        .await
        .expect("S3 server up");
    assert!(created.status().is_success(), "bucket creation: {}", created.status());
    let lake = format!("s3://{bucket}/lake");

    let mut sim = setup.simulator(51);
    let now = now_ms();
    // Rejects first: valid rows after them in each partition make their files prove to the
    // replay that the rejects are already in the DLQ.
    let mut records: Vec<_> = (0..7)
        .map(|i| sim.invalid(now, rade_sim::SIMULATED_REASONS[i]))
        .collect();
    records.extend((0..600).map(|i| sim.valid(now - 3_600_000 + i * 5000, FormatChoice::Mixed)));
    let produced = produce(&setup.prefix, records).await;

    let endpoint = endpoint();
    let mut env: Vec<(&str, &str)> = AWS_ENV.to_vec();
    env.push(("AWS_ENDPOINT", &endpoint));
    env.push(("RADE__LAKE__URL", &lake));
    for (round, group) in [
        ("first", setup.group.clone()),
        ("replay", format!("{}-replay", setup.group)),
    ] {
        let log = setup.log(&format!("{round}.log"));
        let config = setup.config(WIDE_LATENESS);
        let mut env = env.clone();
        env.push(("RADE__KAFKA__GROUP_ID", &group));
        run_until_caught_up(&config, &env, &log);

        // Every valid record once, proven with the lineage columns, read back from S3.
        let mut total = 0;
        for kind in ["noise", "weather"] {
            let csv = query(
                &lake,
                &format!(
                    "SELECT count(*) AS n, count(DISTINCT concat(_topic, '/', CAST(_partition AS VARCHAR), '/', CAST(_offset AS VARCHAR))) AS d FROM raw_{kind}"
                ),
            );
            let line = csv.lines().nth(1).expect("a row");
            let (n, d) = line.split_once(',').expect("two columns");
            assert_eq!(n, d, "{round}: duplicate rows in raw_{kind}");
            total += n.parse::<usize>().expect("a count");
        }
        assert_eq!(total, 600, "{round}: rows in the S3 lake");
    }
    let dlq = read_topic(&setup.dlq);
    assert_eq!(dlq.len(), 7, "rejects sent once, the replay skipped them");
    assert_eq!(produced.len(), 607);
}
