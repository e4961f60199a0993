//! Avro schema resolution between the versions of one kind, computed once when the catalog
//! loads: a record written with an older version is read in one pass over its body, straight
//! into the kind's reader schema (its latest version), the one its lake files have.

use crate::catalog::{FieldSpec, FieldType, KindSchema};
use crate::decode::Value;

/// How the records of one writer version are read into the reader schema of their kind.
#[derive(Debug)]
pub(crate) struct Resolution {
    /// The reader schema this resolves into.
    pub(crate) reader_id: u32,
    /// One step per field of the writer, in the writer's order (the order of the body).
    pub(crate) steps: Vec<Step>,
    /// Reader fields the writer does not have, with the default they take.
    pub(crate) defaults: Vec<(usize, Value<'static>)>,
}

/// One field of the writer: how to read it and where it goes in the reader.
#[derive(Debug)]
pub(crate) struct Step {
    /// The writer's field, which says how its bytes are laid out.
    pub(crate) field: FieldSpec,
    /// Position in the reader's fields; `None` when the reader dropped the field (read, then ignored).
    pub(crate) target: Option<usize>,
    pub(crate) convert: Convert,
}

/// What happens to a writer value on its way into the reader's field.
#[derive(Debug)]
pub(crate) enum Convert {
    Same,
    /// An Avro promotion (int to long, float or double; long to float or double; float to double).
    Promote,
    /// Enum symbol index of the writer to the reader's index of the same symbol.
    Symbols(Box<[u32]>),
}

impl Convert {
    /// The writer's value as the reader's field `to` holds it.
    #[inline]
    pub(crate) fn apply<'a>(&self, v: Value<'a>, to: &FieldType) -> Value<'a> {
        match (self, v) {
            (Convert::Same, v) | (_, v @ Value::Null) => v,
            (Convert::Promote, v) => match (v, to) {
                (Value::Int(x), FieldType::Long) => Value::Long(x.into()),
                (Value::Int(x), FieldType::Float) => Value::Float(x as f32),
                (Value::Int(x), FieldType::Double) => Value::Double(x.into()),
                (Value::Long(x), FieldType::Float) => Value::Float(x as f32),
                (Value::Long(x), FieldType::Double) => Value::Double(x as f64),
                (Value::Float(x), FieldType::Double) => Value::Double(x.into()),
                (v, _) => v,
            },
            (Convert::Symbols(map), Value::Symbol(i)) => {
                Value::Symbol(*map.get(i as usize).expect("the writer's decoder bounds its enum index"))
            }
            (Convert::Symbols(_), v) => v,
        }
    }
}

impl Resolution {
    /// The plan that reads `writer` records into `reader`, or every reason why old records
    /// could not be read, each naming the field (the caller names the reader's file).
    pub(crate) fn new(writer: &KindSchema, reader: &KindSchema) -> Result<Resolution, Vec<String>> {
        let mut problems = Vec::new();
        let old = format!("version {} (id {}, {})", writer.version, writer.id, file_name(writer));
        let mut steps = Vec::with_capacity(writer.fields.len());
        for w in &writer.fields {
            let Some(target) = reader.fields.iter().position(|r| r.name == w.name) else {
                // A field the reader dropped: Avro reads past it.
                steps.push(Step {
                    field: w.clone(),
                    target: None,
                    convert: Convert::Same,
                });
                continue;
            };
            let r = &reader.fields[target];
            if w.nullable && !r.nullable {
                problems.push(format!(
                    "field `{}`: optional in {old} but required now, so an old record without a value could not be read",
                    w.name
                ));
                continue;
            }
            let convert = match (&w.ty, &r.ty) {
                (FieldType::Enum(ws), FieldType::Enum(rs)) => {
                    let mut map = Vec::with_capacity(ws.len());
                    for s in ws.iter() {
                        match rs.iter().position(|x| x == s) {
                            Some(i) => map.push(i as u32),
                            None => problems.push(format!(
                                "field `{}`: symbol `{s}` of {old} is no longer in the enum",
                                w.name
                            )),
                        }
                    }
                    if map.iter().enumerate().all(|(i, &j)| i as u32 == j) {
                        Convert::Same
                    } else {
                        Convert::Symbols(map.into())
                    }
                }
                (a, b) if a == b => Convert::Same,
                (FieldType::Int, FieldType::Long | FieldType::Float | FieldType::Double)
                | (FieldType::Long, FieldType::Float | FieldType::Double)
                | (FieldType::Float, FieldType::Double) => Convert::Promote,
                (a, b) => {
                    problems.push(format!(
                        "field `{}`: type changed from {} in {old} to {}, which Avro does not promote",
                        w.name,
                        a.name(),
                        b.name()
                    ));
                    continue;
                }
            };
            steps.push(Step {
                field: w.clone(),
                target: Some(target),
                convert,
            });
        }
        let mut defaults = Vec::new();
        for (i, r) in reader.fields.iter().enumerate() {
            if writer.fields.iter().any(|w| w.name == r.name) {
                continue;
            }
            match &r.default {
                Some(d) => defaults.push((i, d.clone())),
                None => problems.push(format!(
                    "field `{}`: not in {old} and without a default, so old records could not be read \
                     (make it optional: \"type\": [\"null\", …], \"default\": null)",
                    r.name
                )),
            }
        }
        if problems.is_empty() {
            Ok(Resolution {
                reader_id: reader.id,
                steps,
                defaults,
            })
        } else {
            Err(problems)
        }
    }
}

fn file_name(k: &KindSchema) -> String {
    k.file
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| k.file.display().to_string())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::catalog::tests::LEVEL;

    fn schema(version: u32, id: u32, text: &str) -> KindSchema {
        let mut k =
            KindSchema::parse("water_level", id, text, Path::new("water_level.avsc")).expect("valid test schema");
        k.version = version;
        k
    }

    #[test]
    fn an_added_optional_field_takes_its_default_and_promotions_apply() {
        let v1 = schema(1, 101, LEVEL);
        let text = LEVEL
            .replace(
                r#""status","type":{"type":"enum","name":"St","symbols":["ok","fault"]}}"#,
                r#""status","type":{"type":"enum","name":"St","symbols":["maintenance","ok","fault"]}},
                {"name":"battery_pct","type":["null","double"],"default":null}"#,
            )
            .replace(
                r#"{"name":"height","type":"double""#,
                r#"{"name":"height","type":["null","double"],"default":null"#,
            );
        let v2 = schema(2, 1101, &text);
        let plan = Resolution::new(&v1, &v2).expect("compatible");
        assert_eq!(plan.reader_id, 1101);
        assert_eq!(plan.defaults, vec![(7, Value::Null)]);
        let Convert::Symbols(map) = &plan.steps[6].convert else {
            panic!("status needs a symbol map: {:?}", plan.steps[6].convert)
        };
        assert_eq!(&map[..], &[1, 2]);
        assert_eq!(
            plan.steps[6].convert.apply(Value::Symbol(0), &v2.fields[6].ty),
            Value::Symbol(1)
        );
        assert_eq!(
            Convert::Promote.apply(Value::Int(3), &FieldType::Double),
            Value::Double(3.0)
        );
    }

    #[test]
    fn refuses_what_old_records_could_not_be_read_into() {
        let v1 = schema(1, 101, LEVEL);
        let text = LEVEL
            .replace(
                r#"{"name":"latitude","type":"double""#,
                r#"{"name":"latitude","type":"string""#,
            )
            .replace(
                r#""type":["null","double"],"default":null,"rade.min":0"#,
                r#""type":"double","rade.min":0"#,
            )
            .replace(
                r#""symbols":["ok","fault"]}}"#,
                r#""symbols":["ok"]}}, {"name":"battery_pct","type":["null","double"]}"#,
            );
        let v2 = schema(2, 1101, &text);
        let problems = Resolution::new(&v1, &v2).expect_err("incompatible").join("\n");
        for needle in [
            "field `latitude`: type changed from double in version 1 (id 101, water_level.avsc) to string",
            "field `flow`: optional in version 1",
            "field `status`: symbol `fault`",
            "field `battery_pct`: not in version 1 (id 101, water_level.avsc) and without a default",
        ] {
            assert!(problems.contains(needle), "{needle} missing from:\n{problems}");
        }
    }
}
