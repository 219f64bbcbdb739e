"""Hostile input: each bad setting, path, file or concurrent run stops before any work with one clear
line (UserError; exit status 2 from the command line), and leaves no record or half-written file."""

import gzip
import os
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

import frx
import frx.checks
import frx.config
import frx.train
from frx import checkpoint
from frx.data import cli as data_cli
from frx.fr import codec, fr_tensors
from frx.rundir import locked
from frx.train import UserError, compose, run

from conftest import tmp_overrides
from conftest import zero_idx as _idx

# a one-epoch smoke run on MNIST-5k: a few seconds
SMOKE = ["experiment=demo", "scale=smoke", "trainer.epochs=1", "trainer.max_steps_per_epoch=2"]


def nothing_written(tmp: Path) -> bool:
    records = tmp / "records"
    return not records.exists() or not any(p.is_file() for p in records.rglob("*"))


@pytest.mark.parametrize("override, message", [
    ("trainer.grad_clip=-1", r"trainer.grad_clip must be > 0"),
    ("trainer.grad_clip=0", r"trainer.grad_clip must be > 0"),
    ("dataset.limit_train=0", r"dataset.limit_train must be an integer >= 1"),
    ("dataset.limit_train=-5", r"dataset.limit_train must be an integer >= 1"),
    ("dataset.limit_val=0", r"dataset.limit_val must be an integer >= 1"),
    ("dataset.limit_val=-1", r"dataset.limit_val must be an integer >= 1"),
    ("dataset.val_fraction=1.0", r"dataset.val_fraction must be in \(0, 1\)"),
    ("dataset.val_fraction=0", r"dataset.val_fraction must be in \(0, 1\)"),
    ("dataset.resize=[0,28]", r"dataset.resize must be \[height, width\] of integers >= 1"),
    ("dataset.resize=[28]", r"dataset.resize must be \[height, width\]"),
    ("dataset.split_seed=abc", r"dataset.split_seed must be an integer, got 'abc'"),
    ("+model.foo=1", r"unknown config keys: model.foo \(a model config has name and kwargs\)"),
    ("+model.kwargs.foo=1", r"model.kwargs do not fit model lenet5: got an unexpected keyword argument 'foo'"),
    ("model.name=nosuch", r"unknown model 'nosuch'; known models: "),
    ("dataset.normalize=weird", r"dataset.normalize must be 'standard', 'unit' or 'symmetric'"),
    ("seed=abc", r"seed must be a 64-bit integer, got 'abc'"),
    ("seed=18446744073709551616", r"seed must be a 64-bit integer, got 18446744073709551616"),
    ("dataset.mean=[1,2]", r"dataset.mean and dataset.std need one value per input channel \(1\)"),
    ("trainer.threads=-1", r"trainer.threads must be >= 1"),
    ("trainer.threads=0", r"trainer.threads must be >= 1"),
    ("fr.dims=[]", r"fr.dims must be a non-empty list"),
    ("fr.dims=[0,0]", r"fr.dims has repeated dims"),
    ("fr.include=[]", r"fr.include must be a non-empty list"),
    ("trainer.optimizer.betas=[0.9]", r"trainer.optimizer.betas must be two values"),
    ("trainer.optimizer.weight_decay=-1", r"trainer.optimizer.weight_decay must be >= 0"),
    ("trainer.optimizer.momentum=1.5", r"trainer.optimizer.momentum must be in \[0, 1\)"),
    ("trainer.scheduler.min_lr=1", r"trainer.scheduler.min_lr must be in \[0, trainer.optimizer.lr\]"),
    ("run.keep_packed_max_bytes=-1", r"run.keep_packed_max_bytes must be >= 0"),
    ("trainer.amp_dtype=int8", r"trainer.amp_dtype must be one of float16, bfloat16"),
    ("trainer.scheduler.name=onecycle", r"trainer.scheduler.name must be one of cosine, linear, none"),
    ("trainer.label_smoothing=1.5", r"label_smoothing must be in \[0, 1\)"),
    ("trainer.log_every=0", r"trainer.log_every must be >= 1"),
    # settings that do not fit the model: refused by frx.regularize before any work
    ("fr.dims=[7]", r"conv1.weight: dims \[7\] out of range for a 4-dim weight"),
    ("fr.include=[nomatch]", r"include pattern 'nomatch' matches no weight of a Conv/Linear layer \(layers: conv1, "),
    ("fr.exclude=[nomatch]", r"exclude pattern 'nomatch' matches no weight"),
    ("fr.min_kept={conv:abc}", r"bad value for fr.min_kept"),
    ("fr.min_kept={conv:-5}", r"fr.min_kept values must be >= 1"),
])
def test_bad_setting_fails_before_any_work(tmp_path, override, message):
    with pytest.raises(UserError, match=message):
        run(compose(tmp_overrides(tmp_path, override)))
    assert not (tmp_path / "run").exists() and not (tmp_path / "records").exists()


def test_bad_path_fails_before_any_work(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    for key in ("run.dir", "run.records_dir"):
        with pytest.raises(UserError, match=f"{key}=.* is under .*afile, which is a file"):
            run(compose(tmp_overrides(tmp_path, f"{key}={afile / 'sub'}")))
        with pytest.raises(UserError, match=f"{key}=/proc/frx is in /proc"):
            run(compose(tmp_overrides(tmp_path, f"{key}=/proc/frx")))
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "readonly"
        ro.mkdir(mode=0o555)
        with pytest.raises(UserError, match="is not writable"):
            run(compose(tmp_overrides(tmp_path, f"run.records_dir={ro / 'records'}")))
    assert afile.read_text() == "mine" and nothing_written(tmp_path) and not (tmp_path / "run").exists()


@pytest.mark.parametrize("full, message", [
    ("run", r"run.dir=.*: only 0.0 MiB free on its disk, a checkpoint of this model needs about"),
    ("records", r"run.records_dir=.*: only 0.0 MiB free on its disk, the record needs about 1.1 MiB"),
])
def test_full_disk_fails_before_training(tmp_path, monkeypatch, full, message):
    real = frx.checks.shutil.disk_usage
    (tmp_path / full).mkdir()

    def usage(path):
        du = real(path)
        return du._replace(free=1000) if Path(path) == tmp_path / full else du

    monkeypatch.setattr(frx.checks.shutil, "disk_usage", usage)
    with pytest.raises(UserError, match=message):
        run(compose(tmp_overrides(tmp_path, *SMOKE)))
    assert nothing_written(tmp_path) and not (tmp_path / "run" / checkpoint.FILENAME).exists()


@pytest.mark.parametrize("override, line", [
    ("trainer.grad_clip=-1", "trainer.grad_clip must be > 0 or null, got -1.0"),
    ("run.dir={tmp}/afile/sub", "run.dir={tmp}/afile/sub is under {tmp}/afile, which is a file, not a folder"),
    ("run.dir=/proc/frx", "run.dir=/proc/frx is in /proc: pick a folder for files"),
])
def test_cli_error_is_one_line_and_status_2(tmp_path, monkeypatch, capsys, override, line):
    """Checked before Hydra makes the run folder (which would fail with a traceback for a bad path)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("mine")
    monkeypatch.setattr(sys, "argv", ["frx-train", *tmp_overrides(tmp_path), override.format(tmp=tmp_path)])
    with pytest.raises(SystemExit) as exit_:
        frx.train.main()
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip() == "frx-train: error: " + line.format(tmp=tmp_path)
    assert not (tmp_path / "run").exists() and not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("sweep, line", [
    ("fr.epsilon=0.01,0", "sweep point fr.epsilon=0: fr.epsilon must be in (0, 1], got 0.0"),
    ("model=lenet5,nosuch", "unknown model 'nosuch' (choices: alexnet, gan, lenet300, lenet5, resnet18, smp_unet, "
                            "unet, unet_frereg, vae, vgg16, vgg16_true)"),
])
def test_sweep_with_one_bad_point_fails_before_any_job(tmp_path, monkeypatch, capsys, sweep, line):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["frx-train", "-m", sweep, *SMOKE, f"run.records_dir={tmp_path / 'records'}",
                                      f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    with pytest.raises(SystemExit) as exit_:
        frx.train.main()
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip() == "frx-train: error: " + line
    assert not (tmp_path / "sweep").exists() and not (tmp_path / "outputs").exists() and nothing_written(tmp_path)


def test_second_run_into_a_locked_run_dir_is_refused(tmp_path):
    (tmp_path / "run").mkdir()
    with locked(tmp_path / "run"):
        with pytest.raises(UserError, match=rf"{tmp_path / 'run'} is in use by another run \(pid {os.getpid()} on "):
            run(compose(tmp_overrides(tmp_path, *SMOKE)))
    assert nothing_written(tmp_path) and not (tmp_path / "run" / checkpoint.FILENAME).exists()


def test_resume_without_a_checkpoint_says_so(tmp_path):
    with pytest.raises(UserError, match=r"trainer.resume=true but there is no checkpoint .*checkpoint.pt"):
        run(compose(tmp_overrides(tmp_path, *SMOKE, "trainer.resume=true")))
    assert nothing_written(tmp_path)


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_resume_from_a_damaged_checkpoint_is_one_line(tmp_path, damage):
    path = tmp_path / "run" / checkpoint.FILENAME
    checkpoint.save(path, {"model": torch.zeros(1000)})
    path.write_bytes(b"" if damage == "empty" else path.read_bytes()[:300])
    with pytest.raises(UserError, match=rf"cannot resume: {path} is damaged .*; delete it to start afresh"):
        run(compose(tmp_overrides(tmp_path, *SMOKE, "trainer.resume=true")))
    assert nothing_written(tmp_path)


class Killed(Exception):
    pass


def test_resume_with_other_settings_says_what_differs(tmp_path, monkeypatch):
    """A run stopped after its first epoch's checkpoint, then resumed with another lr, epochs and epsilon."""
    real_save = checkpoint.save

    def save_then_stop(path, state):
        real_save(path, state)
        raise Killed

    base = tmp_overrides(tmp_path, *SMOKE, "trainer.epochs=2", "run.tag=t")
    with monkeypatch.context() as m:
        m.setattr(checkpoint, "save", save_then_stop)
        with pytest.raises(Killed):
            run(compose(base))
    lr = checkpoint.load(tmp_path / "run" / checkpoint.FILENAME)["config"]["trainer"]["optimizer"]["lr"]
    changed = ["trainer.optimizer.lr=0.5", "trainer.epochs=3", "fr.epsilon=0.5", "trainer.resume=true"]
    with pytest.raises(UserError, match=rf"was made with other settings: fr.epsilon \S+ -> 0.5; prune.epsilon \S+ -> "
                                        rf"0.5; trainer.epochs 2 -> 3; trainer.optimizer.lr {lr} -> 0.5 \("):
        run(compose([*base, *changed]))
    assert nothing_written(tmp_path)


def test_copy_beside_the_record_is_atomic(tmp_path, monkeypatch):
    """A full disk while copying the packed file next to the record leaves no partial file."""
    from frx.finish import _keep_beside_record

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "model.float16.frx").write_bytes(b"x" * 1000)
    cfg = compose(tmp_overrides(tmp_path))

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    record = tmp_path / "records" / "r__seed0.json"
    with pytest.raises(OSError, match="No space"):
        _keep_beside_record(cfg, record, run_dir, [], {"float16": 1000})
    assert list((tmp_path / "records").iterdir()) == []


def test_stale_temp_files_of_killed_writes_are_removed(tmp_path):
    gone_pid = 2**22 + 7  # above Linux's largest pid: no such process
    old = time.time() - 2 * codec.STALE_AFTER_S
    stale = tmp_path / f".r__seed0.json.{gone_pid}.tmp"
    fresh = tmp_path / f".checkpoint.pt.{gone_pid}.tmp"  # perhaps a writer on another machine
    live = tmp_path / f".model.frx.{os.getpid()}.tmp"
    users = [tmp_path / "notes.tmp", tmp_path / f"mine.{gone_pid}.tmp", tmp_path / "r__seed0.json"]
    for p in (stale, fresh, live, *users):
        p.write_text("x")
    for p in (stale, live, *users):
        os.utime(p, (old, old))
    assert codec.remove_stale_temp_files(tmp_path) == [stale]
    assert not stale.exists() and all(p.exists() for p in (fresh, live, *users))


def _mnist_files(raw: Path, damaged: bytes, gz: bool) -> None:
    from frx.data import mnist

    raw.mkdir(parents=True)
    for name in mnist.FILES:
        good = _idx((2, 28, 28) if "images" in name else (2,))
        (raw / name).write_bytes(good)
    first = next(iter(mnist.FILES))
    (raw / first).unlink()
    (raw / (first + ".gz" if gz else first)).write_bytes(damaged)


@pytest.mark.parametrize("case, damaged, gz, message", [
    ("truncated-gz", gzip.compress(_idx((2, 28, 28)))[:40], True, "is truncated or not a valid .gz file"),
    ("not-gz", b"this is not gzip at all", True, "is truncated or not a valid .gz file"),
    ("truncated-idx", _idx((2, 28, 28))[:500], False, r"idx file has 484 values, its header says \(2, 28, 28\)"),
    ("cut-header", _idx((2, 28, 28))[:9], False, "ends inside its header"),
])
def test_damaged_mnist_files_are_one_line(tmp_path, case, damaged, gz, message):
    _mnist_files(tmp_path / "data" / "MNIST" / "raw", damaged, gz)
    with pytest.raises(UserError, match=message + ".*frx-data import mnist"):
        run(compose(tmp_overrides(tmp_path, "dataset=mnist", f"dataset.root={tmp_path / 'data'}")))
    assert not (tmp_path / "run").exists() and nothing_written(tmp_path)


@pytest.mark.parametrize("damaged, message", [
    (gzip.compress(_idx((2, 28, 28)))[:40], "is truncated or not a valid .gz file"),
    (b"\x1f\x8b garbage", "is truncated or not a valid .gz file"),
    (gzip.compress(_idx((2, 28, 28))[:9]), "ends inside its header"),
])
def test_frx_data_import_of_a_damaged_gz_is_one_line(tmp_path, capsys, damaged, message):
    src = tmp_path / "src"
    _mnist_files(src, damaged, gz=True)
    assert data_cli.main(["--root", str(tmp_path / "root"), "import", "mnist", str(src), "--no-verify"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("frx-data: error: ") and message in err and "\n" not in err
    assert not (tmp_path / "root").exists()


# ---------------------------------------------------------------- the method (frx.regularize) and its handle

def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))


def _tied() -> nn.Module:
    net = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8))
    net[1].weight = net[0].weight
    return net


def _half_done() -> nn.Module:
    net = _net()
    frx.regularize(net, include=["2"])
    return net


def _on_meta() -> nn.Module:
    with torch.device("meta"):
        return _net()


@pytest.mark.parametrize("make, kwargs, message", [
    (_net, {"dims": [7]}, r"0.weight: dims \[7\] out of range for a 4-dim weight \(dims run from -4 to 3\)"),
    (lambda: nn.Conv2d(1, 4, 3), {"dims": [9]}, r"dims \[9\] out of range"),
    (lambda: nn.Conv2d(1, 4, 3), {"dims": [-5]}, r"dims \[-5\] out of range"),
    (_net, {"dims": []}, "dims must name at least one dimension"),
    (_tied, {}, r"0.weight is one tensor with 1.weight \(tied weights\)"),
    (_tied, {"include": ["0"]}, r"0.weight is one tensor with 1.weight \(tied weights\)"),
    (_net, {"min_kept": {"conv": -5}}, r"min_kept\['conv'\] must be an integer >= 1, got -5"),
    (_net, {"min_kept": {"conv": "abc"}}, r"min_kept\['conv'\] must be an integer >= 1, got 'abc'"),
    (_net, {"views": {"no.such.weight": (1, 2)}}, "views name weights that are not regularized: no.such.weight"),
    (_net, {"views": {"2.weight": (10, 5)}}, r"2.weight: view \(10, 5\) does not match weight shape \(10, 144\)"),
    (_on_meta, {}, "0.weight is on the meta device"),
    (lambda: nn.Linear(0, 5), {}, r"weight has no elements \(shape \(5, 0\)\)"),
    (_half_done, {}, "2.weight is already regularized"),
    (_net, {"include": ["nomatch"]}, r"include pattern 'nomatch' matches no weight .*\(layers: 0, 2\)"),
    (_net, {"exclude": ["Conv2d", "Linear"]}, "no weight to regularize"),
], ids=["dims-7", "conv-dims-9", "dims-neg", "dims-empty", "tied", "tied-one", "min_kept-neg", "min_kept-str",
        "views-stray", "views-shape", "meta", "empty-linear", "half-done", "include-nomatch", "exclude-all"])
def test_regularize_refuses_before_changing_the_model(make, kwargs, message):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Linear(0, 5): torch warns of its empty init
        net = make()
    before = {n for n, _, _ in fr_tensors(net)}
    weights = {} if make is _on_meta else {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(ValueError, match=message):
        frx.regularize(net, **kwargs)
    assert {n for n, _, _ in fr_tensors(net)} == before  # nothing changed, nothing half-applied
    for k, v in weights.items():
        assert torch.equal(net.state_dict()[k], v)


def test_fr_handle_refuses_to_act_after_export():
    net = _net()
    fr = frx.regularize(net, epsilon=0.1, gamma=0.5)
    frx.export(net)
    net.train()
    for act in (fr.step, fr.epoch_end, fr.kept):
        with pytest.raises(RuntimeError, match=r"0.weight is no longer regularized \(the model was exported\)"):
            act()


def test_frx_data_import_into_a_root_under_a_file_is_one_line(tmp_path, capsys):
    src = tmp_path / "src"
    _mnist_files(src, _idx((2, 28, 28)), gz=False)
    (tmp_path / "afile").write_text("mine")
    assert data_cli.main(["--root", str(tmp_path / "afile" / "root"), "import", "mnist", str(src), "--no-verify"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("frx-data: error: ") and "Not a directory" in err and "\n" not in err
    assert (tmp_path / "afile").read_text() == "mine"
