use chrono::{DateTime, Datelike, Timelike};
use object_store::path::Path;

const MS_PER_HOUR: i64 = 3_600_000;

/// The hour since the epoch that holds an event time in ms (UTC); raw files never span two.
pub fn hour_of(event_time_ms: i64) -> i64 {
    event_time_ms.div_euclid(MS_PER_HOUR)
}

/// A raw Parquet file: the rows of one Kafka partition with offsets in `[start, end]` whose
/// event time falls in one hour. Rows of that range and hour not in this file are in an
/// older file of the same hour, so a replay can tell from names alone what is durable.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RawFile {
    pub kind: String,
    pub hour: i64,
    pub topic: String,
    pub partition: i32,
    pub start: i64,
    pub end: i64,
}

impl RawFile {
    /// `raw/<kind>/date=<YYYY-MM-DD>/hour=<HH>/<topic>__p<partition>__<start>-<end>.parquet`.
    pub fn path(&self, root: &Path) -> Path {
        let t = DateTime::from_timestamp_millis(self.hour * MS_PER_HOUR).unwrap_or_default();
        let mut p = root.clone();
        for part in [
            "raw".to_owned(),
            // The table's root: a plain name, not `kind=`, or readers that take every
            // `key=value` directory of a path for a partition (Polars) fail on the table.
            self.kind.clone(),
            format!("date={:04}-{:02}-{:02}", t.year(), t.month(), t.day()),
            format!("hour={:02}", t.hour()),
            // Zero-padded offsets so that names sort in offset order.
            format!(
                "{}__p{}__{:020}-{:020}.parquet",
                self.topic, self.partition, self.start, self.end
            ),
        ] {
            p = p.join(part);
        }
        p
    }

    /// The table of the file, its path relative to the table, and its partition values.
    pub fn table_path(&self) -> (crate::delta::TableId, String, Vec<(String, String)>) {
        let full = self.path(&Path::default());
        let rel: Vec<_> = full.parts().skip(2).map(|p| p.as_ref().to_owned()).collect();
        let t = DateTime::from_timestamp_millis(self.hour * MS_PER_HOUR).unwrap_or_default();
        (
            crate::delta::TableId::Raw(self.kind.clone()),
            rel.join("/"),
            vec![
                ("date".into(), format!("{:04}-{:02}-{:02}", t.year(), t.month(), t.day())),
                ("hour".into(), format!("{:02}", t.hour())),
            ],
        )
    }

    /// Parses the path of a file relative to its table `raw_<kind>`.
    pub fn parse_in_table(kind: &str, rel: &str) -> Option<RawFile> {
        let full = format!("raw/{kind}/{rel}");
        RawFile::parse(&Path::from(full.as_str()))
    }

    /// The directory holding the raw files of a kind.
    pub fn kind_prefix(root: &Path, kind: &str) -> Path {
        root.clone().join("raw").join(kind)
    }

    /// Parses a path written by [`RawFile::path`]; `None` for anything else (temp files, other tools).
    pub fn parse(path: &Path) -> Option<RawFile> {
        let parts: Vec<_> = path.parts().collect();
        let n = parts.len();
        if n < 5 {
            return None;
        }
        let kind = parts[n - 4].as_ref();
        let kind = kind.strip_prefix("kind=").unwrap_or(kind).to_owned();
        let date = parts[n - 3].as_ref().strip_prefix("date=")?;
        let hour: u32 = parts[n - 2].as_ref().strip_prefix("hour=")?.parse().ok()?;
        let day = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
        let t = day.and_hms_opt(hour, 0, 0)?.and_utc().timestamp_millis();
        let name = parts[n - 1].as_ref().strip_suffix(".parquet")?;
        let mut it = name.rsplitn(3, "__");
        let (range, partition, topic) = (it.next()?, it.next()?, it.next()?);
        let partition = partition.strip_prefix('p')?.parse().ok()?;
        let (start, end) = range.split_once('-')?;
        Some(RawFile {
            kind,
            hour: hour_of(t),
            topic: topic.to_owned(),
            partition,
            start: start.parse().ok()?,
            end: end.parse().ok()?,
        })
    }
}

/// Where a flush's closed windows or alerts go: one file per partition, flush and day. The
/// name holds the partition's position when the flush was sealed and the watermark that closed
/// the windows; both only grow, so two flushes never share a name, and a replay that closes
/// the same windows at the same position writes the same name (create-only: no duplicate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DerivedFile {
    pub table: DerivedTable,
    /// Start of the UTC day (ms) the rows' windows start in.
    pub day_ms: i64,
    pub topic: String,
    pub partition: i32,
    pub next_offset: i64,
    pub watermark_ms: i64,
}

/// The tables computed from raw records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DerivedTable {
    /// `aggregates/window=<window>/kind=<kind>/`
    Aggregates { window: String, kind: String },
    /// `alerts/`
    Alerts,
}

impl DerivedFile {
    /// `aggregates/window=<w>/kind=<k>/date=<D>/<name>` or `alerts/date=<D>/<name>`, where the
    /// name is `<topic>__p<partition>__o<next offset>__w<watermark>.parquet`.
    pub fn path(&self, root: &Path) -> Path {
        let t = DateTime::from_timestamp_millis(self.day_ms).unwrap_or_default();
        let mut parts = match &self.table {
            DerivedTable::Aggregates { window, kind } => {
                vec![
                    "aggregates".to_owned(),
                    format!("window={window}"),
                    format!("kind={kind}"),
                ]
            }
            DerivedTable::Alerts => vec!["alerts".to_owned()],
        };
        parts.push(format!("date={:04}-{:02}-{:02}", t.year(), t.month(), t.day()));
        parts.push(format!(
            "{}__p{}__o{:020}__w{:013}.parquet",
            self.topic, self.partition, self.next_offset, self.watermark_ms
        ));
        let mut p = root.clone();
        for part in parts {
            p = p.join(part);
        }
        p
    }
}

impl DerivedFile {
    /// The table of the file, its path relative to the table, and its partition values.
    pub fn table_path(&self) -> (crate::delta::TableId, String, Vec<(String, String)>) {
        let t = DateTime::from_timestamp_millis(self.day_ms).unwrap_or_default();
        let date = format!("{:04}-{:02}-{:02}", t.year(), t.month(), t.day());
        let full = self.path(&Path::default());
        match &self.table {
            DerivedTable::Aggregates { window, kind } => (
                crate::delta::TableId::Aggregates,
                full.parts().skip(1).map(|p| p.as_ref().to_owned()).collect::<Vec<_>>().join("/"),
                vec![("window".into(), window.clone()), ("kind".into(), kind.clone()), ("date".into(), date)],
            ),
            DerivedTable::Alerts => (
                crate::delta::TableId::Alerts,
                full.parts().skip(1).map(|p| p.as_ref().to_owned()).collect::<Vec<_>>().join("/"),
                vec![("date".into(), date)],
            ),
        }
    }

    /// Parses the path of a file relative to its table.
    pub fn parse_in_table(table: &crate::delta::TableId, rel: &str) -> Option<DerivedFile> {
        let full = format!("{}/{rel}", table.dir());
        DerivedFile::parse(&Path::from(full.as_str()))
    }

    /// Parses a path written by [`DerivedFile::path`]; `None` for anything else.
    pub fn parse(path: &Path) -> Option<DerivedFile> {
        let parts: Vec<_> = path.parts().collect();
        let n = parts.len();
        let name = parts.get(n.checked_sub(1)?)?.as_ref().strip_suffix(".parquet")?;
        let date = parts.get(n.checked_sub(2)?)?.as_ref().strip_prefix("date=")?;
        let day = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
        let day_ms = day.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis();
        let table = match parts.get(n.checked_sub(3)?)?.as_ref() {
            "alerts" => DerivedTable::Alerts,
            kind => DerivedTable::Aggregates {
                kind: kind.strip_prefix("kind=")?.to_owned(),
                window: parts
                    .get(n.checked_sub(4)?)?
                    .as_ref()
                    .strip_prefix("window=")?
                    .to_owned(),
            },
        };
        let mut it = name.rsplitn(4, "__");
        let (watermark, offset, partition, topic) = (it.next()?, it.next()?, it.next()?, it.next()?);
        Some(DerivedFile {
            table,
            day_ms,
            topic: topic.to_owned(),
            partition: partition.strip_prefix('p')?.parse().ok()?,
            next_offset: offset.strip_prefix('o')?.parse().ok()?,
            watermark_ms: watermark.strip_prefix('w')?.parse().ok()?,
        })
    }
}

/// Start of the UTC day holding `t_ms`.
pub fn day_of(t_ms: i64) -> i64 {
    t_ms.div_euclid(86_400_000) * 86_400_000
}

/// The window state of a partition, overwritten at every flush: `_state/windows/<topic>/p<n>.cbor.zst`.
/// Readers of the Hive tables never see it (it is outside them, and `_` marks it private).
pub fn state_path(root: &Path, topic: &str, partition: i32) -> Path {
    root.clone()
        .join("_state")
        .join("windows")
        .join(topic)
        .join(format!("p{partition}.cbor.zst"))
}

/// Where a claim-checked DLQ value is kept: `_dlq/<topic>/p<partition>/o<offset>.bin`, named by
/// its source position so that a replay writes the same object again, never a second one.
pub fn dlq_object_path(root: &Path, topic: &str, partition: i32, offset: i64) -> Path {
    root.clone()
        .join("_dlq")
        .join(topic)
        .join(format!("p{partition}"))
        .join(format!("o{offset}.bin"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_file_names_round_trip() {
        for table in [
            DerivedTable::Alerts,
            DerivedTable::Aggregates {
                window: "1h_every_15m".into(),
                kind: "water_level".into(),
            },
        ] {
            let f = DerivedFile {
                table,
                day_ms: day_of(1_780_000_000_000),
                topic: "tpm.raw.water_level".into(),
                partition: 3,
                next_offset: 1234,
                watermark_ms: 1_780_000_060_000,
            };
            assert_eq!(DerivedFile::parse(&f.path(&Path::from("lake"))), Some(f));
        }
    }

    #[test]
    fn path_round_trips_and_follows_the_hive_layout() {
        let f = RawFile {
            kind: "water_level".into(),
            hour: hour_of(1_780_000_000_000),
            topic: "tpm.raw.water_level".into(),
            partition: 2,
            start: 17,
            end: 4711,
        };
        let p = f.path(&Path::from("lake"));
        assert_eq!(
            p.as_ref(),
            "lake/raw/water_level/date=2026-05-28/hour=20/tpm.raw.water_level__p2__00000000000000000017-00000000000000004711.parquet"
        );
        assert_eq!(RawFile::parse(&p), Some(f));
        assert_eq!(
            RawFile::parse(&Path::from("lake/raw/kind=x/date=2026-01-01/hour=01/notes.txt")),
            None
        );
    }

    #[test]
    fn topics_with_double_underscores_parse() {
        let f = RawFile {
            kind: "noise".into(),
            hour: 10,
            topic: "a__b".into(),
            partition: 0,
            start: 0,
            end: 0,
        };
        assert_eq!(RawFile::parse(&f.path(&Path::default())), Some(f.clone()));
        let (table, rel, values) = f.table_path();
        assert_eq!(table, crate::TableId::Raw("noise".into()));
        assert_eq!(rel, "date=1970-01-01/hour=10/a__b__p0__00000000000000000000-00000000000000000000.parquet");
        assert_eq!(values, vec![("date".into(), "1970-01-01".into()), ("hour".into(), "10".into())]);
        assert_eq!(RawFile::parse_in_table("noise", &rel), Some(f));
    }

    #[test]
    fn hours_before_the_epoch_floor() {
        assert_eq!(hour_of(-1), -1);
        assert_eq!(hour_of(3_599_999), 0);
    }
}
