"""Where the PyTorch peer's transformer step goes (benches/trainer.rs explains the
ratio with it): wall time per step without the profiler, and, under torch.profiler,
the time spent inside ATen operators (the kernels phasetop calls too, through the same
libtorch). What is not ATen is Python and dispatch overhead, the only part a
Rust caller can save, so wall / ATen is the most any libtorch front end can gain here.

usage: profile_peer.py [STEPS] [THREADS]
"""
import sys
import time

from torch.profiler import ProfilerActivity, profile

from bench_peer import setup


def main():
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    step = setup("transformer", threads)
    for _ in range(20):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    wall = (time.perf_counter() - t0) / steps
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    events = prof.key_averages()
    aten = sum(e.self_cpu_time_total for e in events if e.key.startswith("aten::")) / 1e6 / steps
    top = sorted((e for e in events if e.key.startswith("aten::")), key=lambda e: -e.self_cpu_time_total)[:8]
    print(f"transformer step, {threads} threads: wall {wall * 1e3:.2f} ms (no profiler)")
    print(f"  inside ATen operators: {aten * 1e3:.2f} ms ({100 * aten / wall:.0f} % of the wall time)")
    print(f"  Python + dispatch overhead: {(wall - aten) * 1e3:.2f} ms")
    print(f"  the most a libtorch caller without that overhead can gain: {wall / aten:.2f}x")
    print("  heaviest operators (self time per step):")
    for e in top:
        print(f"    {e.key:<36} {e.self_cpu_time_total / 1e3 / steps:7.3f} ms  ({e.count // steps} calls/step)")


if __name__ == "__main__":
    main()
