#!/usr/bin/env bash
# Demo churn AUC: nightjar's churn GBT against LightGBM on the same training set and the same
# time split (BENCHMARKS.md). Runs the demo pipeline on a copy of the project, exports
# training.churn to Parquet, and trains LightGBM with the churn model's parameters on the
# rows before the holdout; both AUCs are on the same holdout rows.
# Usage: benches/churn/run.sh [CUSTOMERS [SEED]] ; NIGHTJAR_BIN=path uses a binary already built.
set -euo pipefail
cd "$(dirname "$0")/../.."
CUSTOMERS=${1:-20000}; SEED=${2:-42}
if [ -n "${NIGHTJAR_BIN:-}" ]; then
  BIN=$NIGHTJAR_BIN
else
  cargo build --release --quiet --bin nightjar
  BIN="${CARGO_TARGET_DIR:-target}/release/nightjar"
fi
[ -x benches/.venv/bin/python ] || python3 -m venv benches/.venv
benches/.venv/bin/pip install --quiet --disable-pip-version-check lightgbm==4.7.0 scikit-learn pyarrow pandas
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cp -r nightjar.yaml pipelines contracts features "$WORK"/
cat > "$WORK/pipelines/export_churn.yaml" <<'YAML'
version: 1
description: The churn training set as one Parquet file, for benches/churn.
tasks:
  - id: export_churn
    kind: export
    table: training.churn
    target: exports/churn_training.parquet
    format: parquet
YAML
"$BIN" --project "$WORK" run marketing_nightly --ds 2025-05-01 --var customers="$CUSTOMERS" --var seed="$SEED" \
  --var min_churn_auc=0 --var min_ltv_r2=-1e9 --json > "$WORK/run.json"
"$BIN" --project "$WORK" run export_churn --ds 2025-05-01 --json > /dev/null
OMP_WAIT_POLICY=passive benches/.venv/bin/python benches/churn/lightgbm_churn.py \
  "$WORK/exports/churn_training.parquet" "$WORK/warehouse/registry/churn/versions/1/metadata.json"
