"""A run killed with SIGKILL mid-training and resumed (trainer.resume=true) ends with exactly the
numbers and weights of an uninterrupted run with the same seed."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import frx
from frx import checkpoint
from frx.train import compose, run

# LeNet-5 with FR (per-step tail-dropout, dropout-free) on MNIST-5k: ~1 s per epoch on one core
ARGS = ["experiment=demo", "trainer.epochs=3", "trainer.max_steps_per_epoch=15", "trainer.batch_size=32",
        "dataset.limit_train=480", "dataset.limit_val=100", "trainer.threads=1", "trainer.progress=false"]


def overrides(tmp, name, *extra, args=ARGS):
    return [*args, f"run.dir={tmp / name / 'run'}", f"run.records_dir={tmp / name / 'records'}", *extra]


# shorter runs for the in-process crash tests
SHORT = ["experiment=demo", "trainer.epochs=3", "trainer.max_steps_per_epoch=6", "trainer.batch_size=32",
         "dataset.limit_train=192", "dataset.limit_val=64", "trainer.threads=1", "trainer.progress=false"]


def test_resume_after_kill_matches_uninterrupted_run(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "frx.train", *overrides(tmp_path, "killed")],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = tmp_path / "killed" / "run" / checkpoint.FILENAME
    try:
        deadline = time.time() + 240
        while not ckpt.exists():  # the first epoch's checkpoint: kill during the second epoch
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.time() < deadline, "no checkpoint written"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "killed" / "records").exists()  # the run did not finish
    done = checkpoint.load(ckpt)["epoch"]
    assert 1 <= done < 3

    resumed = run(compose(overrides(tmp_path, "killed", "trainer.resume=true", "run.keep_all=true")))
    straight = run(compose(overrides(tmp_path, "straight", "run.keep_all=true")))

    assert resumed.metric == straight.metric
    for a, b in zip(resumed.epochs, straight.epochs):
        assert {k: v for k, v in a.items() if k != "time_s"} == {k: v for k, v in b.items() if k != "time_s"}
    assert resumed.tensors == straight.tensors and resumed.packed_bytes == straight.packed_bytes
    a = frx.unpack(tmp_path / "killed" / "run" / "model.float32.frx")
    b = frx.unpack(tmp_path / "straight" / "run" / "model.float32.frx")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class InjectedCrash(Exception):
    pass


@pytest.mark.parametrize("extra", [["fr=none"], ["fr=none", "prune=magnitude", "prune.steps=2"],
                                   ["fr.unit=epoch", "fr.gamma=0.5"],
                                   ["+dataset.augment={crop_padding: 2, flip: true}", "trainer.scheduler.name=linear",
                                    "trainer.scheduler.warmup=0.3", "trainer.optimizer.name=sgd",
                                    "trainer.optimizer.lr=0.05"]],
                         ids=["plain", "prune", "fr-per-epoch", "augment-linear-lr"])
def test_resume_after_crash(tmp_path, monkeypatch, extra):
    """A crash right after epoch 2's checkpoint (injected), then trainer.resume=true: same as a straight run.
    Pruning resumes with its masks, the per-epoch FR schedule with its position, batch augmentation
    with its random state."""
    real_save = checkpoint.save

    def save_then_crash(path, state):
        real_save(path, state)
        if state["epoch"] == 2:
            raise InjectedCrash

    with monkeypatch.context() as m:
        m.setattr(checkpoint, "save", save_then_crash)
        with pytest.raises(InjectedCrash):
            run(compose(overrides(tmp_path, "crashed", *extra, args=SHORT)))
    assert checkpoint.load(tmp_path / "crashed" / "run" / checkpoint.FILENAME)["epoch"] == 2
    resumed = run(compose(overrides(tmp_path, "crashed", *extra, "trainer.resume=true", args=SHORT)))
    straight = run(compose(overrides(tmp_path, "straight", *extra, args=SHORT)))
    assert resumed.metric == straight.metric and resumed.tensors == straight.tensors
    assert [e["train_loss"] for e in resumed.epochs] == [e["train_loss"] for e in straight.epochs]
    assert [e["lr"] for e in resumed.epochs] == [e["lr"] for e in straight.epochs]
    if "prune=magnitude" in extra:
        assert resumed.method == "prune" and resumed.counts["kept_weights"] == 776


@pytest.mark.parametrize("extra", [["+dataset.augment={crop_padding: 2, flip: true}", "fr.keep_norm=true"],
                                   ["trainer.amp=true", "trainer.amp_dtype=bfloat16", "trainer.channels_last=true"]],
                         ids=["augment-keep-norm", "bfloat16-nhwc"])
def test_resume_from_mid_epoch_checkpoint(tmp_path, monkeypatch, extra):
    """trainer.checkpoint_every_s saves inside an epoch; a crash right after such a save (step 3 of epoch 2),
    then trainer.resume=true, ends exactly as a straight run: the skipped batches draw no random numbers
    (the augmentation's included)."""
    real_save = checkpoint.save
    every = ["trainer.checkpoint_every_s=1e-9"]  # after every step

    def save_then_crash(path, state):
        real_save(path, state)
        if state["epoch"] == 1 and (state["partial"] or {}).get("step") == 3:
            raise InjectedCrash

    with monkeypatch.context() as m:
        m.setattr(checkpoint, "save", save_then_crash)
        with pytest.raises(InjectedCrash):
            run(compose(overrides(tmp_path, "crashed", *extra, *every, args=SHORT)))
    resumed = run(compose(overrides(tmp_path, "crashed", *extra, *every, "trainer.resume=true", args=SHORT)))
    straight = run(compose(overrides(tmp_path, "straight", *extra, args=SHORT)))
    assert resumed.metric == straight.metric and resumed.tensors == straight.tensors
    assert [e["train_loss"] for e in resumed.epochs] == [e["train_loss"] for e in straight.epochs]
