use std::borrow::Cow;
use std::sync::Arc;

use crate::catalog::{Catalog, FieldSpec, FieldType, KindSchema, Writer};
use crate::reject::{Reject, RejectReason};
use crate::resolve::Resolution;
use crate::wire::WireFormat;

mod json;

use json::decode_json;
pub(crate) use json::json_value;

/// One decoded field value; strings borrow from the message where the wire format allows.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Null,
    Double(f64),
    Float(f32),
    Int(i32),
    Long(i64),
    Bool(bool),
    Str(Cow<'a, str>),
    /// Index into the field's enum symbols.
    Symbol(u32),
}

impl Value<'_> {
    pub(crate) fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::Double(v) => Some(v),
            Value::Float(v) => Some(v as f64),
            Value::Int(v) => Some(v as f64),
            Value::Long(v) => Some(v as f64),
            _ => None,
        }
    }
}

/// A validated reading: the values in schema field order and its event time.
#[derive(Debug)]
pub struct Row<'a> {
    pub values: Vec<Value<'a>>,
    pub observed_at_ms: i64,
    pub format: WireFormat,
}

/// What the decoder refuses besides the schema's own ranges.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Larger values are rejected as `too_large` before any decoding.
    pub max_message_bytes: usize,
    /// Event times before this instant (ms since the epoch) are `bad_timestamp`.
    pub min_event_time_ms: i64,
    /// Event times further than this ahead of the worker's clock are `bad_timestamp`.
    pub max_future_ms: i64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_message_bytes: 64 * 1024,
            // 2000-01-01T00:00:00Z: no TPM sensor reports from before the platform existed.
            min_event_time_ms: 946_684_800_000,
            max_future_ms: 15 * 60 * 1000,
        }
    }
}

/// Decodes and validates the values of one raw topic, whose messages must be of one kind.
///
/// Records written with an older version of the kind are read into the decoder's schema
/// (the kind's reader schema) by the resolution the catalog planned when it loaded.
#[derive(Debug, Clone)]
pub struct Decoder {
    catalog: Arc<Catalog>,
    kind: Arc<KindSchema>,
    limits: DecodeLimits,
}

impl Decoder {
    /// A decoder for the messages of `kind`.
    pub fn new(catalog: Arc<Catalog>, kind: Arc<KindSchema>, limits: DecodeLimits) -> Self {
        Decoder { catalog, kind, limits }
    }

    /// The kind this decoder accepts.
    pub fn kind(&self) -> &Arc<KindSchema> {
        &self.kind
    }

    /// Decodes one message value against the kind's schema and validates it at `now_ms`.
    ///
    /// A reject carries the id of the schema the value was read with whenever the wire format
    /// names one or the format implies it: the Confluent id (even one the catalog lacks), the
    /// catalog schema of a known single-object fingerprint, the topic's schema for JSON.
    pub fn decode<'a>(&self, value: Option<&'a [u8]>, now_ms: i64) -> Result<Row<'a>, Reject> {
        let value = match value {
            None | Some([]) => return Err(Reject::new(RejectReason::Malformed, "empty value")),
            Some(v) => v,
        };
        let format = WireFormat::detect(value);
        if value.len() > self.limits.max_message_bytes {
            let reject = Reject::new(
                RejectReason::TooLarge,
                format!(
                    "value of {} bytes is above the limit of {} bytes",
                    value.len(),
                    self.limits.max_message_bytes
                ),
            );
            return Err(match format.and_then(|f| self.schema_id_in(f, value)) {
                Some(id) => reject.with_schema(id),
                None => reject,
            });
        }
        let Some(format) = format else {
            return Err(Reject::new(
                RejectReason::Malformed,
                format!(
                    "unrecognised wire format: first byte 0x{:02x} is neither Confluent (0x00), single-object (0xC3 0x01) nor JSON",
                    value[0]
                ),
            ));
        };
        let kind = &*self.kind;
        let (values, id) = match format {
            WireFormat::Confluent => {
                let Some(id) = value.get(1..5) else {
                    return Err(Reject::new(
                        RejectReason::Malformed,
                        "Confluent frame shorter than its 5-byte header",
                    ));
                };
                let id = u32::from_be_bytes(id.try_into().expect("a 4-byte slice"));
                let writer = self
                    .check_writer(self.catalog.writer_by_id(id), || format!("schema id {id}"))
                    .map_err(|r| r.with_schema(id))?;
                (
                    decode_with(writer, kind, &value[5..]).map_err(|r| r.with_schema(id))?,
                    id,
                )
            }
            WireFormat::SingleObject => {
                let Some(fp) = value.get(2..10) else {
                    return Err(Reject::new(
                        RejectReason::Malformed,
                        "single-object frame shorter than its 10-byte header",
                    ));
                };
                let fp = u64::from_le_bytes(fp.try_into().expect("an 8-byte slice"));
                let known = self.catalog.writer_by_fingerprint(fp);
                let writer =
                    self.check_writer(known, || format!("fingerprint {fp:016x}"))
                        .map_err(|r| match known {
                            Some(w) => r.with_schema(w.schema.id),
                            None => r,
                        })?;
                let id = writer.schema.id;
                (
                    decode_with(writer, kind, &value[10..]).map_err(|r| r.with_schema(id))?,
                    id,
                )
            }
            WireFormat::Json => (decode_json(kind, value).map_err(|r| r.with_schema(kind.id))?, kind.id),
        };
        let observed_at_ms = validate(kind, &values, &self.limits, now_ms).map_err(|r| r.with_schema(id))?;
        Ok(Row {
            values,
            observed_at_ms,
            format,
        })
    }

    /// The schema id a value of `format` names without being decoded, for a value too large to
    /// decode.
    fn schema_id_in(&self, format: WireFormat, value: &[u8]) -> Option<u32> {
        match format {
            WireFormat::Confluent => Some(u32::from_be_bytes(value.get(1..5)?.try_into().ok()?)),
            WireFormat::SingleObject => {
                let fp = u64::from_le_bytes(value.get(2..10)?.try_into().ok()?);
                Some(self.catalog.writer_by_fingerprint(fp)?.schema.id)
            }
            WireFormat::Json => Some(self.kind.id),
        }
    }

    /// The writer schema must be a version of the topic's own kind that the catalog resolves
    /// into this decoder's schema. `what` names the writer in a reject, and is only built for
    /// one (a `format!` per message cost 10 % of the decoding).
    fn check_writer<'c>(
        &self,
        writer: Option<&'c Writer>,
        what: impl FnOnce() -> String,
    ) -> Result<&'c Writer, Reject> {
        let Some(w) = writer else {
            return Err(Reject::new(
                RejectReason::UnknownSchema,
                format!("{} is not in the catalog", what()),
            ));
        };
        let s = &w.schema;
        if s.id == self.kind.id {
            return Ok(w);
        }
        if s.kind != self.kind.kind {
            return Err(Reject::new(
                RejectReason::SchemaMismatch,
                format!(
                    "{} is the {} schema but this topic carries {}",
                    what(),
                    s.kind,
                    self.kind.kind
                ),
            ));
        }
        if w.resolution.as_ref().is_none_or(|r| r.reader_id != self.kind.id) {
            return Err(Reject::new(
                RejectReason::SchemaMismatch,
                format!(
                    "{} is version {} of {}, which the catalog does not resolve into version {} (id {})",
                    what(),
                    s.version,
                    s.kind,
                    self.kind.version,
                    self.kind.id
                ),
            ));
        }
        Ok(w)
    }
}

/// The values of an Avro body written with `writer`, in the fields of `reader`.
#[inline]
fn decode_with<'a>(writer: &Writer, reader: &KindSchema, body: &'a [u8]) -> Result<Vec<Value<'a>>, Reject> {
    match &writer.resolution {
        // check_writer admits a resolution only when it targets `reader`.
        Some(plan) if writer.schema.id != reader.id => decode_resolved(plan, reader, body),
        _ => decode_avro(reader, body),
    }
}

/// The values of an Avro body written with the reader schema itself: the hot path.
fn decode_avro<'a>(kind: &KindSchema, body: &'a [u8]) -> Result<Vec<Value<'a>>, Reject> {
    let mut r = AvroReader { buf: body, pos: 0 };
    let mut values = Vec::with_capacity(kind.fields.len());
    for f in &kind.fields {
        values.push(r.field(f)?);
    }
    r.finish(kind)?;
    Ok(values)
}

/// The values of an Avro body written with an older version, in the fields of `reader`.
fn decode_resolved<'a>(plan: &Resolution, reader: &KindSchema, body: &'a [u8]) -> Result<Vec<Value<'a>>, Reject> {
    let mut r = AvroReader { buf: body, pos: 0 };
    let mut values = vec![Value::Null; reader.fields.len()];
    for step in &plan.steps {
        let v = r.field(&step.field)?;
        if let Some(i) = step.target {
            values[i] = step.convert.apply(v, &reader.fields[i].ty);
        }
    }
    for (i, d) in &plan.defaults {
        values[*i] = d.clone();
    }
    r.finish(reader)?;
    Ok(values)
}

fn malformed(detail: String) -> Reject {
    Reject::new(RejectReason::Malformed, detail)
}

/// A cursor over an Avro binary body.
struct AvroReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> AvroReader<'a> {
    fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8], Reject> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| {
                malformed(format!(
                    "truncated Avro body: field `{field}` needs {n} bytes, {} left",
                    self.buf.len() - self.pos
                ))
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn long(&mut self, field: &str) -> Result<i64, Reject> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(malformed(format!("truncated Avro body in field `{field}`")));
            };
            self.pos += 1;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
            }
        }
        Err(malformed(format!("varint longer than 10 bytes in field `{field}`")))
    }

    fn int(&mut self, field: &str) -> Result<i32, Reject> {
        let v = self.long(field)?;
        i32::try_from(v).map_err(|_| malformed(format!("field `{field}`: {v} does not fit an Avro int")))
    }

    /// Fails unless the whole body was read.
    fn finish(&self, kind: &KindSchema) -> Result<(), Reject> {
        if self.pos == self.buf.len() {
            return Ok(());
        }
        Err(malformed(format!(
            "{} trailing bytes after the {} record",
            self.buf.len() - self.pos,
            kind.kind
        )))
    }

    /// The value of field `f`, null when an optional field holds none.
    #[inline]
    fn field(&mut self, f: &FieldSpec) -> Result<Value<'a>, Reject> {
        if f.nullable {
            // ["null", T]: branch 0 is null, branch 1 is the value.
            match self.long(&f.name)? {
                0 => return Ok(Value::Null),
                1 => {}
                b => {
                    return Err(malformed(format!(
                        "field `{}`: union branch {b} of a [null, T] union",
                        f.name
                    )));
                }
            }
        }
        self.value(f)
    }

    fn value(&mut self, f: &FieldSpec) -> Result<Value<'a>, Reject> {
        let name = f.name.as_str();
        Ok(match &f.ty {
            FieldType::Double => Value::Double(f64::from_le_bytes(self.take(8, name)?.try_into().expect("8 bytes"))),
            FieldType::Float => Value::Float(f32::from_le_bytes(self.take(4, name)?.try_into().expect("4 bytes"))),
            FieldType::Int => Value::Int(self.int(name)?),
            FieldType::Long | FieldType::TimestampMillis => Value::Long(self.long(name)?),
            FieldType::Boolean => match self.take(1, name)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(malformed(format!("field `{name}`: boolean byte 0x{b:02x}"))),
            },
            FieldType::String => {
                let len = self.long(name)?;
                let len = usize::try_from(len)
                    .map_err(|_| malformed(format!("field `{name}`: negative string length {len}")))?;
                let bytes = self.take(len, name)?;
                let s =
                    std::str::from_utf8(bytes).map_err(|e| malformed(format!("field `{name}`: invalid UTF-8: {e}")))?;
                Value::Str(Cow::Borrowed(s))
            }
            FieldType::Enum(symbols) => {
                let i = self.int(name)?;
                if i < 0 || i as usize >= symbols.len() {
                    return Err(malformed(format!(
                        "field `{name}`: enum index {i} outside its {} symbols",
                        symbols.len()
                    )));
                }
                Value::Symbol(i as u32)
            }
        })
    }
}

/// Checks declared ranges and the event time; returns `observed_at` in ms.
fn validate(kind: &KindSchema, values: &[Value<'_>], limits: &DecodeLimits, now_ms: i64) -> Result<i64, Reject> {
    for (f, v) in kind.fields.iter().zip(values) {
        if let Some(x) = v.as_f64() {
            if !x.is_finite() {
                return Err(Reject::new(
                    RejectReason::OutOfRange,
                    format!("field `{}` is {x}", f.name),
                ));
            }
            let below = f.min.is_some_and(|min| x < min);
            let above = f.max.is_some_and(|max| x > max);
            if below || above {
                let unit = f.unit.as_deref().map(|u| format!(" {u}")).unwrap_or_default();
                let range = match (f.min, f.max) {
                    (Some(lo), Some(hi)) => format!("[{lo}, {hi}]"),
                    (Some(lo), None) => format!(">= {lo}"),
                    (None, Some(hi)) => format!("<= {hi}"),
                    (None, None) => unreachable!("a bound was crossed"),
                };
                return Err(Reject::new(
                    RejectReason::OutOfRange,
                    format!("field `{}` = {x}{unit} is outside its declared range {range}", f.name),
                ));
            }
        }
        if f.name == "sensor_id" && matches!(v, Value::Str(s) if s.trim().is_empty()) {
            return Err(Reject::new(RejectReason::MissingField, "field `sensor_id` is empty"));
        }
    }
    let Value::Long(t) = values[kind.observed_at] else {
        return Err(Reject::new(
            RejectReason::MissingField,
            "field `observed_at` has no value",
        ));
    };
    if t < limits.min_event_time_ms || t > now_ms.saturating_add(limits.max_future_ms) {
        let shown = chrono::DateTime::from_timestamp_millis(t)
            .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_else(|| format!("{t} ms"));
        let why = if t < limits.min_event_time_ms {
            "before the earliest accepted event time"
        } else {
            "further in the future than the allowed clock skew"
        };
        return Err(Reject::new(
            RejectReason::BadTimestamp,
            format!("observed_at {shown} is {why}"),
        ));
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use apache_avro::types::Value as Avro;

    use super::*;
    use crate::catalog::tests::{LEVEL, level, level_v2, level_v2_text};

    const NOW: i64 = 1_780_000_000_000;

    fn decoder() -> Decoder {
        let kind = Arc::new(level());
        let other = KindSchema::parse(
            "rainfall",
            102,
            r#"{"type":"record","name":"R","fields":[{"name":"sensor_id","type":"string"},
                {"name":"observed_at","type":{"type":"long","logicalType":"timestamp-millis"}}]}"#,
            Path::new("rainfall.avsc"),
        )
        .expect("valid schema");
        let catalog = Catalog::for_tests(vec![level(), other]);
        Decoder::new(Arc::new(catalog), kind, DecodeLimits::default())
    }

    fn avro_body(height: f64, flow: Option<f64>) -> Vec<u8> {
        avro_body_at(NOW - 1000, height, flow)
    }

    fn avro_body_at(observed_at: i64, height: f64, flow: Option<f64>) -> Vec<u8> {
        let schema = apache_avro::Schema::parse_str(LEVEL).expect("schema");
        let record = Avro::Record(vec![
            ("sensor_id".into(), Avro::String("wl-0001".into())),
            ("observed_at".into(), Avro::TimestampMillis(observed_at)),
            ("latitude".into(), Avro::Double(43.12)),
            ("longitude".into(), Avro::Double(5.93)),
            ("height".into(), Avro::Double(height)),
            (
                "flow".into(),
                Avro::Union(flow.is_some() as u32, Box::new(flow.map_or(Avro::Null, Avro::Double))),
            ),
            ("status".into(), Avro::Enum(1, "fault".into())),
        ]);
        apache_avro::to_avro_datum(&schema, record).expect("encodes")
    }

    fn confluent(id: u32, body: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8];
        v.extend_from_slice(&id.to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn decodes_confluent_avro_written_by_apache_avro() {
        let d = decoder();
        let msg = confluent(101, &avro_body(152.5, Some(3.25)));
        let row = d.decode(Some(&msg), NOW).expect("valid");
        assert_eq!(row.format, WireFormat::Confluent);
        assert_eq!(row.observed_at_ms, NOW - 1000);
        assert_eq!(row.values[0], Value::Str("wl-0001".into()));
        assert_eq!(row.values[4], Value::Double(152.5));
        assert_eq!(row.values[5], Value::Double(3.25));
        assert_eq!(row.values[6], Value::Symbol(1));
    }

    #[test]
    fn decodes_single_object_and_null_union() {
        let d = decoder();
        let mut msg = vec![0xC3, 0x01];
        msg.extend_from_slice(&d.kind().fingerprint.to_le_bytes());
        msg.extend_from_slice(&avro_body(10.0, None));
        let row = d.decode(Some(&msg), NOW).expect("valid");
        assert_eq!(row.format, WireFormat::SingleObject);
        assert_eq!(row.values[5], Value::Null);
    }

    #[test]
    fn decodes_json_with_rfc3339_time() {
        let d = decoder();
        let msg = br#"{"sensor_id":"wl-9","observed_at":"2026-05-28T20:26:39Z","latitude":43.1,
            "longitude":5.9,"height":12,"status":"ok"}"#;
        let row = d.decode(Some(msg), NOW).expect("valid");
        assert_eq!(row.format, WireFormat::Json);
        assert_eq!(row.values[4], Value::Double(12.0));
        assert_eq!(row.values[5], Value::Null);
        assert_eq!(row.observed_at_ms, 1_779_999_999_000);
    }

    fn reason(d: &Decoder, v: &[u8]) -> (RejectReason, String) {
        let r = d.decode(Some(v), NOW).expect_err("must be rejected");
        (r.reason, r.detail)
    }

    #[test]
    fn every_bad_input_gets_its_reason() {
        let d = decoder();
        let good = avro_body(10.0, None);
        assert_eq!(d.decode(None, NOW).expect_err("empty").reason, RejectReason::Malformed);
        assert_eq!(reason(&d, b"").0, RejectReason::Malformed);
        assert_eq!(reason(&d, b"\x7fgarbage").0, RejectReason::Malformed);
        let truncated = confluent(101, &good[..good.len() - 3]);
        let (r, detail) = reason(&d, &truncated);
        assert_eq!(r, RejectReason::Malformed);
        assert!(detail.contains("truncated"), "{detail}");
        let mut trailing = confluent(101, &good);
        trailing.push(0);
        assert!(reason(&d, &trailing).1.contains("trailing"));
        let (r, detail) = reason(&d, &confluent(7777, &good));
        assert_eq!(r, RejectReason::UnknownSchema);
        assert!(detail.contains("7777"));
        assert_eq!(
            d.decode(Some(&confluent(7777, &good)), NOW)
                .expect_err("unknown")
                .schema_id,
            Some(7777)
        );
        assert_eq!(reason(&d, &confluent(102, &good)).0, RejectReason::SchemaMismatch);
        let (r, detail) = reason(&d, &confluent(101, &avro_body(5000.0, None)));
        assert_eq!(r, RejectReason::OutOfRange);
        assert!(detail.contains("`height`") && detail.contains("cm"), "{detail}");
        assert_eq!(
            reason(&d, &confluent(101, &avro_body(f64::NAN, None))).0,
            RejectReason::OutOfRange
        );
        assert_eq!(
            reason(&d, &confluent(101, &avro_body(1.0, Some(-1.0)))).0,
            RejectReason::OutOfRange
        );
        let (r, detail) = reason(
            &d,
            br#"{"sensor_id":"a","observed_at":1780000000000,"latitude":1,"longitude":1,"status":"ok"}"#,
        );
        assert_eq!(r, RejectReason::MissingField);
        assert!(detail.contains("`height`"));
        let (r, detail) = reason(&d, br#"{"sensor_id":"a","observed_at":1780000000000,"latitude":1,"longitude":1,"height":"high","status":"ok"}"#);
        assert_eq!(r, RejectReason::SchemaMismatch);
        assert!(detail.contains("\"high\""), "{detail}");
        let (r, _) = reason(
            &d,
            br#"{"sensor_id":"a","observed_at":1780000000000,"latitude":1,"longitude":1,"height":1,"status":"lost"}"#,
        );
        assert_eq!(r, RejectReason::SchemaMismatch);
        let (r, _) = reason(
            &d,
            br#"{"sensor_id":"a","observed_at":-5,"latitude":1,"longitude":1,"height":1,"status":"ok"}"#,
        );
        assert_eq!(r, RejectReason::BadTimestamp);
        let future = format!(
            r#"{{"sensor_id":"a","observed_at":{},"latitude":1,"longitude":1,"height":1,"status":"ok"}}"#,
            NOW + 86_400_000
        );
        assert_eq!(reason(&d, future.as_bytes()).0, RejectReason::BadTimestamp);
        assert_eq!(reason(&d, br#"{"sensor_id":"a","#).0, RejectReason::Malformed);
        let big = vec![b' '; 70 * 1024];
        assert_eq!(reason(&d, &big).0, RejectReason::TooLarge);
    }

    /// A decoder of water_level at version 2 (id 1101, `battery_pct` added), which also reads id 101.
    fn decoder_v2() -> Decoder {
        let catalog = Arc::new(Catalog::for_tests(vec![level(), level_v2()]));
        let kind = catalog.kind("water_level").expect("kind").clone();
        assert_eq!(kind.id, 1101);
        Decoder::new(catalog, kind, DecodeLimits::default())
    }

    fn avro_body_v2(battery: Option<f64>) -> Vec<u8> {
        let schema = apache_avro::Schema::parse_str(&level_v2_text()).expect("schema");
        let apache_avro::types::Value::Record(mut fields) = apache_avro::from_avro_datum(
            &apache_avro::Schema::parse_str(LEVEL).expect("schema"),
            &mut &avro_body(10.0, Some(1.5))[..],
            None,
        )
        .expect("decodes") else {
            panic!("a record")
        };
        fields.push((
            "battery_pct".into(),
            Avro::Union(
                battery.is_some() as u32,
                Box::new(battery.map_or(Avro::Null, Avro::Double)),
            ),
        ));
        apache_avro::to_avro_datum(&schema, Avro::Record(fields)).expect("encodes")
    }

    #[test]
    fn old_records_resolve_into_the_new_version_in_every_wire_format() {
        let d = decoder_v2();
        let old = level();
        // Confluent framing with the old id: every old field in place, the new one null.
        let msg = confluent(101, &avro_body(152.5, Some(3.25)));
        let row = d.decode(Some(&msg), NOW).expect("valid");
        assert_eq!(row.values.len(), 8);
        assert_eq!(row.values[4], Value::Double(152.5));
        assert_eq!(row.values[5], Value::Double(3.25));
        assert_eq!(row.values[6], Value::Symbol(1));
        assert_eq!(row.values[7], Value::Null);
        // Single-object encoding with the old fingerprint.
        let mut msg = vec![0xC3, 0x01];
        msg.extend_from_slice(&old.fingerprint.to_le_bytes());
        msg.extend_from_slice(&avro_body(10.0, None));
        let row = d.decode(Some(&msg), NOW).expect("valid");
        assert_eq!((&row.values[5], &row.values[7]), (&Value::Null, &Value::Null));
        // JSON of an old producer, without the field.
        let json = br#"{"sensor_id":"wl-9","observed_at":1779999999000,"latitude":43.1,"longitude":5.9,"height":12,"status":"ok"}"#;
        assert_eq!(d.decode(Some(json), NOW).expect("valid").values[7], Value::Null);
        // New records carry the value, and it is validated against the new range.
        let msg = confluent(1101, &avro_body_v2(Some(87.5)));
        let row = d.decode(Some(&msg), NOW).expect("valid");
        assert_eq!(row.values[7], Value::Double(87.5));
        assert_eq!(row.values[5], Value::Double(1.5));
        let (r, detail) = reason(&d, &confluent(1101, &avro_body_v2(Some(140.0))));
        assert_eq!(r, RejectReason::OutOfRange);
        assert!(detail.contains("`battery_pct`"), "{detail}");
        // A body cut short under the old id is still malformed, with that id.
        let good = avro_body(10.0, None);
        let cut = d
            .decode(Some(&confluent(101, &good[..good.len() - 2])), NOW)
            .expect_err("truncated");
        assert_eq!((cut.reason, cut.schema_id), (RejectReason::Malformed, Some(101)));
        // A decoder of the old version does not read the new id, which it cannot resolve into.
        let stale = Decoder::new(d.catalog.clone(), Arc::new(level()), DecodeLimits::default());
        assert_eq!(
            reason(&stale, &confluent(1101, &avro_body_v2(None))).0,
            RejectReason::SchemaMismatch
        );
    }

    #[test]
    fn every_reject_past_the_wire_format_carries_the_schema_id() {
        let d = decoder();
        let fp = d.kind().fingerprint;
        let single = |body: &[u8]| [&[0xC3, 0x01][..], &fp.to_le_bytes(), body].concat();
        let json = |height: &str, observed_at: &str| {
            format!(
                r#"{{"sensor_id":"a","observed_at":{observed_at},"latitude":1,"longitude":1,"height":{height},"status":"ok"}}"#
            )
            .into_bytes()
        };
        let late = avro_body_at(5, 10.0, None);
        let good = avro_body(10.0, None);
        let cases: Vec<(Vec<u8>, RejectReason, Option<u32>)> = vec![
            (
                confluent(101, &avro_body(5000.0, None)),
                RejectReason::OutOfRange,
                Some(101),
            ),
            (
                confluent(101, &avro_body(f64::NAN, None)),
                RejectReason::OutOfRange,
                Some(101),
            ),
            (confluent(101, &late), RejectReason::BadTimestamp, Some(101)),
            (confluent(101, &good[..5]), RejectReason::Malformed, Some(101)),
            (confluent(102, &good), RejectReason::SchemaMismatch, Some(102)),
            (confluent(7777, &good), RejectReason::UnknownSchema, Some(7777)),
            (single(&avro_body(5000.0, None)), RejectReason::OutOfRange, Some(101)),
            (
                single(&avro_body(f64::INFINITY, None)),
                RejectReason::OutOfRange,
                Some(101),
            ),
            (single(&late), RejectReason::BadTimestamp, Some(101)),
            (single(&good[..7]), RejectReason::Malformed, Some(101)),
            (json("5000", "1779999999000"), RejectReason::OutOfRange, Some(101)),
            (json("1", "-5"), RejectReason::BadTimestamp, Some(101)),
            (
                json("\"high\"", "1779999999000"),
                RejectReason::SchemaMismatch,
                Some(101),
            ),
            (
                json("1,\"height\":2", "1779999999000"),
                RejectReason::Malformed,
                Some(101),
            ),
            (b"{\"sensor_id\":".to_vec(), RejectReason::Malformed, Some(101)),
            (
                br#"{"sensor_id":" ","observed_at":1779999999000,"latitude":1,"longitude":1,"height":1,"status":"ok"}"#
                    .to_vec(),
                RejectReason::MissingField,
                Some(101),
            ),
            // Nothing names a schema: no id.
            (
                [&[0xC3, 0x01][..], &[9; 8], &good].concat(),
                RejectReason::UnknownSchema,
                None,
            ),
            (b"\x7fgarbage".to_vec(), RejectReason::Malformed, None),
        ];
        for (msg, reason, id) in cases {
            let r = d.decode(Some(&msg), NOW).expect_err("must be rejected");
            assert_eq!((r.reason, r.schema_id), (reason, id), "{r} for {msg:?}");
        }
        // A value too large to decode still names the schema its header gives.
        let small = Decoder::new(
            d.catalog.clone(),
            d.kind.clone(),
            DecodeLimits {
                max_message_bytes: 16,
                ..DecodeLimits::default()
            },
        );
        for (msg, id) in [
            (confluent(101, &good), Some(101)),
            (single(&good), Some(101)),
            (vec![b'x'; 20], None),
        ] {
            let r = small.decode(Some(&msg), NOW).expect_err("too large");
            assert_eq!((r.reason, r.schema_id), (RejectReason::TooLarge, id), "{r}");
        }
    }

    #[test]
    fn a_json_member_named_twice_is_malformed_naming_it() {
        let d = decoder();
        for (msg, name) in [
            (
                &br#"{"sensor_id":"a","observed_at":1779999999000,"latitude":1,"longitude":1,"height":1,"height":2,"status":"ok"}"#[..],
                "height",
            ),
            (
                br#"{"sensor_id":"a","observed_at":1779999999000,"latitude":1,"longitude":1,"height":1,"status":"ok","x":1,"x":{"y":[1]}}"#,
                "x",
            ),
        ] {
            let (r, detail) = reason(&d, msg);
            assert_eq!(r, RejectReason::Malformed, "{detail}");
            assert!(detail.contains(&format!("field `{name}` appears twice")), "{detail}");
        }
        // Members the schema lacks, once each, are ignored.
        let ok = br#"{"sensor_id":"a","observed_at":1779999999000,"latitude":1,"longitude":1,"height":1,"status":"ok","x":1,"y":{"x":1,"z":[{"x":2}]}}"#;
        assert!(d.decode(Some(ok), NOW).is_ok());
    }

    /// A decoder of a kind with one unbounded double, `x`.
    fn double_decoder() -> Decoder {
        let kind = KindSchema::parse(
            "probe",
            7,
            r#"{"type":"record","name":"P","fields":[{"name":"sensor_id","type":"string"},
                {"name":"observed_at","type":{"type":"long","logicalType":"timestamp-millis"}},
                {"name":"x","type":"double"}]}"#,
            Path::new("probe.avsc"),
        )
        .expect("valid schema");
        let catalog = Arc::new(Catalog::for_tests(vec![kind]));
        let kind = catalog.kind("probe").expect("kind").clone();
        Decoder::new(catalog, kind, DecodeLimits::default())
    }

    #[test]
    fn json_doubles_are_read_exactly_as_python_writes_them() {
        let d = double_decoder();
        let read = |x: &str| {
            let msg = format!(r#"{{"sensor_id":"s","observed_at":{},"x":{x}}}"#, NOW - 1000);
            match d.decode(Some(msg.as_bytes()), NOW).expect("valid").values[2] {
                Value::Double(v) => v,
                ref other => panic!("{other:?}"),
            }
        };
        // The double of the issue, which serde_json's default parsing read one ULP off.
        assert_eq!(read("1744.9639126667773").to_bits(), 1744.9639126667773f64.to_bits());
        // Python's `json` (the repr of a float: shortest round trip) and 17 significant digits
        // ('%.17g'), for random doubles in sensor ranges and random bit patterns.
        let script = r#"
import json, random, struct
random.seed(20261201)
for i in range(20000):
    if i % 3 == 0:
        x = struct.unpack('<d', random.getrandbits(64).to_bytes(8, 'little'))[0]
        if x != x or x in (float('inf'), float('-inf')):
            continue
    else:
        x = random.uniform(-2000, 2000) * 10.0 ** random.randint(-6, 6)
    print(struct.pack('<d', x).hex(), json.dumps(x), '%.17g' % x)
"#;
        let python = std::env::var("RADE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let out = std::process::Command::new(&python)
            .args(["-c", script])
            .output()
            .unwrap_or_else(|e| panic!("{python} must run: {e}"));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).expect("ASCII");
        let mut checked = 0;
        for line in text.lines() {
            let mut parts = line.split(' ');
            let (Some(hex), Some(repr), Some(g17)) = (parts.next(), parts.next(), parts.next()) else {
                panic!("unexpected line {line}")
            };
            let bytes: Vec<u8> = (0..8)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex"))
                .collect();
            let bits = u64::from_le_bytes(bytes.try_into().expect("8 bytes"));
            assert_eq!(read(repr).to_bits(), bits, "{repr}");
            assert_eq!(read(g17).to_bits(), bits, "{g17}");
            checked += 1;
        }
        assert!(checked > 19_000, "{checked}");
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        // Every prefix and every single-byte corruption of a valid message, read directly and
        // through resolution from the old version.
        for d in [decoder(), decoder_v2()] {
            let good = confluent(101, &avro_body(10.0, Some(1.0)));
            for n in 0..good.len() {
                let _ = d.decode(Some(&good[..n]), NOW);
                for b in [0x00, 0x7f, 0x80, 0xff] {
                    let mut m = good.clone();
                    m[n] = b;
                    let _ = d.decode(Some(&m), NOW);
                }
            }
        }
    }
}
