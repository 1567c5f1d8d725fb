#!/usr/bin/env bash
# The main job: set everything up, then reproduce the thesis study with the quick preset and
# 2 seeds -- train and attack every run of configs/thesis_study.yaml (28 configurations x 2
# seeds, single-draw and EOT attacks), aggregate mean ± std over seeds into OUT/results.*,
# judge each claim of the thesis into OUT/verdicts.*, and write the report OUT/report/index.html.
# Resumable: after an interruption, run it again and it continues where it stopped.
# Usage: bash scripts/main.sh [PRESET] [SEEDS] [OUT_DIR]   (defaults: quick, 3, runs/reproduce-PRESET)
set -euo pipefail
cd "$(dirname "$0")/.."
PRESET=${1:-quick}
SEEDS=${2:-3}
OUT=${3:-runs/reproduce-$PRESET}
bash scripts/setup.sh
exec .venv/bin/stochrelax reproduce --preset "$PRESET" --seeds "$SEEDS" --out "$OUT"
