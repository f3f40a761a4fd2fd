# ctrlab — every target sets up its own environment (.venv) first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SCALE  ?= smoke
# Real data for the paper columns (optional); empty means the embedded synthetic stand-in.
# CRITEO=train.txt, AVAZU=train.csv, IPINYOU=make-ipinyou-data folder (IPINYOU_FORMAT=fm for *.fm.txt files)
CRITEO ?=
AVAZU  ?=
IPINYOU ?=
IPINYOU_FORMAT ?= raw
ARGS   ?=
export CRITEO AVAZU IPINYOU IPINYOU_FORMAT

export PYTHONUNBUFFERED := 1
export WANDB_MODE ?= offline

.DEFAULT_GOAL := help
.PHONY: help install test test-full lint format train reproduce-table-1 reproduce-dynint-table-2 reproduce-dynint-table-3 reproduce-dynint-table-4 reproduce-dynint-all reproduce-optinter-all benchmark benchmark-preprocess clean

help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_%-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-22s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install ctrlab with its pinned dependencies (idempotent)

test: $(STAMP) ## the fast suite: unit + smoke tests (minutes)
	$(PY) -m pytest -q

test-full: $(STAMP) ## every test, the slow ones included
	$(PY) -m pytest -q -m "slow or not slow"

lint: $(STAMP) ## ruff check and ruff format --check (make format rewrites)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

format: $(STAMP) ## ruff format over the tree
	$(VENV)/bin/ruff format src tests benchmarks

train: $(STAMP) ## one run: make train ARGS="model=deepfm data=synthetic_criteo"
	$(PY) -m ctrlab.train $(ARGS)

# DynInt Table 1: the implemented models x three datasets x seeds as one Hydra multirun, then the report
# (results/dynint/table1.$(SCALE).{md,csv}). A re-run resumes the same reproduction; ARGS=--fresh starts over.
TABLE1_DATA := $(if $(CRITEO),criteo,synthetic_criteo),$(if $(AVAZU),avazu,synthetic_avazu),$(if $(IPINYOU),ipinyou,synthetic_ipinyou)
reproduce-table-1: $(STAMP) ## DynInt Table 1 (SCALE=smoke|default|paper, CRITEO=, AVAZU=, IPINYOU= real data)
	$(PY) -m ctrlab.reproduce dynint/table1 --scale $(SCALE) --data $(TABLE1_DATA) $(ARGS)

reproduce-dynint-table-2: $(STAMP) ## DynInt Table 2: interaction layers without their DNN, Criteo column
	$(PY) -m ctrlab.reproduce dynint/table2 --scale $(SCALE) --data $(if $(CRITEO),criteo,synthetic_criteo) $(ARGS)

reproduce-dynint-table-3: $(STAMP) ## DynInt Table 3: PIN layers 0-5, average of DA/DGP/DWP, three datasets
	$(PY) -m ctrlab.reproduce dynint/table3 --scale $(SCALE) --data $(TABLE1_DATA) $(ARGS)

reproduce-dynint-table-4: $(STAMP) ## DynInt Table 4: sub-spaces 1-16, average of DA/DGP/DWP, three datasets
	$(PY) -m ctrlab.reproduce dynint/table4 --scale $(SCALE) --data $(TABLE1_DATA) $(ARGS)

reproduce-dynint-figure-%: $(STAMP) ## DynInt Figure 6a|6b|7a|7b (Criteo column), e.g. reproduce-dynint-figure-6a
	$(PY) -m ctrlab.reproduce dynint/figure$* --scale $(SCALE) --data $(if $(CRITEO),criteo,synthetic_criteo) $(ARGS)

DYNINT_ALL := reproduce-table-1 $(addprefix reproduce-dynint-,table-2 table-3 table-4 figure-6a figure-6b figure-7a figure-7b)
reproduce-dynint-all: $(DYNINT_ALL) ## every DynInt table and figure, one after another

# OptInter (Tables V-IX, Figures 4-6) on the `memorize` stand-ins, or real data with OptInter's recipes
# (CRITEO= -> data=criteo_optinter, AVAZU= -> avazu_optinter, IPINYOU= -> ipinyou_optinter)
OI_CRITEO := $(if $(CRITEO),criteo_optinter,synthetic_criteo)
OI_AVAZU  := $(if $(AVAZU),avazu_optinter,synthetic_avazu)
OI_IPINYOU := $(if $(IPINYOU),ipinyou_optinter,synthetic_ipinyou)
OI_ALL := $(OI_CRITEO),$(OI_AVAZU),$(OI_IPINYOU)
reproduce-optinter-table-5: $(STAMP) ## OptInter Table V: every row incl. Params (OptInter, AutoFIS: search -> re-train)
	$(PY) -m ctrlab.reproduce optinter/table5 --scale $(SCALE) --data $(OI_ALL) $(ARGS)

reproduce-optinter-table-6: $(STAMP) ## OptInter Table VI: method counts per dataset of each searched architecture
	$(PY) -m ctrlab.reproduce optinter/table6 --scale $(SCALE) --data $(OI_ALL) $(ARGS)

reproduce-optinter-table-7: $(STAMP) ## OptInter Table VII: enlarged-embedding baselines vs OptInter (Criteo, Avazu)
	$(PY) -m ctrlab.reproduce optinter/table7 --scale $(SCALE) --data $(OI_CRITEO),$(OI_AVAZU) $(ARGS)

reproduce-optinter-table-8: $(STAMP) ## OptInter Table VIII: random x10 / bi-level / joint search, each re-trained
	$(PY) -m ctrlab.reproduce optinter/table8 --scale $(SCALE) --data $(OI_ALL) $(ARGS)

reproduce-optinter-table-9: $(STAMP) ## OptInter Table IX: with / without the re-train stage (Criteo, Avazu)
	$(PY) -m ctrlab.reproduce optinter/table9 --scale $(SCALE) --data $(OI_CRITEO),$(OI_AVAZU) $(ARGS)

reproduce-optinter-figure-4a: $(STAMP) ## OptInter Figure 4a: AUC vs parameters, OptInter-M(s2) and OptInter(s2), Criteo
	$(PY) -m ctrlab.reproduce optinter/figure4a --scale $(SCALE) --data $(OI_CRITEO) $(ARGS)

reproduce-optinter-figure-4b: $(STAMP) ## OptInter Figure 4b: the same on Avazu
	$(PY) -m ctrlab.reproduce optinter/figure4b --scale $(SCALE) --data $(OI_AVAZU) $(ARGS)

reproduce-optinter-figure-5: $(STAMP) ## OptInter Figure 5: mean mutual information per chosen method, per dataset
	$(PY) -m ctrlab.reproduce optinter/figure5 --scale $(SCALE) --data $(OI_ALL) $(ARGS)

reproduce-optinter-figure-6: $(STAMP) ## OptInter Figure 6a/6b: MI heat map and chosen-method map (Avazu)
	$(PY) -m ctrlab.reproduce optinter/figure6 --scale $(SCALE) --data $(OI_AVAZU) $(ARGS)

OPTINTER_ALL := $(addprefix reproduce-optinter-,table-5 table-6 table-7 table-8 table-9 figure-4a figure-4b figure-5 figure-6)
reproduce-optinter-all: $(OPTINTER_ALL) ## every OptInter table and figure, one after another

benchmark: $(STAMP) ## training throughput: ctrlab vs a bare PyTorch loop
	$(PY) benchmarks/train_throughput.py

benchmark-preprocess: $(STAMP) ## Criteo recipes + crosses on a generated 5M-row raw file: rows/s, peak memory
	$(PY) benchmarks/preprocess.py

clean: ## remove caches and run outputs (keeps .venv)
	rm -rf logs/* .cache .pytest_cache .ruff_cache results/*/*.tmp
	@touch logs/.gitkeep
