#!/usr/bin/env bash
# Device check: an external run's system samples on a real NVIDIA GPU (docs/RUNLOG.md,
# "System samples"). Needs `python3` with torch built for CUDA; the phasetop Python
# client comes from python/ (PYTHONPATH), not an installed package.
#
#   scripts/device-check-external-gpu.sh PATH/TO/phasetop      # the light binary
#
# 1. `phasetop run --headless -- python3 examples/ddp_train.py --device cuda …`: one
#    process, a model wide enough to keep the GPU busy, stopped with `ctl stop` after
#    ~20 s of training;
# 2. meanwhile `phasetop attach` on the live run in a 160x48 pty (TERM=xterm-256color)
#    for ~5 s, its raw output saved as $OUT/attach-160x48.raw (render it with a VT100
#    emulator, e.g. python's pyte, to see the system panel);
# 3. `phasetop export --format csv`: whether sys/gpu_* columns are there, and their max;
# 4. two short jobs (`sleep`) whose CUDA_VISIBLE_DEVICES names the GPU by UUID prefix,
#    and a GPU that is not there: what the host's log says it samples.
# Everything it prints is also in $OUT/report.txt; the runs' logs are copied to $OUT.
# About a minute; under two. (DEVICE=cpu HIDDEN=256 runs the same steps on a machine
# without a GPU.)
set -uo pipefail
cd "$(dirname "$0")/.."
PHASETOP=$(realpath "${1:?usage: $0 PATH/TO/phasetop}")
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}"
WORK=$(mktemp -d)
RUN=$WORK/gpu-run
exec > >(tee "$OUT/report.txt") 2>&1
say() { printf '== %s\n' "$*"; }

say "GPUs"
nvidia-smi -L 2>&1 || echo "(no nvidia-smi)"
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.device_count())'

say "1. a CUDA job under phasetop run"
T0=$(date +%s)
timeout 100 "$PHASETOP" run --headless --run-dir "$RUN" -- python3 examples/ddp_train.py \
  --device "${DEVICE:-cuda}" --hidden "${HIDDEN:-8192}" --batch "${HIDDEN:-8192}" --steps 1000000 --eval-every 50 --probe-every 100 \
  > "$OUT/headless.txt" 2>&1 &
HOST=$!
first_step() { grep -q '^step ' "$OUT/headless.txt" 2>/dev/null; }
for _ in $(seq 1 600); do first_step && break; kill -0 $HOST 2>/dev/null || break; sleep 0.1; done
if ! first_step; then
  say "FAIL: no step within 60 s"; cat "$OUT/headless.txt"; tail -30 "$RUN/job.log" 2>/dev/null
  kill $HOST 2>/dev/null; exit 1
fi
TRAIN0=$(date +%s)
echo "first step after $((TRAIN0 - T0)) s"

say "2. phasetop attach in a 160x48 pty for 5 s"
python3 - "$PHASETOP" "$RUN" "$OUT/attach-160x48.raw" <<'EOF'
import fcntl, os, pty, select, signal, struct, sys, termios, time
exe, run, out = sys.argv[1:]
pid, fd = pty.fork()
if pid == 0:
    fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 48, 160, 0, 0))
    os.environ["TERM"] = "xterm-256color"
    os.execv(exe, [exe, "attach", run])
data = bytearray()
end = time.time() + 5
while time.time() < end:
    r, _, _ = select.select([fd], [], [], 0.1)
    if r:
        try:
            data += os.read(fd, 1 << 16)
        except OSError:
            break
os.kill(pid, signal.SIGTERM)  # the dashboard only: the run goes on
time.sleep(0.3)
try:
    while select.select([fd], [], [], 0.1)[0]:
        data += os.read(fd, 1 << 16)
except OSError:
    pass
os.waitpid(pid, 0)
open(out, "wb").write(data)
print(f"{len(data)} bytes saved to {out}")
EOF

LEFT=$((20 - ($(date +%s) - TRAIN0)))
[ $LEFT -gt 0 ] && sleep $LEFT
"$PHASETOP" ctl "$RUN" stop
for _ in $(seq 1 300); do kill -0 $HOST 2>/dev/null || break; sleep 0.1; done
wait $HOST; echo "phasetop run exited $? after $(($(date +%s) - T0)) s"
tail -4 "$OUT/headless.txt"

say "3. the run as csv: sys/* columns and their max"
"$PHASETOP" export "$RUN" --format csv -o "$OUT/gpu-run.csv"
"$PHASETOP" export "$RUN" --format jsonl -o "$OUT/gpu-run.jsonl"
cp "$RUN/job.log" "$OUT/gpu-run.job.log" 2>/dev/null
python3 - "$OUT/gpu-run.csv" "$OUT/gpu-run.jsonl" <<'EOF'
import csv, json, sys
rows = list(csv.DictReader(open(sys.argv[1])))
cols = [c for c in (rows[0].keys() if rows else []) if c.startswith("sys/")]
print(f"{len(rows)} rows; sys columns: {cols}")
print("sys/gpu_* columns present:", any(c.startswith("sys/gpu") for c in cols))
for c in cols:
    v = [float(r[c]) for r in rows if r[c] not in ("", None)]
    print(f"  {c:24} max {max(v):10.1f}  ({len(v)} values)" if v else f"  {c:24} no values")
evs = [json.loads(l) for l in open(sys.argv[2])]
sys_evs = [e for e in evs if e["type"] == "eval" and e.get("split") == "system"]
print(f"{len(sys_evs)} system samples; last event: {evs[-1]['type']}")
for e in evs:
    if e["type"] == "log" and ("system samples" in e["message"] or "CUDA_VISIBLE" in e["message"]):
        print("  log:", e["message"])
EOF

say "4. CUDA_VISIBLE_DEVICES by UUID prefix, and a GPU that is not there"
UUID=$(nvidia-smi --query-gpu=uuid --format=csv,noheader 2>/dev/null | head -1)
for cvd in "${UUID:0:12}" 7; do
  [ -z "$cvd" ] && continue
  R=$WORK/cvd-$RANDOM
  CUDA_VISIBLE_DEVICES=$cvd timeout 30 "$PHASETOP" run --headless --run-dir "$R" -- sleep 2.5 > /dev/null 2>&1
  "$PHASETOP" export "$R" --format jsonl -o "$R.jsonl" > /dev/null
  echo "CUDA_VISIBLE_DEVICES=$cvd:"
  python3 - "$R.jsonl" <<'EOF'
import json, sys
evs = [json.loads(l) for l in open(sys.argv[1])]
for e in evs:
    if e["type"] == "log" and ("system samples" in e["message"] or "CUDA_VISIBLE" in e["message"]):
        print("  log:", e["message"])
keys = sorted({k for e in evs if e["type"] == "eval" and e.get("split") == "system" for k in e["metrics"]})
print("  sampled:", keys)
EOF
done
say "done in $(($(date +%s) - T0)) s; files in $OUT"
rm -rf "$WORK"
