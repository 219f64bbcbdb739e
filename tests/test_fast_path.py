"""The trainer's fast-path options (GPU speed, Table 2 recipe) on the CPU: they train, they change
nothing they should not, bad values fail before any work."""

import math

import pytest
import torch

from frx.optim import make_scheduler
from frx.train import compose, run

from conftest import tmp_overrides


def test_linear_schedule_warms_up_then_decays_to_min_lr():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.2)
    sched = make_scheduler(opt, compose(["trainer.scheduler.name=linear", "trainer.scheduler.warmup=0.2",
                                     "trainer.scheduler.min_lr=0.02"]).trainer.scheduler, 10)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:3] == pytest.approx([0.1, 0.2, 0.2])  # 2 warm-up steps to the peak
    assert all(a > b for a, b in zip(lrs[2:], lrs[3:])) and lrs[-1] == pytest.approx(0.02 + 0.18 / 8)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.02)  # after the last step: min_lr


FAST = ("trainer.optimizer.name=sgd", "trainer.optimizer.lr=0.05", "trainer.optimizer.nesterov=true",
        "trainer.scheduler.name=linear", "trainer.scheduler.warmup=0.25", "trainer.label_smoothing=0.1",
        "trainer.channels_last=true", "trainer.amp=true", "trainer.amp_dtype=bfloat16")


def test_fast_options_train_and_reading_back_less_often_changes_nothing(tmp_path):
    every = run(compose(tmp_overrides(tmp_path / "a", "scale=smoke", *FAST)))
    sparse = run(compose(tmp_overrides(tmp_path / "b", "scale=smoke", *FAST, "trainer.log_every=5")))
    assert every.config["trainer"]["channels_last"] and every.config["trainer"]["optimizer"]["nesterov"]
    assert all(math.isfinite(e["train_loss"]) for e in every.epochs)
    assert [e["train_loss"] for e in sparse.epochs] == [e["train_loss"] for e in every.epochs]
    assert sparse.metric == every.metric
    assert every.epochs[-1]["lr"] == pytest.approx(0.0)  # the linear decay ends at min_lr


def test_batch_augmentation_in_training_is_seeded(tmp_path):
    aug = ("+dataset.augment={crop_padding: 2, flip: true}",)
    a = run(compose(tmp_overrides(tmp_path / "a", "scale=smoke", *aug)))
    b = run(compose(tmp_overrides(tmp_path / "b", "scale=smoke", *aug)))
    plain = run(compose(tmp_overrides(tmp_path / "c", "scale=smoke")))
    assert [e["train_loss"] for e in a.epochs] == [e["train_loss"] for e in b.epochs]
    assert [e["train_loss"] for e in a.epochs] != [e["train_loss"] for e in plain.epochs]
