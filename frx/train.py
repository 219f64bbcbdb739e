"""frx-train: train one configuration, evaluate it from its packed file, write its record.

    frx-train experiment=table1/lenet5_v2                 # one paper row
    frx-train experiment=table1/lenet5_v2 fr.epsilon=0.01 # any knob is an override
    frx-train -m fr.epsilon=0.01,0.001                    # a sweep (hydra/launcher=parallel: 2 at a time)
    frx-train experiment=demo                             # LeNet-5 with FR on the offline MNIST sample
    frx-train experiment=table1/lenet5_v2 trainer.resume=true  # continue after a crash

The run directory (`run.dir`, stable per experiment/overrides/scale/seed) holds the
checkpoint of the last finished epoch, the packed models (`model.float32.frx`,
`model.float16.frx`), metrics.csv, sample pictures and Hydra's logs; when the run finishes the
checkpoint and the float32 pack are deleted (the large files) unless run.keep_all=true. The record (`frx.record.Record`) goes to
`run.records_dir` (outputs/records; the paper tables read results/runs, which
scripts/run_missing.py fills). A finished run is skipped with a note (exit status 0), in a
sweep too; Ctrl-C saves a checkpoint, prints the command that resumes and exits with 130. The final metric is measured on a freshly built plain model
loaded from the float32 packed file; `value_fp16` from the float16 one; `value_live` on
the training model itself.

The parts: `frx.config` (schema, defaults, validation), `frx.naming` (run names),
`frx.loop` (the epochs, checkpoints, resuming), `frx.finish` (pack, evaluate, record).

One run on several processes: `torchrun --nproc_per_node N -m frx.train experiment=...` (`frx.distributed`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shlex
import sys
import time
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException
from hydra.types import RunMode
from omegaconf import DictConfig

from . import checkpoint, data, distributed, models, tasks
from .checks import ValidateFirst, check_free_space, check_paths
from .cli import check_command_line
from .config import CONF_DIR, UserError, compose, task_name, validate
from .files import remove_stale_temp_files
from .finish import finish
from .loop import Interrupted, Loop, pick_device, seed_everything, steps_per_epoch
from .method import attach_fr, attach_pruner, method
from .naming import hydra_overrides, override_tag, run_name, run_stem
from .record import Record, git_commit
from .rundir import locked

__all__ = ["CONF_DIR", "RunFinished", "UserError", "compose", "main", "override_tag", "run", "run_name", "run_stem", "validate"]
log = logging.getLogger("frx.train")


class RunFinished(UserError):
    """The run's record exists and run.overwrite is not set: nothing to do."""


def load_data(cfg: DictConfig, device: torch.device):
    """The run's train/val splits, after checking that model and data fit."""
    try:
        tasks.check_compatible(cfg.model, cfg.dataset)
    except (ValueError, TypeError, KeyError) as e:
        raise UserError(str(e)) from None
    try:
        splits = data.load(cfg.dataset)
    except (FileNotFoundError, ValueError) as e:  # DataMissing says how to get the data; bad or damaged files
        raise UserError(str(e)) from None
    if device.type == "cuda":  # keep in-memory data sets on the GPU (Carvana streams from disk)
        splits.train, splits.val = (s.to(device) if isinstance(s, data.TensorSplit) else s
                                    for s in (splits.train, splits.val))
        splits.extra_val = {k: s.to(device) for k, s in splits.extra_val.items()}
    return splits


def _refuse_finished(cfg: DictConfig, record_path: Path) -> None:
    if record_path.exists() and not cfg.run.overwrite:
        raise RunFinished(f"this run is finished: {record_path} exists; skipped (run.overwrite=true trains it "
                          f"again; or change seed / run.tag)")


def run(cfg: DictConfig) -> Record | None:
    """Train, pack, evaluate and record one configuration; returns the record (on several processes, the
    first one's; the others return None)."""
    t_start = time.time()
    commit = git_commit()  # the code that runs: HEAD may move while it trains
    cfg = validate(cfg)
    check_paths(cfg)
    stem = run_stem(cfg)
    record_path = Path(cfg.run.records_dir) / f"{stem}.json"
    _refuse_finished(cfg, record_path)
    if cfg.trainer.threads:
        torch.set_num_threads(int(cfg.trainer.threads))
    device = distributed.init(pick_device(cfg.trainer.device), cfg.trainer.dist_timeout_s)
    seed_everything(int(cfg.seed), bool(cfg.trainer.deterministic))
    splits = load_data(cfg, device)
    task = tasks.build(task_name(cfg), cfg, splits, device, data.batches)
    if distributed.active() and type(task).train_step is not tasks.Task.train_step:
        raise UserError(f"task {task.name} steps its networks one by one, which does not run on several processes; "
                        f"train it as one process")
    if distributed.active() and cfg.fr.enabled and cfg.fr.keep_gain:
        raise UserError("fr.keep_gain measures each process's own batches, which would scale their copies of the "
                        "model apart; train it as one process")
    if cfg.trainer.amp and not task.amp:
        log.info("trainer.amp: %s autocast is for CUDA; on the %s this run computes in float32 "
                 "(trainer.amp_dtype=bfloat16 autocasts on the CPU)", cfg.trainer.amp_dtype, device.type)
    model = models.build_from_config(cfg.model)
    try:
        handle = attach_fr(cfg, model, task)
    except ValueError as e:  # settings that do not fit this model (fr.include, fr.dims, ...)
        raise UserError(str(e)) from None
    model.to(device)
    if cfg.trainer.channels_last:
        model.to(memory_format=torch.channels_last)
    if cfg.trainer.sync_bn:
        model = distributed.sync_batchnorm(model, device)
    pruner = attach_pruner(cfg, model)

    run_dir = Path(str(cfg.run.dir))
    # a checkpoint holds the model, up to two optimizer states per weight (3.0x the model's state with Adam) and
    # ~100 bytes per logged step; its atomic replace holds two at once. The packed files need less
    state_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    tr = cfg.trainer
    logged_steps = tr.epochs * steps_per_epoch(len(splits.train), tr.batch_size, tr.max_steps_per_epoch) // tr.log_every
    check_free_space(run_dir, 2 * (3 * state_bytes + 100 * logged_steps) + 2**20)
    check_free_space(record_path.parent, cfg.run.keep_packed_max_bytes + 2**20, "run.records_dir", "the record")
    run_dir.mkdir(parents=True, exist_ok=True)
    main_process = locked(run_dir) if distributed.is_main() else contextlib.nullcontext()  # one lock per run
    with main_process, full_disk_stops(cfg, run_dir):
        _refuse_finished(cfg, record_path)  # again: another run may have finished it meanwhile
        if distributed.is_main():
            for folder in (run_dir, record_path.parent):
                remove_stale_temp_files(folder)
        if requeued_by_slurm() and (run_dir / checkpoint.FILENAME).exists():
            cfg.trainer.resume = True
        loop = Loop(cfg, model, task, splits, method(model, handle, pruner), stem, run_dir)
        distributed.seed_process(int(cfg.seed))
        loop.resume()
        log.info("%s: %s %s on %d train / %d val (%s), %d epochs x %d steps", run_name(cfg),
                 "fr" if handle else "prune" if pruner else "plain", model.__class__.__name__,
                 len(splits.train), len(splits.val), device, cfg.trainer.epochs, loop.steps)
        loop.fit()
        if not distributed.is_main():
            return None
        record = finish(cfg, loop, run_dir, record_path, device, t_start, commit)
        if not cfg.run.keep_all:  # the large files, of no use once the record is written (float16 is the packed model)
            for path in (loop.ckpt_path, run_dir / "model.float32.frx"):
                path.unlink(missing_ok=True)
        return record


def requeued_by_slurm() -> bool:
    """A Slurm job that was requeued (submitit requeues a hydra/launcher=slurm job on its signal before a preemption
    or time limit, after the loop saved a checkpoint): it continues from the checkpoint."""
    return int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0


@contextlib.contextmanager
def full_disk_stops(cfg: DictConfig, run_dir: Path):
    """A disk that fills up mid-run ends the run with one line (UserError); checkpoints are written atomically,
    so the last one saved stays intact. torch.save reports a failed write as a RuntimeError caused by the OSError."""
    try:
        yield
    except (OSError, RuntimeError) as e:
        cause = e
        while cause is not None and getattr(cause, "errno", None) not in (errno.ENOSPC, errno.EDQUOT):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        saved = run_dir / checkpoint.FILENAME
        then = f"{saved} (the last checkpoint) is intact; free some space, then resume with: {resume_command(cfg)}" \
            if saved.exists() else "no checkpoint was saved; free some space and run it again"
        raise UserError(f"out of disk space ({cause.strerror}) while writing the run's files: {then}") from None


class SweepPointFailed(CompactHydraException):
    """A sweep point stopped with an error (said in one line as it happened); the other points ran."""


def resume_command(cfg: DictConfig) -> str:
    """The command line that continues this run from its checkpoint."""
    keep = [o for o in hydra_overrides(cfg) if o.split("=", 1)[0].lstrip("+~") != "trainer.resume"]
    world = distributed.world_size()
    if world == 1:
        launch = ["frx-train"]
    elif int(os.environ.get("LOCAL_WORLD_SIZE", 0)) == world:
        launch = ["torchrun", f"--nproc_per_node={world}", "-m", "frx.train"]
    else:
        launch = ["(the same launcher)", "-m", "frx.train"]
    return " ".join([*launch, *map(shlex.quote, keep), "trainer.resume=true"])


def _main(cfg: DictConfig) -> None:
    first = distributed.launch_rank() == 0  # the one process that speaks for a run on several
    try:
        run(cfg)
    except RunFinished as e:  # a note, not an error: a sweep goes on with its other points
        if first:
            print(f"frx-train: {e}", flush=True)
    except (Interrupted, KeyboardInterrupt) as e:
        if not first:
            sys.exit(130)
        saved = Path(str(cfg.run.dir)) / checkpoint.FILENAME
        what = str(e) if isinstance(e, Interrupted) else (
            f"interrupted; {saved} (after the last finished epoch) is kept" if saved.exists()
            else "interrupted before the first checkpoint")
        print(f"\nfrx-train: {what}\n  resume with: {resume_command(cfg)}", file=sys.stderr, flush=True)
        sys.exit(130)
    except UserError as e:
        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            # one line now, and the other points run; the sweep ends with status 1 (ValidateFirst.on_multirun_end,
            # or the launcher's report of a SweepPointFailed where the points run in other processes)
            print(f"frx-train: error: sweep point {' '.join(hydra_overrides(cfg))}: {e}", file=sys.stderr, flush=True)
            if ValidateFirst.failed_points is None:
                raise SweepPointFailed("frx-train: error: a sweep point failed (said above)") from None
            ValidateFirst.failed_points.append(hydra_overrides(cfg))
            return
        where = "" if first else f" (process {distributed.launch_rank()})"
        print(f"frx-train: error{where}: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    except Exception as e:
        if not distributed.lost_peer(e):
            raise
        print(f"frx-train: error: {distributed.lost_peer_message(e)}; resume from its last checkpoint with: "
              f"{resume_command(cfg)}", file=sys.stderr, flush=True)
        sys.exit(1)
    finally:
        distributed.close()


def main() -> None:
    try:
        check_command_line(sys.argv[1:])
    except UserError as e:
        print(f"frx-train: error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    if os.environ.get("RANK", "0") != "0":  # under torchrun: Hydra's .hydra/ folder from the first process only
        sys.argv.append("hydra.output_subdir=null")
    hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")(_main)()


if __name__ == "__main__":
    # run the copy imported as frx.train, so that launchers pickle the task function by reference
    from frx.train import main as _main_by_reference

    _main_by_reference()
