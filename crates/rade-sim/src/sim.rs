use std::collections::HashMap;
use std::sync::Arc;

use apache_avro::types::Value as Avro;
use rade_schema::{Catalog, FieldType, KindSchema, RejectReason, WireFormat};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::fleet::{Fleet, Sensor};
use crate::readings::{Ctx, Reading, reading};

/// Which wire format the simulator writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatChoice {
    One(WireFormat),
    /// The three formats in turn.
    Mixed,
}

impl std::str::FromStr for FormatChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "mixed" {
            Ok(FormatChoice::Mixed)
        } else {
            s.parse().map(FormatChoice::One)
        }
    }
}

/// What the pipeline must do with a simulated message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Valid,
    Reject(RejectReason),
}

/// One message for a raw topic.
#[derive(Debug, Clone)]
pub struct SimRecord {
    pub kind: String,
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
    pub observed_at_ms: i64,
    pub expect: Expect,
}

/// Makes readings of the fleet, valid or invalid on purpose.
#[derive(Debug)]
pub struct Simulator {
    fleet: Fleet,
    schemas: HashMap<String, Arc<KindSchema>>,
    catalog: Arc<Catalog>,
    rng: SmallRng,
    turn: usize,
}

/// The reasons the simulator can produce; `late` needs windows, which the decoder does not judge.
pub const SIMULATED_REASONS: [RejectReason; 7] = {
    // Every reason of the contract but `late` (the seventh).
    let all = RejectReason::ALL;
    [all[0], all[1], all[2], all[3], all[4], all[5], all[7]]
};

impl Simulator {
    /// A simulator over `fleet`; every kind of the fleet must be in the catalog.
    pub fn new(catalog: Arc<Catalog>, fleet: Fleet, seed: u64) -> Result<Simulator, String> {
        let mut schemas = HashMap::new();
        for s in &fleet.sensors {
            if !schemas.contains_key(&s.kind) {
                let k = catalog
                    .kind(&s.kind)
                    .ok_or_else(|| format!("kind {} is not in the catalog", s.kind))?;
                schemas.insert(s.kind.clone(), k.clone());
            }
        }
        if fleet.sensors.is_empty() {
            return Err("the fleet has no sensor".into());
        }
        Ok(Simulator {
            fleet,
            schemas,
            catalog,
            rng: SmallRng::seed_from_u64(seed),
            turn: 0,
        })
    }

    /// The fleet.
    pub fn fleet(&self) -> &Fleet {
        &self.fleet
    }

    fn format(&mut self, choice: FormatChoice) -> WireFormat {
        self.turn += 1;
        match choice {
            FormatChoice::One(f) => f,
            FormatChoice::Mixed => [WireFormat::Confluent, WireFormat::SingleObject, WireFormat::Json][self.turn % 3],
        }
    }

    /// A valid reading of a random sensor at `t_ms`.
    pub fn valid(&mut self, t_ms: i64, format: FormatChoice) -> SimRecord {
        let i = self.rng.random_range(0..self.fleet.sensors.len());
        self.valid_of(i, t_ms, format)
    }

    /// A valid reading of sensor number `i` of the fleet at `t_ms`.
    pub fn valid_of(&mut self, i: usize, t_ms: i64, format: FormatChoice) -> SimRecord {
        self.reading_of(i, t_ms, format, Ctx::default(), |_, _, r| r)
    }

    /// Sensor `i`'s reading at `t_ms` as a device on its schedule makes it, each measurement
    /// passed through `adjust` (a scenario's event).
    pub(crate) fn reading_of(
        &mut self,
        i: usize,
        t_ms: i64,
        format: FormatChoice,
        ctx: Ctx,
        adjust: impl Fn(&Sensor, &str, Reading) -> Reading,
    ) -> SimRecord {
        let format = self.format(format);
        let sensor = self.fleet.sensors[i].clone();
        let mut fields = self.fields(&sensor, t_ms, ctx);
        for (name, r) in &mut fields {
            if let Some(v) = r.take() {
                *r = Some(adjust(&sensor, name, v));
            }
        }
        let value = self.encode_with(&sensor.kind, &sensor.id, t_ms, &fields, format);
        SimRecord {
            kind: sensor.kind.clone(),
            key: sensor.id.into_bytes(),
            value: Some(value),
            observed_at_ms: t_ms,
            expect: Expect::Valid,
        }
    }

    /// Sensor `sensor`'s fields at `t_ms`, in schema order.
    fn fields(&mut self, sensor: &Sensor, t_ms: i64, ctx: Ctx) -> Vec<(String, Option<Reading>)> {
        let schema = self.schemas[&sensor.kind].clone();
        schema
            .fields
            .iter()
            .map(|f| {
                let r = match f.name.as_str() {
                    "sensor_id" | "observed_at" => None,
                    "latitude" => Some(Reading::Double(sensor.latitude)),
                    "longitude" => Some(Reading::Double(sensor.longitude)),
                    name => reading(&mut self.rng, sensor, name, t_ms, ctx),
                };
                (f.name.clone(), r)
            })
            .collect()
    }

    /// Encodes fields of `kind` (sensor_id and observed_at come from the record) in `format`.
    fn encode_with(
        &self,
        kind: &str,
        sensor_id: &str,
        t_ms: i64,
        fields: &[(String, Option<Reading>)],
        format: WireFormat,
    ) -> Vec<u8> {
        let schema = &self.schemas[kind];
        match format {
            WireFormat::Json => {
                let mut obj = serde_json::Map::new();
                for ((name, r), f) in fields.iter().zip(&schema.fields) {
                    let v = match name.as_str() {
                        "sensor_id" => serde_json::json!(sensor_id),
                        // Every other JSON message uses an RFC 3339 time, as FIWARE payloads do.
                        "observed_at" if t_ms % 2 == 0 => {
                            serde_json::json!(chrono::DateTime::from_timestamp_millis(t_ms).map(|d| d.to_rfc3339()))
                        }
                        "observed_at" => serde_json::json!(t_ms),
                        _ => match r {
                            Some(Reading::Double(x)) => serde_json::json!(x),
                            Some(Reading::Int(x)) => serde_json::json!(x),
                            Some(Reading::Symbol(s)) => serde_json::json!(s),
                            None if f.nullable => continue,
                            None => serde_json::Value::Null,
                        },
                    };
                    obj.insert(name.clone(), v);
                }
                serde_json::to_vec(&obj).expect("a JSON map serialises")
            }
            WireFormat::Confluent | WireFormat::SingleObject => {
                format.frame(schema, &avro_body(schema, sensor_id, t_ms, fields))
            }
        }
    }

    /// An invalid message of a random sensor at `t_ms` that the pipeline must reject for `reason`.
    pub fn invalid(&mut self, t_ms: i64, reason: RejectReason) -> SimRecord {
        let i = self.rng.random_range(0..self.fleet.sensors.len());
        let sensor = self.fleet.sensors[i].clone();
        let mut fields = self.fields(&sensor, t_ms, Ctx::default());
        let id = sensor.id.as_str();
        let variant = self.rng.random_range(0..3u32);
        let value: Option<Vec<u8>> = match reason {
            RejectReason::Malformed => match variant {
                0 => None,
                1 => Some(b"\x7f\x45\x4c\x46 not a reading".to_vec()),
                _ => {
                    let mut v = self.encode_with(&sensor.kind, id, t_ms, &fields, WireFormat::Confluent);
                    v.truncate(v.len() - 4);
                    Some(v)
                }
            },
            RejectReason::UnknownSchema => {
                let mut v = self.encode_with(&sensor.kind, id, t_ms, &fields, WireFormat::Confluent);
                v[1..5].copy_from_slice(&9999u32.to_be_bytes());
                Some(v)
            }
            RejectReason::SchemaMismatch => {
                if variant == 0 {
                    // The frame names another kind's schema.
                    let other = self
                        .catalog
                        .kinds()
                        .iter()
                        .find(|k| k.kind != sensor.kind)
                        .map(|k| k.id)
                        .unwrap_or(9);
                    let mut v = self.encode_with(&sensor.kind, id, t_ms, &fields, WireFormat::Confluent);
                    v[1..5].copy_from_slice(&other.to_be_bytes());
                    Some(v)
                } else {
                    let mut v: serde_json::Value =
                        serde_json::from_slice(&self.encode_with(&sensor.kind, id, t_ms, &fields, WireFormat::Json))
                            .expect("own JSON parses");
                    v["latitude"] = serde_json::json!("north of Toulon");
                    Some(serde_json::to_vec(&v).expect("JSON"))
                }
            }
            RejectReason::OutOfRange => {
                // Latitude is in every schema and has a declared range.
                let lat = fields
                    .iter_mut()
                    .find(|(n, _)| n == "latitude")
                    .expect("every kind has a latitude");
                lat.1 = Some(Reading::Double(91.0 + self.rng.random::<f64>() * 50.0));
                let format = if variant == 0 {
                    WireFormat::Json
                } else {
                    WireFormat::SingleObject
                };
                Some(self.encode_with(&sensor.kind, id, t_ms, &fields, format))
            }
            RejectReason::MissingField => {
                let mut v: serde_json::Value =
                    serde_json::from_slice(&self.encode_with(&sensor.kind, id, t_ms, &fields, WireFormat::Json))
                        .expect("own JSON parses");
                let drop = if variant == 0 { "sensor_id" } else { "longitude" };
                v.as_object_mut().expect("an object").remove(drop);
                Some(serde_json::to_vec(&v).expect("JSON"))
            }
            RejectReason::BadTimestamp => {
                let t = if variant == 0 {
                    86_400_000
                } else {
                    t_ms + 30 * 86_400_000
                };
                Some(self.encode_with(&sensor.kind, id, t, &fields, WireFormat::Confluent))
            }
            RejectReason::TooLarge => {
                let mut v: serde_json::Value =
                    serde_json::from_slice(&self.encode_with(&sensor.kind, id, t_ms, &fields, WireFormat::Json))
                        .expect("own JSON parses");
                v["firmware_dump"] = serde_json::json!("A".repeat(80 * 1024));
                Some(serde_json::to_vec(&v).expect("JSON"))
            }
            RejectReason::Late => Some(self.encode_with(&sensor.kind, id, t_ms, &fields, WireFormat::Confluent)),
        };
        SimRecord {
            kind: sensor.kind,
            key: sensor.id.into_bytes(),
            value,
            observed_at_ms: t_ms,
            expect: Expect::Reject(reason),
        }
    }
}

/// The Avro binary body of a reading, written by apache-avro.
fn avro_body(schema: &KindSchema, sensor_id: &str, t_ms: i64, fields: &[(String, Option<Reading>)]) -> Vec<u8> {
    let record = schema
        .fields
        .iter()
        .zip(fields)
        .map(|(f, (name, r))| {
            let v = match name.as_str() {
                "sensor_id" => Avro::String(sensor_id.to_owned()),
                "observed_at" => Avro::TimestampMillis(t_ms),
                _ => match (r, &f.ty) {
                    (Some(Reading::Double(x)), FieldType::Float) => Avro::Float(*x as f32),
                    (Some(Reading::Double(x)), _) => Avro::Double(*x),
                    (Some(Reading::Int(x)), FieldType::Long) => Avro::Long(*x as i64),
                    (Some(Reading::Int(x)), _) => Avro::Int(*x),
                    (Some(Reading::Symbol(s)), FieldType::Enum(symbols)) => {
                        let i = symbols
                            .iter()
                            .position(|x| x == s)
                            .expect("simulated symbols are in the schema");
                        Avro::Enum(i as u32, (*s).to_owned())
                    }
                    (Some(Reading::Symbol(s)), _) => Avro::String((*s).to_owned()),
                    (None, _) => Avro::Null,
                },
            };
            let v = if f.nullable {
                if v == Avro::Null {
                    Avro::Union(0, Box::new(Avro::Null))
                } else {
                    Avro::Union(1, Box::new(v))
                }
            } else {
                v
            };
            (name.clone(), v)
        })
        .collect();
    apache_avro::to_avro_datum(&schema.avro, Avro::Record(record)).expect("simulated readings follow their schema")
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rade_schema::{DecodeLimits, Decoder};

    use super::*;

    fn catalog() -> Arc<Catalog> {
        Arc::new(Catalog::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas")).expect("schemas load"))
    }

    #[test]
    fn valid_records_of_every_kind_and_format_decode() {
        let catalog = catalog();
        let mut sim = Simulator::new(catalog.clone(), Fleet::new(&[], 0.05, 7), 7).expect("simulator");
        let now = chrono::Utc::now().timestamp_millis();
        let mut seen = std::collections::HashSet::new();
        for i in 0..sim.fleet().sensors.len() {
            for (j, f) in [WireFormat::Confluent, WireFormat::SingleObject, WireFormat::Json]
                .into_iter()
                .enumerate()
            {
                let t = now - 3_600_000 * j as i64 - i as i64;
                let r = sim.valid_of(i, t, FormatChoice::One(f));
                let d = Decoder::new(
                    catalog.clone(),
                    catalog.kind(&r.kind).expect("kind").clone(),
                    DecodeLimits::default(),
                );
                let row = d
                    .decode(r.value.as_deref(), now)
                    .unwrap_or_else(|e| panic!("{} {f:?}: {e}", r.kind));
                assert_eq!(row.observed_at_ms, t);
                assert_eq!(row.format, f);
                seen.insert(r.kind);
            }
        }
        assert_eq!(seen.len(), 11);
    }

    #[test]
    fn invalid_records_get_the_reason_they_were_made_for() {
        let catalog = catalog();
        let mut sim = Simulator::new(catalog.clone(), Fleet::new(&[], 0.05, 3), 3).expect("simulator");
        let now = chrono::Utc::now().timestamp_millis();
        for _ in 0..20 {
            for reason in SIMULATED_REASONS {
                let r = sim.invalid(now - 1000, reason);
                let d = Decoder::new(
                    catalog.clone(),
                    catalog.kind(&r.kind).expect("kind").clone(),
                    DecodeLimits::default(),
                );
                let got = d.decode(r.value.as_deref(), now).expect_err("invalid on purpose");
                assert_eq!(got.reason, reason, "{}: {}", r.kind, got.detail);
            }
        }
    }
}
