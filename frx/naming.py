"""Run names: <name>[__<tag>][__<scale>]__seed<seed>, the stem of a run's record and of its run folder."""

from __future__ import annotations

import hashlib
import re
from typing import Any, Iterable, List

from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

# settings that change where a run's files go or how it is watched, never what it computes: they
# do not name a run, and a record that differs only there is up to date (scripts/run_missing.py)
NOT_COMPUTING = ("run.dir", "run.records_dir", "run.overwrite", "run.keep_all", "run.cache_dir", "dataset.root",
                 "trainer.resume", "trainer.device", "trainer.progress", "trainer.threads", "trainer.checkpoint",
                 "trainer.checkpoint_every_s", "trainer.log_every", "trainer.dist_timeout_s")
# the records behind the paper tables (frx-report reads them; scripts/run_missing.py writes them);
# a run started by hand keeps its record in run.records_dir (outputs/records) instead
PAPER_RECORDS = "results/runs"
# overrides named by other parts of the stem, or that are not the run's settings
_NAMED_ELSEWHERE = ("experiment", "seed", "scale", "run", "hydra")


def under(key: str, prefixes: Iterable[str]) -> bool:
    """Whether a dotted key (or config group) is one of `prefixes` or inside one."""
    return any(key == p or key.startswith(p + ".") or key.startswith(p + "/") for p in prefixes)


def check_name_part(key: str, value: str | None, folders: bool = False) -> None:
    """A value that becomes part of a file or folder name (the run's stem) stays inside its folder: no
    "..", no leading "/", no control characters, and "/" only where it separates folders (run.name)."""
    if not value:
        return
    parts = value.split("/") if folders else [value]
    ok = value.isprintable() and "\\" not in value and all(p not in ("", ".", "..") for p in parts) \
        and (folders or "/" not in value)
    if not ok:
        slashes = "no leading, trailing or double '/'" if folders else "no '/'"
        raise ValueError(f"{key}={value!r} becomes part of file names: no '..', {slashes}, '\\' or control characters")


def _hydra_node(root: Any):
    if root is not None and "hydra" in root:
        return root.hydra
    return HydraConfig.get() if HydraConfig.initialized() else None


def hydra_choice(group: str, root: Any = None) -> str | None:
    """The option chosen for a config group (e.g. "dataset"), when Hydra composed the config."""
    h = _hydra_node(root)
    return h.runtime.choices.get(group) if h is not None else None


def run_name(root: Any) -> str:
    """The record's `experiment`: run.name, else the experiment config, else adhoc/<model>-<dataset>."""
    if root.run.get("name"):
        return str(root.run.name)
    if hydra_choice("experiment", root):
        return str(hydra_choice("experiment", root))
    dataset = hydra_choice("dataset", root) or root.dataset.get("name", "data")
    return f"adhoc/{root.model.get('name', 'model')}-{dataset}"


def override_tag(overrides: List[str]) -> str:
    """A short, stable, file-name-safe tag from the overrides that change the run."""
    kept = [o for o in overrides if not under(o.split("=", 1)[0].lstrip("+~"), NOT_COMPUTING + _NAMED_ELSEWHERE)]
    if not kept:
        return ""
    tag = ",".join(sorted(kept))
    safe = re.sub(r"[^A-Za-z0-9._=,+-]", "-", tag)
    if len(safe) > 80:
        safe = safe[:60] + "-" + hashlib.sha1(tag.encode()).hexdigest()[:10]
    return safe


def hydra_overrides(root: Any) -> list[str]:
    """The command-line overrides of this run (of this point, in a sweep); [] without Hydra."""
    h = _hydra_node(root)
    return list(h.overrides.task) if h is not None else []


def run_tag(root: Any) -> str:
    """run.tag, else the tag of the command-line overrides ("" when none)."""
    if root.run.get("tag") is not None:
        return str(root.run.tag)
    return override_tag(hydra_overrides(root))


def run_stem(root: Any) -> str:
    """<name>[__<tag>][__<scale>]__seed<seed>; the record is <records_dir>/<stem>.json."""
    parts = [run_name(root)]
    tag = run_tag(root)
    if tag:
        parts.append(tag)
    scale = root.scale.get("name", "full")
    if scale != "full":
        parts.append(str(scale))
    return "__".join(parts) + f"__seed{root.seed}"


if not OmegaConf.has_resolver("frx_stem"):
    OmegaConf.register_new_resolver("frx_stem", lambda *, _root_: run_stem(_root_))
