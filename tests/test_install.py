"""A plain (not editable) install runs from any folder: the configs travel inside the package."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_non_editable_install_runs_the_demo_elsewhere(tmp_path):
    src, target, elsewhere = tmp_path / "src", tmp_path / "site", tmp_path / "elsewhere"
    shutil.copytree(ROOT / "frx", src / "frx", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(src)], check=True, capture_output=True, timeout=600)
    assert (target / "frx" / "conf" / "experiment" / "table1" / "lenet5_v2.yaml").exists()
    elsewhere.mkdir()
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(target), "OMP_NUM_THREADS": "1", "HOME": str(tmp_path)}
    p = subprocess.run([sys.executable, "-m", "frx.train", "experiment=demo", "scale=smoke", "trainer.threads=1"],
                       cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    record = json.loads((elsewhere / "outputs" / "records" / "demo__smoke__seed0.json").read_text())
    assert record["experiment"] == "demo" and record["method"] == "fr" and record["linear_view"] == "auto"
    assert str(target) in subprocess.run([sys.executable, "-c", "import frx; print(frx.__file__)"], cwd=elsewhere,
                                         env=env, capture_output=True, text=True, check=True).stdout


def test_make_setup_says_what_it_installs(tmp_path):
    """`make` prints a line per install step and lets pip show its progress (no -q)."""
    p = subprocess.run(["make", "-n", "-B", "setup", f"VENV={tmp_path / 'venv'}"], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    installs = [line for line in p.stdout.splitlines() if "pip install" in line]
    assert len(installs) == 3 and not any(" -q" in line for line in installs)
    assert "torch" in p.stdout and p.stdout.count('echo "== ') >= 4
