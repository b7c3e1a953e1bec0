#!/usr/bin/env python3
"""Read a phasetop run log (RUN_DIR/events.log) with the Python standard library only.

    python3 read_runlog.py RUN_DIR/events.log            # JSON Lines: one event per line
    python3 read_runlog.py RUN_DIR/events.log --count    # how many events of each type

Damaged spans are skipped and reported on stderr. As a library:

    from read_runlog import read_runlog
    events, problems = read_runlog("runs/xyz/events.log")
    steps = [e for e in events if e["type"] == "step"]
"""
import json
import math
import re
import struct
import sys

MAGIC = b"PHTOPLOG"
READS_MAJOR = 1  # the schema major version this reader understands
MAX_PAYLOAD = 16 << 20
STEP_TAG = 0x01  # first byte of a compact binary step record (schema 1.4)
MAX_STEP_RECORD = 64 << 10
_CANDIDATE = re.compile(b"[{\x01]")  # where a payload may start, when resynchronising


def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()


def crc32c(data):
    """CRC-32C (Castagnoli), as in iSCSI and ext4."""
    c = 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283  # the standard check value


def read_runlog(path, verify_crc=True):
    """Returns (events, problems): the events as dicts, in order, and a list of
    (offset, description) for each damaged span that was skipped."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 16 or data[:8] != MAGIC:
        raise ValueError("not a phasetop run log: bad magic at offset 0")
    major, minor = struct.unpack_from("<II", data, 8)
    if major > READS_MAJOR:
        raise ValueError(f"written by a newer phasetop (schema {major}.x); this reads {READS_MAJOR}.x")

    def frame(pos, resync):
        """The payload of a valid record at pos, or None."""
        if pos + 8 > len(data):
            return None
        length, crc = struct.unpack_from("<II", data, pos)
        if not 2 <= length <= MAX_PAYLOAD or pos + 8 + length > len(data):
            return None
        payload = data[pos + 8 : pos + 8 + length]
        binary = payload[0] == STEP_TAG
        if resync and not (binary and length <= MAX_STEP_RECORD) and (payload[:1] != b"{" or payload[-1:] != b"}"):
            return None
        if verify_crc and crc32c(payload) != crc:
            return None
        return payload

    events, problems, tables = [], [], {}
    pos, bad_since = 16, None
    while pos < len(data):
        payload = frame(pos, resync=bad_since is not None)
        if payload is None:
            # Damaged: skip to the next offset whose payload starts with "{" or the tag.
            if bad_since is None:
                bad_since = pos
            m = _CANDIDATE.search(data, pos + 9)
            pos = len(data) if m is None else m.start() - 8
            continue
        if bad_since is not None:
            problems.append((bad_since, f"damaged span of {pos - bad_since} bytes"))
            bad_since = None
        if payload[0] == STEP_TAG:
            try:
                events.append(_binary_step(payload, tables))
            except KeyError as e:
                problems.append((pos, f"step record of key table {e.args[0]:#010x}, whose keys event was not read"))
            except (ValueError, IndexError, struct.error) as e:
                problems.append((pos, f"intact binary step record that does not decode: {e}"))
        else:
            try:
                event = json.loads(payload)
                if isinstance(event, dict) and event.get("type") == "keys":
                    tables[event["id"]] = event  # the format's, not an event
                else:
                    events.append(event)
            except (ValueError, KeyError, TypeError) as e:
                problems.append((pos, f"intact record that is not JSON: {e}"))
        pos += 8 + len(payload)
    if bad_since is not None:
        problems.append((bad_since, f"damaged or incomplete tail of {len(data) - bad_since} bytes"))
    return events, problems


def _varint(b, i):
    v = shift = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        if c < 0x80:
            return v, i
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _binary_step(p, tables):
    """A compact step record (schema 1.4) as the same dict its JSON would be."""
    (table_id,) = struct.unpack_from("<I", p, 1)
    table = tables[table_id]  # KeyError: its keys event was not read
    step, i = _varint(p, 5)
    (t,) = struct.unpack_from("<d", p, i)
    phase, i = _varint(p, i + 8)
    names = table["metrics"]
    bitmap = p[i : i + (len(names) + 7) // 8]
    i += len(bitmap)
    metrics = {}
    for k, name in enumerate(names):
        if bitmap[k // 8] >> (k % 8) & 1:
            (v,) = struct.unpack_from("<d", p, i)
            i += 8
            metrics[name] = v if math.isfinite(v) else None
    if i != len(p):
        raise ValueError("bytes after its values")
    return {"type": "step", "step": step, "phase": table["phases"][phase], "t": t, "metrics": metrics}


def main(argv):
    if len(argv) < 2 or argv[1].startswith("-"):
        sys.exit(__doc__)
    events, problems = read_runlog(argv[1])
    for offset, what in problems:
        print(f"offset {offset}: {what}", file=sys.stderr)
    if "--count" in argv[2:]:
        counts = {}
        for e in events:
            counts[e["type"]] = counts.get(e["type"], 0) + 1
        for t, n in sorted(counts.items()):
            print(f"{t} {n}")
    else:
        for e in events:
            print(json.dumps(e, separators=(",", ":")))


if __name__ == "__main__":
    main(sys.argv)
