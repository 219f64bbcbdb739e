"""Run records: one JSON file per finished run, the contract between `frx-train` and `frx-report`.

`Record` is that contract: train writes one, report reads them, and neither looks at the
other's internals (report never parses a file name or digs in the raw config). Records are
written atomically, so a reader never sees half a record and a crash never leaves a corrupt one.

Schema 2 (written now) adds `tag`, `linear_view`, `arch` and `data` beside schema 1's
fields and drops `variant`. Schema 1 files (written before) load through `upgrade`, the one
place that knows their conventions.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import platform
import re
import subprocess
import typing
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Optional

import torch

from .files import atomic_write_bytes

SCHEMA = 2
METRIC_FIELDS = ("name", "higher_is_better", "value", "value_fp16", "value_live")
_MOVED_TO_MODEL_SPEC = ("task", "in_channels", "input_size", "num_classes", "min_input_size", "size_multiple",
                        "normalize", "variant")


@dataclass
class Record:
    """One finished run. `path` is where it was read from (relative to the records folder), not written."""

    experiment: str  # experiment config name, or run.name, or adhoc/<model>-<dataset>
    tag: str  # what sets this run apart from others of its experiment ("" when nothing)
    table: Optional[int]  # paper table reproduced (1-4), or None
    row: Optional[str]  # paper row label, e.g. "LeNet5-v2"
    method: str  # "fr" | "plain" | "prune"
    linear_view: Optional[str]  # fr.linear_view ("flat" | "auto") of an FR run; None otherwise
    scale: str  # "full" | "smoke"
    model: str  # registry name, e.g. "vgg16"
    arch: Optional[str]  # the architecture when the model name does not say it, e.g. "vgg19-config"
    dataset: str
    data: dict  # notes on the data actually used (split sizes, subset notes) from the data loader
    task: str  # "classification" | "segmentation" | "gan" | "vae"
    seed: Optional[int]  # None for a model frx did not train (a converted release)
    device: str
    # METRIC_FIELDS: name, higher_is_better, value (float32 pack), value_fp16, value_live (None where that
    # model was not evaluated, e.g. a converted release has only its float16 file); and value_int8
    # (the int8 pack: FR runs; None or absent otherwise). metric_extra.value_int8_quantized_from names the
    # file it was quantized from when that was not the trained model (a later measurement)
    metric: dict
    metric_extra: dict  # task extras (fid_feature_extractor, ...), samples, packed_float16_file
    tensors: list  # per weight tensor: name, kind, shape, view, dense, kept, regularized
    counts: dict  # dense_weights, kept_weights, other_params
    packed_bytes: dict  # float32, float16 (and int8 for FR runs)
    epochs: list  # per epoch: epoch, train_loss, val_metric, kept, beta, lr (the first optimizer's), time_s
    config: dict  # the resolved config the run used
    git_commit: Optional[str]
    versions: dict
    wall_time_s: float
    created: str
    schema: int = SCHEMA
    path: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        """Refuse a record whose fields have other types than written (a record from elsewhere is input)."""
        hints = typing.get_type_hints(Record)
        for f in dataclasses.fields(self):
            if not _is_a(getattr(self, f.name), hints[f.name]):
                raise ValueError(f"record field {f.name} is {getattr(self, f.name)!r:.60}, "
                                 f"not {_type_name(hints[f.name])}")
        missing = [k for k in METRIC_FIELDS if k not in self.metric]
        if missing:
            raise ValueError(f"record metric lacks fields {missing}")
        bad = [k for k, v in self.metric.items() if k.startswith("value") and not _is_a(v, Optional[float])]
        bad += [f"tensors[{i}]" for i, t in enumerate(self.tensors) if not (isinstance(t, dict) and all(
            _is_a(t.get(k), int) for k in ("dense", "kept")))]
        bad += [f"counts.{k}" for k, v in self.counts.items() if not _is_a(v, int)]
        bad += [f"packed_bytes.{k}" for k, v in self.packed_bytes.items() if not _is_a(v, int)]
        bad += [f"epochs[{i}]" for i, e in enumerate(self.epochs) if not isinstance(e, dict)]
        if bad:
            raise ValueError(f"record has malformed fields: {', '.join(bad[:5])}")

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        del out["path"]
        return out

    @property
    def kept_weights(self) -> int:
        """Sum of the per-tensor kept counts (counts.kept_weights when there is no tensor table)."""
        return int(sum(t["kept"] for t in self.tensors)) if self.tensors else int(self.counts["kept_weights"])

    @property
    def dense_weights(self) -> int:
        return int(sum(t["dense"] for t in self.tensors)) if self.tensors else int(self.counts["dense_weights"])


FIELDS = tuple(f.name for f in dataclasses.fields(Record) if f.name != "path")


def _is_a(value: Any, hint: Any) -> bool:
    """isinstance for the record's field types: Optional[X], and an int (not a bool) where a float goes."""
    if typing.get_origin(hint) is typing.Union:
        return any(_is_a(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint in (int, float):
        return isinstance(value, (int, float) if hint is float else int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    return " or ".join(_type_name(h) for h in typing.get_args(hint)) if typing.get_args(hint) else hint.__name__


def write(path: str | os.PathLike, record: Record) -> Path:
    """Write `record` atomically as indented JSON."""
    # default=str: a stray Path or numpy scalar must not lose a finished run at the last step
    text = json.dumps(record.to_dict(), indent=1, allow_nan=True, default=str) + "\n"
    atomic_write_bytes(path, text.encode())
    return Path(path)


def read(path: str | os.PathLike, root: str | os.PathLike | None = None) -> Record:
    """Load a record file (any schema); `root` makes `Record.path` relative to it."""
    return from_dict(json.loads(Path(path).read_text()), path, root)


def from_dict(raw: dict, path: str | os.PathLike, root: str | os.PathLike | None = None) -> Record:
    path = Path(path)
    known = {k: v for k, v in upgrade(raw, path.stem).items() if k in FIELDS}
    return Record(**known, path=(path.relative_to(root) if root is not None else path).as_posix())


def is_record(raw: Any) -> bool:
    return isinstance(raw, dict) and "schema" in raw and "experiment" in raw


def upgrade(raw: dict, stem: str) -> dict:
    """A record dict of any schema as the current schema. The only code that knows schema 1:
    the tag lived in the file name <name>[__<tag>][__<scale>]__seed<seed>, `variant` meant
    fr.linear_view ("-" when not FR), the architecture was config.model.variant and the data
    notes were metric_extra.data."""
    if raw.get("schema", 1) >= 2:
        return raw
    out = dict(raw)
    parts = stem.split("__")
    tag = ""
    if len(parts) >= 2 and re.fullmatch(r"seed-?\d+", parts[-1]):
        parts = parts[1:-1]
        if parts and parts[-1] == str(raw.get("scale")):
            parts = parts[:-1]
        tag = "__".join(parts)
    variant = out.pop("variant", None)
    config = dict(out.get("config") or {})
    model_cfg = dict(config.get("model") or {})
    # the model's metadata moved from its config to its registered spec (frx.models)
    config["model"] = {k: v for k, v in model_cfg.items() if k not in _MOVED_TO_MODEL_SPEC}
    extra = dict(out.get("metric_extra") or {})
    out.update(schema=SCHEMA, tag=tag, linear_view=None if variant in (None, "-", "") else variant,
               arch=model_cfg.get("variant"), config=config, data=dict(extra.pop("data", None) or {}),
               metric_extra=extra)
    return out


def git_commit(cwd: str | os.PathLike | None = None) -> str | None:
    """The checked-out commit of the source tree (with "+dirty" when it has local changes)."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        if not sha:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict:
    try:
        frx_version = version("frx")
    except PackageNotFoundError:  # not installed as a distribution (source tree on sys.path)
        frx_version = None
    # what ran it as well: wall times compare only on the same processor and thread count
    out = {"python": platform.python_version(), "torch": torch.__version__, "frx": frx_version,
           "cpu": cpu_model(), "threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name()
    return out


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def now_utc() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
