//! rade's fingerprints of every schema of `schemas/` against those Python computes, live:
//! fastavro (the Parsing Canonical Form of the specification, as Java's `SchemaNormalization`)
//! and the Apache `avro` package (whose form keeps `{"type":"long"}` for a logical type, as
//! apache-avro 0.21 does: rade's `legacy_fingerprint`). Needs the venv `make test` prepares
//! (`RADE_TEST_PYTHON`, with fastavro and avro).

use std::path::Path;
use std::process::Command;

use rade_schema::Catalog;

/// Prints `<file> <fastavro's 8 bytes in hex> <avro's 8 bytes in hex>` per schema given.
const SCRIPT: &str = r#"
import json, os, sys
import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form
import avro.schema
for path in sys.argv[1:]:
    text = open(path).read()
    spec = fingerprint(to_parsing_canonical_form(fastavro.parse_schema(json.loads(text))), "CRC-64-AVRO")
    legacy = avro.schema.parse(text).fingerprint("CRC-64-AVRO").hex()
    print(os.path.basename(path), spec, legacy)
"#;

#[test]
fn every_shipped_schema_has_the_fingerprints_python_computes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
    let catalog = Catalog::load(&dir).expect("the shipped catalog");
    let python = std::env::var("RADE_TEST_PYTHON").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_default();
        format!("{home}/.cache/rade/venv/bin/python")
    });
    let out = Command::new(&python)
        .arg("-c")
        .arg(SCRIPT)
        .args(catalog.schemas().iter().map(|s| &s.file))
        .output()
        .unwrap_or_else(|e| panic!("{python} must run (make test installs it): {e}"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("ASCII");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), catalog.schemas().len(), "{text}");
    for (schema, line) in catalog.schemas().iter().zip(lines) {
        let wire = |fp: u64| fp.to_le_bytes().iter().map(|b| format!("{b:02x}")).collect::<String>();
        let name = schema.file.file_name().expect("a file").to_string_lossy();
        assert_eq!(
            line,
            format!(
                "{name} {} {}",
                wire(schema.fingerprint),
                wire(schema.legacy_fingerprint)
            ),
            "{} v{} (id {}): fastavro, then the avro package",
            schema.kind,
            schema.version,
            schema.id
        );
    }
}
