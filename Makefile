# Every target sets up its own virtual environment on first use.
VENV   ?= .venv
PY     := $(VENV)/bin/python
SCALE  ?= smoke
SEEDS     ?= 0
OVERRIDES ?=
STAMP  := $(VENV)/.frx-installed
# the paper tables, named: frx-report writes results/ only when asked for it
REPORT  = $(PY) -m frx.report --records results/runs --out results

.PHONY: setup test test-all demo bench report tables table1 table2 table3 table4 cpu-table2 cpu-table2-status cpu-table4 cpu-table4-status clean-venv wheels wheels-table4 gpu-table2 gpu-table4

# pip prints what it downloads and installs: torch alone is several hundred MB on first use
$(STAMP): pyproject.toml
	@echo "== frx setup: creating $(VENV) and installing frx into it (first use only; torch is large)"
	test -x $(PY) || python3 -m venv $(VENV)
	@echo "== [1/3] pip itself"
	$(PY) -m pip install --upgrade pip
	@echo "== [2/3] torch 2.14.1 and torchvision 0.29.1"
	$(PY) -m pip install torch==2.14.1 torchvision==0.29.1
	@echo "== [3/3] frx and its dependencies (hydra, pandas, matplotlib, ...; pytest for the tests)"
	$(PY) -m pip install -e '.[test]'
	touch $(STAMP)
	@echo "== frx setup done"

setup: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -m "not slow"

test-all: $(STAMP)
	$(PY) -m pytest

# The main job: LeNet-5 with FR on the offline MNIST sample; its record goes to outputs/records
# (a user's own runs never change the paper tables, whose records are results/runs).
demo: $(STAMP)
	$(PY) -m frx.train experiment=demo run.overwrite=true

# Quick settings, a few minutes on a CPU. The full runs (tens of minutes on one CPU thread):
#   python scripts/bench.py --threads 1            (ResNet18, VGG16, AlexNet at batch 32 and 128, Linear sweep)
#   python scripts/bench_deploy.py                 (every Table 1-2 row, batch 1 and 256)
bench: $(STAMP)
	$(PY) scripts/bench.py --quick --threads 1
	$(PY) scripts/bench_deploy.py --rounds 3 --min-time 0.2 --big-models none

clean-venv:
	rm -rf $(VENV)

# Tables from the existing run records only (no training): results/table*.{md,csv,tex}, layers/, figures/.
report: $(STAMP)
	$(REPORT)

# Run a table's experiments whose records are missing or stale (SCALE=smoke|full, SEEDS="0 1 2",
# OVERRIDES="trainer.device=cuda"), then regenerate the tables (also after a failed run; exit status kept).
# These are the only targets that write run records into results/runs.
table1 table3 table4: $(STAMP)
	$(PY) scripts/run_missing.py --table $(@:table%=%) --scale $(SCALE) --seeds $(SEEDS) -- $(OVERRIDES); s=$$?; $(REPORT) && exit $$s

table2: $(STAMP)
	$(PY) $(if $(filter cpu,$(SCALE)),$(call cpu_runner,2),scripts/run_missing.py --table 2 --scale $(SCALE) --seeds $(SEEDS)) \
		-- $(OVERRIDES); s=$$?; $(REPORT) && exit $$s

# Tables 2 and 4 on this machine's CPU (scale=cpu: the recipe with bfloat16 autocast and NHWC), in the background,
# continuing from their checkpoints after any stop. Table 2: its missing rows in value order. Table 4: the DCGAN
# rows (scripts/table_rows.py) at the recipe's 5 epochs, seeds 0 and 1, float32 packs kept for the second FID
# extractor (the VAE rows are full-scale runs already: make table4 SCALE=full). Run folders, logs, the decoded
# data (imported once from the shared copies) and copies of finished records live in FRX_WORK (outside the checkout); records land in
# results/runs/table<N>. `make cpu-table<N>-status` prints each row; `make table2 SCALE=cpu` is the same in the foreground.
# ROWS="vgg16_ref alexnet_ref" runs only those rows (still in value order), SEEDS="0" only those seeds.
# Two rows at once, one thread each: the pair does 1.4x the work of one two-thread row (README, Table 2 on CIFAR-10, CPU).
FRX_WORK    ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/frx
CPU_JOBS    ?= 2
CPU_THREADS ?=
ROWS        ?=
SHARED_DATA  = $(or $(FRX_SHARED_DATA),../shared/data)
CPU_ROWS_2   = $(ROWS)
CPU_ROWS_4   = $(or $(ROWS),$(shell $(firstword $(wildcard $(PY)) python3) -c 'import sys; sys.path[:0] = ["scripts"]; \
	from table_rows import VALUE_ORDER; print(*VALUE_ORDER[4])'),$(error could not read Table 4's rows from scripts/table_rows.py))
CPU_SEEDS_2  = $(SEEDS)
CPU_SEEDS_4  = $(if $(filter command line environment,$(origin SEEDS)),$(SEEDS),0 1)
CPU_DATA_2   = $(SHARED_DATA)/cifar10/cifar10-jpeg.npz
CPU_DATA_4   = $(SHARED_DATA)/mnist
CPU_KEEP_4   = run.keep_all=true
cpu_runner   = scripts/run_missing.py --table $(1) --scale cpu --seeds $(CPU_SEEDS_$(1)) --jobs $(CPU_JOBS) \
	$(if $(CPU_THREADS),--threads $(CPU_THREADS)) $(if $(CPU_ROWS_$(1)),--rows $(CPU_ROWS_$(1))) --work-dir $(FRX_WORK) \
	--data-root $(FRX_WORK)/data --import-from $(CPU_DATA_$(1))
cpu-table2 cpu-table4: $(STAMP)
	$(PY) $(call cpu_runner,$(@:cpu-table%=%)) --detach -- $(CPU_KEEP_$(@:cpu-table%=%)) $(OVERRIDES)

cpu-table2-status cpu-table4-status: $(STAMP)
	$(PY) $(call cpu_runner,$(@:cpu-table%-status=%)) --status -- $(CPU_KEEP_$(@:cpu-table%-status=%)) $(OVERRIDES)

tables: $(STAMP)
	$(PY) scripts/run_missing.py --table 1 2 3 4 --scale $(SCALE) --seeds $(SEEDS) -- $(OVERRIDES); s=$$?; $(REPORT) && exit $$s

# Table 2 or 4 on one GPU within BUDGET_S seconds, most valuable rows first, several at once; one archive
# gpu_table2.tar.gz / gpu_table4.tar.gz in ARCHIVE_DIR ($$OUT on a device machine). Needs only python3
# with torch there: hydra-core/omegaconf wheels and the data travel in .carry/ (Table 2, CIFAR-10;
# `make wheels` fills it) or .carry-table4/ (Table 4, MNIST; `make wheels-table4`).
# Check it here: make gpu-table2 DEVICE=cpu SCALE=smoke PYTHON=.venv/bin/python   (docs/GPU.md)
BUDGET_S    ?= 480
DEVICE      ?= cuda
PYTHON      ?= python3
ARCHIVE_DIR ?= $(OUT)
GPU_ARGS    ?=
GPU_SCALE   := $(if $(filter command line,$(origin SCALE)),$(SCALE),gpu)

gpu-table2 gpu-table4:
	$(PYTHON) scripts/gpu_run.py --table $(@:gpu-table%=%) --budget-s $(BUDGET_S) --device $(DEVICE) \
		--scale $(GPU_SCALE) $(if $(ARCHIVE_DIR),--archive-dir $(ARCHIVE_DIR)) $(GPU_ARGS) $(if $(OVERRIDES),-- $(OVERRIDES))

# the carry folders (where pip reaches an index): wheels plus, in .carry/, CIFAR-10 JPEG copies and
# lossless test images; in .carry-table4/, MNIST's four .gz files
CARRY_ARGS = $(if $(wildcard $(PY)),$(PY),python3) $(or $(FRX_SHARED_DATA),../shared/data)
wheels:
	scripts/gpu_carry.sh 2 $(CARRY_ARGS)

wheels-table4:
	scripts/gpu_carry.sh 4 $(CARRY_ARGS)
