"""The Python producers of the conformance suite: fastavro, the Apache `avro` package and `json`
encode; kafka-python (a pure-Python Kafka client) sends.

    python produce.py --bootstrap HOST:PORT --prefix P --schemas DIR --expected expected.jsonl STREAM...

STREAM is one of
  fastavro-single-object  0xC3 0x01, fastavro's CRC-64-AVRO fingerprint of its Parsing Canonical
                          Form, fastavro.schemaless_writer's body
  fastavro-confluent      0x00, the 4-byte big-endian schema id, schemaless_writer's body
  avro-single-object      0xC3 0x01, avro's Schema.fingerprint(), avro.io.DatumWriter's body
  avro-confluent          0x00, the schema id, DatumWriter's body
  json                    json.dumps: doubles as repr (17 significant digits when needed), the
                          event time as RFC 3339 with an offset (+02:00, -05:30, Z, ...) or,
                          in some readings, ms since the epoch; null optional fields written
                          as null or left out, in turn
Each reading of expected.jsonl of that stream goes to <prefix><kind>, in file order.
Prints per stream how many it sent and the fingerprint of each schema it used.
"""

import argparse
import datetime as dt
import io
import json
import struct
from pathlib import Path

import avro.io
import avro.schema
import fastavro
import fastavro.schema
from kafka import KafkaProducer

OFFSETS = [dt.timedelta(hours=2), dt.timedelta(hours=-5, minutes=-30), dt.timedelta(0), dt.timedelta(hours=14), dt.timedelta(hours=-12), dt.timedelta(minutes=45)]
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def rfc3339(ms, i):
    """`ms` as RFC 3339 in one of several offsets; `Z` or `+00:00` for UTC, in turn."""
    tz = dt.timezone(OFFSETS[i % len(OFFSETS)])
    t = dt.datetime.fromtimestamp(ms // 1000, tz) + dt.timedelta(milliseconds=ms % 1000)
    s = t.isoformat(timespec="milliseconds" if ms % 1000 else "seconds")
    return s.replace("+00:00", "Z") if i % 4 == 2 else s


def json_value(schema, reading, i):
    doc = {}
    for j, f in enumerate(schema["fields"]):
        v = reading["fields"][f["name"]]
        if f["name"] == "observed_at":
            v = v if i % 7 == 6 else rfc3339(v, i)
        elif v is None and (i // 4) % 2:
            continue  # absent rather than null
        elif isinstance(v, float) and v.is_integer() and abs(v) < 2**53 and repr(v) != "-0.0" and i % 3 == 0:
            v = int(v)  # a double sent as a JSON integer, as many producers do
        doc[f["name"]] = v
    return json.dumps(doc, ensure_ascii=i % 2 == 0).encode()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--schemas", type=Path, required=True)
    ap.add_argument("--expected", type=Path, required=True)
    ap.add_argument("streams", nargs="+")
    args = ap.parse_args()
    readings = [json.loads(line) for line in args.expected.read_text(encoding="utf-8").splitlines() if line]
    texts = {}
    for r in readings:
        if r["kind"] not in texts:
            texts[r["kind"]] = (args.schemas / r["schema_file"]).read_text()
    # One request in flight keeps the file order within a partition, which event times follow.
    producer = KafkaProducer(bootstrap_servers=args.bootstrap, acks="all", max_in_flight_requests_per_connection=1, linger_ms=5)
    for stream in args.streams:
        lib, _, framing = stream.partition("-")
        fingerprints = {}
        futures = []
        for i, r in enumerate(x for x in readings if x["stream"] == stream):
            kind, text = r["kind"], texts[r["kind"]]
            if lib == "fastavro":
                parsed = fastavro.parse_schema(json.loads(text))
                body = io.BytesIO()
                fastavro.schemaless_writer(body, parsed, r["fields"])
                if framing == "single-object":
                    canonical = fastavro.schema.to_parsing_canonical_form(parsed)
                    fp = bytes.fromhex(fastavro.schema.fingerprint(canonical, "CRC-64-AVRO"))
                    head = b"\xc3\x01" + fp
                else:
                    head = b"\x00" + struct.pack(">I", r["schema_id"])
                value = head + body.getvalue()
            elif lib == "avro":
                parsed = avro.schema.parse(text)
                body = io.BytesIO()
                # The avro package takes a timestamp-millis value as an aware datetime only.
                datum = dict(r["fields"], observed_at=EPOCH + dt.timedelta(milliseconds=r["fields"]["observed_at"]))
                avro.io.DatumWriter(parsed).write(datum, avro.io.BinaryEncoder(body))
                if framing == "single-object":
                    fp = parsed.fingerprint("CRC-64-AVRO")
                    head = b"\xc3\x01" + fp
                else:
                    head = b"\x00" + struct.pack(">I", r["schema_id"])
                value = head + body.getvalue()
            elif stream == "json":
                value = json_value(json.loads(text), r, i)
            else:
                raise SystemExit(f"produce.py: unknown stream {stream}")
            if framing == "single-object":
                fingerprints[kind] = fp[::-1].hex()  # shown as the number, like Java's
            futures.append(producer.send(args.prefix + kind, key=r["key"].encode(), value=value))
        producer.flush()
        for f in futures:
            f.get(timeout=60)
        print(f"python {stream}: sent {len(futures)} fingerprints {json.dumps(fingerprints, sort_keys=True)}")
    producer.close()


if __name__ == "__main__":
    main()
