use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use apache_avro::Schema as AvroSchema;
use apache_avro::rabin::Rabin;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::Deserialize;

use crate::builder::lineage_fields;
use crate::{Error, Result};

/// The kind name of the alert schema in the catalog; every other entry is a sensor kind.
const ALERT_KIND: &str = "alert";

/// Every schema of `schemas/`, by kind, by Confluent id and by Avro fingerprint.
#[derive(Debug, Clone)]
pub struct Catalog {
    kinds: Vec<Arc<KindSchema>>,
    alert: Option<Arc<KindSchema>>,
    by_id: HashMap<u32, Arc<KindSchema>>,
    by_fingerprint: HashMap<u64, Arc<KindSchema>>,
}

/// One sensor kind: its Avro schema, the fields as the decoder sees them, and its Arrow schema.
#[derive(Debug)]
pub struct KindSchema {
    pub kind: String,
    pub id: u32,
    /// CRC-64-AVRO fingerprint of the canonical form, as in single-object encoding.
    pub fingerprint: u64,
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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogEntry {
    kind: String,
    id: u32,
    file: PathBuf,
}

impl Catalog {
    /// Loads `catalog.toml` and every schema it lists from `dir`; reports every problem at once.
    pub fn load(dir: &Path) -> Result<Catalog> {
        let catalog_path = dir.join("catalog.toml");
        let text = std::fs::read_to_string(&catalog_path).map_err(|source| Error::Io {
            path: catalog_path.clone(),
            source,
        })?;
        let file: CatalogFile = toml::from_str(&text).map_err(|e| Error::Invalid {
            path: catalog_path.clone(),
            message: e.to_string(),
        })?;
        let mut problems = Vec::new();
        let mut schemas = Vec::new();
        for entry in file.schema {
            let path = dir.join(&entry.file);
            let loaded = std::fs::read_to_string(&path)
                .map_err(|source| Error::Io {
                    path: path.clone(),
                    source,
                })
                .and_then(|text| KindSchema::parse(&entry.kind, entry.id, &text, &path));
            match loaded {
                Ok(kind) => schemas.push(kind),
                Err(e) => problems.push(e.to_string()),
            }
        }
        let catalog = Catalog::from_schemas(schemas).map_err(|message| Error::Invalid {
            path: catalog_path.clone(),
            message,
        });
        match catalog {
            Ok(c) if problems.is_empty() => Ok(c),
            Ok(_) => Err(Error::Invalid {
                path: dir.to_path_buf(),
                message: problems.join("; "),
            }),
            Err(e) => {
                problems.push(e.to_string());
                Err(Error::Invalid {
                    path: dir.to_path_buf(),
                    message: problems.join("; "),
                })
            }
        }
    }

    fn from_schemas(schemas: Vec<KindSchema>) -> std::result::Result<Catalog, String> {
        let mut catalog = Catalog {
            kinds: Vec::new(),
            alert: None,
            by_id: HashMap::new(),
            by_fingerprint: HashMap::new(),
        };
        for schema in schemas {
            let schema = Arc::new(schema);
            if let Some(other) = catalog.by_id.insert(schema.id, schema.clone()) {
                return Err(format!(
                    "schema id {} is used by both {} and {}",
                    schema.id, other.kind, schema.kind
                ));
            }
            catalog.by_fingerprint.insert(schema.fingerprint, schema.clone());
            if schema.kind == ALERT_KIND {
                catalog.alert = Some(schema);
            } else {
                catalog.kinds.push(schema);
            }
        }
        Ok(catalog)
    }

    #[cfg(test)]
    pub(crate) fn for_tests(schemas: Vec<KindSchema>) -> Catalog {
        Catalog::from_schemas(schemas).expect("distinct test schema ids")
    }

    /// The sensor kinds, in catalog order.
    pub fn kinds(&self) -> &[Arc<KindSchema>] {
        &self.kinds
    }

    /// The current schema of a sensor kind.
    pub fn kind(&self, kind: &str) -> Option<&Arc<KindSchema>> {
        self.kinds.iter().rev().find(|k| k.kind == kind)
    }

    /// The schema registered under a Confluent schema id.
    pub fn by_id(&self, id: u32) -> Option<&Arc<KindSchema>> {
        self.by_id.get(&id)
    }

    /// The schema whose CRC-64-AVRO fingerprint this is.
    pub fn by_fingerprint(&self, fingerprint: u64) -> Option<&Arc<KindSchema>> {
        self.by_fingerprint.get(&fingerprint)
    }

    /// The alert schema, when the catalog has one.
    pub fn alert(&self) -> Option<&Arc<KindSchema>> {
        self.alert.as_ref()
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
            fields.push(FieldSpec {
                name: f.name.clone(),
                ty,
                nullable,
                min,
                max,
                unit,
            });
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
        let fp = avro.fingerprint::<Rabin>();
        let fingerprint = u64::from_le_bytes(fp.bytes[..8].try_into().expect("a Rabin fingerprint is 8 bytes"));
        let mut columns: Vec<Field> = fields
            .iter()
            .map(|f| Field::new(&f.name, f.ty.arrow(), f.nullable))
            .collect();
        columns.extend(lineage_fields());
        Ok(KindSchema {
            kind: kind.to_owned(),
            id,
            fingerprint,
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
}
