#!/usr/bin/env bash
# Screenshot of MLflow's runs table as `make mlflow-ui` shows it (docs/screenshots/mlflow_runs.png).
#
#   scripts/screenshot_mlflow.sh [RESULTS_DIR]
#
# RESULTS_DIR: a results folder holding mlflow.db (e.g. results/smoke); it is opened read-mostly by
# the UI, so never point it at the store of a campaign that is running. Default: a temporary store
# with four tiny CPU runs (synthetic CIFAR-10, 4 steps each; about a minute on 2 cores).
# The page is the experiment with the most runs, in a fresh headless Chromium 1400 px wide; the
# UI runs on a free port and is stopped by its own process group id.
# Environment: PY (default .venv/bin/python), CHROMIUM, OUT (default docs/screenshots/mlflow_runs.png).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-docs/screenshots/mlflow_runs.png}
CHROMIUM=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)}
[ -n "$CHROMIUM" ] || { echo "no chromium (apt-get install chromium; or set CHROMIUM)" >&2; exit 1; }
WORK=$(mktemp -d)
SERVER=
cleanup() {
  if [ -n "$SERVER" ]; then kill -TERM -- "-$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

STORE=${1:-}
if [ -z "$STORE" ]; then
  STORE=$WORK/results
  echo "making a store with four tiny runs under $STORE" >&2
  DEBENCH_SYSTEM_METRICS=1 nice -n 10 "$PY" - "$STORE" "$WORK/cifar10.npz" <<'EOF'
import sys
from pathlib import Path

from debench.data import prepare_dataset
from debench.track.tracker import default_tracking_uri, init_store
from debench.train.loop import train

store, cache = Path(sys.argv[1]), Path(sys.argv[2])
store.mkdir(parents=True)
prepare_dataset("cifar10", "synthetic", cache, train_size=512, test_size=128, seed=0)
uri = default_tracking_uri(store)
exp = init_store(uri, ["discrete"])["discrete"]
for model, seed in (("resnet20", 0), ("resnet20", 1), ("lm_resnet20", 0), ("leapfrog38", 0)):
    run = store / "runs" / f"{model}-seed{seed}"
    train({"experiment": "discrete", "preset": "screenshot", "table": "discrete", "mode": "paper",
           "model": model, "dataset": "cifar10", "seed": seed,
           "protocol": {"batch_size": 64, "iterations": 4, "eval_every": 1, "lr": 0.02, "eval_batch_size": 128},
           "model_args": {}, "runtime": {"device": "cpu", "threads": 1}, "data": {"cache": str(cache)},
           "tracking": {"enabled": True, "uri": uri, "experiment_id": exp},
           "paths": {"metrics": str(run / "metrics.json"), "checkpoints": str(run / "ckpt")}})
EOF
fi
[ -f "$STORE/mlflow.db" ] || { echo "no $STORE/mlflow.db" >&2; exit 1; }

EXP=$("$PY" - "$STORE" <<'EOF'
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

from debench.track.tracker import EXPERIMENT_KIND

client = MlflowClient(f"sqlite:///{Path(sys.argv[1]).resolve() / 'mlflow.db'}")
exps = client.search_experiments(filter_string=f"tags.`{EXPERIMENT_KIND[0]}` = '{EXPERIMENT_KIND[1]}'")
print(max(exps, key=lambda e: len(client.search_runs([e.experiment_id], max_results=1000))).experiment_id)
EOF
)
PORT=$("$PY" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
setsid "$PY" -m debench.track.ui --store "$STORE" --port "$PORT" >"$WORK/ui.log" 2>&1 &
SERVER=$!
for _ in $(seq 120); do
  curl -fs "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
  kill -0 "$SERVER" 2>/dev/null || { cat "$WORK/ui.log" >&2; exit 1; }
  sleep 0.5
done
mkdir -p "$(dirname "$OUT")"
"$CHROMIUM" --headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --hide-scrollbars --user-data-dir="$WORK/profile" \
  --virtual-time-budget=30000 --window-size=1400,700 --screenshot="$OUT" \
  "http://127.0.0.1:$PORT/#/experiments/$EXP" 2>"$WORK/chromium.log" || { cat "$WORK/chromium.log" >&2; exit 1; }
SIZE=$(stat -c %s "$OUT")
echo "$OUT: $SIZE bytes (experiment $EXP of $STORE)" >&2
[ "$SIZE" -lt 409600 ] || { echo "$OUT is over 400 KB" >&2; exit 1; }
