"""What frx-train says before Hydra runs: the command line checked against the config groups and
keys (a typo gets one line with the closest choice), and the text of `frx-train --help` (Hydra's
help template, frx/conf/hydra/help/frx.yaml, calls `help_text` through the `frx_help` resolver)."""

from __future__ import annotations

import difflib
import textwrap
from typing import Any, Iterator

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra._internal.utils import get_args_parser
from hydra.core.global_hydra import GlobalHydra
from hydra.core.object_type import ObjectType
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from .config import CONF_DIR, UserError

# the README's "Train from configs" commands (tests/test_cli.py checks that the README has each one)
EXAMPLES = """\
frx-train experiment=table1/lenet5_v2                     # one row of the paper
frx-train experiment=table1/lenet5_v2 fr.epsilon=0.001 fr.gamma=0.05   # any knob is an override
frx-train model=resnet18 dataset=cifar10 fr=none          # the plain reference network
frx-train -m experiment=table1/lenet5_v2 fr.epsilon=0.01,0.001,0.0001 # sweep (Hydra multirun)
frx-train -m hydra/launcher=parallel ... trainer.threads=1   # joblib: runs side by side on one machine
frx-train -m hydra/launcher=slurm hydra.launcher.partition=gpu ...   # submitit: one SLURM job per run
torchrun --nproc_per_node 4 -m frx.train experiment=table2/resnet18_v1   # one run on 4 GPUs (DistributedDataParallel)
frx-train experiment=table1/lenet5_v2 trainer.resume=true # continue after a crash or kill -9"""

GROUPS = ("model", "dataset", "experiment", "fr", "prune", "trainer", "scale", "run", "hydra/launcher")
LAUNCHERS = {"basic": "the default: one run after another", "parallel": "joblib, 2 runs side by side",
             "local": "submitit, local processes", "slurm": "submitit, one SLURM job per run",
             "slurm_ddp": "submitit, one run on several GPUs and nodes (DDP)"}


def _options(loader: Any, group: str, prefix: str = "") -> Iterator[str]:
    """A group's options, those in its subfolders as "sub/name" (experiment=table1/lenet5_v2)."""
    yield from (prefix + o for o in loader.get_group_options(group, results_filter=ObjectType.CONFIG))
    for sub in loader.list_groups(group):
        yield from _options(loader, f"{group}/{sub}", f"{prefix}{sub}/")


def group_options() -> dict[str, list[str]]:
    """{group: its options} for the groups a user chooses from (GROUPS)."""
    if GlobalHydra.instance().is_initialized():  # within Hydra's own run (--help)
        loader = GlobalHydra.instance().config_loader()
        return {g: sorted(_options(loader, g)) for g in GROUPS}
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return group_options()


def _closest(word: str, candidates: list[str]) -> str:
    match = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f"; did you mean {match[0]}?" if match else ""


def _keys(node: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield f"{prefix}{k}"
            yield from _keys(v, f"{prefix}{k}.")


def _values(override: Any) -> list[str]:
    """The option names an override of a config group asks for (each of a sweep's choices)."""
    if not override.is_sweep_override():
        return [override.get_value_element_as_str()]
    try:
        return [str(v) for v in override.sweep_string_iterator()]
    except Exception:  # glob or range sweeps: left to Hydra
        return []


def check_command_line(argv: list[str]) -> None:
    """Raise UserError for an unknown option of a config group or an unknown key among `argv`'s
    overrides, naming the closest valid one. Anything else (syntax, flags) is left to Hydra."""
    args = get_args_parser().parse_args(argv)
    if args.help or args.hydra_help or args.info or args.shell_completion or args.config_dir \
            or args.config_path or args.config_name:
        return
    try:
        overrides = OverridesParser.create().parse_overrides(args.overrides)
    except Exception:  # Hydra explains syntax errors itself
        return
    options = group_options()
    chosen, keys = [], []
    for o in overrides:
        name = o.key_or_group
        if name in options and not o.package:
            values = _values(o) if not o.is_delete() else []
            for v in values:
                if v not in options[name] and v != "null":
                    shown = ", ".join(options[name])
                    raise UserError(f"unknown {name} {v!r}{_closest(v, options[name])} (choices: {shown})")
            if values:
                chosen.append(f"{name}={values[0]}")
        elif not (name.startswith("hydra") or o.is_add() or o.is_force_add() or o.package):
            keys.append(name)
    if not keys:
        return
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        try:
            cfg = hydra_compose(config_name="config", overrides=chosen)
        except Exception:  # any other composition problem: Hydra says it
            return
    known = list(_keys(OmegaConf.to_container(cfg, resolve=False)))
    for key in keys:
        if key not in known:
            raise UserError(f"unknown key {key}{_closest(key, known)}" + (
                "" if _closest(key, known) else " (frx-train --cfg job lists every key; +key=value adds one)"))


def _wrapped(label: str, items: list[str], width: int = 100) -> str:
    return textwrap.fill(", ".join(items), width=width, initial_indent=f"  {label:<16}",
                         subsequent_indent=" " * 18, break_on_hyphens=False)


def help_text() -> str:
    """frx-train --help: what frx is, the config groups and their options, examples."""
    opts = group_options()
    lines = [
        "frx-train: train a network under Frequency Regularization (weights learned as DCT coefficients,",
        "the high-frequency tail dropped during training), pack it, measure it on the model unpacked from",
        "the packed file, and write a JSON record. Plain and magnitude-pruned baselines too.",
        "",
        "Usage: frx-train [-m] [group=option ...] [key=value ...]     (-m: a sweep, Hydra multirun)",
        "",
        "Examples:",
        *("  " + e for e in EXAMPLES.splitlines()),
        "  frx-train experiment=demo                                # LeNet-5 on the offline MNIST sample",
        "",
        "Config groups (group=option):",
    ]
    for group in GROUPS:
        if group == "experiment":
            top = [o for o in opts[group] if "/" not in o]
            lines.append(_wrapped("experiment", top))
            for sub in sorted({o.split("/")[0] for o in opts[group] if "/" in o}):
                lines.append(_wrapped(f"  {sub}/", [o.split("/", 1)[1] for o in opts[group]
                                                    if o.startswith(sub + "/")]))
        elif group == "hydra/launcher":
            lines.append(_wrapped(group, [f"{o} ({LAUNCHERS[o]})" for o in opts[group] if o in LAUNCHERS]))
        else:
            lines.append(_wrapped(group, opts[group]))
    lines += [
        "  (an experiment fixes a paper row: experiment=table1/lenet5_v2; scale=smoke runs any of them in seconds)",
        "",
        "Settings (key=value): fr.epsilon, fr.gamma, fr.unit, fr.linear_view, trainer.epochs, trainer.device,",
        "  trainer.batch_size, trainer.optimizer.lr, seed, ...; `frx-train --cfg job` prints every key and value.",
        "",
        "Where things go: the record to run.records_dir (default outputs/records), checkpoints, packed",
        "  models, metrics.csv and logs to run.dir (outputs/<experiment>[__overrides][__scale]__seed<n>).",
        "  A finished run is skipped (run.overwrite=true redoes it); Ctrl-C saves a checkpoint and",
        "  trainer.resume=true continues. A finished run deletes checkpoint.pt and model.float32.frx",
        "  (run.keep_all=true keeps them); the record, model.float16.frx, metrics.csv and logs stay.",
        "  The paper tables read results/runs, which `make table1` ... `make table4` fill.",
        "",
        "Hydra's own flags (--cfg, --multirun, --info, ...): frx-train --hydra-help",
    ]
    # Hydra passes the template through string.Template: a literal $ is written $$
    return "\n".join(lines).replace("$", "$$")


if not OmegaConf.has_resolver("frx_help"):
    OmegaConf.register_new_resolver("frx_help", help_text)
