"""frx-train: train one configuration, evaluate it from its packed file, write its record.

    frx-train experiment=table1/lenet5_v2                 # one paper row
    frx-train experiment=table1/lenet5_v2 fr.epsilon=0.01 # any knob is an override
    frx-train -m fr.epsilon=0.01,0.001                    # a sweep (hydra/launcher=parallel: 2 at a time)
    frx-train experiment=demo                             # LeNet-5 with FR on the offline MNIST sample
    frx-train experiment=table1/lenet5_v2 trainer.resume=true  # continue after a crash

The run directory (`run.dir`, stable per experiment/overrides/scale/seed) holds the
checkpoint of the last finished epoch, the packed models (`model.float32.frx`,
`model.float16.frx`), sample pictures and Hydra's logs. The record (`frx.record.Record`)
goes to `run.records_dir`. The final metric is measured on a freshly built plain model
loaded from the float32 packed file; `value_fp16` from the float16 one; `value_live` on
the training model itself.

The parts: `frx.config` (schema, defaults, validation), `frx.naming` (run names),
`frx.loop` (the epochs, checkpoints, resuming), `frx.finish` (pack, evaluate, record).
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from . import data, models, tasks
from .config import CONF_DIR, UserError, check_free_space, check_paths, compose, task_name, validate
from .fr.codec import remove_stale_temp_files
from .finish import finish
from .loop import Loop, attach_fr, attach_pruner, pick_device, seed_everything
from .naming import override_tag, run_name, run_stem
from .record import Record
from .rundir import locked

__all__ = ["CONF_DIR", "UserError", "compose", "main", "override_tag", "run", "run_name", "run_stem", "validate"]
log = logging.getLogger("frx.train")


def load_data(cfg: DictConfig, device: torch.device):
    """The run's train/val splits, after checking that model and data fit."""
    try:
        data.check_compatible(cfg.model, cfg.dataset)
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
        raise UserError(f"this run is finished: {record_path} exists. Pass run.overwrite=true to train it again "
                        f"(or change seed / run.tag)")


def run(cfg: DictConfig) -> Record:
    """Train, pack, evaluate and record one configuration; returns the record."""
    t_start = time.time()
    cfg = validate(cfg)
    check_paths(cfg)
    stem = run_stem(cfg)
    record_path = Path(cfg.run.records_dir) / f"{stem}.json"
    _refuse_finished(cfg, record_path)
    if cfg.trainer.threads:
        torch.set_num_threads(int(cfg.trainer.threads))
    device = pick_device(cfg.trainer.device)
    seed_everything(int(cfg.seed), bool(cfg.trainer.deterministic))
    splits = load_data(cfg, device)
    task = tasks.build(task_name(cfg), cfg, splits, device, data.batches)
    model = models.build_from_config(cfg.model)
    try:
        handle = attach_fr(cfg, model, task)
    except ValueError as e:  # settings that do not fit this model (fr.include, fr.dims, ...)
        raise UserError(str(e)) from None
    model.to(device)
    if cfg.trainer.channels_last:
        model.to(memory_format=torch.channels_last)
    pruner = attach_pruner(cfg, model)

    run_dir = Path(str(cfg.run.dir))
    # a checkpoint holds the model and up to two optimizer states per weight; the packed files less
    state_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    check_free_space(run_dir, 4 * state_bytes + 2**20)
    check_free_space(record_path.parent, cfg.run.keep_packed_max_bytes + 2**20, "run.records_dir", "the record")
    run_dir.mkdir(parents=True, exist_ok=True)
    with locked(run_dir):
        _refuse_finished(cfg, record_path)  # again: another run may have finished it meanwhile
        for folder in (run_dir, record_path.parent):
            remove_stale_temp_files(folder)
        loop = Loop(cfg, model, task, splits, handle, pruner, stem, run_dir)
        loop.resume()
        log.info("%s: %s %s on %d train / %d val (%s), %d epochs x %d steps", run_name(cfg),
                 "fr" if handle else "prune" if pruner else "plain", model.__class__.__name__,
                 len(splits.train), len(splits.val), device, cfg.trainer.epochs, loop.steps)
        loop.fit()
        return finish(cfg, loop, run_dir, record_path, device, t_start)


def _main(cfg: DictConfig) -> None:
    try:
        run(cfg)
    except UserError as e:
        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            raise
        print(f"frx-train: error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)


def main() -> None:
    hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")(_main)()


if __name__ == "__main__":
    # run the copy imported as frx.train, so that launchers pickle the task function by reference
    from frx.train import main as _main_by_reference

    _main_by_reference()
