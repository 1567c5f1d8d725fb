#!/usr/bin/env bash
# The main job (grows with the project): set everything up, then train the thesis
# network deterministic and stochastic (additive logistic noise, std 0.05) on
# Fashion-MNIST for a few epochs and print their test accuracies.
# Usage: bash scripts/main.sh [EPOCHS] [OUT_DIR]   (defaults: 3, runs/main)
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${1:-3}
OUT=${2:-runs/main}
bash scripts/setup.sh
for config in relu_deterministic relu_logistic_additive; do
    .venv/bin/stochrelax train "configs/$config.yaml" --epochs "$EPOCHS" --out "$OUT/$config" --overwrite
done
echo
echo "test accuracy (K = 1 noise sample, as in the thesis, and K = 16 averaged):"
.venv/bin/stochrelax evaluate "$OUT/relu_deterministic" "$OUT/relu_logistic_additive"
.venv/bin/stochrelax evaluate "$OUT/relu_logistic_additive" --samples 16
