#!/usr/bin/env bash
# Reruns the experiments of EXPERIMENTS.md. Usage: bash experiments/run.sh [OUT] [PART...]
# OUT (default exp-out/, ignored by git) receives surveys, models, reports and one log per run.
# PARTs: exp1 exp2 miles grid baselines recipe (default: all). About 75 minutes on a 2-core machine,
# plus about 60 for `recipe` (REAL MILES stars on the full 3550-7400 A grid; EXPERIMENTS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-exp-out}
shift || true
PARTS=${*:-exp1 exp2 miles grid baselines recipe}
cargo build --release -q
S=./target/release/specnn
DATA=${SPECNN_DATA:-../shared/data}
mkdir -p "$OUT"
# Runs `specnn ARGS`, logging to OUT/NAME.log; skipped when that log already ends in success (so an
# interrupted run of this script resumes where it stopped).
run() {
  local name=$1; shift
  if [ -f "$OUT/$name.log" ] && grep -q '^# exit 0$' "$OUT/$name.log"; then echo "skip $name (done)"; return; fi
  echo "\$ specnn $*" | tee "$OUT/$name.log"
  set +e; "$S" "$@" 2>&1 | grep -v '^\s*\[' | tee -a "$OUT/$name.log"; local rc=${PIPESTATUS[0]}; set -e
  echo "# exit $rc" >> "$OUT/$name.log"
  [ "$rc" -eq 0 ] || { echo "specnn $* failed (exit $rc)" >&2; exit "$rc"; }
}

if [[ " $PARTS " == *" exp1 "* || " $PARTS " == *" exp2 "* || " $PARTS " == *" baselines "* ]]; then
  [ -f "$OUT/train/labels.csv" ] || run simulate-train simulate --n 4000 --seed 1 --out "$OUT/train"
  [ -f "$OUT/test/labels.csv" ] || run simulate-test simulate --n 1000 --seed 1001 --out "$OUT/test"
fi

if [[ " $PARTS " == *" exp1 "* ]]; then
  # Experiment 1 (SYNTHETIC): abundances from R=200 spectra (143 pixels).
  for arch in ann starnet res-ann; do
    run "exp1-train-$arch" train --spectra "$OUT/train" --labels "$OUT/train/labels.csv" --arch $arch --resolution 200 \
      --targets cfe,mgfe,nfe --epochs 60 --batch 128 --patience 8 --seed 1 --out "$OUT/exp1-$arch.safetensors"
    run "exp1-eval-$arch" evaluate --model "$OUT/exp1-$arch.safetensors" --spectra "$OUT/test" --labels "$OUT/test/labels.csv" --report "$OUT/exp1-$arch"
  done
  # The 2-D CNN on the same R=200 spectra: 143 pixels zero-padded to 144 and S-folded into 12x12.
  run exp1-train-cnn train --spectra "$OUT/train" --labels "$OUT/train/labels.csv" --arch vmp-cnn --resolution 200 --channels 16,32,64 \
    --targets cfe,mgfe,nfe --epochs 60 --batch 128 --patience 8 --seed 1 --out "$OUT/exp1-cnn.safetensors"
  run exp1-eval-cnn evaluate --model "$OUT/exp1-cnn.safetensors" --spectra "$OUT/test" --labels "$OUT/test/labels.csv" --report "$OUT/exp1-cnn"
fi

if [[ " $PARTS " == *" exp2 "* ]]; then
  # Experiment 2 (SYNTHETIC): parameters on the 4096-pixel grid, VMP and CEMP search, the G-band-only run.
  run exp2-train-cnn train --spectra "$OUT/train" --labels "$OUT/train/labels.csv" --arch vmp-cnn --channels 16,32,64 \
    --targets teff,logg,feh,cfe --epochs 30 --batch 32 --patience 5 --seed 1 --out "$OUT/exp2-cnn.safetensors"
  run exp2-eval-cnn evaluate --model "$OUT/exp2-cnn.safetensors" --spectra "$OUT/test" --labels "$OUT/test/labels.csv" --report "$OUT/exp2-cnn"
  for arch in ann starnet; do
    run "exp2-train-$arch" train --spectra "$OUT/train" --labels "$OUT/train/labels.csv" --arch $arch \
      --targets teff,logg,feh,cfe --epochs 40 --batch 64 --patience 6 --seed 1 --out "$OUT/exp2-$arch.safetensors"
    run "exp2-eval-$arch" evaluate --model "$OUT/exp2-$arch.safetensors" --spectra "$OUT/test" --labels "$OUT/test/labels.csv" --report "$OUT/exp2-$arch"
  done
  run exp2-train-gband train --spectra "$OUT/train" --labels "$OUT/train/labels.csv" --arch vmp-cnn --channels 16,32,64 \
    --targets cfe --window 4000,5500 --epochs 30 --batch 32 --patience 5 --seed 1 --out "$OUT/exp2-gband.safetensors"
  run exp2-eval-gband evaluate --model "$OUT/exp2-gband.safetensors" --spectra "$OUT/test" --labels "$OUT/test/labels.csv" --report "$OUT/exp2-gband"
  run exp2-train-full-cfe train --spectra "$OUT/train" --labels "$OUT/train/labels.csv" --arch vmp-cnn --channels 16,32,64 \
    --targets cfe --epochs 30 --batch 32 --patience 5 --seed 1 --out "$OUT/exp2-full-cfe.safetensors"
  run exp2-eval-full-cfe evaluate --model "$OUT/exp2-full-cfe.safetensors" --spectra "$OUT/test" --labels "$OUT/test/labels.csv" --report "$OUT/exp2-full-cfe"
fi

if [[ " $PARTS " == *" miles "* ]]; then
  # Experiment 2 on REAL spectra: the MILES stars, 5-fold cross-validation.
  run miles-cnn crossval --spectra "$DATA/miles" --labels "$DATA/miles/labels.csv" --arch vmp-cnn --channels 16,32,64 \
    --targets teff,logg,feh --min-coverage 0.8 --epochs 40 --patience 6 --batch 32 --folds 5 --seed 1 --out "$OUT/miles-cnn-models" --report "$OUT/miles-cnn"
  for arch in ann starnet; do
    run "miles-$arch" crossval --spectra "$DATA/miles" --labels "$DATA/miles/labels.csv" --arch $arch \
      --targets teff,logg,feh --min-coverage 0.8 --epochs 60 --patience 8 --batch 32 --folds 5 --seed 1 --out "$OUT/miles-$arch-models" --report "$OUT/miles-$arch"
  done
fi

if [[ " $PARTS " == *" grid "* ]]; then
  # Experiment 3 (SYNTHETIC, noise-free): a MARCS-step grid, all seven labels, 7:3 split.
  [ -f "$OUT/grid/labels.csv" ] || run simulate-grid simulate --grid --n 4000 --seed 1 --out "$OUT/grid"
  run grid-cnn crossval --spectra "$OUT/grid" --labels "$OUT/grid/labels.csv" --arch vmp-cnn --channels 16,32,64 \
    --targets teff,logg,feh,cfe,nfe,ofe,afe --min-coverage 0.95 --epochs 30 --patience 5 --batch 32 --folds 3 --seed 1 --out "$OUT/grid-cnn-models" --report "$OUT/grid-cnn"
fi

if [[ " $PARTS " == *" baselines "* ]]; then
  # The seed's baselines (The Cannon, random forest, SVR), fitted in one go on the same splits.
  for arch in cannon rf svr; do
    # Experiment 1 (SYNTHETIC, R=200).
    run "exp1-train-$arch" train --spectra "$OUT/train" --labels "$OUT/train/labels.csv" --arch $arch --resolution 200 \
      --targets cfe,mgfe,nfe --seed 1 --out "$OUT/exp1-$arch.safetensors" --device cpu
    run "exp1-eval-$arch" evaluate --model "$OUT/exp1-$arch.safetensors" --spectra "$OUT/test" --labels "$OUT/test/labels.csv" --report "$OUT/exp1-$arch" --device cpu
    # Experiment 2 (SYNTHETIC, 4096 pixels).
    run "exp2-train-$arch" train --spectra "$OUT/train" --labels "$OUT/train/labels.csv" --arch $arch \
      --targets teff,logg,feh,cfe --seed 1 --out "$OUT/exp2-$arch.safetensors" --device cpu
    run "exp2-eval-$arch" evaluate --model "$OUT/exp2-$arch.safetensors" --spectra "$OUT/test" --labels "$OUT/test/labels.csv" --report "$OUT/exp2-$arch" --device cpu
    # Experiment 2 on REAL spectra (MILES, 5-fold cross-validation).
    run "miles-$arch" crossval --spectra "$DATA/miles" --labels "$DATA/miles/labels.csv" --arch $arch \
      --targets teff,logg,feh --min-coverage 0.8 --folds 5 --seed 1 --out "$OUT/miles-$arch-models" --report "$OUT/miles-$arch" --device cpu
  done
fi

if [[ " $PARTS " == *" recipe "* ]]; then
  # REAL spectra: every model on the MILES stars, 5-fold cross-validation, on the grid covering MILES
  # whole (3550-7399 A: the Balmer jump and Ca II H&K included), the networks with the small-real recipe.
  M=(--spectra "$DATA/miles" --labels "$DATA/miles/labels.csv" --targets teff,logg,feh --grid 3550,1,3850 --folds 5 --seed 1 --device cpu)
  run recipe-ann crossval "${M[@]}" --arch ann --recipe small-real --out "$OUT/recipe-ann-models" --report "$OUT/recipe-ann"
  run recipe-res-ann crossval "${M[@]}" --arch res-ann --recipe small-real --ensemble 1 --out "$OUT/recipe-res-models" --report "$OUT/recipe-res-ann"
  run recipe-starnet crossval "${M[@]}" --arch starnet --log-targets teff --lr 1e-4 --epochs 200 --patience 20 --out "$OUT/recipe-starnet-models" --report "$OUT/recipe-starnet"
  run recipe-cnn crossval "${M[@]}" --arch vmp-cnn --channels 16,32,64 --log-targets teff --epochs 40 --patience 6 --out "$OUT/recipe-cnn-models" --report "$OUT/recipe-cnn"
  for arch in knn rf svr cannon; do
    run "recipe-$arch" crossval "${M[@]}" --arch $arch --out "$OUT/recipe-$arch-models" --report "$OUT/recipe-$arch"
  done
  # The full recipe's training time on all 788 stars.
  run recipe-train train --spectra "$DATA/miles" --labels "$DATA/miles/labels.csv" --targets teff,logg,feh --grid 3550,1,3850 \
    --arch ann --recipe small-real --device cpu --out "$OUT/miles-recipe.safetensors"
fi
