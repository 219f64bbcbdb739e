"""`make gpu-table2` and `make gpu-table4` (scripts/gpu_run.py), the entry point of the GPU runs, at
smoke scale on the CPU: the same code path (import, rows, stop at the budget, archive) as on the GPU."""

import json
import math
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from conftest import write_mnist
from tiny_cifar import write_tiny_set

REPO = Path(__file__).resolve().parent.parent
# one small row: the smoke scale cut further, so that the test stays well under a minute
# (one thread: CPU threads that wait for a busy machine's cores cost more than they bring)
SHRINK = "trainer.epochs=1 trainer.batch_size=4 dataset.limit_train=8 dataset.limit_val=8 trainer.eval_batch_size=8 " \
         "trainer.threads=1"


def make(*args, target="gpu-table2", timeout=600):
    return subprocess.run(["make", "--no-print-directory", target, f"PYTHON={sys.executable}", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_gpu_table2_at_smoke_scale_on_cpu(tmp_path):
    write_tiny_set(tmp_path / "src")
    work, out = tmp_path / "work", tmp_path / "out"
    p = make("DEVICE=cpu", "SCALE=smoke", "BUDGET_S=400", f"ARCHIVE_DIR={out}", f"OVERRIDES={SHRINK}",
             f"GPU_ARGS=--work {work} --data {tmp_path / 'src' / 'cifar10-jpeg.npz'} "
             f"--lossless-test {tmp_path / 'src' / 'lossless.npz'} --rows resnet18_ref")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    with tarfile.open(out / "gpu_table2.tar.gz") as tar:
        names = set(tar.getnames())
        [rec_name] = [n for n in names if n.startswith("gpu_table2/records/table2/resnet18_ref__")]
        record = json.load(tar.extractfile(rec_name))
        summary = tar.extractfile("gpu_table2/summary.txt").read().decode()
        status = json.load(tar.extractfile("gpu_table2/status.json"))
    assert {"gpu_table2/logs/resnet18_ref.log", "gpu_table2/bench.txt"} <= names
    assert not any(n.endswith(".pt") for n in names)  # checkpoints stay in the work folder
    assert rec_name.endswith("__smoke__seed0.json") and record["scale"] == "smoke" and record["device"] == "cpu"
    assert record["row"] == "ResNet18-ref" and len(record["epochs"]) == 1
    extra = record["metric_extra"]
    assert record["data"]["data_note"].startswith("CIFAR-10 (JPEG copies)")
    assert 0 <= extra["top1_lossless1k"] <= 1 and 0 <= extra["top1_jpeg1k"] <= 1
    assert record["config"]["trainer"]["optimizer"]["nesterov"] and record["config"]["dataset"]["augment"]
    assert status["rows"]["resnet18_ref"]["status"] == "finished"
    assert "resnet18_ref" in summary and "CIFAR-10 (JPEG copies)" in summary and "finished" in summary


@pytest.mark.slow
def test_gpu_table2_stops_at_the_budget_and_resumes(tmp_path):
    """A row stopped at the budget leaves its checkpoint and no record; the next call continues it
    and does not run again a row that has its record."""
    write_tiny_set(tmp_path / "src")
    work, out = tmp_path / "work", tmp_path / "out"
    common = [f"ARCHIVE_DIR={out}", "DEVICE=cpu", "SCALE=smoke",
              "OVERRIDES=trainer.epochs=4 trainer.max_steps_per_epoch=1 trainer.batch_size=4 dataset.limit_train=8"]
    args = f"--work {work} --data {tmp_path / 'src' / 'cifar10-jpeg.npz'} --min-start-s 1 --rows"

    def status():
        return json.loads((work / "status.json").read_text())

    p = make("BUDGET_S=600", f"GPU_ARGS={args} resnet18_ref", *common)
    assert p.returncode == 0 and "resnet18_ref: finished" in p.stdout, p.stdout[-2000:]
    # the same model's next row gets the setup time and half of this row's time: it is stopped mid-run
    row_s = status()["rows"]["resnet18_ref"]["wall_s"]
    budget = status()["total_s"] - row_s + row_s / 2
    p = make(f"BUDGET_S={budget:.0f}", f"GPU_ARGS={args} resnet18_v1", *common)
    assert p.returncode == 0 and "resnet18_v1: stopped at the budget" in p.stdout, p.stdout[-2000:]
    assert not list((work / "records").rglob("resnet18_v1__*.json"))
    log = (work / "logs" / "resnet18_v1.log").read_text()
    finished_epochs = len(re.findall(r" - epoch \d/4 ", log))
    assert (work / "runs" / "resnet18_v1" / "checkpoint.pt").exists() == (finished_epochs > 0)
    p = make("BUDGET_S=600", f"GPU_ARGS={args} resnet18_ref resnet18_v1", *common)
    assert p.returncode == 0, p.stdout[-2000:]
    assert status()["rows"]["resnet18_ref"]["status"] == "already has its record"
    assert status()["rows"]["resnet18_v1"]["status"] == "finished"
    if finished_epochs:
        assert "resuming" in (work / "logs" / "resnet18_v1.log").read_text()


def test_gpu_table4_at_smoke_scale_on_cpu(tmp_path):
    """A GAN row with a second seed: record with its FID, sample grid, log, summary, status; the FID
    network is trained once before the rows, which load it."""
    write_mnist(tmp_path / "mnist", gz=True, ntrain=40, ntest=20)
    work, out = tmp_path / "work", tmp_path / "out"
    p = make("DEVICE=cpu", "SCALE=smoke", "BUDGET_S=400", f"ARCHIVE_DIR={out}",
             "OVERRIDES=trainer.epochs=1 trainer.threads=1",
             f"GPU_ARGS=--work {work} --data {tmp_path / 'mnist'} --no-verify --rows gan_fr1:1", target="gpu-table4")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    with tarfile.open(out / "gpu_table4.tar.gz") as tar:
        names = set(tar.getnames())
        [rec_name] = [n for n in names if re.fullmatch(r"gpu_table4/records/table4/gan_fr1__.*\.json", n)]
        record = json.load(tar.extractfile(rec_name))
        png = tar.extractfile(rec_name.replace(".json", ".samples.png")).read()
        log = tar.extractfile("gpu_table4/logs/gan_fr1_seed1.log").read().decode()
        summary = tar.extractfile("gpu_table4/summary.txt").read().decode()
        status = json.load(tar.extractfile("gpu_table4/status.json"))
    assert "gpu_table4/bench.txt" in names and not any(n.endswith((".pt", ".frx")) for n in names)
    assert rec_name.endswith("__smoke__seed1.json") and record["seed"] == 1 and record["device"] == "cpu"
    assert record["row"] == "GAN-fr1" and record["method"] == "fr" and len(record["epochs"]) == 1
    fid = record["metric"]
    assert fid["name"] == "fid" and math.isfinite(fid["value"]) and fid["value"] >= 0
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert Path(record["metric_extra"]["fid_extractor_file"]).parent == work / "data" / "cache"
    assert "FID network" in p.stdout and "training the FID feature extractor" not in log
    assert status["rows"]["gan_fr1:1"]["status"] == "finished" and status["bench"] == "not run"
    assert "gan_fr1:1" in summary and f"{fid['value']:9.2f}" in summary
    assert "MNIST, 32 training / 16 test images" in summary


@pytest.mark.parametrize("target, row", [("gpu-table2", "resnet18_vv"), ("gpu-table4", "gan_xx"),
                                         ("gpu-table4", "gan_ref:x")])
def test_gpu_bad_row_is_one_line_before_work(tmp_path, target, row):
    p = make("DEVICE=cpu", "SCALE=smoke", f"GPU_ARGS=--work {tmp_path / 'w'} --rows {row}", target=target)
    assert p.returncode != 0 and not (tmp_path / "w").exists()
    assert f"gpu_table{target[-1]}: error: unknown Table {target[-1]} rows: {row} " in p.stderr
