"""Run the experiments of paper tables whose records are missing or stale, one after another.

    python scripts/run_missing.py --table 1 [2 3 4] [--scale smoke|full] [--seeds 0 1 2]
                                  [--dry-run] [--check-code] [-- extra=override ...]

The experiments of Table N are the configs frx/conf/experiment/tableN/*.yaml. For each experiment and
seed the script composes the config `frx-train experiment=... scale=... seed=...` would run
(frx.train.compose), finds its record (<run.records_dir>/<run stem>.json) and runs frx-train when

- missing: there is no record;
- stale (config): the record's `config` differs from the composed, resolved config, apart from keys
  that do not change results (frx.naming.NOT_COMPUTING, the list that also keeps them out of run names:
  paths, progress bars, threads, resume flags, device);
- stale (code), only with --check-code: the record's `git_commit` is not in the repository, or files under frx/ (the
  report and figure modules excepted) differ between that commit and the working tree
  (`git diff --name-only <commit> -- frx/`). For a record written from a tree with uncommitted
  changes ("<sha>+dirty") only differing files modified after the record's `created` time count;
  so do files git does not track. A record without a commit is not checked.

Stale runs are re-run with run.overwrite=true. Exit status 1 when a run failed.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import subprocess
import sys
from pathlib import Path

from frx import record as rec
from frx.config import CONF_DIR, compose, config_diff, resolved_config
from frx.naming import run_stem

ROOT = Path(__file__).resolve().parent.parent
CODE_PATHS = ("frx/", ":(exclude)frx/report", ":(exclude)frx/figures.py")


def experiments(table: int, conf_dir: Path) -> list[str]:
    return sorted(f"table{table}/{p.stem}" for p in (conf_dir / "experiment" / f"table{table}").glob("*.yaml"))


def code_changed(commit: str | None, created: str | None = None, root: Path = ROOT) -> str | None:
    """Why the code under frx/ may differ from the code that wrote a record, or None.

    Files that differ between the record's commit and the working tree (`git diff --name-only`) make
    it stale. For a record written from a dirty tree ("<sha>+dirty") only those of them modified
    after the record's `created` time count, since its uncommitted changes are not known; so do
    untracked files under frx/."""
    if not commit:
        return None
    sha, dirty = commit.split("+")[0], commit.endswith("+dirty")
    if subprocess.run(["git", "cat-file", "-e", f"{sha}^{{commit}}"], cwd=root, capture_output=True).returncode:
        return f"commit {sha[:10]} is not in this repository"
    names = subprocess.run(["git", "diff", "--name-only", sha, "--", *CODE_PATHS], cwd=root, capture_output=True,
                           text=True, check=True).stdout.split()
    when = _dt.datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp() if created else None
    if dirty and when is not None:
        names = [n for n in names if not (root / n).exists() or (root / n).stat().st_mtime > when]
    # files git does not track are in no commit: they count when modified after the run
    untracked = subprocess.run(["git", "ls-files", "--others", "--exclude-standard", "--", *CODE_PATHS], cwd=root,
                               capture_output=True, text=True, check=True).stdout.split()
    names += [n for n in untracked if when is None or (root / n).stat().st_mtime > when]
    if not names:
        return None
    return f"frx/ changed since {sha[:10]}{'+dirty' if dirty else ''}: " + ", ".join(names[:3]) + (
        f" and {len(names) - 3} more" if len(names) > 3 else "")


def check(overrides: list[str], check_code: bool = False) -> tuple[str, Path, str]:
    """(status, record path, reason) with status "ok", "missing" or "stale"."""
    cfg = compose(overrides)
    path = Path(cfg.run.records_dir) / f"{run_stem(cfg)}.json"
    if not path.is_absolute():
        path = ROOT / path
    if not path.exists():
        return "missing", path, "no record"
    record = rec.read(path)
    diff = config_diff(record.config, resolved_config(cfg))
    if diff:
        shown = ", ".join(diff[:5]) + (f" and {len(diff) - 5} more" if len(diff) > 5 else "")
        return "stale", path, f"config differs: {shown}"
    why = code_changed(record.git_commit, record.created) if check_code else None
    return ("stale", path, why) if why else ("ok", path, "up to date")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--table", type=int, nargs="+", required=True, choices=[1, 2, 3, 4])
    ap.add_argument("--scale", default="smoke")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--dry-run", action="store_true", help="only list what would run")
    ap.add_argument("--check-code", action="store_true",
                    help="also treat a record as stale when code under frx/ changed since its commit")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run (after --)")
    args = ap.parse_args(argv)
    todo = []
    for table in args.table:
        names = experiments(table, Path(CONF_DIR))
        if not names:
            print(f"table{table}: no experiment configs under {CONF_DIR}/experiment/table{table}")
        for name in names:
            for seed in args.seeds:
                ov = [f"experiment={name}", f"scale={args.scale}", f"seed={seed}", *args.overrides]
                status, path, reason = check(ov, args.check_code)
                rel = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
                print(f"{status:8s} {name} seed {seed}: {rel} ({reason})")
                if status != "ok":
                    todo.append(ov + (["run.overwrite=true"] if status == "stale" else []))
    if args.dry_run or not todo:
        print(f"{len(todo)} run(s) to do" + (" (dry run)" if args.dry_run else ""))
        return 0
    failed = 0
    for i, ov in enumerate(todo, 1):
        cmd = [sys.executable, "-m", "frx.train", *ov]
        print(f"[{i}/{len(todo)}] frx-train {' '.join(ov)}", flush=True)
        if subprocess.run(cmd, cwd=ROOT).returncode:
            failed += 1
            print(f"[{i}/{len(todo)}] failed: frx-train {' '.join(ov)}", flush=True)
    print(f"{len(todo) - failed} of {len(todo)} run(s) done")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
