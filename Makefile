# ctrlab — every target sets up its own environment (.venv) first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SCALE  ?= smoke
# Real data for the paper columns (optional); empty means the embedded synthetic stand-in.
# CRITEO=train.txt, AVAZU=train.csv, IPINYOU=make-ipinyou-data folder (IPINYOU_FORMAT=fm for *.fm.txt files)
# DPN: MOVIELENS_TAG=NFM's ml-tag folder (ml-tag.*.libfm), MOVIELENS_1M=the unzipped ml-1m folder
CRITEO ?=
AVAZU  ?=
IPINYOU ?=
IPINYOU_FORMAT ?= raw
MOVIELENS_TAG ?=
MOVIELENS_1M ?=
AMAZON ?=
ARGS   ?=
export CRITEO AVAZU IPINYOU IPINYOU_FORMAT MOVIELENS_TAG MOVIELENS_1M AMAZON

export PYTHONUNBUFFERED := 1
export WANDB_MODE ?= offline

.DEFAULT_GOAL := help
.PHONY: help install test test-full lint format train reproduce-table-1 reproduce-dynint-table-2 reproduce-dynint-table-3 reproduce-dynint-table-4 reproduce-dynint-all reproduce-dpn-table-1 reproduce-dpn-table-4 reproduce-dpn-table-5 reproduce-dpn-table-11 reproduce-dpn-all reproduce-optinter-all reproduce-aim-all benchmark benchmark-preprocess benchmark-peers clean

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

# DPN Tables 4-5 (behaviour sequences): the synthetic behaviour-sequence stand-in, AMAZON=folder for the real data
reproduce-dpn-table-4: $(STAMP) ## DPN Table 4: Transformer encoder/decoder x MSA / sDPO (AMAZON= real data)
	$(PY) -m ctrlab.reproduce dpn/table4 --scale $(SCALE) --data $(if $(AMAZON),amazon_electronics,synthetic_sequence) $(ARGS)

reproduce-dpn-table-5: $(STAMP) ## DPN Table 5: DIN/DIEN/Trans/KFAtt (+ sDPO), All/New/inFreq (AMAZON= real data)
	$(PY) -m ctrlab.reproduce dpn/table5 --scale $(SCALE) --data $(if $(AMAZON),amazon_electronics,synthetic_sequence) $(ARGS)

# DPN (issue 14): MovieLens-tag / Avazu / Criteo for Tables 1-3, 9, 10; MovieLens-1M for Tables 11-14. Each paper
# column is the `context` stand-in unless its data variable names the real files.
DPN_TAG  := $(if $(MOVIELENS_TAG),movielens_tag,synthetic_movielens_tag)
DPN_ML1M := $(if $(MOVIELENS_1M),movielens_1m_dpn,synthetic_movielens_1m)
DPN_TABLE1_DATA := $(DPN_TAG),$(if $(AVAZU),avazu_dpn,synthetic_avazu),$(if $(CRITEO),criteo_dpn,synthetic_criteo)
reproduce-dpn-table-1: $(STAMP) ## DPN Table 1 (MOVIELENS_TAG=, AVAZU=, CRITEO= real data)
	$(PY) -m ctrlab.reproduce dpn/table1 --scale $(SCALE) --data $(DPN_TABLE1_DATA) $(ARGS)

reproduce-dpn-table-%: $(STAMP) ## DPN Table 2a|2b|2c|3|9|10 (MOVIELENS_TAG=) or 12|13a|13b|13c|14a|14b (MOVIELENS_1M=)
	$(PY) -m ctrlab.reproduce dpn/table$* --scale $(SCALE) \
		--data $(if $(filter 12 13a 13b 13c 14a 14b,$*),$(DPN_ML1M),$(DPN_TAG)) $(ARGS)

reproduce-dpn-table-11: ## DPN Table 11: the hyper-parameters, i.e. the configs reproduce-dpn-table-12 runs
	@for f in configs/model/dpn/ml1m/feature_based.yaml configs/model/dpn/ml1m/field_based.yaml; do \
		echo "== $$f"; cat $$f; done
	@echo "(data: configs/data/movielens_1m_dpn.yaml; make reproduce-dpn-table-12 runs both)"

DPN_ALL := $(addprefix reproduce-dpn-table-,1 2a 2b 2c 3 4 5 9 10 11 12 13a 13b 13c 14a 14b)
reproduce-dpn-all: $(DPN_ALL) ## every DPN table of public data, one after another

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

# AIM (every table and figure: README) on the `functions` stand-ins, or real data with AIM's recipes
# (AVAZU= -> data=avazu_aim, CRITEO= -> criteo_aim); Huawei is private: its column says so. Tables 6-9 and
# Figures 7-8 are the paper's Avazu column only (their explicit rules win over the pattern rule).
AIM_AVAZU  := $(if $(AVAZU),avazu_aim,synthetic_avazu)
AIM_CRITEO := $(if $(CRITEO),criteo_aim,synthetic_criteo)
AIM_BOTH   := $(AIM_AVAZU),$(AIM_CRITEO)
reproduce-aim-table-%: $(STAMP) ## AIM Table 2|3|4|5|10: Avazu and Criteo columns (AVAZU=, CRITEO= real data)
	$(PY) -m ctrlab.reproduce aim/table$* --scale $(SCALE) --data $(AIM_BOTH) $(ARGS)

reproduce-aim-table-6: $(STAMP) ## AIM Table 6: vocabulary vs embedding size kept by EDS, per field (AVAZU=)
	$(PY) -m ctrlab.reproduce aim/table6 --scale $(SCALE) --data $(AIM_AVAZU) $(ARGS)

reproduce-aim-table-7: $(STAMP) ## AIM Table 7: params, train min / epoch, inference s, 2nd-order models (AVAZU=)
	$(PY) -m ctrlab.reproduce aim/table7 --scale $(SCALE) --data $(AIM_AVAZU) $(ARGS)

reproduce-aim-table-8: $(STAMP) ## AIM Table 8: the same for AIM at orders 2, 3, 4 (AVAZU=)
	$(PY) -m ctrlab.reproduce aim/table8 --scale $(SCALE) --data $(AIM_AVAZU) $(ARGS)

reproduce-aim-table-9: $(STAMP) ## AIM Table 9: train min / epoch of each AIM stage, orders 2, 3, 4 (AVAZU=)
	$(PY) -m ctrlab.reproduce aim/table9 --scale $(SCALE) --data $(AIM_AVAZU) $(ARGS)

reproduce-aim-figure-%: $(STAMP) ## AIM Figure 7 (α vs statistics_AUC) | 8 (functions kept per order) (AVAZU=)
	$(PY) -m ctrlab.reproduce aim/figure$* --scale $(SCALE) --data $(AIM_AVAZU) $(ARGS)

AIM_ALL := $(addprefix reproduce-aim-table-,2 3 4 5 6 7 8 9 10) $(addprefix reproduce-aim-figure-,7 8)
reproduce-aim-all: $(AIM_ALL) ## every AIM table and figure, one after another

benchmark: $(STAMP) ## training throughput: ctrlab vs a bare PyTorch loop
	$(PY) benchmarks/train_throughput.py

benchmark-preprocess: $(STAMP) ## Criteo recipes + crosses on a generated 5M-row raw file: rows/s, peak memory
	$(PY) benchmarks/preprocess.py

# ctrlab beside FuxiCTR, DeepCTR-Torch and hand-written loops in one sweep (the harness in PEER_BENCH; its own venv,
# never the project's dependencies). PEER_ARGS=--rows 200000 --repeat 1 for a shorter sweep;
# CTRLAB_OPTIMIZER=adam puts ctrlab's run on dense Adam, CTRLAB_PRECISION=bf16-mixed its matmuls in bfloat16
# (benchmarks/peer_plugin.py).
PEER_BENCH ?= ../shared/bench
PEER_VENV  ?= .venv-peers
PEER_ARGS  ?= --threads 1 --repeat 2
PEER_RUNS  ?= torch_deepfm,torch_deepfm_fusedadam,torch_deepfm_fields,fuxictr_deepfm,deepctr_deepfm
CTRLAB_OPTIMIZER ?= adam_sparse
CTRLAB_PRECISION ?= 32-true
export CTRLAB_OPTIMIZER CTRLAB_PRECISION

$(PEER_VENV)/.installed: $(PEER_BENCH)/setup_venv.sh
	bash $(PEER_BENCH)/setup_venv.sh $(PEER_VENV)
	$(PEER_VENV)/bin/pip install -q --no-deps -e .
	@touch $@

benchmark-peers: $(PEER_VENV)/.installed ## DeepFM: ctrlab vs FuxiCTR, DeepCTR-Torch, hand-written loops (PEER_ARGS=)
	@mkdir -p .cache/peer-bench
	$(PEER_VENV)/bin/python $(PEER_BENCH)/peer_bench.py $(PEER_ARGS) --runs $(PEER_RUNS) \
		--plugin benchmarks/peer_plugin.py:run:ctrlab:DeepFM --workdir .cache/peer-bench \
		--json-out .cache/peer-bench/results.jsonl

clean: ## remove caches and run outputs (keeps .venv)
	rm -rf logs/* .cache .pytest_cache .ruff_cache results/*/*.tmp
	@touch logs/.gitkeep
