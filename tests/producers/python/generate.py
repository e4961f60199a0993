"""The readings of the conformance suite, decided once and written for every producer.

    python generate.py --schemas DIR --out DIR --start-ms T0 --seed S [--per-kind N]

For every stream (a producer and its wire format, in STREAMS order) and every sensor kind of
schemas/catalog.toml, N readings that cover each field's declared range (`rade.min`,
`rade.max`): both edges, the doubles next to them, the smallest subnormal and -0.0 at a zero edge,
17-digit doubles and random values across the range; optional fields null (and, in JSON,
absent) in some readings; every symbol of every enum; sensor ids with non-ASCII and escaped
characters. Each reading has a sensor id of its own, so the lake row it becomes is found by
that id. Event times rise, per kind, across the streams in STREAMS order (the order the test
runs the producers in), so no reading is late for the windows; the first reading of each kind
is at the earliest accepted event time, 2000-01-01T00:00:00Z.

Writes into --out:
  expected.jsonl   one JSON object per reading: stream, kind, key, fields (doubles as repr,
                   event time in ms, enums as symbols, null for null or absent)
  <stream>.tsv     for the Java and Go producers: schema file, schema id, kind, key and the
                   reading in Avro's JSON encoding, tab-separated
"""

import argparse
import json
import math
import random
import tomllib
from pathlib import Path

STREAMS = [
    "java-single-object",
    "java-confluent",
    "fastavro-single-object",
    "fastavro-confluent",
    "avro-single-object",
    "avro-confluent",
    "goavro-single-object",
    "goavro-confluent",
    "json",
]
EARLIEST_MS = 946_684_800_000  # rade's earliest accepted event time (DecodeLimits)
STEP_MS = 997
ID_SUFFIXES = ["", "-é", "/中文", "-🌊", '-"q"', "-back\\slash", " sp"]


def sensor_kinds(schemas):
    catalog = tomllib.loads((schemas / "catalog.toml").read_text())
    out = []
    for entry in catalog["schema"]:
        if entry["kind"] == "alert":
            continue
        out.append((entry["kind"], entry["id"], entry["file"], json.loads((schemas / entry["file"]).read_text())))
    return out


def branch(ty):
    """(nullable, inner type) of a field type."""
    if isinstance(ty, list):
        inner = [t for t in ty if t != "null"]
        assert len(inner) == 1 and len(ty) == 2, ty
        return True, inner[0]
    return False, ty


def type_name(inner):
    if isinstance(inner, dict):
        if inner.get("logicalType") == "timestamp-millis":
            return "timestamp-millis"
        return inner["type"]
    return inner


def double_values(lo, hi, rng):
    """Edges first, then random values across [lo, hi]."""
    lo = -1e300 if lo is None else float(lo)
    hi = 1e300 if hi is None else float(hi)
    edges = [lo, hi, math.nextafter(lo, math.inf), math.nextafter(hi, -math.inf), (lo + hi) / 2]
    if lo == 0.0:
        edges += [5e-324, -0.0]  # the smallest subnormal; negative zero, equal to the edge
    # Values whose shortest repr needs 17 significant digits.
    while len(edges) < 10:
        x = rng.uniform(lo, hi)
        if len(repr(abs(x)).replace(".", "").lstrip("0").split("e")[0]) >= 17:
            edges.append(x)
    yield from edges
    while True:
        yield rng.uniform(lo, hi)


def int_values(lo, hi, rng):
    lo = -(2**31) if lo is None else int(lo)
    hi = 2**31 - 1 if hi is None else int(hi)
    yield from [lo, hi, lo + 1, hi - 1, (lo + hi) // 2]
    while True:
        yield rng.randint(lo, hi)


def symbol_values(symbols):
    while True:
        yield from symbols


def field_values(field, rng):
    _, inner = branch(field["type"])
    name = type_name(inner)
    if name == "double":
        return double_values(field.get("rade.min"), field.get("rade.max"), rng)
    if name == "int":
        return int_values(field.get("rade.min"), field.get("rade.max"), rng)
    if name == "enum":
        return symbol_values(inner["symbols"])
    raise SystemExit(f"generate.py: no values for field {field['name']} of type {inner}")


def avro_json(schema, fields):
    """A reading in Avro's JSON encoding: a non-null union branch is {type name: value}."""
    out = {}
    for f in schema["fields"]:
        v = fields[f["name"]]
        nullable, inner = branch(f["type"])
        if nullable and v is not None:
            if isinstance(inner, dict) and inner["type"] == "enum":
                ns = inner.get("namespace", schema.get("namespace"))
                label = f"{ns}.{inner['name']}" if ns else inner["name"]
            else:
                label = type_name(inner)
            v = {label: v}
        out[f["name"]] = v
    return out


def check_coverage(kinds, expected):
    """Each stream sends, for each kind, both edges of every range, every symbol, and a null in
    every optional field: a change of --per-kind or of the schemas cannot drop them silently."""
    for stream in STREAMS:
        for kind, _, _, schema in kinds:
            sent = [e["fields"] for e in expected if e["stream"] == stream and e["kind"] == kind]
            for f in schema["fields"]:
                values = [r[f["name"]] for r in sent]
                nullable, inner = branch(f["type"])
                need = []
                if nullable:
                    need.append(None)
                if type_name(inner) == "enum":
                    need += inner["symbols"]
                for edge in ("rade.min", "rade.max"):
                    if edge in f:
                        need.append(f[edge])
                missing = [v for v in need if v not in values]
                if missing:
                    raise SystemExit(f"generate.py: {stream} {kind}.{f['name']} never sends {missing}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--schemas", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--start-ms", type=int, required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--per-kind", type=int, default=16)
    args = ap.parse_args()
    kinds = sensor_kinds(args.schemas)
    args.out.mkdir(parents=True, exist_ok=True)
    seen = {kind: 0 for kind, *_ in kinds}
    expected = []
    for stream in STREAMS:
        lines = []
        for kind, schema_id, file, schema in kinds:
            rng = random.Random(f"{args.seed}/{stream}/{kind}")
            gens = {f["name"]: field_values(f, rng) for f in schema["fields"] if f["name"] not in ("sensor_id", "observed_at")}
            for i in range(args.per_kind):
                n = seen[kind]
                seen[kind] += 1
                observed_at = EARLIEST_MS if n == 0 else args.start_ms + n * STEP_MS + rng.randrange(STEP_MS)
                if i % 8 == 1:
                    observed_at -= observed_at % 1000  # a whole second (JSON writes it without a fraction)
                key = f"{stream}/{kind}/{i:03d}{ID_SUFFIXES[i % len(ID_SUFFIXES)]}"
                fields = {"sensor_id": key, "observed_at": observed_at}
                for j, f in enumerate(schema["fields"]):
                    if f["name"] in fields:
                        continue
                    nullable, _ = branch(f["type"])
                    # Each optional field is null in a quarter of the readings, not all at once.
                    fields[f["name"]] = None if nullable and (i + j) % 4 == 3 else next(gens[f["name"]])
                expected.append({"stream": stream, "kind": kind, "key": key, "schema_file": file, "schema_id": schema_id, "fields": fields})
                lines.append("\t".join([file, str(schema_id), kind, key, json.dumps(avro_json(schema, fields), ensure_ascii=False)]))
        if stream.startswith(("java-", "goavro-")):
            (args.out / f"{stream}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    check_coverage(kinds, expected)
    with open(args.out / "expected.jsonl", "w", encoding="utf-8") as f:
        for e in expected:
            f.write(json.dumps(e, ensure_ascii=False) + "\n")
    last = max(e["fields"]["observed_at"] for e in expected)
    print(json.dumps({"readings": len(expected), "last_observed_at": last}))


if __name__ == "__main__":
    main()
