"""scripts/run_missing.py as `make cpu-table2` uses it: rows run from a work dir outside the checkout,
a runner stopped by SIGTERM leaves checkpoints that the next start continues, finished records are kept
there too and put back into a checkout that lacks them, and --status says where each row is."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from frx.rundir import locked

from tiny_cifar import write_tiny_set

REPO = Path(__file__).resolve().parent.parent
SHRINK = ["trainer.batch_size=4", "dataset.limit_train=8", "dataset.limit_val=8", "trainer.eval_batch_size=8"]


def runner(tmp, *args, overrides=(), rows=("resnet18_ref",)):
    cmd = [sys.executable, str(REPO / "scripts" / "run_missing.py"), "--table", "2", "--scale", "smoke",
           "--rows", *rows, "--work-dir", str(tmp / "work"), "--data-root", str(tmp / "work" / "data"),
           "--import-from", str(tmp / "src" / "cifar10-jpeg.npz"), "--records-dir", str(tmp / "records"),
           "--threads", "1", *args, "--", *SHRINK, *overrides]
    return cmd


def test_runner_runs_keeps_and_restores_records(tmp_path):
    write_tiny_set(tmp_path / "src")
    p = subprocess.run(runner(tmp_path, overrides=["trainer.epochs=1"]), cwd=tmp_path, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    [record] = (tmp_path / "records" / "table2").glob("resnet18_ref__*.json")
    assert (tmp_path / "work" / "records" / "table2" / record.name).exists()  # the copy outside the checkout
    assert (tmp_path / "work" / "logs" / "table2" / f"{record.stem}.log").exists()
    assert not (REPO / "outputs" / "table2" / record.stem).exists()  # the run folder is in the work dir
    status = subprocess.run(runner(tmp_path, "--status", overrides=["trainer.epochs=1"]), capture_output=True,
                            text=True, timeout=120).stdout
    assert re.search(r"^done +table2/resnet18_ref seed 0: top1 ", status, re.M), status
    record.unlink()  # a new checkout: the record is put back from the work dir
    status = subprocess.run(runner(tmp_path, "--status", overrides=["trainer.epochs=1"]), capture_output=True,
                            text=True, timeout=120).stdout
    assert "restored" in status and record.exists() and re.search(r"^done ", status, re.M)


def test_runner_stopped_by_sigterm_continues_from_checkpoint(tmp_path):
    write_tiny_set(tmp_path / "src")
    long = ["trainer.epochs=6"]  # the runner is stopped after the first: room to spare
    started = subprocess.run(runner(tmp_path, "--detach", overrides=long), capture_output=True, text=True,
                             timeout=120)
    assert started.returncode == 0 and "runner started in the background" in started.stdout, started.stderr
    pid = int(re.search(r"pid (\d+)", started.stdout)[1])
    again = subprocess.run(runner(tmp_path, "--detach", overrides=long), capture_output=True, text=True, timeout=120)
    assert again.returncode != 0 and "already running" in again.stderr  # one runner per table and work dir
    runs = tmp_path / "work" / "runs" / "table2"
    deadline = time.time() + 240
    while not list(runs.glob("*/checkpoint.pt")):  # the first epoch's checkpoint: stop the runner now
        assert time.time() < deadline, "no checkpoint written"
        time.sleep(0.05)
    os.kill(pid, signal.SIGTERM)
    deadline = time.time() + 120
    while _alive(pid):
        assert time.time() < deadline, "the runner did not stop"
        time.sleep(0.1)
    status = subprocess.run(runner(tmp_path, "--status", overrides=long), capture_output=True, text=True,
                            timeout=120).stdout
    assert re.search(r"^stopped +table2/resnet18_ref seed 0: epoch \d+/6", status, re.M), status
    assert not (tmp_path / "records" / "table2").exists()
    [folder] = runs.iterdir()
    with locked(folder):  # a run holds the folder: the status says it runs
        status = subprocess.run(runner(tmp_path, "--status", overrides=long), capture_output=True, text=True,
                                timeout=120).stdout
    assert re.search(r"^running +table2/resnet18_ref seed 0", status, re.M), status
    p = subprocess.run(runner(tmp_path, overrides=long), capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    [log] = (tmp_path / "work" / "logs" / "table2").glob("resnet18_ref__*.log")
    text = log.read_text()
    assert "SIGTERM: saving a checkpoint" in text and "resuming table2/resnet18_ref" in text
    [record] = (tmp_path / "records" / "table2").glob("resnet18_ref__*.json")
    assert len(json.loads(record.read_text())["epochs"]) == 6


def _alive(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]


def runner_line(tmp_path, target, *settings):
    """The scripts/run_missing.py line that `make -n <target> <settings>` would run (no set-up planned)."""
    stamp = tmp_path / "installed"  # newer than pyproject.toml: the dry run plans no set-up
    stamp.touch()
    out = subprocess.run(["make", "-n", "-s", "-C", str(REPO), target, f"STAMP={stamp}", *settings],
                         capture_output=True, text=True, check=True).stdout
    return next(ln for ln in out.splitlines() if "run_missing.py" in ln)


def test_make_cpu_table2_passes_its_settings_to_the_runner(tmp_path):
    """`make cpu-table2` (dry run): ROWS, CPU_JOBS, CPU_THREADS and FRX_WORK reach scripts/run_missing.py."""
    line = runner_line(tmp_path, "cpu-table2", "ROWS=vgg16_ref alexnet_ref", "CPU_JOBS=1", "CPU_THREADS=2",
                       f"FRX_WORK={tmp_path}")
    for part in ("--rows vgg16_ref alexnet_ref", "--jobs 1", "--threads 2", f"--work-dir {tmp_path}", "--detach"):
        assert part in line
    default = runner_line(tmp_path, "cpu-table2")
    assert "--rows" not in default and "--jobs 2" in default


def test_make_cpu_table4_runs_the_dcgan_rows_at_both_seeds_keeping_float32_packs(tmp_path):
    """`make cpu-table4` (dry run): the DCGAN rows, seeds 0 and 1, MNIST from the shared copies, float32 packs
    kept; SEEDS and ROWS narrow it."""
    default = runner_line(tmp_path, "cpu-table4", f"FRX_WORK={tmp_path}")
    for part in ("--table 4 --scale cpu", "--seeds 0 1 ", "--rows gan_ref gan_fr1 gan_fr1_tuned ", "/mnist",
                 "-- run.keep_all=true"):
        assert part in default
    narrowed = runner_line(tmp_path, "cpu-table4", f"FRX_WORK={tmp_path}", "SEEDS=1", "ROWS=gan_fr1")
    assert "--seeds 1 " in narrowed and "--rows gan_fr1 " in narrowed
