//! `rade.toml`: layered (defaults < file < `RADE__SECTION__KEY`), validated into [`Config`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use rade_kafka::KafkaConfig;
use rade_lake::{LakeLocation, LakeOptions};
use rade_schema::{Catalog, DecodeLimits};
use rade_window::WindowConfig;
use rade_worker::{Windowing, WorkerConfig};
use serde::{Deserialize, Serialize};

/// The whole configuration file, as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub kafka: KafkaConfig,
    pub worker: WorkerConfig,
    pub lake: LakeSection,
    pub schemas: SchemasSection,
    pub validation: ValidationSection,
    pub log: LogSection,
    pub telemetry: TelemetrySection,
    pub windows: WindowConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySection {
    /// Address of `/metrics`, `/healthz` and `/readyz`; empty turns the endpoint off.
    pub listen: String,
}

impl Default for TelemetrySection {
    fn default() -> Self {
        TelemetrySection {
            listen: "0.0.0.0:9898".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LakeSection {
    /// `file:///path`, a local path, or `s3://bucket/prefix`; parsed when the file is read.
    #[serde(with = "lake_url")]
    pub url: LakeLocation,
    /// S3: retries of one request after a transient error before the flush fails.
    pub max_retries: usize,
    /// S3: no retry starts later than this after a request's first attempt.
    #[serde(with = "humantime_serde")]
    pub retry_timeout: Duration,
    /// S3: the first backoff between attempts.
    #[serde(with = "humantime_serde")]
    pub backoff_initial: Duration,
    /// S3: the longest backoff between attempts.
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
}

impl Default for LakeSection {
    fn default() -> Self {
        let o = LakeOptions::default();
        LakeSection {
            url: LakeLocation::Local("lake".into()),
            max_retries: o.max_retries,
            retry_timeout: o.retry_timeout,
            backoff_initial: o.backoff_initial,
            backoff_max: o.backoff_max,
        }
    }
}

/// The `[lake]` section, checked: where the lake is and how its S3 requests retry.
#[derive(Debug, Clone, PartialEq)]
pub struct LakeConfig {
    pub location: LakeLocation,
    pub options: LakeOptions,
}

/// `lake.url` as its text in the file and the environment, [`LakeLocation`] in the program.
mod lake_url {
    use rade_lake::LakeLocation;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(location: &LakeLocation, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(location)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<LakeLocation, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

impl LakeSection {
    /// The lake's location (a relative path read from `base`) and options, with a problem for
    /// each key out of range.
    pub fn check(&self, base: &Path, problems: &mut Vec<String>) -> LakeConfig {
        if self.url == LakeLocation::Memory {
            problems.push(
                "lake.url: memory:// keeps nothing once the process ends; the lake of a config is file://, s3:// or a local path"
                    .into(),
            );
        }
        LakeConfig {
            location: self.url.clone().relative_to(base),
            options: self.options(problems),
        }
    }

    /// The lake's options, with a problem for each key out of range.
    fn options(&self, problems: &mut Vec<String>) -> LakeOptions {
        for (key, d) in [
            ("lake.retry_timeout", self.retry_timeout),
            ("lake.backoff_initial", self.backoff_initial),
            ("lake.backoff_max", self.backoff_max),
        ] {
            if d.is_zero() {
                problems.push(format!("{key}: must be more than 0s"));
            }
        }
        if self.backoff_max < self.backoff_initial {
            problems.push(format!(
                "lake.backoff_max: {} is less than lake.backoff_initial ({})",
                humantime::format_duration(self.backoff_max),
                humantime::format_duration(self.backoff_initial)
            ));
        }
        LakeOptions {
            max_retries: self.max_retries,
            retry_timeout: self.retry_timeout,
            backoff_initial: self.backoff_initial,
            backoff_max: self.backoff_max,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchemasSection {
    /// Directory with `catalog.toml` and the `.avsc` files; `None`: the shipped schemas,
    /// compiled into the binary.
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidationSection {
    /// Larger messages go to the DLQ as `too_large`.
    pub max_message_size: bytesize::ByteSize,
    /// How far ahead of the worker's clock an event time may be.
    #[serde(with = "humantime_serde")]
    pub max_future: Duration,
}

impl Default for ValidationSection {
    fn default() -> Self {
        let d = DecodeLimits::default();
        ValidationSection {
            max_message_size: bytesize::ByteSize::b(d.max_message_bytes as u64),
            max_future: Duration::from_millis(d.max_future_ms as u64),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    pub format: LogFormat,
}

/// The checked configuration every command starts from.
#[derive(Debug)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub worker: WorkerConfig,
    /// Where the lake is and how a lake on S3 retries.
    pub lake: LakeConfig,
    pub catalog: Arc<Catalog>,
    pub limits: DecodeLimits,
    pub log: LogFormat,
    /// Where to serve metrics and health; `None` when turned off.
    pub listen: Option<std::net::SocketAddr>,
    /// Windows and rules; `None` when `windows.enabled = false`.
    pub windowing: Option<Windowing>,
}

/// Reads the layers; `path` must exist when given. A relative path written in the file
/// (`schemas.dir`, `windows.rules_dir`, a local `lake.url`) is taken from the file's folder;
/// one from the environment, from the working folder.
pub fn load(path: Option<&Path>) -> Result<RawConfig, String> {
    let mut figment = Figment::from(Serialized::defaults(RawConfig::default()));
    if let Some(path) = path {
        if !path.is_file() {
            return Err(format!("config file {} does not exist", path.display()));
        }
        figment = figment.merge(Toml::file_exact(path));
    }
    figment = figment.merge(Env::prefixed("RADE__").split("__"));
    let mut raw = figment.extract::<RawConfig>().map_err(|e| {
        let origin = path
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "the environment".into());
        e.into_iter()
            .map(|e| format!("{origin}: {}", without_secret(e)))
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    // The folder of the file that set a key, when a file did.
    let folder = |key: &str| {
        figment
            .find_metadata(key)
            .and_then(|m| m.source.as_ref())
            .and_then(|s| s.file_path())
            .and_then(Path::parent)
            .map(Path::to_path_buf)
    };
    let beside = |key: &str, p: &Path| match folder(key) {
        Some(dir) if p.is_relative() => dir.join(p),
        _ => p.to_path_buf(),
    };
    raw.schemas.dir = raw.schemas.dir.map(|d| beside("schemas.dir", &d));
    raw.windows.rules_dir = raw.windows.rules_dir.map(|d| beside("windows.rules_dir", &d));
    if let Some(dir) = folder("lake.url") {
        raw.lake.url = raw.lake.url.relative_to(&dir);
    }
    Ok(raw)
}

/// The schemas of a folder, or the shipped ones when none is given.
pub fn catalog(dir: Option<&Path>) -> anyhow::Result<Catalog> {
    use anyhow::Context;
    match dir {
        Some(dir) => Catalog::load(dir).with_context(|| format!("while loading the schemas of {}", dir.display())),
        None => Catalog::embedded().context("while loading the built-in schemas"),
    }
}

/// A configuration error as text, without the value it quotes when its key names a secret.
fn without_secret(e: figment::Error) -> String {
    use figment::error::Kind;
    if !e.path.iter().any(|k| rade_kafka::names_a_secret(k)) {
        return e.to_string();
    }
    let key = e.path.join(".");
    let redacted = rade_kafka::REDACTED;
    match &e.kind {
        Kind::InvalidType(_, expected) | Kind::InvalidValue(_, expected) => {
            format!("invalid value {redacted} for key {key}: expected {expected}")
        }
        _ => format!("invalid value {redacted} for key {key}"),
    }
}

/// Checks everything before anything starts; reports every problem, each with its key or file.
pub fn validate(raw: RawConfig, base: &Path) -> Result<Config, Vec<String>> {
    let mut problems = Vec::new();
    let loaded = match &raw.schemas.dir {
        Some(dir) => Catalog::load(&base.join(dir)),
        None => Catalog::embedded(),
    };
    let catalog = match loaded {
        Ok(c) => Some(Arc::new(c)),
        Err(e) => {
            problems.push(format!("schemas.dir: {e}"));
            None
        }
    };
    if let Some(c) = &catalog {
        for k in &raw.kafka.kinds {
            if c.kind(k).is_none() {
                let known: Vec<_> = c.kinds().iter().map(|k| k.kind.as_str()).collect();
                problems.push(format!(
                    "kafka.kinds: `{k}` is not a kind of the catalog ({})",
                    known.join(", ")
                ));
            }
        }
    }
    if raw.kafka.bootstrap_servers.trim().is_empty() {
        problems.push("kafka.bootstrap_servers: empty".into());
    }
    if raw.kafka.group_id.trim().is_empty() {
        problems.push("kafka.group_id: empty".into());
    }
    let mut properties = std::collections::BTreeMap::new();
    let mut secret_keys = std::collections::BTreeSet::new();
    for (k, v) in &raw.kafka.properties {
        match resolve_secret(v) {
            Ok(resolved) => {
                if resolved != *v {
                    secret_keys.insert(k.clone());
                }
                properties.insert(k.clone(), resolved);
            }
            Err(e) => problems.push(format!("kafka.properties.{k}: {e}")),
        }
    }
    let kafka = KafkaConfig {
        properties,
        secret_keys,
        ..raw.kafka.clone()
    };
    // librdkafka's own checks of names and values, before any client is created.
    problems.extend(kafka.check_properties());
    SECRETS
        .set(kafka.clone())
        .unwrap_or_else(|_| tracing::debug!("configuration validated twice; the first one's secrets are redacted"));
    for (key, d) in [
        ("worker.flush_interval", raw.worker.flush_interval),
        ("worker.roll_interval", raw.worker.roll_interval),
        ("worker.connect_timeout", raw.worker.connect_timeout),
    ] {
        if d.is_zero() {
            problems.push(format!("{key}: must be more than 0s"));
        }
    }
    if raw.worker.max_in_flight == 0 {
        problems.push("worker.max_in_flight: must be at least 1".into());
    }
    if raw.validation.max_message_size.as_u64() == 0 {
        problems.push("validation.max_message_size: must be more than 0".into());
    }
    let listen = match raw.telemetry.listen.trim() {
        "" => None,
        addr => match addr.parse() {
            Ok(a) => Some(a),
            Err(e) => {
                problems.push(format!(
                    "telemetry.listen: `{addr}` is not an address like 0.0.0.0:9898: {e}"
                ));
                None
            }
        },
    };
    let lake = raw.lake.check(base, &mut problems);
    let mut windows = raw.windows.clone();
    windows.rules_dir = windows.rules_dir.map(|d| base.join(d));
    if windows.enabled && windows.alerts_topic.trim().is_empty() {
        problems.push("windows.alerts_topic: empty".into());
    }
    let windowing = match &catalog {
        Some(c) => match Windowing::load(&windows, c) {
            Ok(w) => w,
            Err(e) => {
                problems.push(format!("windows: {e}"));
                None
            }
        },
        None => None,
    };
    let Some(catalog) = catalog.filter(|_| problems.is_empty()) else {
        return Err(problems);
    };
    Ok(Config {
        kafka,
        worker: raw.worker,
        lake,
        catalog,
        limits: DecodeLimits {
            max_message_bytes: raw.validation.max_message_size.as_u64() as usize,
            max_future_ms: raw.validation.max_future.as_millis() as i64,
            ..DecodeLimits::default()
        },
        log: raw.log.format,
        listen,
        windowing,
    })
}

/// The validated Kafka settings, so that whatever the binary prints can be redacted.
static SECRETS: std::sync::OnceLock<KafkaConfig> = std::sync::OnceLock::new();

/// `text` without any secret of the configuration (every value read from `env:` or `file:`
/// and every value whose key names a secret), for the last line the binary prints.
pub fn redact(text: &str) -> String {
    match SECRETS.get() {
        Some(kafka) => kafka.redact(text),
        None => text.to_owned(),
    }
}

/// `file:/path` and `env:NAME` values are read from there; anything else is taken as it is.
fn resolve_secret(v: &str) -> Result<String, String> {
    if let Some(path) = v.strip_prefix("file:") {
        std::fs::read_to_string(path)
            .map(|s| s.trim_end().to_owned())
            .map_err(|e| format!("cannot read {path}: {e}"))
    } else if let Some(name) = v.strip_prefix("env:") {
        std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))
    } else {
        Ok(v.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("rade.toml");
        std::fs::write(&path, text).expect("write");
        (dir, path)
    }

    fn schemas() -> String {
        format!("{}/../../schemas", env!("CARGO_MANIFEST_DIR"))
    }

    #[test]
    fn unknown_keys_are_named() {
        let (_d, path) = write("[kafka]\nbootstrap_server = \"x:1\"\n");
        let err = load(Some(&path)).expect_err("unknown key");
        assert!(err.contains("bootstrap_server") && err.contains("rade.toml"), "{err}");
    }

    #[test]
    fn a_missing_file_is_named() {
        let err = load(Some(Path::new("/nowhere/rade.toml"))).expect_err("missing");
        assert!(err.contains("/nowhere/rade.toml"), "{err}");
    }

    #[test]
    fn durations_sizes_and_validation() {
        let (d, path) = write(&format!(
            "[worker]\nflush_interval = \"2s\"\nflush_size = \"8MiB\"\n[schemas]\ndir = \"{}\"\n[kafka]\nkinds = [\"noise\"]\n[windows]\nrules_dir = \"{}/../../rules\"\n",
            schemas(),
            env!("CARGO_MANIFEST_DIR")
        ));
        let raw = load(Some(&path)).expect("loads");
        let c = validate(raw, d.path()).expect("valid");
        assert_eq!(c.worker.flush_interval, Duration::from_secs(2));
        assert_eq!(c.worker.flush_size.as_u64(), 8 * 1024 * 1024);
        assert_eq!(c.kafka.kinds, vec!["noise".to_owned()]);
    }

    #[test]
    fn lake_retries_are_read_and_checked() {
        let (d, path) = write(&format!(
            "[lake]\nurl = \"s3://b/p\"\nmax_retries = 3\nretry_timeout = \"20s\"\nbackoff_initial = \"50ms\"\nbackoff_max = \"2s\"\n[schemas]\ndir = \"{}\"\n[windows]\nenabled = false\n",
            schemas()
        ));
        let c = validate(load(Some(&path)).expect("loads"), d.path()).expect("valid");
        assert_eq!(
            c.lake.options,
            LakeOptions {
                max_retries: 3,
                retry_timeout: Duration::from_secs(20),
                backoff_initial: Duration::from_millis(50),
                backoff_max: Duration::from_secs(2),
            }
        );

        let (d, path) = write(&format!(
            "[lake]\nretry_timeout = \"0s\"\nbackoff_initial = \"1m\"\nbackoff_max = \"1s\"\n[schemas]\ndir = \"{}\"\n[windows]\nenabled = false\n",
            schemas()
        ));
        let all = validate(load(Some(&path)).expect("loads"), d.path())
            .expect_err("invalid")
            .join("\n");
        assert!(
            all.contains("lake.retry_timeout") && all.contains("lake.backoff_max"),
            "{all}"
        );

        let (_d, path) = write("[lake]\nretries = 3\n");
        let err = load(Some(&path)).expect_err("unknown key");
        assert!(err.contains("retries"), "{err}");
    }

    #[test]
    fn relative_paths_of_a_file_are_read_from_its_folder_and_defaults_are_built_in() {
        let (d, path) = write("[schemas]\ndir = \"s\"\n[windows]\nrules_dir = \"r\"\n[lake]\nurl = \"l\"\n");
        let raw = load(Some(&path)).expect("loads");
        assert_eq!(raw.schemas.dir, Some(d.path().join("s")));
        assert_eq!(raw.windows.rules_dir, Some(d.path().join("r")));
        assert_eq!(raw.lake.url, LakeLocation::Local(d.path().join("l")));

        let (_d, path) = write("[lake]\nurl = \"s3://b/p\"\n");
        let raw = load(Some(&path)).expect("loads");
        assert_eq!(raw.lake.url.to_string(), "s3://b/p");
        assert_eq!(raw.schemas.dir, None);
        let c = validate(raw, Path::new(".")).expect("the built-in schemas and rules are valid");
        assert!(c.catalog.kind("water_level").is_some());
        let rules = c.windowing.expect("windows on by default").rules;
        assert!(rules.rule_names().iter().any(|r| r == "flood_warning"));
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let (d, path) = write("[kafka]\nkinds = [\"lava\"]\ngroup_id = \"\"\n[schemas]\ndir = \"missing\"\n");
        let raw = load(Some(&path)).expect("loads");
        let problems = validate(raw, d.path()).expect_err("invalid");
        let all = problems.join("\n");
        assert!(all.contains("schemas.dir") && all.contains("catalog.toml"), "{all}");
        assert!(all.contains("kafka.group_id"), "{all}");
    }

    #[test]
    fn a_lake_url_that_does_not_parse_is_named_with_its_key() {
        let (_d, path) = write("[lake]\nurl = \"s3:///prefix\"\n");
        let err = load(Some(&path)).expect_err("no bucket");
        assert!(err.contains("lake.url") && err.contains("needs a bucket"), "{err}");

        let (d, path) = write(&format!(
            "[lake]\nurl = \"memory://\"\n[schemas]\ndir = \"{}\"\n[windows]\nenabled = false\n",
            schemas()
        ));
        let all = validate(load(Some(&path)).expect("loads"), d.path())
            .expect_err("a worker's lake in memory")
            .join("\n");
        assert!(all.contains("lake.url: memory://"), "{all}");
    }
}
