"""External-run figures, side by side in one run (issue 14; docs/CLIENT.md "Cost"):

1. run.log() with 8 metrics: median µs on the caller's thread, vs torch's own
   SummaryWriter.add_scalar × 8 (writing a real event file).
2. run.sync() with nothing pending, rank 0: median µs (send this sync, read the answer
   to the last one): after 0.5 ms of work, as in training (the answer has arrived), and
   back to back (the host's latency on the path).
3. A 2-rank gloo job at 20 ms steps under torchrun: mean step time with log + sync every
   step vs the same job without phasetop (alternated, twice each), the added share, and
   how often the ranks met in a broadcast.
4. Host ingest: metric points per second from one client (8-metric points in 2000-point
   frames, pre-encoded so the client is not what is measured), default detectors on.

    .venv/bin/python scripts/bench_external.py            # uses target/release/phasetop
"""

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
BIN = os.environ.get("PHASETOP_BIN") or os.path.join(ROOT, "target/release/phasetop")
os.environ["PHASETOP_BIN"] = BIN

METRICS = {f"m{i}": 0.5 + i for i in range(8)}


def median_us(fn, n):
    times = []
    for i in range(n):
        t = time.perf_counter_ns()
        fn(i)
        times.append(time.perf_counter_ns() - t)
    return statistics.median(times) / 1000


def worker(mode, steps):
    """One rank of the 2-rank job: 20 ms of work a step (a small all-reduce + sleep)."""
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(64, 64))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    run = None
    if mode == "phasetop":
        import phasetop

        run = phasetop.init()
    x = torch.randn(32, 64)
    times, sync_times = [], []
    for step in range(1, steps + 1):
        t = time.perf_counter()
        loss = model(x).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        time.sleep(max(0.0, 0.020 - (time.perf_counter() - t)))
        if run is not None:
            run.log({"train_loss": loss.item(), **METRICS}, step=step)
            t_sync = time.perf_counter()
            run.sync(step)
            sync_times.append(time.perf_counter() - t_sync)
        times.append(time.perf_counter() - t)
    if dist.get_rank() == 0:
        sync = {"sync_ms": 1000 * statistics.mean(sync_times[10:]), "sync_median_ms": 1000 * statistics.median(sync_times[10:]),
                "meetings": run._meetings, "calls": run._calls} if run is not None else {}
        print(json.dumps({"mean_ms": 1000 * statistics.mean(times[10:]), **sync}), flush=True)
    if run is not None:
        run.finish()
    dist.destroy_process_group()


def ddp_step_ms(mode, tmp, steps=300):
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    job = [torchrun, "--standalone", "--nproc-per-node", "2", os.path.abspath(__file__), "--worker", mode, str(steps)]
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python"), OMP_NUM_THREADS="1")
    if mode == "phasetop":
        run_dir = os.path.join(tmp, f"ddp-{time.time_ns()}")
        subprocess.run([BIN, "run", "--headless", "--run-dir", run_dir, "--"] + job, env=env, check=True,
                       stdout=subprocess.DEVNULL)
        out = open(os.path.join(run_dir, "job.log")).read()
    else:
        out = subprocess.run(job, env=env, check=True, capture_output=True, text=True).stdout
    line = [l for l in out.splitlines() if l.startswith('{"mean_ms"')][-1]
    return json.loads(line)


def main():
    import phasetop

    tmp = tempfile.mkdtemp(prefix="phasetop-bench-")
    try:
        run = phasetop.init(run_dir=os.path.join(tmp, "run"), buffer_size=1_000_000)
        # 1. log vs SummaryWriter.add_scalar × 8
        from torch.utils.tensorboard import SummaryWriter

        tb = SummaryWriter(os.path.join(tmp, "tb"))
        n = 20_000
        log_us = median_us(lambda i: run.log(METRICS, step=i), n)
        tb_us = median_us(lambda i: [tb.add_scalar(k, v, i) for k, v in METRICS.items()], n)
        tb.close()
        run.flush()
        # 2. sync with nothing pending: back to back (the host's answer to the last sync
        # may not be there yet: its latency is on the path), and after 0.5 ms of work
        # (as in training: the answer has arrived; only the sync itself is timed).
        sync_us = median_us(lambda i: run.sync(n + i), 2000)

        def after_work(i):
            t = time.perf_counter()
            while time.perf_counter() - t < 0.0005:
                pass
            t = time.perf_counter_ns()
            run.sync(n + 2000 + i)
            return time.perf_counter_ns() - t

        sync_work_us = statistics.median(after_work(i) for i in range(2000)) / 1000
        # 4. host ingest from one client: frames pre-encoded, a sync after them on the
        # same connection answers once the host has taken every point.
        frames = []
        step = 10 * n
        for _ in range(100):
            pts = [{"step": step + j, "metrics": {"train_loss": 1.0 / (1 + j % 97), **METRICS}} for j in range(2000)]
            step += 2000
            frames.append(json.dumps({"type": "log", "points": pts}).encode() + b"\n")
        points = 100 * 2000 * 9
        s = socket.socket(socket.AF_UNIX)
        s.connect(os.path.join(tmp, "run", "control.sock"))
        f = s.makefile("rb")
        t = time.perf_counter()
        for fr in frames:
            s.sendall(fr)
        s.sendall(json.dumps({"type": "sync", "step": step}).encode() + b"\n")
        f.readline()
        ingest = points / (time.perf_counter() - t)
        s.close()
        run.finish()
        # 3. the 2-rank job
        # Alternated, twice each, so that drift in the machine's load hits both alike.
        plains, watches = [], []
        for _ in range(2):
            plains.append(ddp_step_ms("plain", tmp)["mean_ms"])
            watches.append(ddp_step_ms("phasetop", tmp))
        plain = statistics.mean(plains)
        watched = statistics.mean(w["mean_ms"] for w in watches)
        w = watches[-1]
        print(f"{'run.log(8 metrics)':<44} {log_us:8.2f} µs median   (issue: ≤ 5 µs)")
        print(f"{'SummaryWriter.add_scalar × 8 (torch)':<44} {tb_us:8.2f} µs median   ({tb_us / log_us:.1f}× run.log)")
        print(f"{'run.sync(), nothing pending, rank 0':<44} {sync_work_us:8.2f} µs median   (issue: ≤ 50 µs; after 0.5 ms of work)")
        print(f"{'  … back to back (host latency on the path)':<44} {sync_us:8.2f} µs median")
        print(f"{'2-rank gloo job, 20 ms steps, plain':<44} {plain:8.2f} ms/step")
        print(f"{'  … with log + sync every step':<44} {watched:8.2f} ms/step   "
              f"(+{100 * (watched - plain) / plain:.2f} %; issue: ≤ 2 %)")
        print(f"{'  … of which run.sync() on rank 0 (mean)':<44} {w['sync_ms']:8.3f} ms       "
              f"(median {1000 * w['sync_median_ms']:.0f} µs; the ranks met at {w['meetings']} of {w['calls']} syncs)")
        print(f"{'host ingest, one client, default detectors':<44} {ingest:8.0f} points/s (issue: ≥ 200 000)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], int(sys.argv[3]))
    else:
        main()
