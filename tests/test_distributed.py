"""One run on several processes (DDP, gloo on the CPU): two processes follow the trajectory of one, for a
plain network and for FR (same losses to float rounding, the same kept counts at every step); the first
process alone writes the run's files; a killed process ends the run with one line, and the run resumes
from its checkpoint on two processes; a sweep of such runs goes through the local submitit launcher.
Each rank takes its rows of every batch: the data tests check that the rows of all ranks make the batch."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from frx import checkpoint
from frx.data.common import CropFlip, TensorSplit, batches, shard_rows
from frx.train import compose, run

# LeNet-5 with FR on MNIST-5k, a few seconds a run. The demo's learning rate (1e-2, losses near 10 in the
# first steps) turns rounding differences into visible ones within a few Adam steps; 1e-3 keeps them at rounding.
ARGS = ["experiment=demo", "trainer.epochs=2", "trainer.max_steps_per_epoch=6", "trainer.batch_size=32",
        "dataset.limit_train=192", "dataset.limit_val=64", "trainer.threads=1", "trainer.progress=false",
        "trainer.optimizer.lr=0.001"]
METHODS = {"plain": "fr.enabled=false", "fr": "fr.enabled=true"}
TORCHRUN = [str(Path(sys.executable).with_name("torchrun")), "--nproc_per_node=2", "-m", "frx.train"]


def steps(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv") as f:
        return [r for r in csv.DictReader(f) if r["kind"] == "step"]


def assert_same_trajectory(one: list[dict], two: list[dict]) -> None:
    assert [r["step"] for r in one] == [r["step"] for r in two] and len(one) > 0
    assert [r["kept"] for r in one] == [r["kept"] for r in two]
    assert [r["beta"] for r in one] == [r["beta"] for r in two]
    for a, b in zip(one, two):
        assert float(b["loss"]) == pytest.approx(float(a["loss"]), rel=1e-4), (a, b)


def env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The plain and the FR run on one process (in this one), keyed by method: their run folders."""
    tmp = tmp_path_factory.mktemp("one")
    out = {}
    for name, method in METHODS.items():
        run(compose([*ARGS, method, f"run.dir={tmp / name / 'run'}", f"run.records_dir={tmp / name / 'records'}"]))
        out[name] = tmp / name / "run"
    return out


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A sweep over plain and FR, each point one job of two processes (hydra/launcher=local)."""
    tmp = tmp_path_factory.mktemp("sweep")
    cmd = [sys.executable, "-m", "frx.train", "-m", "hydra/launcher=local", "hydra.launcher.tasks_per_node=2",
           *ARGS, "fr.enabled=false,true", f"hydra.sweep.dir={tmp / 'sweep'}",
           f"run.dir={tmp}/runs/fr_${{fr.enabled}}", f"run.records_dir={tmp / 'records'}"]
    done = subprocess.run(cmd, cwd=tmp, env=env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return {"plain": tmp / "runs" / "fr_False", "fr": tmp / "runs" / "fr_True", "records": tmp / "records",
            "logs": sorted((tmp / "sweep").glob("*/train.log"))}


@pytest.mark.parametrize("method", list(METHODS))
def test_two_processes_follow_one(one_process, sweep, method):
    assert_same_trajectory(steps(one_process[method]), steps(sweep[method]))


def test_the_first_process_alone_writes(sweep):
    records = sorted(sweep["records"].glob("*.json"))
    assert len(records) == 2
    for path in records:
        record = json.loads(path.read_text())
        assert record["versions"]["processes"] == 2 and record["versions"]["threads"] == 1
    assert len(sweep["logs"]) == 2
    for path in sweep["logs"]:  # one log (Hydra's, in the sweep's folder): the other process logs errors only
        assert path.read_text().count("epoch 2/2  loss") == 1, path.read_text()
    for method in METHODS:
        assert {p.name for p in sweep[method].iterdir()} >= {"metrics.csv", "model.float16.frx", "summary.txt"}
        assert not list(sweep[method].glob("*.tmp*"))


def worker_pids(torchrun_pid: int) -> dict[int, int]:
    """{rank: pid} of torchrun's workers."""
    out = {}
    for pid in Path(f"/proc/{torchrun_pid}/task/{torchrun_pid}/children").read_text().split():
        for var in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
            if var.startswith(b"RANK="):
                out[int(var[5:])] = int(pid)
    return out


def test_killed_process_stops_the_run_which_resumes_on_two(tmp_path, one_process):
    """SIGKILL to the second process during epoch 2 of 3: the first stops at once with one line and the
    checkpoint of epoch 1 stays; torchrun with trainer.resume=true finishes the run on the trajectory of
    one process."""
    args = [*ARGS, "trainer.epochs=3", f"run.dir={tmp_path / 'run'}", f"run.records_dir={tmp_path / 'records'}"]
    proc = subprocess.Popen([*TORCHRUN, *args], cwd=tmp_path, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    ckpt = tmp_path / "run" / checkpoint.FILENAME
    try:
        deadline = time.time() + 240
        while not ckpt.exists():
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.time() < deadline, "no checkpoint written"
            time.sleep(0.02)
        os.kill(worker_pids(proc.pid)[1], signal.SIGKILL)
        killed = time.time()
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0 and time.time() - killed < 60  # not a hang
    errors = [line for line in err.splitlines() if line.startswith("frx-train: error")]
    assert len(errors) == 1 and "process 0 of 2 lost contact with the others" in errors[0], err[-3000:]
    assert "trainer.resume=true" in errors[0]
    assert not (tmp_path / "records").exists()
    state = checkpoint.load(ckpt)
    assert 1 <= state["epoch"] < 3 and len(state["rng_ranks"]) == 2

    done = subprocess.run([*TORCHRUN, *args, "trainer.resume=true"], cwd=tmp_path, env=env(), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming" in (tmp_path / "run" / "train.log").read_text()
    straight = tmp_path / "one"
    run(compose([*ARGS, "trainer.epochs=3", f"run.dir={straight / 'run'}", f"run.records_dir={straight / 'rec'}"]))
    assert_same_trajectory(steps(straight / "run"), steps(tmp_path / "run"))


def test_slurm_ddp_launcher_has_a_task_per_gpu():
    launcher = compose(["hydra/launcher=slurm_ddp", "hydra.launcher.nodes=2",
                        "hydra.launcher.gpus_per_node=4"]).hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.nodes, launcher.gpus_per_node, launcher.tasks_per_node) == (2, 4, 4)


# -- each process's rows of a batch -----------------------------------------------------------------------------

def test_shard_rows_cover_the_batch():
    for n in (1, 7, 32):
        for world in range(1, min(n, 5) + 1):
            rows = [shard_rows(n, r, world) for r in range(world)]
            assert rows[0][0] == 0 and rows[-1][1] == n and all(a[1] == b[0] for a, b in zip(rows, rows[1:]))
            assert max(hi - lo for lo, hi in rows) - min(hi - lo for lo, hi in rows) <= 1


def test_rows_of_every_process_make_the_batch_in_memory():
    """Same order, and the same crops and flips as in the whole batch (the random numbers are drawn for it)."""
    split = TensorSplit(torch.randn(50, 3, 8, 8), torch.arange(50))

    def epoch(shard):
        g, aug = torch.Generator().manual_seed(0), CropFlip(torch.Generator().manual_seed(1), padding=2)
        kw = {"shard": shard} if shard else {}
        return list(batches(split, 16, shuffle=True, generator=g, augment=aug, **kw)), g.get_state()

    whole, state = epoch(None)
    for world in (2, 3):
        parts = [epoch((r, world)) for r in range(world)]
        assert all(torch.equal(p[1], state) for p in parts)
        for i, (x, y) in enumerate(whole):
            assert torch.equal(torch.cat([p[0][i][0] for p in parts]), x)
            assert torch.equal(torch.cat([p[0][i][1] for p in parts]), y)


class Numbers(torch.utils.data.Dataset):
    def __len__(self):
        return 21

    def __getitem__(self, i):
        return torch.tensor([float(i)]), i


def test_rows_of_every_process_make_the_batch_from_a_dataloader():
    def epoch(shard):
        g = torch.Generator().manual_seed(0)
        kw = {"shard": shard} if shard else {}
        return [y for _, y in batches(Numbers(), 8, shuffle=True, generator=g, **kw)], g.get_state()

    whole, state = epoch(None)
    parts = [epoch((r, 2)) for r in range(2)]
    assert all(torch.equal(p[1], state) for p in parts)
    assert [torch.cat([p[0][i] for p in parts]).tolist() for i in range(len(whole))] == [y.tolist() for y in whole]
