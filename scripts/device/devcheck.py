"""Helpers of the bundle's check scripts (scripts/device-bundle, docs/DEVICE.md); the
standard library only, so any python3 runs it.

  devcheck.py config SRC DST DEVICE [CHECKPOINT_EVERY]   a copy of a config on DEVICE
  devcheck.py losses A.jsonl B.jsonl STEPS REL_TOL       CUDA vs CPU, step by step
  devcheck.py steps RUN.jsonl [LAST]                     finite losses (up to step LAST)
  devcheck.py devices RUN.jsonl DEV[,DEV...]             each start's device, in order
  devcheck.py rate RUN.jsonl                             steps/s from step 20 on
  devcheck.py gpu RUN.csv                                the sys/gpu_* columns' maxima
Each prints one line of findings; exit 1 when the check fails.
"""
import csv
import json
import math
import re
import sys


def config(src, dst, device, checkpoint_every=None):
    """Sets [run] device (and [checkpoint] every) line by line: the configs' comments
    and layout stay as they are."""
    out, section, seen = [], None, set()

    def close(sec):
        if sec == "run" and "device" not in seen:
            out.append(f'device = "{device}"')
        if sec == "checkpoint" and checkpoint_every is not None and "every" not in seen:
            out.append(f"every = {checkpoint_every}")

    for line in open(src).read().splitlines():
        m = re.match(r"^\s*\[+\s*([A-Za-z_.]+)\s*\]+", line)
        if m:
            close(section)
            section = m.group(1)
            seen = set()
        elif section == "run" and re.match(r"^\s*device\s*=", line):
            line = f'device = "{device}"'
            seen.add("device")
        elif section == "checkpoint" and checkpoint_every is not None and re.match(r"^\s*every\s*=", line):
            line = f"every = {checkpoint_every}"
            seen.add("every")
        out.append(line)
    close(section)
    if checkpoint_every is not None and not any(l.strip() == "[checkpoint]" for l in out):
        out += ["[checkpoint]", f"every = {checkpoint_every}"]
    open(dst, "w").write("\n".join(out) + "\n")
    print(f"{dst}: device {device}" + (f", checkpoint every {checkpoint_every}" if checkpoint_every else ""))


def events(path):
    return [json.loads(l) for l in open(path) if l.strip()]


def step_losses(path):
    """Each step's training loss (`train_loss`, docs/RUNLOG.md)."""
    return {e["step"]: e["metrics"].get("train_loss") for e in events(path) if e["type"] == "step"}


def losses(a, b, steps, tol):
    """Largest |a - b| / max(|b|, 0.1) over the steps both logged up to `steps` (b: the
    CPU reference), and the first step's."""
    la, lb = step_losses(a), step_losses(b)
    common = sorted(s for s in la if s in lb and s <= steps)
    if len(common) < min(steps, 10):
        print(f"FAIL: only {len(common)} common steps")
        return 1
    worst, at = 0.0, common[0]
    for s in common:
        x, y = la[s], lb[s]
        if x is None or y is None or not math.isfinite(x) or not math.isfinite(y):
            print(f"FAIL: non-finite loss at step {s}: {x} vs {y}")
            return 1
        d = abs(x - y) / max(abs(y), 0.1)
        if d > worst:
            worst, at = d, s
    s0 = common[0]
    first = abs(la[s0] - lb[s0]) / max(abs(lb[s0]), 0.1)
    ok = worst <= tol
    print(
        f"{'ok' if ok else 'FAIL'}: {len(common)} steps, step {s0} loss {la[s0]:.6f} vs {lb[s0]:.6f} "
        f"(rel {first:.1e}); worst rel diff {worst:.2e} at step {at} "
        f"({la.get(at, float('nan')):.6f} vs {lb.get(at, float('nan')):.6f}); tolerance {tol}"
    )
    return 0 if ok else 1


def steps(path, want_last=None):
    ls = step_losses(path)
    if not ls:
        print("FAIL: no step events")
        return 1
    if want_last is not None and max(ls) != int(want_last):
        print(f"FAIL: last step {max(ls)}, expected {want_last}")
        return 1
    bad = [s for s, l in ls.items() if l is None or not math.isfinite(l)]
    last = max(ls)
    print(f"{'ok' if not bad else 'FAIL'}: {len(ls)} steps logged, last {last}, train_loss {ls[last]}"
          + (f"; missing or non-finite at {bad[:5]}" if bad else ""))
    return 1 if bad else 0


def devices(path, want):
    """The device each start of the run (`run_started`, resumes included) trained on,
    against the expected ones: `cuda` matches `cuda:0`."""
    got = [e.get("device", "?") for e in events(path) if e["type"] == "run_started"]
    want = want.split(",")
    ok = len(got) == len(want) and all(g == w or g.startswith(w + ":") for g, w in zip(got, want))
    print(f"{'ok' if ok else 'FAIL'}: trained on {', '.join(got)} (expected {', '.join(want)})")
    return 0 if ok else 1


def rate(path):
    pts = sorted((e["step"], e["t"]) for e in events(path) if e["type"] == "step" and e["step"] >= 20)
    if len(pts) < 2 or pts[-1][1] <= pts[0][1]:
        print("FAIL: too few steps for a rate")
        return 1
    print(f"{(pts[-1][0] - pts[0][0]) / (pts[-1][1] - pts[0][1]):.1f}")
    return 0


def gpu(path):
    rows = list(csv.DictReader(open(path)))
    cols = [c for c in (rows[0].keys() if rows else []) if c.startswith("sys/gpu")]
    found = {}
    for c in cols:
        v = [float(r[c]) for r in rows if r[c] not in ("", None)]
        if v:
            found[c] = max(v)
    ok = bool(found) and found.get("sys/gpu_mem_mb", 0) > 0
    print(f"{'ok' if ok else 'FAIL'}: sys/gpu columns {json.dumps(found)}")
    return 0 if ok else 1


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "config":
        config(*args[:3], *(int(a) for a in args[3:4]))
        return 0
    if cmd == "losses":
        return losses(args[0], args[1], int(args[2]), float(args[3]))
    return {"steps": steps, "devices": devices, "rate": rate, "gpu": gpu}[cmd](*args)


if __name__ == "__main__":
    sys.exit(main())
