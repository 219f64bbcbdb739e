"""scripts/bench.py runs its sections end to end (tiny sizes); its timings are for reading, not asserting."""

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def bench(*args):
    return subprocess.run([sys.executable, "scripts/bench.py", "--device", "cpu", "--threads", "1", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=300)


def test_gpu_section_runs_bfloat16_channels_last_on_any_device():
    p = bench("--sections", "gpu", "--models", "resnet18", "alexnet", "--gpu-batch", "2", "--rounds", "1")
    assert p.returncode == 0, p.stderr[-2000:]
    for model in ("resnet18", "alexnet"):  # a network with BatchNorm and one without
        assert f"{model}, batch 2, cpu, bfloat16, channels_last" in p.stdout
    for budget in ("beta=1", "v1 1%", "v2 0.1%"):  # one ratio line per budget and model, FR against plain
        assert len(re.findall(rf"{re.escape(budget)}\s+plain\s+[\d.]+ ms \| FR\s+[\d.]+x", p.stdout)) == 2, p.stdout


def test_bad_section_is_one_line():
    p = bench("--sections", "gpus")
    assert p.returncode == 2 and "invalid choice: 'gpus'" in p.stderr
