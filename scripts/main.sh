#!/usr/bin/env bash
# The main job (grows with the project): set everything up, train the thesis network
# deterministic and stochastic (additive logistic noise, std 0.05) on Fashion-MNIST for a
# few epochs, print their test accuracies, then attack both with the thesis' attacks
# (FGSM, least-likely iterative FGSM, missing features) -- the stochastic one with and
# without EOT -- print the robustness tables, and write the HTML report OUT_DIR/report/index.html.
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
for config in relu_deterministic relu_logistic_additive; do
    echo
    .venv/bin/stochrelax attack "$OUT/$config" --eps 0,0.03,0.1 --p 0.1,0.3 --limit 500 --eot 8 --samples 8
done
echo
.venv/bin/stochrelax report "$OUT/relu_deterministic" "$OUT/relu_logistic_additive" --out "$OUT/report"
