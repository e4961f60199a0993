use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use apache_avro::Schema as AvroSchema;
use apache_avro::rabin::Rabin;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::Deserialize;

use crate::builder::lineage_fields;
use crate::canonical;
use crate::decode::{Value, json_value};
use crate::resolve::Resolution;
use crate::schedule::{Schedule, ScheduleDef, parse_schedules};
use crate::{Error, Result};

/// The kind name of the alert schema in the catalog; every other entry is a sensor kind.
const ALERT_KIND: &str = "alert";

/// Every schema of `schemas/`, by kind, by Confluent id and by Avro fingerprint.
///
/// A kind may have several versions; its reader schema, the one its lake files and Arrow
/// batches have, is the highest `version`. Records written with any version of the kind are
/// read into it through Avro schema resolution, planned here once.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// The reader schema of each sensor kind, in the order of the kind's first catalog entry.
    kinds: Vec<Arc<KindSchema>>,
    alert: Option<Arc<KindSchema>>,
    /// Every version of every kind, by kind then version.
    versions: Vec<Arc<KindSchema>>,
    by_id: HashMap<u32, Arc<Writer>>,
    by_fingerprint: HashMap<u64, Arc<Writer>>,
    /// How the devices of each kind report (`[schedule.<kind>]`), for the kinds that declare it.
    schedules: BTreeMap<String, Schedule>,
}

/// A schema records may be written with, and how they are read into their kind's reader schema.
#[derive(Debug)]
pub(crate) struct Writer {
    pub(crate) schema: Arc<KindSchema>,
    /// `None` for the reader schema itself, whose records need no resolution.
    pub(crate) resolution: Option<Resolution>,
}

/// One version of a sensor kind: its Avro schema, the fields as the decoder sees them, and its
/// Arrow schema.
#[derive(Debug)]
pub struct KindSchema {
    pub kind: String,
    pub id: u32,
    /// The `version` of its catalog entry (1 when not given); the highest is the reader schema.
    pub version: u32,
    /// The `.avsc` it was read from.
    pub file: PathBuf,
    /// CRC-64-AVRO fingerprint of the Parsing Canonical Form of the Avro specification: what
    /// single-object messages from Java, fastavro, the Apache `avro` package and rade carry.
    pub fingerprint: u64,
    /// The fingerprint of the form apache-avro 0.21 and the Apache `avro` Python package compute,
    /// which keeps `{"type":"long"}` for a logical type (upstream AVRO-4004); accepted from
    /// producers built on them, never written.
    pub legacy_fingerprint: u64,
    pub avro: AvroSchema,
    pub fields: Vec<FieldSpec>,
    /// Position of `observed_at` in `fields`, the event time that partitions the lake.
    pub observed_at: usize,
    /// Measurement columns then lineage columns, as written to the lake.
    pub arrow: SchemaRef,
}

/// A field of a kind, with the range that makes a value impossible.
#[derive(Debug, Clone)]
pub struct FieldSpec {
    pub name: String,
    pub ty: FieldType,
    pub nullable: bool,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub unit: Option<String>,
    /// The Avro `default`: what a record written without the field reads as.
    pub default: Option<Value<'static>>,
}

/// The Avro types a sensor schema may use; anything else is refused when the catalog loads.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldType {
    Double,
    Float,
    Int,
    Long,
    Boolean,
    String,
    TimestampMillis,
    Enum(Arc<[String]>),
}

impl FieldType {
    /// The Avro name of the type, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            FieldType::Double => "double",
            FieldType::Float => "float",
            FieldType::Int => "int",
            FieldType::Long => "long",
            FieldType::Boolean => "boolean",
            FieldType::String => "string",
            FieldType::TimestampMillis => "timestamp-millis",
            FieldType::Enum(_) => "enum",
        }
    }

    fn arrow(&self) -> DataType {
        match self {
            FieldType::Double => DataType::Float64,
            FieldType::Float => DataType::Float32,
            FieldType::Int => DataType::Int32,
            FieldType::Long => DataType::Int64,
            FieldType::Boolean => DataType::Boolean,
            FieldType::String | FieldType::Enum(_) => DataType::Utf8,
            FieldType::TimestampMillis => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        }
    }

    fn from_avro(schema: &AvroSchema) -> Option<FieldType> {
        Some(match schema {
            AvroSchema::Double => FieldType::Double,
            AvroSchema::Float => FieldType::Float,
            AvroSchema::Int => FieldType::Int,
            AvroSchema::Long => FieldType::Long,
            AvroSchema::Boolean => FieldType::Boolean,
            AvroSchema::String => FieldType::String,
            AvroSchema::TimestampMillis => FieldType::TimestampMillis,
            AvroSchema::Enum(e) => FieldType::Enum(e.symbols.clone().into()),
            _ => return None,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    schema: Vec<CatalogEntry>,
    #[serde(default)]
    schedule: BTreeMap<String, ScheduleDef>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogEntry {
    kind: String,
    id: u32,
    file: PathBuf,
    #[serde(default = "first_version")]
    version: u32,
}

fn first_version() -> u32 {
    1
}

/// The shipped `schemas/` folder, compiled in by the build script: (file name, text).
const EMBEDDED: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/schemas.rs"));

/// Where the files of a catalog are read from.
#[derive(Debug, Clone, Copy)]
pub enum CatalogSource<'a> {
    /// A folder with `catalog.toml` and the `.avsc` files it lists.
    Dir(&'a Path),
    /// The `schemas/` this binary was built with.
    Embedded,
}

impl CatalogSource<'_> {
    /// The path a file is known by in messages, and its text.
    fn read(&self, file: &Path) -> Result<(PathBuf, String)> {
        match self {
            CatalogSource::Dir(dir) => {
                let path = dir.join(file);
                match std::fs::read_to_string(&path) {
                    Ok(text) => Ok((path, text)),
                    Err(source) => Err(Error::Io { path, source }),
                }
            }
            CatalogSource::Embedded => {
                let path = Path::new("(built-in) schemas").join(file);
                match EMBEDDED.iter().find(|(name, _)| Path::new(name) == file) {
                    Some((_, text)) => Ok((path, (*text).to_owned())),
                    None => Err(Error::Io {
                        path,
                        source: std::io::ErrorKind::NotFound.into(),
                    }),
                }
            }
        }
    }

    /// The folder, or `(built-in) schemas`, for messages.
    pub fn display(&self) -> String {
        match self {
            CatalogSource::Dir(dir) => dir.display().to_string(),
            CatalogSource::Embedded => "(built-in) schemas".into(),
        }
    }
}

impl Catalog {
    /// Loads `catalog.toml` and every schema it lists from `dir`; reports every problem at once.
    pub fn load(dir: &Path) -> Result<Catalog> {
        Catalog::load_from(CatalogSource::Dir(dir))
    }

    /// The shipped schemas, compiled into the binary: works from any folder.
    pub fn embedded() -> Result<Catalog> {
        Catalog::load_from(CatalogSource::Embedded)
    }

    /// Loads `catalog.toml` and every schema it lists; reports every problem at once.
    pub fn load_from(source: CatalogSource<'_>) -> Result<Catalog> {
        let (catalog_path, text) = source.read(Path::new("catalog.toml"))?;
        let file: CatalogFile = toml::from_str(&text).map_err(|e| Error::Invalid {
            path: catalog_path.clone(),
            message: e.to_string(),
        })?;
        let mut problems = Vec::new();
        let mut schemas = Vec::new();
        for entry in file.schema {
            let loaded = source
                .read(&entry.file)
                .and_then(|(path, text)| KindSchema::parse(&entry.kind, entry.id, &text, &path));
            match loaded {
                Ok(mut kind) => {
                    kind.version = entry.version;
                    schemas.push(kind);
                }
                Err(e) => problems.push(e.to_string()),
            }
        }
        match Catalog::from_schemas(schemas, &catalog_path) {
            Ok(mut c) => match parse_schedules(file.schedule, |k| c.kind(k).is_some()) {
                Ok(schedules) if problems.is_empty() => {
                    c.schedules = schedules;
                    return Ok(c);
                }
                Ok(_) => {}
                Err(more) => problems.extend(more.into_iter().map(|p| format!("{}: {p}", catalog_path.display()))),
            },
            Err(more) => problems.extend(more),
        }
        Err(Error::Invalid {
            path: source.display().into(),
            message: problems.join("; "),
        })
    }

    /// Groups the versions of each kind, picks its reader schema and plans the resolution of
    /// every older version into it; every problem names its file (or `catalog`) and field.
    fn from_schemas(schemas: Vec<KindSchema>, catalog: &Path) -> std::result::Result<Catalog, Vec<String>> {
        let mut problems = Vec::new();
        let mut ids: HashMap<u32, &str> = HashMap::new();
        for s in &schemas {
            if let Some(other) = ids.insert(s.id, &s.kind) {
                problems.push(format!(
                    "{}: schema id {} is used by both {other} and {}",
                    catalog.display(),
                    s.id,
                    s.kind
                ));
            }
        }
        // Kinds in the order of their first entry, each with its versions, oldest first.
        let mut grouped: Vec<(String, Vec<Arc<KindSchema>>)> = Vec::new();
        for s in schemas {
            match grouped.iter_mut().find(|(k, _)| *k == s.kind) {
                Some((_, versions)) => versions.push(Arc::new(s)),
                None => grouped.push((s.kind.clone(), vec![Arc::new(s)])),
            }
        }
        // Fingerprints of apache-avro's form, kept apart so that one never hides a fingerprint
        // of the specification's form (they are merged last, where free).
        let mut legacy: Vec<(u64, Arc<Writer>)> = Vec::new();
        let mut out = Catalog {
            kinds: Vec::new(),
            alert: None,
            versions: Vec::new(),
            by_id: HashMap::new(),
            by_fingerprint: HashMap::new(),
            schedules: BTreeMap::new(),
        };
        for (kind, mut versions) in grouped {
            versions.sort_by_key(|v| v.version);
            for pair in versions.windows(2) {
                if pair[0].version == pair[1].version {
                    problems.push(format!(
                        "{}: kind {kind} has two schemas of version {} (ids {} and {}): give each its own `version`",
                        catalog.display(),
                        pair[0].version,
                        pair[0].id,
                        pair[1].id
                    ));
                }
            }
            let reader = versions.last().expect("a kind has at least one entry").clone();
            for v in &versions {
                let resolution = if Arc::ptr_eq(v, &reader) {
                    None
                } else {
                    match Resolution::new(v, &reader) {
                        Ok(r) => Some(r),
                        Err(found) => {
                            problems.extend(found.into_iter().map(|p| format!("{}: {p}", reader.file.display())));
                            continue;
                        }
                    }
                };
                let writer = Arc::new(Writer {
                    schema: v.clone(),
                    resolution,
                });
                out.by_id.insert(v.id, writer.clone());
                if v.legacy_fingerprint != v.fingerprint {
                    legacy.push((v.legacy_fingerprint, writer.clone()));
                }
                // Versions that differ only in defaults, docs or ranges share a fingerprint:
                // their bodies are alike, and the newest one reads them.
                out.by_fingerprint.insert(v.fingerprint, writer);
            }
            out.versions.extend(versions);
            if kind == ALERT_KIND {
                out.alert = Some(reader);
            } else {
                out.kinds.push(reader);
            }
        }
        for (fp, writer) in legacy {
            // Newer versions come later and win, as for the specification's fingerprints.
            if out.by_fingerprint.get(&fp).is_none_or(|w| w.schema.fingerprint != fp) {
                out.by_fingerprint.insert(fp, writer);
            }
        }
        if problems.is_empty() { Ok(out) } else { Err(problems) }
    }

    #[cfg(test)]
    pub(crate) fn for_tests(schemas: Vec<KindSchema>) -> Catalog {
        Catalog::from_schemas(schemas, Path::new("catalog.toml")).expect("a consistent test catalog")
    }

    /// The reader schema (latest version) of each sensor kind, in catalog order.
    pub fn kinds(&self) -> &[Arc<KindSchema>] {
        &self.kinds
    }

    /// The reader schema (latest version) of a sensor kind: the schema of its lake files.
    pub fn kind(&self, kind: &str) -> Option<&Arc<KindSchema>> {
        self.kinds.iter().find(|k| k.kind == kind)
    }

    /// Every schema of the catalog: each version of each kind (the alert schema included), by
    /// kind then version.
    pub fn schemas(&self) -> &[Arc<KindSchema>] {
        &self.versions
    }

    /// Every version of a kind (the alert schema included), oldest first.
    pub fn versions<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Arc<KindSchema>> + 'a {
        self.versions.iter().filter(move |v| v.kind == kind)
    }

    /// The schema version registered under a Confluent schema id.
    pub fn by_id(&self, id: u32) -> Option<&Arc<KindSchema>> {
        self.by_id.get(&id).map(|w| &w.schema)
    }

    /// The schema version whose CRC-64-AVRO fingerprint this is (of the specification's
    /// canonical form, or of apache-avro 0.21's).
    pub fn by_fingerprint(&self, fingerprint: u64) -> Option<&Arc<KindSchema>> {
        self.by_fingerprint.get(&fingerprint).map(|w| &w.schema)
    }

    pub(crate) fn writer_by_id(&self, id: u32) -> Option<&Writer> {
        self.by_id.get(&id).map(|w| &**w)
    }

    pub(crate) fn writer_by_fingerprint(&self, fingerprint: u64) -> Option<&Writer> {
        self.by_fingerprint.get(&fingerprint).map(|w| &**w)
    }

    /// How the devices of a sensor kind report, when its catalog entry declares it.
    pub fn schedule(&self, kind: &str) -> Option<&Schedule> {
        self.schedules.get(kind)
    }

    /// The alert schema (its latest version), when the catalog has one.
    pub fn alert(&self) -> Option<&Arc<KindSchema>> {
        self.alert.as_ref()
    }
}

impl FieldSpec {
    /// The value of an Avro `default`: null for a `["null", T]` union (its first branch, as
    /// Avro requires), else a value of the field's type within its declared range.
    fn parse_default(
        &self,
        default: Option<&serde_json::Value>,
    ) -> std::result::Result<Option<Value<'static>>, String> {
        let name = &self.name;
        let Some(d) = default else { return Ok(None) };
        if self.nullable {
            return match d {
                serde_json::Value::Null => Ok(Some(Value::Null)),
                other => Err(format!(
                    "field `{name}`: the default of a [\"null\", T] union must be null, found {other}"
                )),
            };
        }
        if d.is_null() {
            return Err(format!("field `{name}`: default null, but the field is not optional"));
        }
        let value = json_value(self, d).map_err(|r| format!("{} (its default)", r.detail))?;
        if let Some(x) = value.as_f64()
            && (self.min.is_some_and(|min| x < min) || self.max.is_some_and(|max| x > max))
        {
            return Err(format!("field `{name}`: default {x} is outside its declared range"));
        }
        Ok(Some(value))
    }
}

impl KindSchema {
    /// Parses one `.avsc`; `path` only names the file in errors.
    pub fn parse(kind: &str, id: u32, text: &str, path: &Path) -> Result<KindSchema> {
        let invalid = |message: String| Error::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let avro = AvroSchema::parse_str(text).map_err(|e| invalid(format!("not a valid Avro schema: {e}")))?;
        let AvroSchema::Record(record) = &avro else {
            return Err(invalid("the top-level schema must be a record".into()));
        };
        let mut problems = Vec::new();
        let mut fields = Vec::with_capacity(record.fields.len());
        for f in &record.fields {
            let (nullable, inner) = match &f.schema {
                AvroSchema::Union(u) => match u.variants() {
                    [AvroSchema::Null, t] => (true, t),
                    _ => {
                        problems.push(format!("field `{}`: only [\"null\", T] unions are supported", f.name));
                        continue;
                    }
                },
                t => (false, t),
            };
            let Some(ty) = FieldType::from_avro(inner) else {
                problems.push(format!(
                    "field `{}`: type {:?} is not supported in a sensor schema",
                    f.name, inner
                ));
                continue;
            };
            let mut number = |key: &str| -> Option<f64> {
                let v = f.custom_attributes.get(key)?;
                let n = v.as_f64();
                if n.is_none() {
                    problems.push(format!("field `{}`: `{key}` must be a number, found {v}", f.name));
                }
                n
            };
            let min = number("rade.min");
            let max = number("rade.max");
            if let (Some(lo), Some(hi)) = (min, max)
                && lo > hi
            {
                problems.push(format!("field `{}`: rade.min {lo} is above rade.max {hi}", f.name));
            }
            let unit = f
                .custom_attributes
                .get("rade.unit")
                .and_then(|v| v.as_str())
                .map(str::to_owned);
            let mut spec = FieldSpec {
                name: f.name.clone(),
                ty,
                nullable,
                min,
                max,
                unit,
                default: None,
            };
            match spec.parse_default(f.default.as_ref()) {
                Ok(d) => spec.default = d,
                Err(p) => problems.push(p),
            }
            fields.push(spec);
        }
        let observed_at = fields.iter().position(|f| f.name == "observed_at");
        if kind != ALERT_KIND {
            for required in ["sensor_id", "observed_at"] {
                if !fields.iter().any(|f| f.name == required) {
                    problems.push(format!("a sensor schema needs the field `{required}`"));
                }
            }
            if let Some(i) = observed_at
                && (fields[i].ty != FieldType::TimestampMillis || fields[i].nullable)
            {
                problems.push("field `observed_at` must be a non-null timestamp-millis long".into());
            }
        }
        if !problems.is_empty() {
            return Err(invalid(problems.join("; ")));
        }
        let fingerprint = canonical::fingerprint(text).map_err(|e| invalid(format!("no canonical form: {e}")))?;
        let fp = avro.fingerprint::<Rabin>();
        let legacy_fingerprint = u64::from_le_bytes(fp.bytes[..8].try_into().expect("a Rabin fingerprint is 8 bytes"));
        let mut columns: Vec<Field> = fields
            .iter()
            .map(|f| Field::new(&f.name, f.ty.arrow(), f.nullable))
            .collect();
        columns.extend(lineage_fields());
        Ok(KindSchema {
            kind: kind.to_owned(),
            id,
            version: 1,
            file: path.to_path_buf(),
            fingerprint,
            legacy_fingerprint,
            avro,
            observed_at: observed_at.unwrap_or(0),
            fields,
            arrow: Arc::new(Schema::new(columns)),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const LEVEL: &str = r#"{"type":"record","name":"WaterLevelObserved","namespace":"tpm.sensors","fields":[
        {"name":"sensor_id","type":"string"},
        {"name":"observed_at","type":{"type":"long","logicalType":"timestamp-millis"}},
        {"name":"latitude","type":"double","rade.min":-90,"rade.max":90},
        {"name":"longitude","type":"double","rade.min":-180,"rade.max":180},
        {"name":"height","type":"double","rade.min":-100,"rade.max":2000,"rade.unit":"cm"},
        {"name":"flow","type":["null","double"],"default":null,"rade.min":0},
        {"name":"status","type":{"type":"enum","name":"St","symbols":["ok","fault"]}}
    ]}"#;

    pub(crate) fn level() -> KindSchema {
        KindSchema::parse("water_level", 101, LEVEL, Path::new("water_level.avsc")).expect("valid test schema")
    }

    /// Version 2 of [`LEVEL`]: an optional `battery_pct` at the end.
    pub(crate) fn level_v2_text() -> String {
        LEVEL.replace(
            r#""symbols":["ok","fault"]}}"#,
            r#""symbols":["ok","fault"]}},
            {"name":"battery_pct","type":["null","double"],"default":null,"rade.min":0,"rade.max":100}"#,
        )
    }

    /// Version 2 of water_level, id 1101.
    pub(crate) fn level_v2() -> KindSchema {
        let mut k = KindSchema::parse("water_level", 1101, &level_v2_text(), Path::new("water_level.v2.avsc"))
            .expect("valid test schema");
        k.version = 2;
        k
    }

    /// A schemas directory with `catalog` and the given `.avsc` files.
    fn schemas_dir(catalog: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("catalog.toml"), catalog).expect("catalog written");
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("schema written");
        }
        dir
    }

    const TWO_VERSIONS: &str = r#"
[[schema]]
kind = "water_level"
id = 101
file = "water_level.avsc"

[[schema]]
kind = "water_level"
id = 1101
version = 2
file = "water_level.v2.avsc"
"#;

    #[test]
    fn the_latest_version_is_the_reader_and_older_ids_stay_known() {
        let dir = schemas_dir(
            TWO_VERSIONS,
            &[("water_level.avsc", LEVEL), ("water_level.v2.avsc", &level_v2_text())],
        );
        let catalog = Catalog::load(dir.path()).expect("compatible versions load");
        assert_eq!(catalog.kinds().len(), 1);
        let reader = catalog.kind("water_level").expect("kind");
        assert_eq!((reader.id, reader.version), (1101, 2));
        assert_eq!(reader.arrow.field(7).name(), "battery_pct");
        assert!(reader.arrow.field(7).is_nullable());
        let versions: Vec<_> = catalog.versions("water_level").map(|v| (v.version, v.id)).collect();
        assert_eq!(versions, vec![(1, 101), (2, 1101)]);
        let v1 = catalog.by_id(101).expect("the old id is still read");
        assert_eq!(v1.version, 1);
        assert_eq!(catalog.by_fingerprint(v1.fingerprint).map(|k| k.id), Some(101));
        let plan = catalog
            .writer_by_id(101)
            .and_then(|w| w.resolution.as_ref())
            .expect("a plan");
        assert_eq!(plan.reader_id, 1101);
        assert!(catalog.writer_by_id(1101).expect("reader").resolution.is_none());
    }

    #[test]
    fn refuses_a_version_that_cannot_read_old_records_naming_file_and_field() {
        // A new field that is required, or optional without a default, leaves old records unreadable.
        for field in [
            r#"{"name":"battery_pct","type":"double"}"#,
            r#"{"name":"battery_pct","type":["null","double"]}"#,
        ] {
            let v2 = LEVEL.replace(
                r#""symbols":["ok","fault"]}}"#,
                &[r#""symbols":["ok","fault"]}}, "#, field].concat(),
            );
            let dir = schemas_dir(
                TWO_VERSIONS,
                &[("water_level.avsc", LEVEL), ("water_level.v2.avsc", &v2)],
            );
            let err = Catalog::load(dir.path()).expect_err("must be refused").to_string();
            assert!(err.contains("water_level.v2.avsc: field `battery_pct`"), "{err}");
            assert!(err.contains("version 1 (id 101, water_level.avsc)"), "{err}");
        }
        // A changed type.
        let v2 = level_v2_text().replace(
            r#"{"name":"height","type":"double""#,
            r#"{"name":"height","type":"string""#,
        );
        let dir = schemas_dir(
            TWO_VERSIONS,
            &[("water_level.avsc", LEVEL), ("water_level.v2.avsc", &v2)],
        );
        let err = Catalog::load(dir.path()).expect_err("must be refused").to_string();
        assert!(
            err.contains("water_level.v2.avsc: field `height`: type changed from double"),
            "{err}"
        );
        // Two entries of one version.
        let dir = schemas_dir(
            &TWO_VERSIONS.replace("version = 2\n", ""),
            &[("water_level.avsc", LEVEL), ("water_level.v2.avsc", &level_v2_text())],
        );
        let err = Catalog::load(dir.path()).expect_err("must be refused").to_string();
        assert!(
            err.contains("catalog.toml: kind water_level has two schemas of version 1 (ids 101 and 1101)"),
            "{err}"
        );
    }

    #[test]
    fn refuses_defaults_a_record_could_not_take() {
        for (field, needle) in [
            (
                r#"{"name":"battery_pct","type":["null","double"],"default":5}"#,
                "union must be null",
            ),
            (
                r#"{"name":"battery_pct","type":"double","default":150,"rade.max":100}"#,
                "outside its declared range",
            ),
            // apache-avro refuses this one itself, naming the field.
            (r#"{"name":"mode","type":"string","default":3}"#, "\"mode\""),
        ] {
            let text = LEVEL.replace(
                r#""symbols":["ok","fault"]}}"#,
                &[r#""symbols":["ok","fault"]}}, "#, field].concat(),
            );
            let err = KindSchema::parse("water_level", 1, &text, Path::new("w.avsc"))
                .expect_err("must be refused")
                .to_string();
            assert!(err.contains("w.avsc") && err.contains(needle), "{err}");
        }
        let text = LEVEL.replace(
            r#""symbols":["ok","fault"]}}"#,
            r#""symbols":["ok","fault"]}}, {"name":"mode","type":"string","default":"auto"}"#,
        );
        let k = KindSchema::parse("water_level", 1, &text, Path::new("w.avsc")).expect("a valid default");
        assert_eq!(k.fields[7].default, Some(Value::Str("auto".into())));
    }

    #[test]
    fn parses_ranges_units_and_lineage() {
        let k = level();
        assert_eq!(k.fields[4].min, Some(-100.0));
        assert_eq!(k.fields[4].unit.as_deref(), Some("cm"));
        assert!(k.fields[5].nullable);
        assert_eq!(k.observed_at, 1);
        assert_eq!(k.arrow.fields().len(), 7 + 4);
        assert_eq!(k.arrow.field(7).name(), "_topic");
    }

    #[test]
    fn refuses_unsupported_types_naming_file_and_field() {
        let text = r#"{"type":"record","name":"X","fields":[{"name":"sensor_id","type":"string"},
            {"name":"observed_at","type":{"type":"long","logicalType":"timestamp-millis"}},
            {"name":"tags","type":{"type":"array","items":"string"}}]}"#;
        let err = KindSchema::parse("x", 1, text, Path::new("schemas/x.avsc"))
            .expect_err("must be refused")
            .to_string();
        assert!(err.contains("schemas/x.avsc"), "{err}");
        assert!(err.contains("`tags`"), "{err}");
    }

    #[test]
    fn refuses_a_non_numeric_range() {
        let text = LEVEL.replace(r#""rade.min":0}"#, r#""rade.min":"zero"}"#);
        let err = KindSchema::parse("water_level", 1, &text, Path::new("w.avsc"))
            .expect_err("must be refused")
            .to_string();
        assert!(err.contains("`flow`") && err.contains("rade.min"), "{err}");
    }

    #[test]
    fn loads_the_shipped_catalog() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
        let catalog = Catalog::load(&dir).expect("the shipped schemas load");
        assert_eq!(catalog.kinds().len(), 11);
        assert!(catalog.alert().is_some());
        for k in catalog.kinds() {
            assert_eq!(catalog.by_id(k.id).map(|s| s.kind.as_str()), Some(k.kind.as_str()));
            assert_eq!(catalog.by_fingerprint(k.fingerprint).map(|s| s.id), Some(k.id));
        }
    }

    #[test]
    fn the_embedded_catalog_is_the_shipped_one() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
        let shipped = Catalog::load(&dir).expect("the shipped schemas load");
        let embedded = Catalog::embedded().expect("the embedded schemas load");
        let ids = |c: &Catalog| {
            c.kinds()
                .iter()
                .map(|k| (k.kind.clone(), k.id, k.fingerprint))
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&embedded), ids(&shipped));
        assert_eq!(embedded.alert().map(|a| a.id), shipped.alert().map(|a| a.id));
        let file = &embedded.kinds()[0].file;
        assert!(file.starts_with("(built-in) schemas"), "{}", file.display());
    }
}
