"""The checks of the machine before a run writes anything (its folders, their free space), and the Hydra
callback that runs them, with the config's validation, before Hydra makes the run folder."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any, Optional

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .config import UserError, _check, validate
from .distributed import launch_rank
from .naming import run_stem

# file systems that hold no user files
_NOT_FOR_FILES = ("/proc", "/sys", "/dev")


def check_paths(cfg: DictConfig) -> None:
    """Each folder a run writes (run.dir, run.records_dir) can be made and written: not under a regular
    file, not in /proc, /sys or /dev, writable. Creates nothing."""
    for key in ("run.dir", "run.records_dir"):
        path = Path(str(OmegaConf.select(cfg, key))).expanduser().absolute()
        _check(not any(str(path) == p or str(path).startswith(p + "/") for p in _NOT_FOR_FILES),
               f"{key}={path} is in {path.parts[0]}{path.parts[1]}: pick a folder for files")
        existing = path
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        _check(existing.is_dir(), f"{key}={path} is under {existing}, which is a file, not a folder")
        _check(os.access(existing, os.W_OK | os.X_OK), f"{key}={path}: {existing} is not writable")


def check_free_space(folder: Path, need: int, key: str = "run.dir", what: str = "a checkpoint of this model") -> None:
    """Refuse to start when `folder` (or its nearest existing parent) has less than `need` bytes free."""
    existing = Path(folder).absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    _check(free >= need, f"{key}={folder}: only {free / 2**20:.1f} MiB free on its disk, {what} "
                         f"needs about {need / 2**20:.1f} MiB")


def _refuse(what: str, e: Exception) -> None:
    print(f"frx-train: error: {what}{str(e).splitlines()[0]}", file=sys.stderr, flush=True)
    sys.exit(2)


class ValidateFirst(Callback):
    """Hydra callback (hydra.callbacks in config.yaml): checks the config and its folders before Hydra makes
    the run folder, and every point of a sweep (-m) before it launches any job, so that one bad point stops
    the sweep before anything trains."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        from .rundir import hold

        try:
            check_paths(validate(config))
            if launch_rank() == 0:  # the first process of a run on several holds the lock for them all
                hold(Path(str(config.run.dir)))  # before Hydra writes .hydra/ and train.log into a live run's folder
        except UserError as e:
            _refuse("", e)

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        from .rundir import release

        release(Path(str(config.run.dir)))

    # the sweep points that failed at run time, in this process (None: no sweep runs its points here)
    failed_points: Optional[list] = None

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        failed, ValidateFirst.failed_points = ValidateFirst.failed_points or [], None
        if failed:
            print(f"frx-train: error: {len(failed)} sweep point(s) failed (said above); the others ran",
                  file=sys.stderr, flush=True)
            sys.exit(1)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from .rundir import locked

        # as typed: an override holding an interpolation (run.dir=runs/${fr.enabled}) resolves per point
        overrides = OmegaConf.to_container(config.hydra.overrides.task, resolve=False)
        points = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(overrides), None)[0]

        loader = GlobalHydra.instance().config_loader()
        owners: dict[Path, str] = {}  # each run folder and record, and the point that writes it
        for point in points:
            swept = " ".join([o for o in point if sum(o in p for p in points) < len(points)] or point)
            try:
                cfg = loader.load_configuration(kwargs.get("config_name") or "config", point, RunMode.RUN)
                check_paths(validate(cfg))
                run_dir = Path(str(cfg.run.dir)).absolute()
                record = Path(str(cfg.run.records_dir)).absolute() / f"{run_stem(cfg)}.json"
                for path in (run_dir, record):
                    _check(path not in owners, f"it shares {path} with sweep point {owners.get(path)}: the points "
                                               f"differ only in settings that do not name a run; set run.tag per point")
                    owners[path] = swept
                if run_dir.is_dir():
                    with locked(run_dir):  # a live run's folder: refused before any job starts
                        pass
            except (UserError, OmegaConfBaseException, HydraException) as e:
                _refuse(f"sweep point {swept}: ", e)
        ValidateFirst.failed_points = []
