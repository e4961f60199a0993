use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// An event-time window shape: tumbling when `slide == size`, hopping when `slide < size`.
///
/// Windows are aligned on the Unix epoch: a window starts at a multiple of `slide` and covers
/// `[start, start + size)`. Its label (`1m`, `15m`, `1h`, `1h_every_15m`) names it in the
/// configuration, in rules and in the lake's `aggregates/window=<label>/` directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowSpec {
    pub label: String,
    pub size_ms: i64,
    pub slide_ms: i64,
}

impl WindowSpec {
    /// Parses `<size>` (tumbling) or `<size>_every_<slide>` (hopping), e.g. `15m`, `1h_every_15m`.
    pub fn parse(label: &str) -> Result<Self> {
        let bad = |message: String| Error::Window {
            label: label.into(),
            message,
        };
        let duration = |s: &str| -> Result<i64> {
            let d = humantime::parse_duration(s).map_err(|e| bad(format!("`{s}` is not a duration: {e}")))?;
            let ms = d.as_millis() as i64;
            if ms < 1000 || d.subsec_millis() != 0 {
                return Err(bad(format!("`{s}` must be a whole number of seconds, at least 1s")));
            }
            Ok(ms)
        };
        let (size_ms, slide_ms) = match label.split_once("_every_") {
            None => {
                let size = duration(label)?;
                (size, size)
            }
            Some((size, slide)) => (duration(size)?, duration(slide)?),
        };
        if slide_ms > size_ms || size_ms % slide_ms != 0 {
            return Err(bad("the slide must divide the size".into()));
        }
        if 86_400_000 % slide_ms != 0 && slide_ms % 86_400_000 != 0 {
            return Err(bad(
                "the slide must divide a day, so windows align on midnight UTC".into()
            ));
        }
        Ok(WindowSpec {
            label: label.into(),
            size_ms,
            slide_ms,
        })
    }

    /// Start of every window of this shape that contains `t_ms`, oldest first.
    pub fn starts(&self, t_ms: i64) -> impl Iterator<Item = i64> + use<> {
        let last = t_ms.div_euclid(self.slide_ms) * self.slide_ms;
        let count = self.size_ms / self.slide_ms;
        let slide = self.slide_ms;
        (0..count).rev().map(move |k| last - k * slide)
    }

    /// Whether the window starting at `start` has ended once event time reaches `watermark`.
    pub fn closed_by(&self, start: i64, watermark: i64) -> bool {
        start + self.size_ms <= watermark
    }
}

/// The `[windows]` section: which windows every worker keeps, and how long it waits for
/// records that arrive out of order.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WindowConfig {
    /// Aggregate and run rules; when false the worker only fills the raw lake.
    pub enabled: bool,
    /// Window shapes, e.g. `["1m", "15m", "1h", "1h_every_15m"]`.
    pub windows: Vec<String>,
    /// Watermark = newest event time of a partition minus this.
    #[serde(with = "humantime_serde")]
    pub allowed_lateness: Duration,
    /// A partition that delivers nothing for this long stops holding the watermark back.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A sensor that sends nothing for this long (event time) is forgotten, with its alerts.
    #[serde(with = "humantime_serde")]
    pub forget_after: Duration,
    /// Kafka topic that also receives every closed window as JSON; empty for none.
    pub aggregates_topic: String,
    /// Directory of the rule files (`*.toml`); `None`: the shipped rules, compiled in.
    pub rules_dir: Option<PathBuf>,
    /// Topic the alerts are published on.
    pub alerts_topic: String,
    /// Encoding of the alert values: `avro` (Confluent-framed) or `json`.
    pub alert_format: AlertFormat,
}

/// How alerts are encoded on the alert topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertFormat {
    Avro,
    Json,
}

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig {
            enabled: true,
            windows: vec!["1m".into(), "15m".into(), "1h".into(), "1h_every_15m".into()],
            allowed_lateness: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(30),
            forget_after: Duration::from_secs(7 * 86_400),
            aggregates_topic: String::new(),
            rules_dir: None,
            alerts_topic: "tpm.alerts".into(),
            alert_format: AlertFormat::Avro,
        }
    }
}

impl WindowConfig {
    /// The window shapes, checked; an error names the bad entry.
    pub fn specs(&self) -> Result<Vec<WindowSpec>> {
        let mut specs: Vec<WindowSpec> = Vec::new();
        for label in &self.windows {
            let spec = WindowSpec::parse(label)?;
            if specs.iter().any(|s| s.label == spec.label) {
                return Err(Error::Window {
                    label: label.clone(),
                    message: "listed twice".into(),
                });
            }
            specs.push(spec);
        }
        if specs.len() > 32 {
            return Err(Error::Window {
                label: String::new(),
                message: "at most 32 windows".into(),
            });
        }
        if self.enabled && specs.is_empty() {
            return Err(Error::Window {
                label: String::new(),
                message: "windows.enabled needs at least one window in windows.windows".into(),
            });
        }
        Ok(specs)
    }

    pub fn lateness_ms(&self) -> i64 {
        self.allowed_lateness.as_millis() as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tumbling_and_hopping_windows_cover_an_instant() {
        let m = WindowSpec::parse("1m").expect("valid");
        assert_eq!(m.starts(125_000).collect::<Vec<_>>(), vec![120_000]);
        let hop = WindowSpec::parse("1h_every_15m").expect("valid");
        assert_eq!(
            hop.starts(3_700_000).collect::<Vec<_>>(),
            vec![900_000, 1_800_000, 2_700_000, 3_600_000]
        );
        assert!(hop.closed_by(0, 3_600_000));
        assert!(!hop.closed_by(900_000, 3_600_000));
        // Before the epoch too.
        assert_eq!(m.starts(-1).collect::<Vec<_>>(), vec![-60_000]);
    }

    #[test]
    fn bad_windows_are_refused_with_their_label() {
        for label in ["", "soon", "1h_every_7m", "15m_every_1h", "500ms"] {
            let e = WindowSpec::parse(label).expect_err(label).to_string();
            assert!(e.contains(&format!("`{label}`")), "{e}");
        }
    }
}
