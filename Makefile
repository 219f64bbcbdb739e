# Every target sets up its own virtual environment on first use.
VENV   ?= .venv
PY     := $(VENV)/bin/python
SCALE  ?= smoke
SEEDS     ?= 0
OVERRIDES ?=
STAMP  := $(VENV)/.frx-installed

.PHONY: setup test test-all demo bench report tables table1 table2 table3 table4 clean-venv wheels gpu-table2

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -m "not slow"

test-all: $(STAMP)
	$(PY) -m pytest

# The main job: LeNet-5 with FR on the offline MNIST sample; its record stays in outputs/demo.
demo: $(STAMP)
	$(PY) -m frx.train experiment=demo run.records_dir=outputs/demo run.overwrite=true

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
	$(PY) -m frx.report

# Run a table's experiments whose records are missing or stale (SCALE=smoke|full, SEEDS="0 1 2",
# OVERRIDES="trainer.device=cuda"), then regenerate the tables (also after a failed run; exit status kept).
table1 table2 table3 table4: $(STAMP)
	$(PY) scripts/run_missing.py --table $(@:table%=%) --scale $(SCALE) --seeds $(SEEDS) -- $(OVERRIDES); s=$$?; $(PY) -m frx.report && exit $$s

tables: $(STAMP)
	$(PY) scripts/run_missing.py --table 1 2 3 4 --scale $(SCALE) --seeds $(SEEDS) -- $(OVERRIDES); s=$$?; $(PY) -m frx.report && exit $$s

# Table 2 on one GPU within BUDGET_S seconds, most valuable rows first, several at once; one archive
# gpu_table2.tar.gz in ARCHIVE_DIR ($$OUT on a device machine). Needs only python3 with torch there:
# hydra-core/omegaconf wheels and the CIFAR-10 file travel in .carry/ (`make wheels` fills it).
# Check it here: make gpu-table2 DEVICE=cpu SCALE=smoke PYTHON=.venv/bin/python   (docs/GPU.md)
BUDGET_S    ?= 480
DEVICE      ?= cuda
PYTHON      ?= python3
ARCHIVE_DIR ?= $(OUT)
GPU_ARGS    ?=
GPU_SCALE   := $(if $(filter command line,$(origin SCALE)),$(SCALE),gpu)

gpu-table2:
	$(PYTHON) scripts/gpu_table2.py --budget-s $(BUDGET_S) --device $(DEVICE) --scale $(GPU_SCALE) \
		$(if $(ARCHIVE_DIR),--archive-dir $(ARCHIVE_DIR)) $(GPU_ARGS) $(if $(OVERRIDES),-- $(OVERRIDES))

# .carry/ for gpu-table2 (where pip reaches an index): wheels, CIFAR-10 JPEG copies, lossless test images
wheels:
	scripts/gpu_table2_carry.sh $(if $(wildcard $(PY)),$(PY),python3) $(or $(FRX_SHARED_DATA),../shared/data)
