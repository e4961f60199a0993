//! The Parsing Canonical Form of an Avro schema and its CRC-64-AVRO fingerprint, as the Avro
//! specification defines them ("Schema Resolution" › "Parsing Canonical Form for Schemas").
//!
//! rade computes the form itself from the schema's JSON rather than through apache-avro:
//! apache-avro 0.21 keeps `{"type":"long","logicalType":"timestamp-millis"}` in its canonical
//! form (upstream AVRO-4004), so its fingerprints differ from those of Java's
//! `SchemaNormalization`, fastavro and the Apache `avro` package for every schema with a
//! logical type, and single-object messages from those producers would not be recognised.

use serde_json::Value as Json;

const PRIMITIVES: [&str; 8] = ["null", "boolean", "int", "long", "float", "double", "bytes", "string"];

/// The Parsing Canonical Form of the schema whose JSON text this is.
pub fn parsing_canonical_form(schema: &str) -> Result<String, String> {
    let json: Json = serde_json::from_str(schema).map_err(|e| format!("not JSON: {e}"))?;
    let mut out = String::with_capacity(schema.len() / 2);
    write_schema(&json, "", &mut out)?;
    Ok(out)
}

/// The CRC-64-AVRO (Rabin) fingerprint of the Parsing Canonical Form of a schema's JSON text:
/// the 64-bit number whose little-endian bytes follow `0xC3 0x01` in single-object encoding.
pub fn fingerprint(schema: &str) -> Result<u64, String> {
    parsing_canonical_form(schema).map(|c| crc64_avro(c.as_bytes()))
}

/// The CRC-64-AVRO fingerprint (the Rabin fingerprint of the specification) of `bytes`.
pub fn crc64_avro(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(EMPTY, |fp, &b| (fp >> 8) ^ TABLE[((fp ^ u64::from(b)) & 0xff) as usize])
}

/// The fingerprint of the empty input, and the polynomial the table is built from.
const EMPTY: u64 = 0xc15d_213a_a4d7_a795;

const TABLE: [u64; 256] = {
    let mut table = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut fp = i as u64;
        let mut j = 0;
        while j < 8 {
            fp = (fp >> 1) ^ (EMPTY & (fp & 1).wrapping_neg());
            j += 1;
        }
        table[i] = fp;
        i += 1;
    }
    table
};

/// Writes one schema; `namespace` is the enclosing namespace that short names resolve in.
fn write_schema(schema: &Json, namespace: &str, out: &mut String) -> Result<(), String> {
    let attrs = match schema {
        // A primitive or a reference to a named type defined earlier: by its fullname [FULLNAMES].
        Json::String(name) => {
            write_string(&full_name(name, namespace), out);
            return Ok(());
        }
        Json::Array(branches) => {
            out.push('[');
            for (i, b) in branches.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_schema(b, namespace, out)?;
            }
            out.push(']');
            return Ok(());
        }
        Json::Object(attrs) => attrs,
        other => return Err(format!("not a schema: {other}")),
    };
    let ty = match attrs.get("type") {
        Some(Json::String(t)) => t.as_str(),
        // {"type": {...}} or {"type": [...]}: the attribute holds the schema itself.
        Some(inner @ (Json::Object(_) | Json::Array(_))) => return write_schema(inner, namespace, out),
        _ => return Err(format!("a schema object needs a string `type`: {schema}")),
    };
    let attr = |key: &str| {
        attrs
            .get(key)
            .ok_or_else(|| format!("a schema of type {ty} needs `{key}`"))
    };
    // [STRIP] and [ORDER]: the attributes each type keeps, in the order name, type, fields,
    // symbols, items, values, size; doc, aliases, default, order, logicalType and the like go.
    match ty {
        "record" | "enum" | "fixed" => {
            let name = attr("name")?
                .as_str()
                .ok_or_else(|| format!("`name` must be a string in {schema}"))?;
            let own = match attrs.get("namespace") {
                Some(Json::String(ns)) => ns.as_str(),
                Some(Json::Null) | None => namespace,
                Some(other) => return Err(format!("`namespace` must be a string: {other}")),
            };
            let full = full_name(name, own);
            out.push_str("{\"name\":");
            write_string(&full, out);
            out.push_str(",\"type\":");
            write_string(ty, out);
            match ty {
                "record" => {
                    // The fields' named types resolve in the namespace of the record's fullname.
                    let inner = full.rsplit_once('.').map_or("", |(ns, _)| ns);
                    let fields = attr("fields")?
                        .as_array()
                        .ok_or_else(|| format!("`fields` must be an array in {schema}"))?;
                    out.push_str(",\"fields\":[");
                    for (i, f) in fields.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        write_field(f, inner, out)?;
                    }
                    out.push(']');
                }
                "enum" => {
                    let symbols = attr("symbols")?
                        .as_array()
                        .ok_or_else(|| format!("`symbols` must be an array in {schema}"))?;
                    out.push_str(",\"symbols\":[");
                    for (i, s) in symbols.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        write_string(
                            s.as_str().ok_or_else(|| format!("a symbol must be a string: {s}"))?,
                            out,
                        );
                    }
                    out.push(']');
                }
                _ => {
                    // [INTEGERS]: no quotes, no leading zeros.
                    let size = attr("size")?;
                    let n = match size {
                        Json::Number(n) => n.as_u64(),
                        Json::String(s) => s.parse::<u64>().ok(),
                        _ => None,
                    }
                    .ok_or_else(|| format!("`size` must be a non-negative integer: {size}"))?;
                    out.push_str(",\"size\":");
                    out.push_str(&n.to_string());
                }
            }
            out.push('}');
        }
        "array" | "map" => {
            let key = if ty == "array" { "items" } else { "values" };
            out.push_str("{\"type\":");
            write_string(ty, out);
            out.push_str(",\"");
            out.push_str(key);
            out.push_str("\":");
            write_schema(attr(key)?, namespace, out)?;
            out.push('}');
        }
        // [PRIMITIVES]: a primitive in object form, logical type and all, is its bare name; any
        // other {"type": "Name"} is a reference to a named type.
        _ => write_string(&full_name(ty, namespace), out),
    }
    Ok(())
}

/// A record field: only its name and type.
fn write_field(field: &Json, namespace: &str, out: &mut String) -> Result<(), String> {
    let name = field
        .get("name")
        .and_then(Json::as_str)
        .ok_or_else(|| format!("a field needs a string `name`: {field}"))?;
    let ty = field
        .get("type")
        .ok_or_else(|| format!("field `{name}` has no `type`"))?;
    out.push_str("{\"name\":");
    write_string(name, out);
    out.push_str(",\"type\":");
    write_schema(ty, namespace, out)?;
    out.push('}');
    Ok(())
}

/// The fullname of `name` in `namespace`: a name with a dot is already one; primitives have none.
fn full_name(name: &str, namespace: &str) -> String {
    if name.contains('.') || namespace.is_empty() || PRIMITIVES.contains(&name) {
        name.to_owned()
    } else {
        format!("{namespace}.{name}")
    }
}

/// A JSON string literal with no `\uXXXX` escape of a character that UTF-8 carries [STRINGS].
fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c < ' ' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// Cases of the Avro project's own conformance data (`share/test/data/schema-tests.txt`):
    /// input, canonical form, and the fingerprint as Java's `SchemaNormalization` computes it
    /// (a signed 64-bit number there).
    const SPEC_CASES: &[(&str, &str, i64)] = &[
        (r#""null""#, r#""null""#, 7195948357588979594),
        (r#"{"type":"boolean"}"#, r#""boolean""#, -6970731678124411036),
        (r#"{"type":"int"}"#, r#""int""#, 8247732601305521295),
        (r#""long""#, r#""long""#, -3434872931120570953),
        (r#""float""#, r#""float""#, 5583340709985441680),
        (r#"{"type":"double"}"#, r#""double""#, -8181574048448539266),
        (r#""bytes""#, r#""bytes""#, 5746618253357095269),
        (r#"{"type":"string"}"#, r#""string""#, -8142146995180207161),
        ("[  ]", "[]", -1241056759729112623),
        (
            r#"[ "int" , {"type":"boolean"} ]"#,
            r#"["int","boolean"]"#,
            5392556393470105090,
        ),
        (
            r#"{"fields":[], "type":"record", "name":"foo", "namespace":"x.y"}"#,
            r#"{"name":"x.y.foo","type":"record","fields":[]}"#,
            5916914534497305771,
        ),
        (
            r#"{"fields":[], "type":"record", "name":"a.b.foo", "namespace":"x.y"}"#,
            r#"{"name":"a.b.foo","type":"record","fields":[]}"#,
            -4616218487480524110,
        ),
        (
            r#"{"fields":[], "type":"record", "name":"foo", "doc":"foo", "aliases":["foo","bar"]}"#,
            r#"{"name":"foo","type":"record","fields":[]}"#,
            -4824392279771201922,
        ),
        (
            r#"{ "fields":[{"type":"boolean", "aliases":[], "name":"f1", "default":"true"},
                {"order":"descending","name":"f2","doc":"Hello","type":"int"}],
              "type":"record", "name":"foo"
            }"#,
            r#"{"name":"foo","type":"record","fields":[{"name":"f1","type":"boolean"},{"name":"f2","type":"int"}]}"#,
            -4860222112080293046,
        ),
        (
            r#"{"namespace":"x.y.z", "type":"enum", "name":"foo", "doc":"foo bar", "symbols":["A1", "A2"]}"#,
            r#"{"name":"x.y.z.foo","type":"enum","symbols":["A1","A2"]}"#,
            -4448647247586288245,
        ),
        (
            r#"{"namespace":"x.y.z", "type":"fixed", "name":"foo", "doc":"foo bar", "size":32}"#,
            r#"{"name":"x.y.z.foo","type":"fixed","size":32}"#,
            -3064184465700546786,
        ),
        (
            r#"{ "items":{"type":"null"}, "type":"array"}"#,
            r#"{"type":"array","items":"null"}"#,
            -589620603366471059,
        ),
        (
            r#"{ "values":"string", "type":"map"}"#,
            r#"{"type":"map","values":"string"}"#,
            -8732877298790414990,
        ),
        (
            r#"{"name":"PigValue","type":"record",
               "fields":[{"name":"value", "type":["null", "int", "long", "PigValue"]}]}"#,
            r#"{"name":"PigValue","type":"record","fields":[{"name":"value","type":["null","int","long","PigValue"]}]}"#,
            -1759257747318642341,
        ),
    ];

    #[test]
    fn canonical_forms_and_fingerprints_of_the_avro_conformance_data() {
        for (input, canonical, fp) in SPEC_CASES {
            assert_eq!(parsing_canonical_form(input).as_deref(), Ok(*canonical), "{input}");
            assert_eq!(fingerprint(input), Ok(*fp as u64), "{input}");
        }
    }

    #[test]
    fn strips_logical_types_and_resolves_names_in_the_enclosing_namespace() {
        let schema = r#"{"type":"record","name":"R","namespace":"n","fields":[
            {"name":"t","type":{"type":"long","logicalType":"timestamp-millis"},"doc":"d"},
            {"name":"d","type":{"type":"fixed","name":"Dec","size":"08","logicalType":"decimal","precision":4}},
            {"name":"e","type":{"type":"enum","name":"E","symbols":["A"],"default":"A"}},
            {"name":"g","type":{"type":"fixed","name":"G","namespace":"o","size":2}},
            {"name":"again","type":"Dec"},
            {"name":"other","type":{"type":"E"}},
            {"name":"o","type":"o.G"},
            {"name":"u","type":["null",{"type":"string","avro.java.string":"String"}]},
            {"name":"m","type":{"type":"map","values":{"type":"array","items":"E"}}},
            {"name":"s","type":"string","default":"\u00e9\"\n"}]}"#;
        assert_eq!(
            parsing_canonical_form(schema).expect("valid"),
            concat!(
                r#"{"name":"n.R","type":"record","fields":["#,
                r#"{"name":"t","type":"long"},"#,
                r#"{"name":"d","type":{"name":"n.Dec","type":"fixed","size":8}},"#,
                r#"{"name":"e","type":{"name":"n.E","type":"enum","symbols":["A"]}},"#,
                r#"{"name":"g","type":{"name":"o.G","type":"fixed","size":2}},"#,
                r#"{"name":"again","type":"n.Dec"},"#,
                r#"{"name":"other","type":"n.E"},"#,
                r#"{"name":"o","type":"o.G"},"#,
                r#"{"name":"u","type":["null","string"]},"#,
                r#"{"name":"m","type":{"type":"map","values":{"type":"array","items":"n.E"}}},"#,
                r#"{"name":"s","type":"string"}]}"#
            )
        );
        // [STRINGS]: an escaped character is written as itself.
        assert_eq!(
            parsing_canonical_form(r#"{"type":"enum","name":"\u0045","symbols":["\u00e9"]}"#).as_deref(),
            Ok(r#"{"name":"E","type":"enum","symbols":["é"]}"#)
        );
    }

    /// The fingerprints of the shipped schemas as computed by others: fastavro 1.13.1
    /// (`fingerprint(to_parsing_canonical_form(parse_schema(s)), "CRC-64-AVRO")`) and Java's
    /// Apache Avro 1.12.0 (`SchemaNormalization.parsingFingerprint64`), which agree, the form of
    /// the specification; and the Apache `avro` package 1.12.2 (`parse(s).fingerprint(...)`),
    /// which, like apache-avro 0.21, keeps `{"type":"long"}` for a logical type. Both as the
    /// 64-bit number whose little-endian bytes those libraries return and put on the wire.
    /// `tests/python_fingerprints.rs` checks every schema of `schemas/` against Python live.
    const SHIPPED: &[(&str, u64, u64)] = &[
        ("air_quality.avsc", 0xb5daf17774b36a04, 0x8f1d0ccdc9699f3d),
        ("alert.avsc", 0xd08783ac1bf4e366, 0xb8a939cec161011f),
        ("car_park.avsc", 0x4a7719d9f27fde59, 0x1ecea2a2b2e089ad),
        ("energy_meter.avsc", 0xecf02a494789615e, 0x1473ca8bcf9c4c92),
        ("noise.avsc", 0x3904680094376c57, 0x976ffb648914eb5d),
        ("parking_bay.avsc", 0xa0747ff6b3855dae, 0xe0943b7ece270d3b),
        ("public_lighting.avsc", 0x39d1826de396c4c4, 0x320fd33044460707),
        ("rainfall.avsc", 0x76ce748f7131da36, 0x8e22b970482f5719),
        ("traffic_counter.avsc", 0x875e9d2cb9016f10, 0x7e16b804059c538d),
        ("waste_bin.avsc", 0x2e5fb58064f0744b, 0x3d9ecdf3eccca714),
        ("water_level.avsc", 0x566f6695eea1a77c, 0xd759477cbad77265),
        ("weather.avsc", 0x75bcff62ec22ef4c, 0x58814ebe8f09b1f3),
    ];

    #[test]
    fn fingerprints_of_the_shipped_schemas_match_python() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
        let catalog = crate::Catalog::load(&dir).expect("the shipped schemas load");
        for (file, spec, legacy) in SHIPPED {
            let text = std::fs::read_to_string(dir.join(file)).expect("shipped schema");
            assert_eq!(fingerprint(&text), Ok(*spec), "{file}");
            let kind = catalog
                .schemas()
                .iter()
                .find(|k| k.file.ends_with(file))
                .unwrap_or_else(|| panic!("{file} is in the catalog"));
            assert_eq!((kind.fingerprint, kind.legacy_fingerprint), (*spec, *legacy), "{file}");
            // Both forms find the schema.
            assert_eq!(catalog.by_fingerprint(*spec).map(|k| k.id), Some(kind.id), "{file}");
            assert_eq!(catalog.by_fingerprint(*legacy).map(|k| k.id), Some(kind.id), "{file}");
        }
    }

    #[test]
    fn crc64_avro_of_the_empty_input_is_the_seed() {
        assert_eq!(crc64_avro(b""), EMPTY);
    }
}
