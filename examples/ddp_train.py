"""A small PyTorch DDP job that phasetop watches and steers (docs/CLIENT.md):

    phasetop run configs/external-demo.toml -- torchrun --nproc-per-node 2 examples/ddp_train.py

An MLP on synthetic data (a fixed random teacher labels Gaussian inputs), CPU, the gloo
backend on loopback. `--device cuda` trains on the GPU instead (rank R on cuda:R's
LOCAL_RANK, nccl between ranks); `--hidden` and `--batch` make it as heavy as wanted
(scripts/device-check-external-gpu.sh keeps a GPU busy with them). Each phase's `lr` and
`aux_w` (the weight of an auxiliary weight-norm loss, 0 when the plan has none) come
from the config, on every rank from the first step; `ctl set lr=…` / `ctl set aux_w=…`
change them on every rank; `ctl stop` ends every rank at the same step. With --record DIR
each rank writes DIR/record-rank<R>.tsv: one line per step,
`step<TAB>phase<TAB>lr<TAB>aux_w`, the values the next step uses, DIR/pid-rank<R>, and at
the end DIR/checksum-rank<R>: the sum of its model's weights (what the tests read).
"""

import argparse
import os
import time

import torch
import torch.distributed as dist
import torch.nn as nn

import phasetop


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--step-ms", type=float, default=0.0, help="sleep after each step, to pace a demo or a test")
    ap.add_argument("--record", default=None, help="directory for the per-rank record files")
    ap.add_argument("--probe-every", type=int, default=100)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--checkpoint-every", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu, or cuda (each rank on cuda:LOCAL_RANK)")
    ap.add_argument("--hidden", type=int, default=64, help="width of the two hidden layers")
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()

    torch.set_num_threads(1)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    cuda = args.device.startswith("cuda")
    device = torch.device(args.device)
    if cuda and args.device == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if distributed:
        # torchrun sets MASTER_ADDR (loopback) and MASTER_PORT.
        dist.init_process_group("nccl" if cuda else "gloo")
    rank = dist.get_rank() if distributed else 0

    torch.manual_seed(0)  # the same initial weights on every rank
    h = args.hidden
    model = nn.Sequential(nn.Linear(16, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, 4)).to(device)
    net = nn.parallel.DistributedDataParallel(model) if distributed else model

    run = phasetop.init(config=vars(args))
    # run.settings: the phase's settings with `ctl set` values on top, the same on every rank.
    opt = torch.optim.SGD(net.parameters(), lr=float(run.settings.get("lr", 0.05)), momentum=0.9)
    aux_w = float(run.settings.get("aux_w", 0.0))

    teacher = torch.randn(16, 4, generator=torch.Generator().manual_seed(1234))
    data = torch.Generator().manual_seed(100 + rank)  # each rank its own shard of the stream
    held_out = torch.randn(512, 16, generator=torch.Generator().manual_seed(99))
    held_labels = (held_out @ teacher).argmax(1).to(device)
    held_out = held_out.to(device)

    record = None
    if args.record:
        os.makedirs(args.record, exist_ok=True)
        record = open(os.path.join(args.record, f"record-rank{rank}.tsv"), "w", buffering=1)
        with open(os.path.join(args.record, f"pid-rank{rank}"), "w") as f:
            f.write(str(os.getpid()))

    def set_lr(lr):
        for g in opt.param_groups:
            g["lr"] = float(lr)

    for step in range(1, args.steps + 1):
        x = torch.randn(args.batch, 16, generator=data)
        y = (x @ teacher).argmax(1).to(device)
        x = x.to(device)
        logits = net(x)
        loss = nn.functional.cross_entropy(logits, y)
        if aux_w:
            loss = loss + aux_w * sum(p.pow(2).mean() for p in net.parameters())
        opt.zero_grad()
        loss.backward()
        opt.step()
        acc = (logits.argmax(1) == y).float().mean().item()
        run.log({"train_loss": loss.item(), "train_acc": acc, "lr": opt.param_groups[0]["lr"]}, step=step)
        if rank == 0 and args.eval_every and step % args.eval_every == 0:
            with torch.no_grad():
                out = model(held_out)
                run.log({"val_loss": nn.functional.cross_entropy(out, held_labels).item(),
                         "val_acc": (out.argmax(1) == held_labels).float().mean().item()}, step=step)
        if rank == 0 and args.probe_every and step % args.probe_every == 0:
            with torch.no_grad():
                run.probe("hidden", model[:4](held_out[:128]).cpu(), step=step)

        ctl = run.sync(step)  # every rank, every step: the same answer everywhere
        if ctl.phase_changed or ctl.set:
            if "lr" in run.settings:
                set_lr(run.settings["lr"])
            aux_w = float(run.settings.get("aux_w", 0.0))
        if ctl.checkpoint or (args.checkpoint_every and step % args.checkpoint_every == 0):
            run.checkpoint(step, lambda: {"model": model.state_dict(), "opt": opt.state_dict(), "step": step})
        if record:
            record.write(f"{step}\t{ctl.phase}\t{opt.param_groups[0]['lr']!r}\t{aux_w!r}\n")
        if ctl.should_stop:
            break
        if args.step_ms:
            time.sleep(args.step_ms / 1000)

    if args.record:
        with torch.no_grad():
            total = sum(p.double().sum().item() for p in model.parameters())
        with open(os.path.join(args.record, f"checksum-rank{rank}"), "w") as f:
            f.write(repr(total))
    run.finish()
    if distributed:
        # Every rank done with the group before any leaves it: a rank that exits while
        # another still talks to it can abort that one (gloo: "terminate called without an
        # active exception"), which turned a clean stop into a failed run.
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
