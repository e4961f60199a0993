//! JSON messages: one pass over the object into the schema's field slots (a member given twice
//! is refused), doubles parsed exactly, times as epoch milliseconds or RFC 3339.

use std::borrow::Cow;
use std::collections::HashSet;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};

use super::{Value, malformed};
use crate::catalog::{FieldSpec, FieldType, KindSchema};
use crate::reject::{Reject, RejectReason};

pub(super) fn decode_json<'a>(kind: &KindSchema, value: &[u8]) -> Result<Vec<Value<'a>>, Reject> {
    let mut de = serde_json::Deserializer::from_slice(value);
    let slots = JsonRecord(kind)
        .deserialize(&mut de)
        .and_then(|slots| de.end().map(|()| slots))
        .map_err(|e| malformed(format!("invalid JSON: {e}")))?;
    let mut values = Vec::with_capacity(kind.fields.len());
    for (f, slot) in kind.fields.iter().zip(&slots) {
        let v = match slot {
            None | Some(serde_json::Value::Null) if f.nullable => Value::Null,
            // A producer on an older version of the schema, without the field.
            None => match &f.default {
                Some(d) => d.clone(),
                None => {
                    return Err(Reject::new(
                        RejectReason::MissingField,
                        format!("field `{}` is missing", f.name),
                    ));
                }
            },
            Some(serde_json::Value::Null) => {
                return Err(Reject::new(
                    RejectReason::MissingField,
                    format!("field `{}` is null but not optional", f.name),
                ));
            }
            Some(v) => json_value(f, v)?,
        };
        values.push(v);
    }
    Ok(values)
}

/// Reads the top-level JSON object of a message into one slot per field of the schema, and
/// refuses a member named twice, which JSON leaves undefined: two readers of the same bytes
/// could keep different values (serde_json's own maps keep the last one).
struct JsonRecord<'k>(&'k KindSchema);

impl<'de> DeserializeSeed<'de> for JsonRecord<'_> {
    type Value = Vec<Option<serde_json::Value>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for JsonRecord<'_> {
    type Value = Vec<Option<serde_json::Value>>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let fields = &self.0.fields;
        let mut slots: Vec<Option<serde_json::Value>> = vec![None; fields.len()];
        // Members the schema does not have are skipped, but must not repeat either.
        let mut others: HashSet<String> = HashSet::new();
        while let Some(key) = map.next_key_seed(JsonKey(fields))? {
            let twice = |name: &str| de::Error::custom(format_args!("field `{name}` appears twice"));
            match key {
                Key::Field(i) => {
                    if slots[i].is_some() {
                        return Err(twice(&fields[i].name));
                    }
                    slots[i] = Some(map.next_value()?);
                }
                Key::Other(name) => {
                    if others.contains(&name) {
                        return Err(twice(&name));
                    }
                    map.next_value::<de::IgnoredAny>()?;
                    others.insert(name);
                }
            }
        }
        Ok(slots)
    }
}

/// A member name: the position of the schema field it names, or the name of another member.
enum Key {
    Field(usize),
    Other(String),
}

/// Matches a member name against the schema's fields without allocating for them.
struct JsonKey<'k>(&'k [FieldSpec]);

impl<'de> DeserializeSeed<'de> for JsonKey<'_> {
    type Value = Key;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for JsonKey<'_> {
    type Value = Key;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Key, E> {
        Ok(match self.0.iter().position(|f| f.name == name) {
            Some(i) => Key::Field(i),
            None => Key::Other(name.to_owned()),
        })
    }
}

pub(crate) fn json_value<'a>(f: &FieldSpec, v: &serde_json::Value) -> Result<Value<'a>, Reject> {
    use serde_json::Value as J;
    let mismatch = |expected: &str| {
        Reject::new(
            RejectReason::SchemaMismatch,
            format!("field `{}`: expected {expected}, found {}", f.name, short(v)),
        )
    };
    Ok(match (&f.ty, v) {
        (FieldType::Double, J::Number(n)) => Value::Double(n.as_f64().ok_or_else(|| mismatch("a number"))?),
        (FieldType::Float, J::Number(n)) => Value::Float(n.as_f64().ok_or_else(|| mismatch("a number"))? as f32),
        (FieldType::Int, J::Number(n)) => Value::Int(
            n.as_i64()
                .and_then(|i| i32::try_from(i).ok())
                .ok_or_else(|| mismatch("a 32-bit integer"))?,
        ),
        (FieldType::Long, J::Number(n)) => Value::Long(n.as_i64().ok_or_else(|| mismatch("an integer"))?),
        (FieldType::TimestampMillis, J::Number(n)) => Value::Long(
            n.as_i64()
                .ok_or_else(|| mismatch("milliseconds since the epoch or an RFC 3339 time"))?,
        ),
        (FieldType::TimestampMillis, J::String(s)) => match chrono::DateTime::parse_from_rfc3339(s) {
            Ok(t) => Value::Long(t.timestamp_millis()),
            Err(e) => {
                return Err(Reject::new(
                    RejectReason::BadTimestamp,
                    format!("field `{}`: `{s}` is not RFC 3339: {e}", f.name),
                ));
            }
        },
        (FieldType::Boolean, J::Bool(b)) => Value::Bool(*b),
        (FieldType::String, J::String(s)) => Value::Str(Cow::Owned(s.clone())),
        (FieldType::Enum(symbols), J::String(s)) => match symbols.iter().position(|x| x == s) {
            Some(i) => Value::Symbol(i as u32),
            None => {
                return Err(Reject::new(
                    RejectReason::SchemaMismatch,
                    format!("field `{}`: `{s}` is not one of {}", f.name, symbols.join(", ")),
                ));
            }
        },
        (FieldType::Double | FieldType::Float, _) => return Err(mismatch("a number")),
        (FieldType::Int | FieldType::Long, _) => return Err(mismatch("an integer")),
        (FieldType::TimestampMillis, _) => return Err(mismatch("milliseconds since the epoch or an RFC 3339 time")),
        (FieldType::Boolean, _) => return Err(mismatch("a boolean")),
        (FieldType::String | FieldType::Enum(_), _) => return Err(mismatch("a string")),
    })
}

/// A JSON value cut short for a DLQ detail.
fn short(v: &serde_json::Value) -> String {
    let mut s = v.to_string();
    if s.len() > 40 {
        let cut = (0..=40).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
        s.truncate(cut);
        s.push('…');
    }
    s
}
