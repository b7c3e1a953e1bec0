#!/usr/bin/env python3
"""Known answers against PyTorch (issue 12, part 4): for each known-answer scenario, the
step at which its phenomenon happens in phasetop's run and in a plain PyTorch run of the
same model, from phasetop's initial weights, on the same batches, for the same steps.

    cargo build --release --bin phasetop --example reference
    .venv/bin/python scripts/reference/phenomena.py [--seeds 0,1,2] [--scenarios grokking,parity,deep_mlp] [--jobs 1]

Not part of the test suite: minutes of compute. For each scenario and seed it
  1. trains `configs/<scenario>.toml` (its `[run] seed` set to the seed) with the release
     binary, headless: the first phase runs to `max_steps` (a `suggest` rule's
     suggestion is not accepted headless), evals every `[eval] every` steps;
  2. writes phasetop's initial weights, the batches of all `max_steps` steps and the
     held-out split (`examples/reference.rs --data-only`) and trains the first phase in
     plain PyTorch on them (`train.py --eval-every`), recording the same metrics;
  3. finds the phenomenon in both runs with the definitions of tests/known_answers.rs:
     grokking, the first eval with val_acc >= 0.5; parity (deep_mlp), the first step where
     the 50-step trailing mean of train_loss falls below half its value at step 200 (100);
  4. prints a Markdown table: phasetop's step, PyTorch's, their ratio, and whether they
     are within x1.2 of each other.
Runs are kept in target/phenomena/<scenario>-s<seed>/ (`run/` is phasetop's run dir).
The cyclical scenario has no single step and is not measured.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
from read_runlog import read_runlog  # noqa: E402

BIN = ROOT / "target/release/phasetop"
EXAMPLE = ROOT / "target/release/examples/reference"
TRAIN = ROOT / "scripts/reference/train.py"


def trailing_mean(series, window):
    """(step, mean of the last `window` values), as known_answers.rs's trailing_mean."""
    out, total = [], 0.0
    for i, (s, v) in enumerate(series):
        total += v
        if i >= window:
            total -= series[i - window][1]
        out.append((s, total / min(i + 1, window)))
    return out


def first_step(series, pred):
    return next((s for s, v in series if pred(v)), None)


def loss_halves(losses, start):
    """First step where the 50-step trailing mean of train_loss is below half its value
    at step `start` (parity: 200, deep_mlp: 100)."""
    mean = trailing_mean(losses, 50)
    level = next(v for s, v in mean if s >= start)
    return first_step(mean, lambda v: v < 0.5 * level), f"loss level {level:.3f} at step {start}"


def phenomenon(scenario, losses, evals):
    """(step or None, detail) of the scenario's phenomenon. losses: [(step, train_loss)];
    evals: [(step, val_loss, val_acc)]."""
    if scenario == "grokking":
        step = next((s for s, _, acc in evals if acc >= 0.5), None)
        return step, "first eval with val_acc >= 0.5"
    if scenario == "parity":
        return loss_halves(losses, 200)
    if scenario == "deep_mlp":
        return loss_halves(losses, 100)
    raise SystemExit(f"no phenomenon defined for {scenario}")


def run(cmd, **kw):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stderr[-4000:]}")
    return r.stdout


def one(scenario, seed):
    dir = ROOT / "target/phenomena" / f"{scenario}-s{seed}"
    dir.mkdir(parents=True, exist_ok=True)
    text = (ROOT / "configs" / f"{scenario}.toml").read_text()
    text, n = re.subn(r"(?m)^seed = \d+$", f"seed = {seed}", text, count=1)
    assert n == 1, f"{scenario}: no `seed = ` line"
    config = dir / "config.toml"
    config.write_text(text)
    cfg = tomllib.loads(text)
    steps = cfg["run"]["max_steps"]
    every = cfg["eval"]["every"]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")

    # 1. phasetop, headless (in the background while 2. runs: one thread each).
    t0 = time.time()
    rundir = dir / "run"
    if rundir.exists():
        subprocess.run(["rm", "-rf", str(rundir)], check=True)
    cmd = [str(c) for c in (BIN, "train", "--headless", "--run-dir", rundir, config)]
    ours = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)

    # 2. PyTorch on phasetop's initial weights and batches.
    run([EXAMPLE, config, dir, steps, "--data-only"], env=env)
    out = json.loads(run([sys.executable, TRAIN, config, dir, "--eval-every", every], env=env))
    theirs_losses = list(enumerate(out["losses"], 1))
    theirs_evals = [tuple(e) for e in out["evals"]]
    (dir / "pytorch.json").write_text(json.dumps(out))
    (dir / "batches.safetensors").unlink()  # up to 170 MB (grokking): remade on demand

    err = ours.communicate()[1]
    if ours.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({ours.returncode}):\n{err[-4000:]}")
    wall = time.time() - t0
    events, problems = read_runlog(rundir / "events.log", verify_crc=False)
    assert not problems, problems
    # The whole run must be the first phase (a switch would change the optimizer).
    switches = [e for e in events if e["type"] == "phase_changed" and e.get("step", 0) > 0]
    assert not switches, f"{scenario} s{seed}: phasetop switched phase: {switches}"
    ours_losses = [(e["step"], e["metrics"]["train_loss"]) for e in events if e["type"] == "step"]
    ours_evals = [
        (e["step"], e["metrics"]["val_loss"], e["metrics"]["val_acc"]) for e in events if e["type"] == "eval"
    ]
    assert len(ours_losses) == steps, (len(ours_losses), steps)

    # 3. The phenomenon in both.
    a, detail = phenomenon(scenario, ours_losses, ours_evals)
    b, detail_b = phenomenon(scenario, theirs_losses, theirs_evals)
    # How far the curves agree: the first step where the losses differ by > 1e-4 relative.
    apart = next(
        (s for (s, x), (_, y) in zip(ours_losses, theirs_losses) if abs(x - y) > 1e-4 * max(abs(y), 1e-12)), None
    )
    return dict(
        scenario=scenario,
        seed=seed,
        steps=steps,
        phasetop=a,
        pytorch=b,
        detail=detail,
        detail_b=detail_b,
        apart=apart,
        final=(ours_losses[-1][1], theirs_losses[-1][1]),
        final_eval=(ours_evals[-1], theirs_evals[-1]),
        wall=wall,
    )


def row(r):
    a, b = r["phasetop"], r["pytorch"]
    if a is None or b is None:
        ratio, ok = "—", "no"
    else:
        ratio_v = a / b
        ratio, ok = f"{ratio_v:.3f}", "yes" if 1 / 1.2 <= ratio_v <= 1.2 else "no"
    show = lambda s: "never" if s is None else str(s)
    apart = "never" if r["apart"] is None else f"step {r['apart']}"
    (_, _, acc_a), (_, _, acc_b) = r["final_eval"]
    return (
        f"| {r['scenario']} s{r['seed']} | {r['steps']} | {show(a)} | {show(b)} | {ratio} | {ok} | "
        f"{apart} | {r['final'][0]:.4f} / {r['final'][1]:.4f} | {acc_a:.3f} / {acc_b:.3f} |"
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--scenarios", default="grokking,parity,deep_mlp")
    ap.add_argument("--jobs", type=int, default=1, help="scenario-seed pairs trained at once (each two processes of one thread)")
    args = ap.parse_args()
    for p in (BIN, EXAMPLE):
        if not p.exists():
            raise SystemExit(f"missing {p}: cargo build --release --bin phasetop --example reference")
    tasks = [(s, int(seed)) for s in args.scenarios.split(",") for seed in args.seeds.split(",")]
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda t: one(*t), tasks))
    print("| scenario | steps | phasetop step | PyTorch step | ratio | within ×1.2 | losses first differ > 1e-4 | final train_loss (phasetop / PyTorch) | final val_acc (phasetop / PyTorch) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(row(r))
    print()
    for r in results:
        print(f"- {r['scenario']} s{r['seed']}: {r['detail']} (PyTorch: {r['detail_b']}); "
              f"{r['wall']:.0f} s wall (phasetop and PyTorch at once)", file=sys.stderr)


if __name__ == "__main__":
    main()
