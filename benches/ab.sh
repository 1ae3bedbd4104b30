#!/usr/bin/env bash
# Interleaved A/B timing of two specnn binaries (an old and a new build), for changes whose effect is
# smaller than this shared machine's drift: `specnn bench --only STEP --iters 40 --warmup 3 --json` of
# A, then of B, ROUNDS times; prints each side's median ms per step and the median (and range) of the
# per-round ratios A/B (above 1: B is faster). BENCHMARKS.md quotes its output.
#
#   cp target/release/specnn /tmp/old_specnn      # at the old commit
#   cargo build --release                          # at the new one
#   bash benches/ab.sh /tmp/old_specnn target/release/specnn train_res_ann 8
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: ab.sh BIN_A BIN_B STEP [ROUNDS]" >&2; exit 2; }
A=$1; B=$2; ONLY=$3; R=${4:-6}
for i in $(seq "$R"); do
  "$A" bench --only "$ONLY" --iters 40 --warmup 3 --json 2>/dev/null | sed 's/^/A /'
  "$B" bench --only "$ONLY" --iters 40 --warmup 3 --json 2>/dev/null | sed 's/^/B /'
done | python3 -c '
import sys, json, statistics, collections
d = collections.defaultdict(list)
for line in sys.stdin:
    who, js = line.split(" ", 1); r = json.loads(js)
    d[(r["name"], r["batch"], who)].append(r["seconds"] * 1e3)
for n, b in sorted({(n, b) for (n, b, w) in d}):
    a, bb = d[(n, b, "A")], d[(n, b, "B")]
    ratios = sorted(x / y for x, y in zip(a, bb))
    print(f"{n:22s} b{b:<4d} A {statistics.median(a):8.3f} ms  B {statistics.median(bb):8.3f} ms  A/B median {statistics.median(ratios):.3f} range {ratios[0]:.2f}-{ratios[-1]:.2f}")
'
