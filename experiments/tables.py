#!/usr/bin/env python3
"""Prints the result tables of EXPERIMENTS.md from the logs that experiments/run.sh wrote.
Usage: python3 experiments/tables.py [OUT]   (standard library only)"""
import re, sys, os

OUT = sys.argv[1] if len(sys.argv) > 1 else "exp-out"

def metrics(log):
    """label -> (n, MAE, SD, M) from an evaluate/crossval log."""
    rows = {}
    for line in open(os.path.join(OUT, log)):
        m = re.match(r"^(teff|logg|feh|cfe|nfe|mgfe|ofe|afe)\s+(\d+)\s+(\S+)\s+(\S+)\s+(\S+)$", line.strip())
        if m:
            rows[m.group(1)] = (int(m.group(2)), float(m.group(3)), float(m.group(4)), float(m.group(5)))
    return rows

def flags(log):
    text = open(os.path.join(OUT, log)).read()
    out = {}
    for kind in ("VMP", "CEMP among VMP"):
        m = re.search(kind + r": recall ([\d.]+)% \((\d+)/(\d+)\), false positives ([\d.]+)%", text)
        if m:
            out[kind] = m.groups()
    return out

def fmt(v, label):
    return f"{v:.1f}" if label == "teff" else f"{v:.3f}"

def table(runs, labels, cols=("MAE", "SD", "M")):
    idx = {"MAE": 1, "SD": 2, "M": 3}
    head = "| model | " + " | ".join(f"{l} {c}" for l in labels for c in cols) + " |"
    print(head)
    print("|" + "---|" * (1 + len(labels) * len(cols)))
    for name, log in runs:
        if not os.path.exists(os.path.join(OUT, log)):
            print(f"| {name} | " + " | ".join("not run" for _ in labels for _ in cols) + " |")
            continue
        m = metrics(log)
        print(f"| {name} | " + " | ".join(fmt(m[l][idx[c]], l) if l in m else "-" for l in labels for c in cols) + " |")

print("### Experiment 1 (SYNTHETIC, R=200, 143 pixels; test set of 1000 stars): MAE in dex\n")
BASE = [("The Cannon", "cannon"), ("random forest", "rf"), ("SVR", "svr")]
table([("ANN", "exp1-eval-ann.log"), ("StarNet", "exp1-eval-starnet.log"), ("2-D CNN (16, 32, 64; 12x12 fold)", "exp1-eval-cnn.log"), ("ANN + residual blocks", "exp1-eval-res-ann.log")]
      + [(n, f"exp1-eval-{k}.log") for n, k in BASE], ["cfe", "mgfe", "nfe"], cols=("MAE",))
print("\n### Experiment 2 (SYNTHETIC, 4096 pixels; test set of 1000 stars)\n")
table([("ANN", "exp2-eval-ann.log"), ("StarNet", "exp2-eval-starnet.log"), ("CNN (16, 32, 64)", "exp2-eval-cnn.log")]
      + [(n, f"exp2-eval-{k}.log") for n, k in BASE], ["teff", "logg", "feh"])
print()
for name, log in [("CNN", "exp2-eval-cnn.log"), ("ANN", "exp2-eval-ann.log"), ("StarNet", "exp2-eval-starnet.log")] + [(n, f"exp2-eval-{k}.log") for n, k in BASE]:
    if os.path.exists(os.path.join(OUT, log)):
        f = flags(log)
        for k, (r, tp, pos, fpr) in f.items():
            print(f"- {name}, {k}: recall {r}% ({tp}/{pos}), false-positive rate {fpr}%")
def vmp_normal(report_dir):
    """label -> (VMP n, VMP MAE, normal n, normal MAE) from a report.md."""
    path = os.path.join(OUT, report_dir, "report.md")
    out = {}
    if not os.path.exists(path):
        return None
    for line in open(path):
        c = [x.strip() for x in line.strip().strip("|").split("|")]
        if len(c) == 10 and c[0] in ("teff", "logg", "feh", "cfe") and c[6] not in ("", "-"):
            out[c[0]] = (int(c[6]), float(c[7]), int(c[8]), float(c[9]))
    return out

print("\nMAE of very metal-poor stars (true [Fe/H] < -2) against the others (from each run's report.md):\n")
labels = ["teff", "logg", "feh", "cfe"]
print("| model | " + " | ".join(f"{l} VMP | {l} normal" for l in labels) + " |")
print("|" + "---|" * (1 + 2 * len(labels)))
for name, d in [("ANN", "exp2-ann"), ("StarNet", "exp2-starnet"), ("CNN (16, 32, 64)", "exp2-cnn")] + [(n, f"exp2-{k}") for n, k in BASE]:
    m = vmp_normal(d)
    if m is None:
        print(f"| {name} | " + " | ".join("not run" for _ in labels for _ in (0, 1)) + " |")
    else:
        print(f"| {name} | " + " | ".join(f"{fmt(m[l][1], l)} | {fmt(m[l][3], l)}" if l in m else "- | -" for l in labels) + " |")
print("\n[C/Fe] from the CH G band alone (4000-5500 A kept, the rest set to 0) against the full spectrum, single-target CNNs:\n")
table([("CNN, full spectrum", "exp2-eval-full-cfe.log"), ("CNN, G band only", "exp2-eval-gband.log")], ["cfe"])
print("\n### Experiment 2 on REAL spectra: MILES, 5-fold cross-validation (788 stars)\n")
table([("ANN", "miles-ann.log"), ("StarNet", "miles-starnet.log"), ("CNN (16, 32, 64)", "miles-cnn.log")]
      + [(n, f"miles-{k}.log") for n, k in BASE], ["teff", "logg", "feh"])
print()
for name, log in [("CNN", "miles-cnn.log"), ("ANN", "miles-ann.log"), ("StarNet", "miles-starnet.log")] + [(n, f"miles-{k}.log") for n, k in BASE]:
    if os.path.exists(os.path.join(OUT, log)):
        for k, (r, tp, pos, fpr) in flags(log).items():
            print(f"- {name}, {k}: recall {r}% ({tp}/{pos}), false-positive rate {fpr}%")
print("\n### Experiment 3 (SYNTHETIC, noise-free MARCS-step grid, 3-fold cross-validation)\n")
table([("CNN (16, 32, 64)", "grid-cnn.log")], ["teff", "logg", "feh", "cfe", "nfe", "ofe", "afe"], cols=("MAE", "SD"))
