"""Reads the raw lake back with pyarrow and compares it with what the producers sent.

    python verify.py --lake DIR --prefix P --expected expected.jsonl

Every reading of expected.jsonl must be in the lake exactly once (found by its sensor id,
which no other reading shares), on topic <prefix><kind>, with every field equal: doubles bit
for bit, ints, strings and enum symbols exactly, event times to the millisecond. The lake
must hold no other row. Prints a JSON report: readings expected and found per stream, and the
problems (the first 8 of each sort, with their count).
"""

import argparse
import os
import json
import struct
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable


def bits(x):
    return struct.pack("<d", x).hex()


def same(expected, got, lake_type):
    if expected is None or got is None:
        return expected is None and got is None
    if isinstance(expected, float):
        return pa.types.is_float64(lake_type) and bits(float(got)) == bits(expected)
    if isinstance(expected, int) and not isinstance(expected, bool):
        return isinstance(got, int) and not isinstance(got, bool) and got == expected
    return got == expected


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lake", type=Path, required=True)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--expected", type=Path, required=True)
    args = ap.parse_args()
    expected = {}
    for line in args.expected.read_text(encoding="utf-8").splitlines():
        if line:
            r = json.loads(line)
            expected[r["key"]] = r
    problems = defaultdict(list)
    found = Counter()
    seen = Counter()
    for kind in sorted({r["kind"] for r in expected.values()}):
        path = args.lake / "raw" / kind
        if not (path / "_delta_log").is_dir():
            problems["kind missing from the lake"].append(kind)
            continue
        # The table's rows: the files its Delta log names, read by the deltalake package.
        table = DeltaTable(str(path)).to_pyarrow_dataset().to_table()
        types = {f.name: f.type for f in table.schema}
        columns = {}
        for name in table.column_names:
            col = table[name]
            if pa.types.is_timestamp(col.type):
                # Milliseconds since the epoch, exactly, whatever the unit of the column.
                col = col.cast(pa.timestamp("ms", col.type.tz)).cast(pa.int64())
            columns[name] = col.to_pylist()
        for i in range(table.num_rows):
            key = columns["sensor_id"][i]
            seen[key] += 1
            r = expected.get(key)
            if r is None:
                problems["row in the lake that no producer sent"].append(f"{kind}: {key}")
                continue
            if seen[key] > 1:
                problems["reading in the lake more than once"].append(f"{r['stream']} {key}")
                continue
            where = columns["_topic"][i]
            if r["kind"] != kind or where != args.prefix + kind:
                problems["reading in the wrong place"].append(f"{r['stream']} {key}: kind={kind} _topic={where}")
            bad = []
            for name, want in r["fields"].items():
                if name not in columns:
                    bad.append(f"{name}: no such column")
                    continue
                got = columns[name][i]
                if not same(want, got, types[name]):
                    show = lambda v: f"{v!r} ({bits(v)})" if isinstance(v, float) else repr(v)
                    bad.append(f"{name}: sent {show(want)}, lake has {show(got)} ({types[name]})")
            if bad:
                problems[f"{r['stream']}: value differs"].append(f"{kind} {key}: " + "; ".join(bad))
            else:
                found[r["stream"]] += 1
    for key, r in expected.items():
        if seen[key] == 0:
            problems[f"{r['stream']}: reading missing from the lake"].append(f"{r['kind']} {key}")
    report = {
        "expected": dict(Counter(r["stream"] for r in expected.values())),
        "found_equal": dict(found),
        "problems": {k: {"count": len(v), "first": v[:8]} for k, v in sorted(problems.items())},
    }
    print(json.dumps(report, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
    # deltalake 1.6's threads sometimes abort the interpreter's exit (rc 134 after the
    # report): leave at once, the report printed.
    sys.stdout.flush()
    os._exit(0)
