//! Decode + validate + Arrow append per core, for a mix of every kind.
//!
//! `rade_decoder/*` is rade's hot path: one message value to a validated row appended to
//! Arrow builders. `apache_avro_value/confluent` is the baseline the issue asks for: the
//! same messages through `apache_avro::from_avro_datum` into `Value`s, then into the same
//! Arrow builders, without range validation (so it does less work than rade's path).

use std::collections::HashMap;
use std::sync::Arc;

use apache_avro::types::Value as Avro;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rade_benches::{catalog, chrono_now_ms, messages};
use rade_schema::{DecodeLimits, Decoder, Lineage, Row, RowBatchBuilder, Value, WireFormat};

const N: usize = 20_000;
const BATCH: usize = 8192;

fn bench(c: &mut Criterion) {
    let catalog = catalog();
    let now = chrono_now_ms() + 1000;
    let decoders: HashMap<String, Decoder> = catalog
        .kinds()
        .iter()
        .map(|k| {
            (
                k.kind.clone(),
                Decoder::new(catalog.clone(), k.clone(), DecodeLimits::default()),
            )
        })
        .collect();
    let mut group = c.benchmark_group("decode_validate_append");
    group.throughput(Throughput::Elements(N as u64));
    for format in [WireFormat::Confluent, WireFormat::SingleObject, WireFormat::Json] {
        let msgs = messages(&catalog, N, format, 5);
        group.bench_function(format!("rade_decoder/{}", format.as_str()), |b| {
            let mut sink = Sink::new(&catalog);
            b.iter(|| {
                for (i, m) in msgs.iter().enumerate() {
                    let row = decoders[&m.kind].decode(m.value.as_deref(), now).expect("valid");
                    sink.append(&m.kind, &row, i, now);
                }
            })
        });
        if format == WireFormat::Confluent {
            group.bench_function("apache_avro_value/confluent", |b| {
                let mut sink = Sink::new(&catalog);
                b.iter(|| {
                    for (i, m) in msgs.iter().enumerate() {
                        let kind = catalog.kind(&m.kind).expect("kind");
                        let mut body = &m.value.as_deref().expect("value")[5..];
                        let Avro::Record(fields) =
                            apache_avro::from_avro_datum(&kind.avro, &mut body, None).expect("valid Avro")
                        else {
                            unreachable!("records only")
                        };
                        sink.append(&m.kind, &to_row(&fields, kind), i, now);
                    }
                })
            });
        }
    }
    group.finish();
}

/// Arrow builders per kind, emptied into a batch every `BATCH` rows, as the worker does.
struct Sink {
    builders: HashMap<String, RowBatchBuilder>,
}

impl Sink {
    fn new(catalog: &rade_schema::Catalog) -> Sink {
        let builders = catalog
            .kinds()
            .iter()
            .map(|k| (k.kind.clone(), RowBatchBuilder::new(k.clone(), BATCH)))
            .collect();
        Sink { builders }
    }

    fn append(&mut self, kind: &str, row: &Row<'_>, i: usize, now: i64) {
        let builder = self.builders.get_mut(kind).expect("kind");
        builder.push(
            row,
            Lineage {
                topic: "tpm.raw",
                partition: 0,
                offset: i as i64,
                ingested_at_ms: now,
            },
        );
        if builder.len() >= BATCH {
            std::hint::black_box(builder.finish());
        }
    }
}

fn to_row<'a>(fields: &'a [(String, Avro)], kind: &Arc<rade_schema::KindSchema>) -> Row<'a> {
    fn value<'v>(v: &'v Avro, symbols: Option<&[String]>) -> Value<'v> {
        match v {
            Avro::Null => Value::Null,
            Avro::Double(x) => Value::Double(*x),
            Avro::Float(x) => Value::Float(*x),
            Avro::Int(x) => Value::Int(*x),
            Avro::Long(x) | Avro::TimestampMillis(x) => Value::Long(*x),
            Avro::Boolean(x) => Value::Bool(*x),
            Avro::String(s) => Value::Str(s.as_str().into()),
            Avro::Enum(i, _) if symbols.is_some() => Value::Symbol(*i),
            Avro::Union(_, inner) => value(inner, symbols),
            _ => Value::Null,
        }
    }
    let values: Vec<Value<'a>> = fields
        .iter()
        .zip(&kind.fields)
        .map(|((_, v), f)| {
            let symbols = match &f.ty {
                rade_schema::FieldType::Enum(s) => Some(&s[..]),
                _ => None,
            };
            value(v, symbols)
        })
        .collect();
    let observed_at_ms = match values[kind.observed_at] {
        Value::Long(t) => t,
        _ => 0,
    };
    Row {
        values,
        observed_at_ms,
        format: WireFormat::Confluent,
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
