#!/usr/bin/env python3
"""Where the stated sigmas of a crossval (or evaluate) run fail: reads each report's `estimates.csv`.

    python3 experiments/coverage.py REPORT [REPORT ...]

For each report and label it prints
- the coverage of the stated sigmas (within 1 and 2 sigma) and the stars beyond 3 sigma;
- how the >3-sigma misses spread over the quartiles of the stated sigma (do large sigmas catch them?);
- what recalibrating the model's raw spread (`LABEL_spread_z`) could reach, with the calibration of
  `trust::Calibration::fit_label` (sigma = sqrt((a s)^2 + f^2), the pair that misses the two targets
  least, each miss in units of its tolerance) and with a power of the spread added
  (sigma = sqrt((a s^p)^2 + f^2)). Each is fitted twice: on every star of the run ("oracle": fitted on
  the stars it is scored on, an upper bound) and fold by fold (fitted on the other folds' stars,
  scored on the fold's; crossval reports only, they have a `fold` column).
For an ensemble's report (with `LABEL_members_z`, the members' spread alone) it also splits the raw
spread into the variance heads' part, h^2 = spread^2 - members^2, and the members' part m, and gives
the fold-by-fold coverage of each alone and of sqrt(h^2 + (w m)^2) with w chosen, fold by fold, on
the other folds' stars from 0.5, 1, 1.5, 2, 3, 4, 6 (does weighing the two parts apart help?).
With two or more reports it also counts the >3-sigma misses the first shares with each other one.

Errors are in label units relative to the estimate's scale: Teff as (truth - estimate) / estimate
(the log10 label's scale), others as they are. Numpy only. The figures are only as real as the
report's stars: MILES is REAL, specnn's survey SYNTHETIC.
"""
import csv
import sys

import numpy as np

ONE, TWO = 0.682689492, 0.954499736
TOL1, TOL2 = 0.05, 0.03
LOG_LABELS = {"teff"}


def load(report):
    with open(f"{report}/estimates.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    num = lambda r, k: float(r[k]) if r.get(k, "") != "" else np.nan  # noqa: E731
    labels = [k[: -len("_true")] for k in rows[0] if k.endswith("_true")]
    out = {"file": [r["file"] for r in rows]}
    out["fold"] = np.array([int(r["fold"]) for r in rows]) if "fold" in rows[0] else None
    for name in labels:
        for part in ("true", "est", "err", "spread_z", "members_z"):
            out[f"{name}_{part}"] = np.array([num(r, f"{name}_{part}") for r in rows])
    return labels, out


def miss(c1, c2):
    a, b = abs(c1 - ONE) / TOL1, abs(c2 - TWO) / TOL2
    return (max(a, b), a + b)


def fit(err, s, powers):
    """The (a, p, f) that misses the two coverage targets least on |err| and spreads s."""
    e = np.abs(err)
    const = np.quantile(e, ONE)
    levels = [ONE] + [0.63 + 0.005 * i for i in range(21)]
    best = (None, (np.inf, np.inf))
    for p in powers:
        sp = np.where(s > 0, s, 0.0) ** p
        for step in range(21):
            f = const * step / 20
            # The smallest scale that puts star i within 1 sigma; the level-quantile of these is the
            # scale that covers that fraction.
            need = np.where(e <= f, 0.0, np.sqrt(np.maximum(e * e - f * f, 0.0)) / np.where(sp > 0, sp, 1e-300))
            for lev in levels:
                a = np.quantile(need, lev)
                if not np.isfinite(a):
                    continue
                sig = np.sqrt((a * sp) ** 2 + f * f)
                m = miss(np.mean(e < sig), np.mean(e < 2 * sig))
                if m < best[1]:
                    best = ((a, p, f), m)
    return best[0]


def apply(params, s):
    a, p, f = params
    return np.sqrt((a * np.where(s > 0, s, 0.0) ** p) ** 2 + f * f)


def cov(err, sig):
    e = np.abs(err)
    return np.mean(e < sig), np.mean(e < 2 * sig)


WEIGHTS = [0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]


def by_fold(err, spread, fold, ok, powers=(1.0,)):
    """Coverage of sigmas fitted (`fit`) on the other folds' stars, scored on each fold's."""
    sig = np.full(len(err), np.nan)
    for f in np.unique(fold):
        other, this = ok & (fold != f), ok & (fold == f)
        sig[this] = apply(fit(err[other], spread[other], powers), spread[this])
    return cov(err[ok], sig[ok])


def members_table(labels, d):
    """The fold-by-fold coverage of the variance heads' and the members' parts of the spread."""
    print("| label | heads only | members only | both (w = 1) | w chosen on the other folds | w per fold |")
    print("|---|---|---|---|---|---|")
    for name in labels:
        t, e, sg, s, m = (d[f"{name}_{k}"] for k in ("true", "est", "err", "spread_z", "members_z"))
        ok = np.isfinite(t) & np.isfinite(e) & np.isfinite(s) & np.isfinite(m)
        err = (t - e) / (np.abs(e) if name in LOG_LABELS else 1.0)
        heads = np.sqrt(np.maximum(np.where(ok, s, 0.0) ** 2 - np.where(ok, m, 0.0) ** 2, 0.0))
        mem = np.where(ok, m, 0.0)
        cells = [name]
        for spread in (heads, mem, np.sqrt(heads**2 + mem**2)):
            c1, c2 = by_fold(err, spread, d["fold"], ok)
            cells.append(f"{100 * c1:.1f} / {100 * c2:.1f}")
        # w chosen on the other folds (by the same two-target miss), then the fold's sigmas fitted
        # on the other folds with that w.
        sig, chosen = np.full(len(err), np.nan), []
        for f in np.unique(d["fold"]):
            other, this = ok & (d["fold"] != f), ok & (d["fold"] == f)
            best = (np.inf, np.inf), None
            for w in WEIGHTS:
                sp = np.sqrt(heads**2 + (w * mem) ** 2)
                c = by_fold(err, sp, d["fold"], other)
                if miss(*c) < best[0]:
                    best = miss(*c), w
            w = best[1]
            chosen.append(w)
            sp = np.sqrt(heads**2 + (w * mem) ** 2)
            sig[this] = apply(fit(err[other], sp[other], [1.0]), sp[this])
        c1, c2 = cov(err[ok], sig[ok])
        cells += [f"{100 * c1:.1f} / {100 * c2:.1f}", ", ".join(f"{w:g}" for w in chosen)]
        print("| " + " | ".join(cells) + " |")
    print()


def main(reports):
    misses = []
    for report in reports:
        labels, d = load(report)
        print(f"## {report}\n")
        print("| label | n | within 1 | within 2 | >3 sigma | >3-sigma misses by sigma quartile | "
              "oracle a,f | oracle a,p,f | by fold a,f | by fold a,p,f |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        bad = set()
        for name in labels:
            t, e, sg, s = (d[f"{name}_{k}"] for k in ("true", "est", "err", "spread_z"))
            ok = np.isfinite(t) & np.isfinite(e) & np.isfinite(sg)
            err = (t - e) / (np.abs(e) if name in LOG_LABELS else 1.0)
            sig_rel = sg / (np.abs(e) if name in LOG_LABELS else 1.0)
            c1, c2 = cov(err[ok], sig_rel[ok])
            z = np.abs(err) / sig_rel
            far = ok & (z > 3)
            bad |= {(d["file"][i], name) for i in np.flatnonzero(far)}
            q = np.quantile(sig_rel[ok], [0.25, 0.5, 0.75])
            quart = np.searchsorted(q, sig_rel[far])
            by_q = "/".join(str(int(np.sum(quart == k))) for k in range(4))
            cells = [name, str(ok.sum()), f"{100 * c1:.1f}%", f"{100 * c2:.1f}%", str(int(far.sum())), by_q]
            has_spread = np.isfinite(s).any()
            spread = np.where(np.isfinite(s), s, 0.0)
            for powers in ([1.0], [0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0]):
                if not has_spread and powers != [1.0]:
                    cells.append("")
                    continue
                par = fit(err[ok], spread[ok], powers)
                o1, o2 = cov(err[ok], apply(par, spread[ok]))
                cells.append(f"{100 * o1:.1f} / {100 * o2:.1f}" + (f" (p {par[1]})" if len(powers) > 1 else ""))
            for powers in ([1.0], [0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0]):
                if d["fold"] is None or (not has_spread and powers != [1.0]):
                    cells.append("")
                    continue
                f1, f2 = by_fold(err, spread, d["fold"], ok, powers)
                cells.append(f"{100 * f1:.1f} / {100 * f2:.1f}")
            print("| " + " | ".join(cells) + " |")
        stars = {f for f, _ in bad}
        print(f"\n{len(stars)} stars, {len(bad)} labels beyond 3 sigma.\n")
        if d["fold"] is not None and any(np.isfinite(d[f"{n}_members_z"]).any() for n in labels):
            members_table(labels, d)
        misses.append((report, bad))
    first = misses[0]
    for report, bad in misses[1:]:
        print(f"{first[0]} and {report} share {len(first[1] & bad)} of {len(first[1])} / {len(bad)} "
              ">3-sigma label misses.")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
