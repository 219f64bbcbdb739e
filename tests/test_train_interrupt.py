"""Ctrl-C during training saves a checkpoint between two steps and resumes from there with exactly
the numbers of an uninterrupted run; a finished run drops its checkpoint, writes metrics.csv and
keeps its record in the user's own folder; progress lines appear in logs."""

import csv
import logging
import os
import signal
import subprocess
import sys
import time

import pytest

from frx import checkpoint, csvlog
from frx import loop as loop_mod
from frx.loop import Interrupted, stop_on_sigint
from frx.tasks.classification import Classification
from frx.train import compose, run, run_stem

SHORT = ["experiment=demo", "trainer.epochs=3", "trainer.max_steps_per_epoch=6", "trainer.batch_size=32",
         "dataset.limit_train=192", "dataset.limit_val=64", "trainer.threads=1", "trainer.progress=false"]


def overrides(tmp, name, *extra):
    return [*SHORT, f"run.dir={tmp / name / 'run'}", f"run.records_dir={tmp / name / 'records'}", *extra]


def ctrl_c_at_step(monkeypatch, at: int) -> None:
    """Send this process SIGINT during optimizer step `at` (counted over the whole run)."""
    real, calls = Classification.train_step, []

    def step(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == at:
            os.kill(os.getpid(), signal.SIGINT)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Classification, "train_step", step)


@pytest.fixture
def ctrl_c_raises():
    """SIGINT as in an interactive shell, whatever the test process inherited (a background job ignores it)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ignored_ctrl_c_stays_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with stop_on_sigint() as stop:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)
            assert not stop.is_set()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("at", [8, 12], ids=["mid-epoch", "epoch-end"])
def test_ctrl_c_saves_and_resumes_exactly(tmp_path, monkeypatch, ctrl_c_raises, at):
    with monkeypatch.context() as m:
        ctrl_c_at_step(m, at)
        with pytest.raises(Interrupted, match=r"checkpoint saved to"):
            run(compose(overrides(tmp_path, "stopped")))
    state = checkpoint.load(tmp_path / "stopped" / "run" / checkpoint.FILENAME)
    if at == 8:  # stopped after step 8 = step 2 of epoch 2
        assert state["epoch"] == 1 and state["partial"]["step"] == 2 and len(state["steps"]) == 8
    else:  # the last step of epoch 2: the epoch is finished first
        assert state["epoch"] == 2 and state["partial"] is None and len(state["steps"]) == 12
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    assert not (tmp_path / "stopped" / "records").exists()

    resumed = run(compose(overrides(tmp_path, "stopped", "trainer.resume=true")))
    straight = run(compose(overrides(tmp_path, "straight")))
    assert resumed.metric == straight.metric and resumed.tensors == straight.tensors
    for a, b in zip(resumed.epochs, straight.epochs, strict=True):
        assert {k: v for k, v in a.items() if k != "time_s"} == {k: v for k, v in b.items() if k != "time_s"}
    rows = [list(csv.reader(open(tmp_path / n / "run" / csvlog.FILENAME))) for n in ("stopped", "straight")]
    drop = rows[0][0].index("time_s")
    assert [r[:drop] for r in rows[0]] == [r[:drop] for r in rows[1]]  # per-step log carried over the resume


def test_finished_run_keeps_record_packs_logs_and_drops_checkpoint(tmp_path, monkeypatch):
    """No run.records_dir: the record goes to outputs/records under the working directory, never
    to results/runs; metrics.csv matches the record; checkpoint.pt is gone unless asked for."""
    monkeypatch.chdir(tmp_path)
    cfg = compose([*SHORT])
    r, stem = run(cfg), run_stem(cfg)
    assert (tmp_path / "outputs" / "records" / f"{stem}.json").exists()
    assert not (tmp_path / "results").exists()
    run_dir = tmp_path / "outputs" / stem
    assert {p.name for p in run_dir.iterdir()} >= {"model.float16.frx", "metrics.csv", "summary.txt"}
    assert not (run_dir / checkpoint.FILENAME).exists() and not (run_dir / "model.float32.frx").exists()

    with open(run_dir / "metrics.csv") as f:
        table = list(csv.DictReader(f))
    epochs = [row for row in table if row["kind"] == "epoch"]
    steps = [row for row in table if row["kind"] == "step"]
    assert [int(row["epoch"]) for row in epochs] == [e["epoch"] for e in r.epochs]
    assert [float(row["train_loss"]) for row in epochs] == [e["train_loss"] for e in r.epochs]
    assert [int(row["kept"]) for row in epochs] == [e["kept"] for e in r.epochs]
    assert [int(row["step"]) for row in steps] == list(range(1, 19))
    assert int(steps[-1]["kept"]) == r.counts["kept_weights"]
    # the epoch's training loss is the mean of its steps' losses
    first = [float(row["loss"]) for row in steps if row["epoch"] == "1"]
    assert sum(first) / len(first) == pytest.approx(r.epochs[0]["train_loss"])

    kept = run(compose([*SHORT, "seed=1", "run.keep_all=true"]))
    kept_dir = tmp_path / "outputs" / stem.replace("seed0", "seed1")
    assert (kept_dir / checkpoint.FILENAME).exists() and (kept_dir / "model.float32.frx").exists()
    assert kept.tag == r.tag  # keep_all does not name the run


def test_progress_lines_in_logs(tmp_path, monkeypatch, caplog):
    """Not on a terminal (pytest captures output) and trainer.progress=true: periodic progress lines."""
    monkeypatch.setattr(loop_mod, "PROGRESS_EVERY_S", 0.0)
    with caplog.at_level(logging.INFO, logger="frx.train"):
        run(compose(overrides(tmp_path, "p", "trainer.progress=true", "trainer.epochs=1", "trainer.log_every=3")))
    lines = [r.getMessage() for r in caplog.records if "steps/s" in r.getMessage()]
    assert len(lines) == 6
    assert lines[0].startswith("epoch 1/1  step 1/6  loss ") and "kept " in lines[0] and "ETA " in lines[0]
    assert "step 6/6" in lines[-1] and "ETA 0m00s" in lines[-1]
    with open(tmp_path / "p" / "run" / csvlog.FILENAME) as f:  # step rows where losses are read back
        assert [(r["kind"], r["step"]) for r in csv.DictReader(f)] == [("step", "3"), ("step", "6"), ("epoch", "")]


def test_progress_speed_is_the_recent_one(monkeypatch):
    """The speed and ETA of a progress line come from the last few minutes, not the whole session: an FR
    run's first steps (mask still wide) are far slower than its later ones."""
    from types import SimpleNamespace

    clock = [0.0]
    monkeypatch.setattr(loop_mod.time, "time", lambda: clock[0])
    lp = loop_mod.Loop.__new__(loop_mod.Loop)
    lp.tr, lp.steps, lp.session_steps, lp.rate_marks = SimpleNamespace(epochs=1), 200, 0, [(0.0, 0)]  # epoch start
    lines = []
    monkeypatch.setattr(loop_mod.log, "info", lambda fmt, *a: lines.append(fmt % a))
    for t, n in ((1000.0, 10), (1100.0, 110), (1200.0, 160)):  # 10 slow steps, then 100, then 50 in 100 s each
        clock[0], lp.session_steps = t, n
        lp.progress_line(1, n, [2.0], 1234)
    assert "0.01 steps/s" in lines[0] and "ETA 5h16m" in lines[0]  # 190 steps at 0.01/s
    assert "1.00 steps/s" in lines[1] and "ETA 1m30s" in lines[1]  # the last 100 s, not 110 / 1100 s
    assert "0.75 steps/s" in lines[2] and "ETA 0m53s" in lines[2]  # 150 steps in the 200 s since 1000 s
    clock[0], lp.session_steps = 2000.0, 170  # nothing within the window: the latest line is the reference
    lp.progress_line(1, 170, [2.0], 1234)
    assert "0.01 steps/s" in lines[3]


@pytest.mark.slow
def test_sigint_to_the_cli_exits_130_with_the_resume_command(tmp_path):
    args = [*SHORT, "trainer.epochs=50", "trainer.max_steps_per_epoch=20"]
    proc = subprocess.Popen([sys.executable, "-m", "frx.train", *args], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as from a terminal
    deadline = time.time() + 240
    while not list(tmp_path.glob("outputs/*/checkpoint.pt")):  # training is under way
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in out + err
    assert "checkpoint saved to" in err
    assert f"resume with: frx-train {' '.join(args)} trainer.resume=true" in err
