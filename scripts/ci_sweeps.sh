#!/usr/bin/env bash
# CI: the smoke preset of the thesis study twice -- on the local backend, and as Ray tasks on
# a real Ray head started here -- and a check that both results tables are complete and equal.
#
# Ray on Linux binds to the machine's network address whatever --node-ip-address says, and
# test traffic must stay on loopback: the Ray head, the sweep and `ray stop` run inside a
# network namespace made here, whose only interface is loopback (so Ray uses 127.0.0.1).
# Needs root (ip netns). Usage: bash scripts/ci_sweeps.sh [OUT_DIR]   (default runs/ci)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/ci}
STOCHRELAX=.venv/bin/stochrelax
rm -rf "$OUT"
.venv/bin/python -m pip install --quiet -e ".[ray]"

echo "== smoke sweep, local backend"
"$STOCHRELAX" sweep configs/thesis_study.yaml --preset smoke --out "$OUT/local" --no-progress
"$STOCHRELAX" results "$OUT/local" >/dev/null

echo "== smoke sweep, Ray backend (network namespace with loopback only)"
NAMESPACE="stochrelax-ci-$$"
ip netns add "$NAMESPACE"
cleanup() {
    ip netns exec "$NAMESPACE" .venv/bin/ray stop --force >/dev/null 2>&1 || true
    ip netns delete "$NAMESPACE" 2>/dev/null || true
}
trap cleanup EXIT
ip netns exec "$NAMESPACE" ip link set lo up
in_namespace() { ip netns exec "$NAMESPACE" env RAY_USAGE_STATS_ENABLED=0 "$@"; }
in_namespace .venv/bin/ray start --head --num-cpus "$(nproc)" --include-dashboard=false --disable-usage-stats >/dev/null
in_namespace "$STOCHRELAX" sweep configs/thesis_study.yaml --preset smoke --backend ray --out "$OUT/ray" --no-progress
in_namespace .venv/bin/ray stop >/dev/null
cleanup
trap - EXIT
"$STOCHRELAX" results "$OUT/ray" >/dev/null

echo "== both results tables complete"
.venv/bin/python scripts/check_study.py "$OUT/local" "$OUT/ray"
