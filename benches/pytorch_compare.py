#!/usr/bin/env python3
"""Time the seed's training and inference steps in PyTorch and in specnn, in one run, and print the
ratios (specnn samples/s divided by PyTorch samples/s; above 1 means specnn is faster).

For people who have PyTorch; never needed by the product or CI. Usage:

    cargo build --release
    python3 benches/pytorch_compare.py [--threads 2] [--iters 5] [--rounds 3] [--only NAME] [--markdown]

Both sides run the same steps on random data of the seed's shapes: forward, MAE loss, backward and an
Adam update for training; a forward pass without gradients for inference. fp32, `threads` CPU threads.

A shared machine's speed drifts by 10-30% over minutes, and sometimes by 40% within seconds, so with
`--rounds R` the two engines take turns R times, step by step: specnn times one step (all its batch
sizes), PyTorch times the same step at once, then the next step; odd rounds put PyTorch first, so
that a drift in one direction favours neither. Each side's figure is its median over the rounds, the
ratio is the median of the per-round ratios, and the range of those ratios is printed, with the ratio
of each engine's fastest round beside it (load only slows a round down, so the fastest rounds are the
nearest to an idle machine).
"""
import argparse, json, os, platform, statistics, subprocess, sys, time

import torch
import torch.nn as nn
import torch.nn.functional as F


class VmpCnn(nn.Module):
    def __init__(self, channels=(64, 128, 256), kernel=9, padding="same", dense=(128, 64), outputs=4, side=64):
        super().__init__()
        pad = kernel // 2 if padding == "same" else 0
        c, s = 1, side
        self.convs = []
        for i, o in enumerate(channels):
            conv = nn.Conv2d(c, o, kernel, padding=pad)
            setattr(self, f"conv{i+1}", conv)
            self.convs.append(conv)
            s = (s if padding == "same" else s - kernel + 1) // 2
            c = o
        prev = c * s * s
        self.fcs = []
        for i, d in enumerate(dense):
            fc = nn.Linear(prev, d)
            setattr(self, f"fc{i+1}", fc)
            self.fcs.append(fc)
            prev = d
        self.out = nn.Linear(prev, outputs)

    def forward(self, x):
        for conv in self.convs:
            x = F.max_pool2d(F.relu(conv(x)), 2)
        x = torch.flatten(x, 1)
        for fc in self.fcs:
            x = F.relu(fc(x))
        return self.out(x)


class ResBlock(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x):
        return F.selu(x + self.fc2(F.selu(self.fc1(x))))


class ResAnn(nn.Module):
    def __init__(self, inputs=143, width=512, blocks=3, outputs=3):
        super().__init__()
        self.input = nn.Linear(inputs, width)
        self.blocks = nn.ModuleList([ResBlock(width) for _ in range(blocks)])
        self.out = nn.Linear(width, outputs)

    def forward(self, x):
        x = F.selu(self.input(x))
        for b in self.blocks:
            x = b(x)
        return self.out(x)


def steps():
    s = [("train_vmp_cnn_same", lambda: VmpCnn(padding="same"), (1, 64, 64), 4, 32, True),
         ("train_vmp_cnn_valid", lambda: VmpCnn(padding="valid"), (1, 64, 64), 4, 32, True),
         ("train_res_ann", lambda: ResAnn(), (143,), 3, 128, True)]
    s += [("infer_vmp_cnn_same", lambda: VmpCnn(padding="same"), (1, 64, 64), 4, b, False) for b in (1, 32, 128)]
    s += [("infer_res_ann", lambda: ResAnn(), (143,), 3, b, False) for b in (1, 32, 128)]
    return s


def sync(dev):
    if dev == "cuda":
        torch.cuda.synchronize()


def time_torch(make, shape, outputs, batch, training, warmup, iters, dev="cpu", min_time=0.0):
    torch.manual_seed(0)
    model = make().to(dev)
    x = torch.rand(batch, *shape, device=dev)
    y = torch.rand(batch, outputs, device=dev) * 2 - 1
    opt = torch.optim.Adam(model.parameters())
    times = []
    i = 0
    # As `specnn bench --min-time`: at least `iters` timed steps, more until `min_time` seconds.
    while i < warmup + iters or sum(times) < min_time:
        i += 1
        sync(dev)
        t0 = time.perf_counter()
        if training:
            opt.zero_grad(set_to_none=True)
            loss = F.l1_loss(model(x), y)
            loss.backward()
            opt.step()
        else:
            with torch.no_grad():
                model(x)
        sync(dev)
        if i > warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=1, help="alternate the two engines this many times")
    ap.add_argument("--min-time", type=float, default=1.0, help="time each step for at least this many seconds (both engines)")
    ap.add_argument("--only", default=None)
    ap.add_argument("--specnn", default=os.path.join(os.path.dirname(__file__), "..", "target", "release", "specnn"))
    ap.add_argument("--markdown", action="store_true", help="print a markdown table for BENCHMARKS.md")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                    help="cuda: PyTorch on the GPU in fp32 with TF32 off, against `specnn bench --device gpu`")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads))
    cmd = [a.specnn, "bench", "--json", "--iters", str(a.iters), "--warmup", str(a.warmup), "--min-time", str(a.min_time), "--device", "gpu" if a.device == "cuda" else "cpu"]
    wanted = [st for st in steps() if not a.only or a.only in st[0]]
    ours = {(st[0], st[4]): [] for st in wanted}
    theirs = {(st[0], st[4]): [] for st in wanted}

    def run_ours(name):
        # `--only` matches by substring; no step's name is part of another's.
        for line in subprocess.run(cmd + ["--only", name], env=env, check=True, capture_output=True, text=True).stdout.splitlines():
            r = json.loads(line)
            ours[(r["name"], r["batch"])].append(r)

    def run_theirs(name):
        for n, make, shape, outputs, batch, training in wanted:
            if n == name:
                theirs[(n, batch)].append(time_torch(make, shape, outputs, batch, training, a.warmup, a.iters, a.device, a.min_time))

    names = list(dict.fromkeys(st[0] for st in wanted))
    for rnd in range(a.rounds):
        for name in names:
            for run in ((run_ours, run_theirs) if rnd % 2 == 0 else (run_theirs, run_ours)):
                run(name)
    if a.device == "cuda":
        print(f"# GPU: {torch.cuda.get_device_name(0)}; PyTorch CUDA fp32, TF32 off; specnn WGSL on wgpu (gpu adapter 0)")
    print(f"# machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; torch {torch.__version__}, "
          f"{a.threads} threads; specnn {a.threads} rayon threads; median of >= {a.iters} steps and >= {a.min_time} s after {a.warmup} warm-up; "
          f"{a.rounds} round(s), the engines alternating step by step")
    hdr = ["step", "batch", "specnn samples/s", "specnn GFLOP/s", "PyTorch samples/s", "PyTorch GFLOP/s", "ratio"]
    if a.rounds > 1:
        hdr += ["ratio range over rounds", "ratio of fastest rounds"]
    rows = []
    for name, make, shape, outputs, batch, training in wanted:
        rs, ts = ours[(name, batch)], theirs[(name, batch)]
        flops = rs[0]["gflops"] * rs[0]["seconds"]  # same FLOP count for both
        sec = statistics.median(r["seconds"] for r in rs)
        t = statistics.median(ts)
        ratios = sorted(t / r["seconds"] for r, t in zip(rs, ts))
        row = [name, batch, f"{batch / sec:.1f}", f"{flops / sec:.1f}", f"{batch / t:.1f}", f"{flops / t:.1f}",
               f"{statistics.median(ratios):.2f}x"]
        if a.rounds > 1:
            # Each engine's fastest round: a shared machine's load only ever slows a round down, so
            # the two fastest are the nearest to an idle machine (a second estimate beside the median).
            best = min(ts) / min(r["seconds"] for r in rs)
            row += [f"{ratios[0]:.2f}-{ratios[-1]:.2f}x", f"{best:.2f}x"]
        rows.append(row)
        if not a.markdown:
            print("  ".join(str(v) for v in rows[-1]), flush=True)
    if a.markdown:
        print("| " + " | ".join(hdr) + " |")
        print("|" + "---|" * len(hdr))
        for r in rows:
            print("| " + " | ".join(str(v) for v in r) + " |")


if __name__ == "__main__":
    sys.exit(main())
