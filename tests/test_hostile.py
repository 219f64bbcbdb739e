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
from frx import checkpoint, files
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
    ("trainer.amp_dtype=int8", r"trainer.amp_dtype: Invalid value .int8., expected one of \[float16, bfloat16\]"),
    ("trainer.scheduler.name=onecycle",
     r"trainer.scheduler.name: Invalid value .onecycle., expected one of \[cosine, linear, none\]"),
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
    old = time.time() - 2 * files.STALE_AFTER_S
    stale = tmp_path / f".r__seed0.json.{gone_pid}.tmp"
    fresh = tmp_path / f".checkpoint.pt.{gone_pid}.tmp"  # perhaps a writer on another machine
    live = tmp_path / f".model.frx.{os.getpid()}.tmp"
    users = [tmp_path / "notes.tmp", tmp_path / f"mine.{gone_pid}.tmp", tmp_path / "r__seed0.json"]
    for p in (stale, fresh, live, *users):
        p.write_text("x")
    for p in (stale, live, *users):
        os.utime(p, (old, old))
    assert files.remove_stale_temp_files(tmp_path) == [stale]
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


# ---------------------------------------------------------------- the paper tables, live runs, names, disks, headers

def test_report_of_other_records_leaves_the_paper_tables_alone(tmp_path, monkeypatch, capsys):
    """Only the paper records, or --out named, write results/; any other records go to outputs/report."""
    from frx.report import cli as report_cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "results" / "layers").mkdir(parents=True)
    paper = {tmp_path / "results" / "table1.md": "the paper's table", tmp_path / "results" / "layers" / "x.md": "x"}
    for path, text in paper.items():
        path.write_text(text)
    (tmp_path / "outputs" / "records").mkdir(parents=True)
    assert report_cli.main(["--records", "outputs/records", "--no-figures"]) == 0
    assert all(path.read_text() == text for path, text in paper.items())
    assert (tmp_path / "outputs" / "report" / "table1.md").exists()
    assert report_cli.main(["--no-figures"]) == 0  # make report: the paper records into results/
    assert (tmp_path / "results" / "table1.md").read_text() != paper[tmp_path / "results" / "table1.md"]


def test_refused_second_run_leaves_the_live_run_alone(tmp_path, monkeypatch, capsys):
    """Refused before Hydra writes .hydra/ or train.log into the live run's folder, and before any data loads."""
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "run"
    live = {run_dir / ".hydra" / "config.yaml": "the live run's config\n",
            run_dir / "train.log": "the live run's log\n",
            run_dir / ".hydra" / "overrides.yaml": "- the live run's overrides\n"}
    for path, text in live.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    monkeypatch.setattr(frx.train, "load_data", lambda *a: pytest.fail("the refused run loaded its data"))
    monkeypatch.setattr(sys, "argv", ["frx-train", *tmp_overrides(tmp_path, *SMOKE)])
    with locked(run_dir), pytest.raises(SystemExit) as exit_:
        frx.train.main()
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"frx-train: error: {run_dir} is in use by another run (pid {os.getpid()} on ")
    assert "\n" not in err and all(path.read_text() == text for path, text in live.items())
    names = sorted(p.name for p in run_dir.rglob("*"))
    assert names == [".hydra", ".lock", "config.yaml", "overrides.yaml", "train.log"]


@pytest.mark.parametrize("override", [
    "run.tag=../../../results/runs/table1/x", "run.tag=a/b", "run.tag=..", "run.name=/tmp/x", "run.name=../x",
    "run.name=a//b", "run.name=a/../../b", "scale.name=../x", "run.tag=a\\b",
])
def test_names_that_become_paths_stay_inside_their_folder(tmp_path, monkeypatch, override):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=r"becomes part of file names: no '\.\.', "):
        run(compose(tmp_overrides(tmp_path, *SMOKE, override)))
    assert [p.name for p in tmp_path.iterdir()] == []


def test_name_with_a_control_character_is_refused():
    cfg = compose(SMOKE)
    cfg.run.tag = "a\0b"
    with pytest.raises(UserError, match=r"run.tag='a\\x00b' becomes part of file names"):
        frx.config.validate(cfg)


def test_cli_refuses_a_tag_that_escapes_with_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["frx-train", *SMOKE, "run.tag=../../../results/runs/table1/x"])
    with pytest.raises(SystemExit) as exit_:
        frx.train.main()
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip() == ("frx-train: error: run.tag='../../../results/runs/table1/x' becomes "
                                               "part of file names: no '..', no '/', '\\' or control characters")
    assert list(tmp_path.iterdir()) == []


def test_full_disk_mid_run_is_one_line_and_the_last_checkpoint_resumes(tmp_path, monkeypatch, capsys):
    """The disk fills up while the second epoch's checkpoint is written (torch.save's write fails)."""
    import errno
    import io

    real_open, checkpoints = open, []

    class FullDisk(io.RawIOBase):
        def writable(self):
            return True

        def write(self, b):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def open_on_a_full_disk(path, mode="r", *args, **kwargs):
        if checkpoint.FILENAME in Path(path).name and "w" in mode:
            checkpoints.append(path)
            if len(checkpoints) == 2:
                real_open(path, mode).close()  # the temporary file exists, nothing fits in it
                return FullDisk()
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.chdir(tmp_path)
    args = tmp_overrides(tmp_path, *SMOKE, "trainer.epochs=2")
    monkeypatch.setattr(files, "open", open_on_a_full_disk, raising=False)
    monkeypatch.setattr(sys, "argv", ["frx-train", *args])
    with pytest.raises(SystemExit) as exit_:
        frx.train.main()
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    saved = tmp_path / "run" / checkpoint.FILENAME
    assert err.startswith(f"frx-train: error: out of disk space (No space left on device) while writing the run's "
                          f"files: {saved} (the last checkpoint) is intact; free some space, then resume with: "
                          f"frx-train ") and err.endswith(" trainer.resume=true") and "\n" not in err
    assert checkpoint.load(saved)["epoch"] == 1 and not list((tmp_path / "run").glob(".*.tmp"))
    monkeypatch.setattr(files, "open", real_open, raising=False)
    record = run(compose([*args, "trainer.resume=true"]))
    assert len(record.epochs) == 2 and nothing_written(tmp_path) is False


def test_free_space_check_asks_for_the_checkpoint_replace(tmp_path, monkeypatch):
    """Two checkpoints at once (the old one and its replacement), each 3x the model's state with Adam."""
    asked = []
    monkeypatch.setattr(frx.train, "check_free_space", lambda folder, need, *a: asked.append(need))
    monkeypatch.setattr(frx.train, "locked", lambda d: pytest.skip("measured"))  # stop before training
    cfg = compose(tmp_overrides(tmp_path, *SMOKE))
    with pytest.raises(pytest.skip.Exception):
        run(cfg)
    model = frx.models.build_from_config(cfg.model)
    frx.regularize(model)
    state = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    assert asked[0] >= 6 * state


def _claiming(path: Path, entry: dict, payload: bytes) -> Path:
    codec._write(path, [entry], [payload], {"model": "lenet300"})
    return path


def test_packed_header_claiming_a_huge_shape_is_refused_before_allocating(tmp_path, capsys):
    big = {"name": "fc1.weight", "kind": "fr", "layer": "linear", "shape": [200000, 200000], "view": [200000, 200000],
           "dims": [0, 1], "k": 1, "torch_dtype": "torch.float32", "dtype": "float32"}
    path = _claiming(tmp_path / "huge.frx", big, struct_f32(1.0))
    assert path.stat().st_size < 250
    t0 = time.time()
    with pytest.raises(codec.CorruptFile, match=rf"{path}: header claims 40,000,000,000 values, more than a "
                                                rf"{path.stat().st_size}-byte packed file can hold"):
        frx.unpack(path)
    from frx import evaluate

    assert evaluate.main([str(path), "dataset=mnist5k"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"frx-eval: error: {path}: header claims") and err.count("\n") == 1
    assert time.time() - t0 < 5


def struct_f32(*values: float) -> bytes:
    import struct

    return struct.pack(f"<{len(values)}f", *values)


def test_non_finite_weights_are_refused_at_pack_time_and_in_a_packed_file(tmp_path, capsys):
    net = _net()
    with torch.no_grad():
        net[2].bias[3] = float("nan")
    for dtype in ("float32", "float16"):
        with pytest.raises(ValueError, match=r"2.bias has non-finite values \(nan or inf\)"):
            frx.pack(net, tmp_path / f"nan.{dtype}.frx", dtype=dtype)
    assert list(tmp_path.iterdir()) == []
    entry = {"name": "w", "kind": "plain", "shape": [2], "torch_dtype": "torch.float32", "dtype": "float32"}
    path = _claiming(tmp_path / "inf.frx", entry, struct_f32(1.0, float("inf")))
    with pytest.raises(codec.CorruptFile, match=rf"{path}: w has non-finite values"):
        frx.unpack(path)
    from frx import evaluate

    assert evaluate.main([str(path), "dataset=mnist5k"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"frx-eval: error: {path}: w has non-finite values") and err.count("\n") == 1


@pytest.mark.parametrize("overrides, message", [
    (["trainer.device=mps"], r"trainer.device=mps but MPS is not available here"),
    (["trainer.optimizer.name=sgd", "trainer.optimizer.momentum=0", "trainer.optimizer.nesterov=true"],
     r"trainer.optimizer.nesterov=true needs trainer.optimizer.momentum > 0"),
    (["trainer.optimizer.lr=inf"], r"trainer.optimizer.lr must be > 0 and finite, got inf"),
    (["trainer.optimizer.weight_decay=inf"], r"trainer.optimizer.weight_decay must be >= 0 and finite"),
    (["trainer.optimizer.generator_lr=1e-3"], r"trainer.optimizer.generator_lr is for a GAN's generator; this run's "
                                              r"task is classification"),
    (["trainer.optimizer.generator_lr=-1"], r"trainer.optimizer.generator_lr must be > 0 and finite, got -1"),
    (["trainer.optimizer.generator_lr=1e-4", "trainer.scheduler.min_lr=1e-3"],
     r"trainer.scheduler.min_lr must be in \[0, trainer.optimizer.lr\] \(and generator_lr\), got 0.001"),
])
def test_settings_torch_would_reject_are_refused_before_any_work(tmp_path, overrides, message):
    if overrides == ["trainer.device=mps"] and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    with pytest.raises(UserError, match=message):
        run(compose(tmp_overrides(tmp_path, *SMOKE, *overrides)))
    assert not (tmp_path / "run").exists() and nothing_written(tmp_path)


def test_a_cuda_device_the_machine_lacks_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(UserError, match=r"trainer.device=cuda:3 but this machine has 1 CUDA device\(s\): cuda:0 to "
                                        r"cuda:0"):
        run(compose(tmp_overrides(tmp_path, *SMOKE, "trainer.device=cuda:3")))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("kwargs, message", [
    ({"gamma": True}, r"gamma must be in \(0, 1\], got True"),
    ({"gamma": "0.1"}, r"gamma must be in \(0, 1\], got '0.1'"),
    ({"gamma": None}, r"gamma must be in \(0, 1\], got None"),
    ({"epsilon": float("nan")}, r"epsilon must be in \(0, 1\], got nan"),
    ({"epsilon": 2}, r"epsilon must be in \(0, 1\], got 2"),
])
def test_regularize_refuses_bad_schedule_values(kwargs, message):
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(ValueError, match=message):
        frx.regularize(net, **kwargs)
    assert not list(fr_tensors(net)) and all(torch.equal(net.state_dict()[k], v) for k, v in before.items())


# ---------------------------------------------------------------- sweeps

def _sweep(tmp_path, monkeypatch, *args: str) -> int:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["frx-train", "-m", *SMOKE, "trainer.threads=1", "trainer.progress=false",
                                      f"run.records_dir={tmp_path / 'records'}",
                                      f"hydra.sweep.dir={tmp_path / 'sweep'}", *args])
    with pytest.raises(SystemExit) as exit_:
        frx.train.main()
    return exit_.value.code


@pytest.mark.parametrize("sweep", ["trainer.threads=1,2", "run.records_dir=a,b"])
def test_sweep_points_sharing_a_run_folder_are_refused_up_front(tmp_path, monkeypatch, capsys, sweep):
    assert _sweep(tmp_path, monkeypatch, sweep) == 2
    err = capsys.readouterr().err.strip()
    second, first = sweep.replace("1,2", "2").replace("a,b", "b"), sweep.replace(",2", "").replace(",b", "")
    assert err.startswith(f"frx-train: error: sweep point {second}: it shares ") and "\n" not in err
    assert f"with sweep point {first}: the points differ only in settings that do not name a run; set run.tag" in err
    assert not (tmp_path / "sweep").exists() and not (tmp_path / "outputs").exists() and nothing_written(tmp_path)


def test_sweep_point_in_a_live_run_folder_is_refused_up_front(tmp_path, monkeypatch, capsys):
    live = tmp_path / "outputs" / "demo__b__smoke__seed0"
    live.mkdir(parents=True)
    with locked(live):
        assert _sweep(tmp_path, monkeypatch, "run.tag=a,b") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"frx-train: error: sweep point run.tag=b: {live} is in use by another run "
                          f"(pid {os.getpid()} on ") and "\n" not in err
    assert sorted(p.name for p in (tmp_path / "outputs").iterdir()) == [live.name] and nothing_written(tmp_path)


def test_sweep_point_failing_at_run_time_is_one_line_and_the_others_finish(tmp_path, monkeypatch, capsys):
    """fr.exclude=[nomatch] passes the checks up front and fails when FR is applied to the model."""
    assert _sweep(tmp_path, monkeypatch, "fr.exclude=[nomatch],[conv1]") == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    failed = [line for line in err if line.startswith("frx-train: error: sweep point ")]
    assert len(failed) == 1 and "fr.exclude=[nomatch]" in failed[0]
    assert failed[0].endswith("exclude pattern 'nomatch' matches no weight of a Conv/Linear layer (layers: conv1, "
                              "conv2, fc1, fc2)")
    assert err[-1] == "frx-train: error: 1 sweep point(s) failed (said above); the others ran" and len(err) == 2
    records = list((tmp_path / "records").rglob("*.json"))
    assert len(records) == 1 and "fr.exclude=-conv1-" in records[0].name


# ---------------------------------------------------------------- records, files, signals, checkpoints from elsewhere

def test_records_with_malformed_fields_are_skipped_with_a_note(tmp_path, capsys):
    import json

    from frx.report.frames import load_records

    good = json.loads((Path(__file__).parent.parent / "results/runs/table1/lenet5_v2__seed0.json").read_text())
    (tmp_path / "good.json").write_text(json.dumps(good))
    damage = {"value": lambda r: r["metric"].update(value="0.99"), "kept": lambda r: r["tensors"][0].update(kept="x"),
              "seed": lambda r: r.update(seed="zero"), "counts": lambda r: r["counts"].update(kept_weights=None),
              "epochs": lambda r: r.update(epochs={"1": 2}), "table": lambda r: r.update(table="one")}
    for name, spoil in damage.items():
        bad = json.loads(json.dumps(good))
        spoil(bad)
        (tmp_path / f"{name}.json").write_text(json.dumps(bad))
    assert [r.path for r in load_records(tmp_path)] == ["good.json"]
    notes = capsys.readouterr().err.strip().splitlines()
    assert sorted(notes) == sorted(f"frx-report: skipping {tmp_path / name}.json: " + notes_by_name(notes, name)
                                   for name in damage)


def notes_by_name(notes: list[str], name: str) -> str:
    return next(n.split(".json: ", 1)[1] for n in notes if f"/{name}.json: " in n)


@pytest.mark.parametrize("content", [b"not a pickle at all", b"\x80\x02cos\nsystem\nq\x00."])
def test_cifar_batch_that_is_not_one_is_one_line_naming_the_file(tmp_path, content):
    from frx.data import cifar10

    d = cifar10.batch_dir(tmp_path / "data")
    d.mkdir(parents=True)
    for name in [*cifar10.TRAIN, cifar10.TEST, "batches.meta"]:
        (d / name).write_bytes(content)
    with pytest.raises(UserError, match=rf"{d / cifar10.TRAIN[0]} is not a CIFAR-10 python batch"):
        run(compose(tmp_overrides(tmp_path, "dataset=cifar10", "model=resnet18", f"dataset.root={tmp_path / 'data'}")))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name, content, message", [
    ("cut.npz", b"PK\x03\x04 cut short", "is not what its name says (BadZipFile"),
    ("x.tar.gz", b"garbage", "is not what its name says (ReadError"),
    ("text.npz", b"hello", "text.npz: This file contains pickled"),
])
def test_frx_data_import_of_a_cifar_file_that_is_not_one_is_one_line(tmp_path, capsys, name, content, message):
    (tmp_path / name).write_bytes(content)
    assert data_cli.main(["--root", str(tmp_path / "root"), "import", "cifar10", str(tmp_path / name)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"frx-data: error: {tmp_path / name}") and message in err and "\n" not in err


SHORT_RUN = [*SMOKE, "trainer.epochs=2", "trainer.max_steps_per_epoch=4", "trainer.batch_size=8"]


def signal_at_step(monkeypatch, sig, at: int) -> None:
    from frx.tasks.classification import Classification

    real, calls = Classification.train_step, []

    def step(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == at:
            os.kill(os.getpid(), sig)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Classification, "train_step", step)


def test_sigterm_saves_a_checkpoint_at_the_step_and_resumes(tmp_path, monkeypatch):
    import signal

    from frx.loop import Interrupted

    before = signal.getsignal(signal.SIGTERM)
    with monkeypatch.context() as m:
        signal_at_step(m, signal.SIGTERM, 6)
        with pytest.raises(Interrupted, match=r"interrupted in epoch 2, after step 2 of 4; checkpoint saved to"):
            run(compose(tmp_overrides(tmp_path, *SHORT_RUN)))
    assert signal.getsignal(signal.SIGTERM) is before
    state = checkpoint.load(tmp_path / "run" / checkpoint.FILENAME)
    assert state["epoch"] == 1 and state["partial"]["step"] == 2
    record = run(compose(tmp_overrides(tmp_path, *SHORT_RUN, "trainer.resume=true")))
    assert [e["epoch"] for e in record.epochs] == [1, 2]


def test_submitit_signal_saves_a_checkpoint_then_goes_on_to_submitit(tmp_path, monkeypatch):
    """SIGUSR2 (before a Slurm preemption or time limit): the checkpoint first, then submitit's handler (which
    requeues the job)."""
    import signal

    from frx.loop import Interrupted

    seen = []
    previous = signal.signal(signal.SIGUSR2, lambda signum, frame: seen.append(
        checkpoint.load(tmp_path / "run" / checkpoint.FILENAME)["partial"]["step"]))
    try:
        with monkeypatch.context() as m:
            signal_at_step(m, signal.SIGUSR2, 3)
            with pytest.raises(Interrupted, match=r"after step 3 of 4"):
                run(compose(tmp_overrides(tmp_path, *SHORT_RUN)))
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert seen == [3]


def test_requeued_slurm_job_continues_from_its_checkpoint(tmp_path, monkeypatch, caplog):
    """submitit requeues the job (same command) after the loop saved a checkpoint on its signal."""
    import logging
    import signal

    from frx.loop import Interrupted

    previous = signal.signal(signal.SIGUSR2, lambda signum, frame: None)  # submitit's handler would requeue
    try:
        with monkeypatch.context() as m:
            signal_at_step(m, signal.SIGUSR2, 3)
            with pytest.raises(Interrupted):
                run(compose(tmp_overrides(tmp_path, *SHORT_RUN)))
    finally:
        signal.signal(signal.SIGUSR2, previous)
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    with caplog.at_level(logging.INFO, logger="frx.train"):
        record = run(compose(tmp_overrides(tmp_path, *SHORT_RUN)))
    assert any(r.getMessage().startswith("resuming ") and "step 3 of epoch 1" in r.getMessage() for r in caplog.records)
    assert [e["epoch"] for e in record.epochs] == [1, 2]
    assert frx.config.compose(["hydra/launcher=slurm"]).hydra.launcher.max_num_timeout > 0  # time limits requeue too


def test_checkpoints_load_without_running_code(tmp_path):
    """A checkpoint holds only what torch.load(weights_only=True) reads; a run folder from elsewhere whose
    checkpoint.pt would run code is refused on trainer.resume=true, and the code does not run."""
    class RunsCode:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "ran",))

    path = tmp_path / "run" / checkpoint.FILENAME
    path.parent.mkdir()
    torch.save({"epoch": 1, "rng": RunsCode()}, path)
    with pytest.raises(UserError, match=rf"cannot resume: {path} is damaged \(UnpicklingError: it holds objects "
                                        rf"other than tensors and plain values"):
        run(compose(tmp_overrides(tmp_path, *SMOKE, "trainer.resume=true")))
    assert not (tmp_path / "ran").exists() and nothing_written(tmp_path)


def test_checkpoint_of_a_run_loads_with_weights_only_and_an_old_one_still_resumes(tmp_path, monkeypatch):
    import numpy as np

    real_save = checkpoint.save

    def save_then_stop(path, state):
        real_save(path, state)
        raise Killed

    args = tmp_overrides(tmp_path, *SHORT_RUN)
    with monkeypatch.context() as m:
        m.setattr(checkpoint, "save", save_then_stop)
        with pytest.raises(Killed):
            run(compose(args))
    path = tmp_path / "run" / checkpoint.FILENAME
    state = torch.load(path, weights_only=True)  # no allowed globals needed
    kind, keys, *position = state["rng"]["numpy"]
    state["rng"]["numpy"] = (kind, keys.numpy().astype(np.uint32), *position)  # as checkpoints were written before
    torch.save(state, path)
    with pytest.raises(Exception):
        torch.load(path, weights_only=True)
    record = run(compose([*args, "trainer.resume=true"]))
    assert [e["epoch"] for e in record.epochs] == [1, 2]


def test_a_norm_statistic_beyond_float16_keeps_the_run_and_its_float16_pack(tmp_path):
    """A BatchNorm running variance above 65,504 cannot be float16: the run's float16 pack keeps FR's
    coefficients in float16 and the other tensors in float32, instead of the run ending unpacked."""
    from torch import nn

    from frx.finish import pack_within_range

    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))
    frx.regularize(model, epsilon=0.5, gamma=1.0)
    model[1].running_var.fill_(1e5)
    with pytest.raises(ValueError, match="beyond float16's range"):
        frx.pack(model, tmp_path / "plain.frx", dtype="float16")
    pack_within_range(model, tmp_path / "m.frx", "float16", {})
    state = frx.unpack(tmp_path / "m.frx")
    assert float(state["1.running_var"][0]) == 1e5
    entries = {e["name"]: e for e in frx.unpack_meta(tmp_path / "m.frx")["tensors"]}
    assert entries["0.weight"]["kind"] == "fr" and entries["1.running_var"]["dtype"] == "float32"
