#!/usr/bin/env python3
"""Writes the recorded input streams of the golden tests (run once; the files are committed).

Each line is one Kafka record as the worker sees it: the partition, the processing time at
which it is polled (`at`, ms) and the JSON value of a water_level or car_park reading.
"""
import json
import random

T0 = 1_780_000_000_000 - 1_780_000_000_000 % 3_600_000  # an hour boundary (2026-05-28 20:00 UTC)
MIN = 60_000


def gauge(sensor, t, height):
    return {"sensor_id": sensor, "observed_at": t, "latitude": 43.12, "longitude": 5.93,
            "height": round(height, 1), "flow": None}


def flood_height(t):
    """A flood on g1: flat at 80 cm, rises to 380 cm at minute 30, falls back by minute 60."""
    m = (t - T0) / MIN
    if m < 10:
        return 80.0
    if m < 30:
        return 80.0 + (m - 10) * 15.0
    if m < 50:
        return 380.0 - (m - 30) * 15.0
    return 80.0


def stream(shuffle_within=0, late_every=0, seed=1):
    rng = random.Random(seed)
    out = []
    at = T0
    for step in range(0, 75 * 3):  # every 20 s for 75 min
        t = T0 + step * 20_000
        batch = [gauge("g1", t, flood_height(t)), gauge("g2", t + 3_000, 60.0 + (step % 5)),
                 gauge("g3", t + 7_000, 45.0)]
        for r in batch:
            at += 1_000
            out.append({"p": 0, "at": at, "kind": "water_level", "value": r})
    if shuffle_within:
        # Out of order, each record at most `shuffle_within` records away from its place.
        for i in range(0, len(out) - shuffle_within, shuffle_within):
            chunk = out[i:i + shuffle_within]
            ats = [c["at"] for c in chunk]
            rng.shuffle(chunk)
            for c, a in zip(chunk, ats):
                c["at"] = a
            out[i:i + shuffle_within] = chunk
    if late_every:
        # Every n-th record of g3 arrives 5 minutes late (beyond the 1 min lateness).
        for i, c in enumerate(out):
            if c["value"]["sensor_id"] == "g3" and i % late_every == 0 and c["value"]["observed_at"] > T0 + 10 * MIN:
                c["value"]["observed_at"] -= 5 * MIN
    return out


def idle():
    """Partition 0 flows for 40 min; partition 1 (a car park) sends 5 minutes then goes silent."""
    out = []
    at = T0
    for step in range(0, 40 * 2):
        t = T0 + step * 30_000
        at += 2_000
        out.append({"p": 0, "at": at, "kind": "water_level", "value": gauge("g1", t, 80.0 + step % 3)})
        if step < 10:
            out.append({"p": 1, "at": at + 500, "kind": "car_park", "value": {
                "sensor_id": "cp1", "observed_at": t + 1_000, "latitude": 43.12, "longitude": 5.93,
                "availableSpotNumber": max(0, 20 - 3 * step), "totalSpotNumber": 400}})
    return out


def write(name, records):
    with open(f"{name}/input.jsonl", "w") as f:
        for r in records:
            f.write(json.dumps(r, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    import os
    for name, records in [("in_order", stream()), ("out_of_order", stream(shuffle_within=6)),
                          ("late", stream(late_every=7)), ("idle_partition", idle())]:
        os.makedirs(name, exist_ok=True)
        write(name, records)
