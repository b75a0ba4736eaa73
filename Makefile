# Two entry points that work on a fresh machine (CPU is enough):
#   make smoke   create .venv if missing, install, run the whole DAG on the offline smoke preset
#   make test    create .venv if missing, install with the test extra, run the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
CORES ?= 2
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: cpu-campaign smoke test lint survey-dry-run mlflow-ui mlflow-server clean-smoke report-published publish-runs

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

smoke: $(VENV)/.installed
	snakemake --cores $(CORES) --configfile config/smoke.yaml
	@echo "report: results/smoke/report/report.html"

test: $(VENV)/.installed
	$(PY) -m pytest

lint: $(VENV)/.installed
	snakemake --lint

survey-dry-run: $(VENV)/.installed
	snakemake -n --cores 1

# `python -m debench.track.ui` = mlflow ui --app-name debench --host 127.0.0.1 --port $(MLFLOW_PORT) on the
# preset's store (mlflow.db, mlartifacts/). `--app-name debench` loads debench's MLflow UI plugin
# (src/debench/track/ui.py): experiments open on their runs table with accuracy, NFE, memory, family,
# table and mode columns, unless the browser holds the user's own choice (on an MLflow the plugin was
# not tested with: the plain UI and a one-line warning). MLFLOW_PORT=N picks the port (0: a free one).
MLFLOW_UI_STORE = $(abspath results/$(or $(PRESET),smoke))
mlflow-ui: $(VENV)/.installed
	$(PY) -m debench.track.ui --host 127.0.0.1 --port $(MLFLOW_PORT) --store $(MLFLOW_UI_STORE)

# a shared tracking server for parallel or cluster jobs (README, "Run on a cluster"); jobs use
# MLFLOW_TRACKING_URI=http://<host>:$(MLFLOW_PORT). MLFLOW_STORE: any SQLAlchemy URI (default SQLite).
# Its UI loads the same plugin as mlflow-ui.
MLFLOW_PORT ?= 5000
mlflow-server: $(VENV)/.installed
	debench mlflow-server --port $(MLFLOW_PORT) $(if $(MLFLOW_STORE),--backend-store-uri '$(MLFLOW_STORE)')

clean-smoke:
	rm -rf results/smoke resources/data/synthetic*

# Rebuild every table, plot and the HTML report from the committed runs.csv alone (no training).
report-published: $(VENV)/.installed
	debench regenerate --runs-csv results/published/runs.csv --out results/published_report
	@echo "report: results/published_report/report/report.html"

# Merge the runs of results/$(PRESET)/ (or FROM=<runs.csv or results folder>) into the committed runs.csv.
publish-runs: $(VENV)/.installed
	$(VENV)/bin/debench merge-runs $(or $(FROM),results/$(or $(PRESET),smoke)) --into results/published/runs.csv

# He et al.'s ResNet-20 at the full protocol, 3 seeds on this CPU (hours): in the background,
# nice'd, at a pinned commit, resuming from the last checkpoint (docs/measurements/cpu_campaign.md)
# CAMPAIGN=cpu_campaign_lm: LM-ResNet-20 at the same protocol, once the ResNet-20 seeds are done
# (with CAMPAIGN_COMMIT=fedbc8c, the commit the ResNet-20 seeds ran, so both arms run the same code).
# On a new machine it pins the commit of the preset's seeds in results/published/runs.csv and trains
# only the seeds that table lacks (CAMPAIGN_PUBLISHED=<runs.csv> names another table).
CAMPAIGN ?= cpu_campaign
cpu-campaign: $(VENV)/.installed
	CAMPAIGN_PRESET=$(CAMPAIGN) CAMPAIGN_BACKGROUND=1 scripts/cpu_campaign.sh
