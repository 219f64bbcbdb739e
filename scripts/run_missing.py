"""Run the experiments of paper tables whose records are missing or stale; continue stopped ones.

    python scripts/run_missing.py --table 1 [2 3 4] [--scale smoke|full|cpu|gpu] [--seeds 0 1 2]
                                  [--rows NAME ...] [--jobs N] [--threads N] [--work-dir DIR] [--data-root DIR]
                                  [--import-from PATH] [--detach | --status | --dry-run]
                                  [--check-code] [-- extra=override ...]

(`make table2 SCALE=cpu` and `make cpu-table2` run it; `make cpu-table2-status` asks it.)

Records go to --records-dir (default results/runs, the records the tables are made from); a run
started by hand keeps its record in outputs/records and never changes the tables.

The experiments of Table N are the configs frx/conf/experiment/tableN/*.yaml, started in the order of
scripts/table_rows.py (the table's main claims first); a row the paper lists as another row's float16
copy (Table 2's v4 rows) is not run: the report takes it from that row's float16 pack. For each
experiment and seed the script composes the config `frx-train experiment=... scale=... seed=...` would
run (frx.config.compose), finds its record (<run.records_dir>/<run stem>.json) and runs frx-train when

- missing: there is no record;
- stale (config): the record's `config` differs from the composed, resolved config, apart from keys
  that do not change results (frx.naming.NOT_COMPUTING, the list that also keeps them out of run names:
  paths, progress bars, threads, resume flags, device);
- stale (code), only with --check-code: the record's `git_commit` is not in the repository, or files under frx/ (the
  report and figure modules excepted) differ between that commit and the working tree
  (`git diff --name-only <commit> -- frx/`). For a record written from a tree with uncommitted
  changes ("<sha>+dirty") only differing files modified after the record's `created` time count;
  so do files git does not track. A record without a commit is not checked.

Stale runs are re-run with run.overwrite=true.

Everything a row needs to continue lives in --work-dir (default $FRX_WORK, else ~/.cache/frx), outside
the checkout: its run folder runs/<stem>/ (checkpoints), its log logs/<stem>.log, and a copy of each
finished record under records/ (put back into --records-dir when a new checkout lacks it). A row whose
run folder holds a checkpoint is continued from it (trainer.resume=true), so running the script again
after any stop (a logout, kill -9, a reboot) continues the table. SIGTERM or Ctrl-C to the
script stops its rows after their current step, each saving a checkpoint. --detach starts the script
in the background (its own log work-dir/logs/runner-table<N>.log) and returns; one such runner per
table and work dir at a time. --status prints each row: done, running (epoch, step, time left),
stopped (resumes from its checkpoint), failed or waiting.

Exit status 1 when a run failed.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import fcntl
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

# this checkout's frx and scripts/table_rows.py, however this file is loaded and whichever frx is installed
sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]
from frx import record as rec  # noqa: E402
from frx.config import CONF_DIR, compose, config_diff, resolved_config  # noqa: E402
from frx.naming import PAPER_RECORDS, run_stem  # noqa: E402
from frx.report.paper import PAPER  # noqa: E402

from table_rows import VALUE_ORDER  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CODE_PATHS = ("frx/", ":(exclude)frx/report", ":(exclude)frx/figures.py")
CHECKPOINT = "checkpoint.pt"
POLL_S = 5.0


def default_work_dir() -> Path:
    if os.environ.get("FRX_WORK"):
        return Path(os.environ["FRX_WORK"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "frx"


def experiments(table: int, conf_dir: Path) -> list[str]:
    """The table's experiments in value order (scripts/table_rows.py), the rest after them alphabetically."""
    names = sorted(p.stem for p in (conf_dir / "experiment" / f"table{table}").glob("*.yaml"))
    first = [n for n in VALUE_ORDER.get(table, []) if n in names]
    return [f"table{table}/{n}" for n in first + [n for n in names if n not in first]]


def float16_copy_of(table: int, row: str | None) -> str | None:
    """The row whose float16 pack this paper row is (AlexNet-v4 -> AlexNet-v3), or None."""
    paper = PAPER.get(table)
    for prow in paper.rows if paper else ():
        if prow.label == row:
            return prow.fp16_of
    return None


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


def training(cfg) -> dict:
    """What a run trains: its resolved config less the row's labels and the run's paths."""
    out = resolved_config(cfg)
    out["run"] = {k: v for k, v in out["run"].items() if k in ("table",)}
    return out


def check(overrides: list[str], check_code: bool = False, trained: dict | None = None) -> tuple[str, Path, str]:
    """(status, record path, reason) with status "ok", "missing", "stale" or "copy": a float16 copy of
    another paper row, or the same training as an earlier row of `trained` ({row: training(cfg)})."""
    cfg = compose(overrides)
    same = next((row for row, t in (trained or {}).items() if t == training(cfg)), None)
    if trained is not None and same is None:
        trained[cfg.run.row] = training(cfg)
    path = Path(cfg.run.records_dir) / f"{run_stem(cfg)}.json"
    if not path.is_absolute():
        path = ROOT / path
    source = float16_copy_of(cfg.run.table, cfg.run.row)
    if source:
        return "copy", path, f"not run: the report takes {cfg.run.row} from the {source} run's float16 pack"
    if same:
        return "copy", path, f"not run: the same training as {same} (its record has the float16 pack's metric)"
    if not path.exists():
        return "missing", path, "no record"
    record = rec.read(path)
    diff = config_diff(record.config, resolved_config(cfg))
    if diff:
        shown = ", ".join(diff[:5]) + (f" and {len(diff) - 5} more" if len(diff) > 5 else "")
        return "stale", path, f"config differs: {shown}"
    why = code_changed(record.git_commit, record.created) if check_code else None
    return ("stale", path, why) if why else ("ok", path, "up to date")


@dataclass
class Row:
    name: str
    seed: int
    overrides: list[str]
    status: str
    record: Path
    reason: str
    stem: str = ""
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return f"{self.name} seed {self.seed}"


def plan(args) -> list[Row]:
    rows, trained = [], {}
    for table in args.table:
        names = experiments(table, Path(CONF_DIR))
        if args.rows:
            names = [n for n in names if n.split("/", 1)[1] in args.rows]
        if not names:
            print(f"table{table}: no experiment configs under {CONF_DIR}/experiment/table{table}")
        for name in names:
            for seed in args.seeds:
                ov = [f"experiment={name}", f"scale={args.scale}", f"seed={seed}",
                      f"run.records_dir={args.records_dir}", *args.overrides]
                status, path, reason = check(ov, args.check_code, trained)
                stem = path.relative_to(path.parents[1]).with_suffix("").as_posix()  # table<N>/<file stem>
                rows.append(Row(name, seed, ov, status, path, reason, stem))
    return rows


# -- the work dir: run folders, logs and record copies outside the checkout ---------------------------

def run_dir(args, row: Row) -> Path:
    return args.work_dir / "runs" / row.stem


def log_path(args, row: Row) -> Path:
    return args.work_dir / "logs" / f"{row.stem}.log"


def record_files(record: Path) -> list[Path]:
    """A record and the files written beside it (its small packed model, sample grids)."""
    return sorted(record.parent.glob(f"{record.stem}.*"))


def keep_copy(args, row: Row) -> None:
    dst = args.work_dir / "records" / row.record.parent.name
    dst.mkdir(parents=True, exist_ok=True)
    for f in record_files(row.record):
        shutil.copy2(f, dst / f.name)


def restore_copies(args, rows: list[Row]) -> None:
    """Put back the records a new checkout lacks (finished before it was laid) before planning on them."""
    for row in rows:
        if row.status != "missing":
            continue
        saved = args.work_dir / "records" / row.record.parent.name / row.record.name
        if saved.exists():
            row.record.parent.mkdir(parents=True, exist_ok=True)
            for f in record_files(saved):
                shutil.copy2(f, row.record.parent / f.name)
            print(f"restored {row.record.relative_to(ROOT) if row.record.is_relative_to(ROOT) else row.record} "
                  f"from {saved.parent}")


def busy(folder: Path) -> bool:
    """Whether a run holds the run folder's lock (frx.rundir)."""
    lock = folder / ".lock"
    if not lock.exists():
        return False
    with open(lock, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


PROGRESS = re.compile(r"epoch (\d+)/(\d+)\s+step (\d+)/(\d+).*?ETA (\S+)")
EPOCH_END = re.compile(r"epoch (\d+)/(\d+)\s+loss [\d.]+\s+(?:\w+ ([\d.]+)\s+)?kept")


def where(log: Path) -> str:
    """Where a row's log says it is: the last progress or epoch line."""
    if not log.exists():
        return ""
    with open(log, "rb") as f:
        f.seek(max(0, log.stat().st_size - 20000))
        lines = f.read().decode(errors="replace").splitlines()
    for line in reversed(lines):
        m = PROGRESS.search(line)
        if m:
            return f"epoch {m[1]}/{m[2]}, step {m[3]}/{m[4]}, about {m[5]} of training left"
        m = EPOCH_END.search(line)
        if m:
            return f"epoch {m[1]}/{m[2]} done" + (f" (val {float(m[3]):.4f})" if m[3] else "")
    return ""


def failed_line(log: Path) -> str:
    if not log.exists():
        return ""
    lines = log.read_text(errors="replace").splitlines()
    errors = [ln for ln in lines if "frx-train: error" in ln or "Error" in ln.split(":")[0]]
    return errors[-1].strip()[:200] if errors and not any("resume with" in ln for ln in lines[-3:]) else ""


def status_line(args, row: Row) -> str:
    if row.status == "copy":
        return f"copy     {row.label}: {row.reason}"
    if row.status == "ok":
        try:
            r = rec.read(row.record)
            extra = f"{r.metric.get('name', 'metric')} {r.metric['value']:.4f}, {r.counts['kept_weights']:,} kept, " \
                    f"{r.wall_time_s / 3600:.2f} h"
        except Exception as e:  # noqa: BLE001  a damaged record still shows as done
            extra = f"record unreadable: {e}"
        return f"done     {row.label}: {extra}"
    folder, log = run_dir(args, row), log_path(args, row)
    if busy(folder):
        return f"running  {row.label}: {where(log) or 'starting'} (log {log})"
    if (folder / CHECKPOINT).exists():
        return f"stopped  {row.label}: {where(log) or 'checkpoint'}; continues from its checkpoint on the next start"
    bad = failed_line(log)
    if bad:
        return f"failed   {row.label}: {bad} (log {log})"
    return f"waiting  {row.label}: {row.reason}"


# -- running the rows ------------------------------------------------------------------------------

LOCK_FD = "FRX_RUNNER_LOCK_FD"  # the lock a detached runner inherits from the command that started it


def runner_lock(args):
    """One runner per work dir and table set: hold runner-table<N>.pid's lock while running (a detached
    runner holds the one its starter took, so that no second runner starts in between)."""
    if os.environ.get(LOCK_FD):
        f = os.fdopen(int(os.environ.pop(LOCK_FD)), "a+")
    else:
        path = args.work_dir / f"runner-table{'-'.join(map(str, args.table))}.pid"
        path.parent.mkdir(parents=True, exist_ok=True)
        f = open(path, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise SystemExit(f"run_missing: a runner for this table is already running ({f.read().strip()}); "
                             f"see its rows with --status")
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    f.flush()
    return f


def ensure_data(args) -> None:
    """Import what --import-from holds into --data-root unless the data is there (CIFAR-10 for Table 2,
    MNIST for Tables 1 and 4)."""
    if not args.import_from:
        return
    from frx.data import cifar10, mnist

    src, root = Path(args.import_from).expanduser(), args.data_root
    for table in args.table:
        module = cifar10 if table == 2 else mnist if table in (1, 4) else None
        if module is None or module.present(root):
            continue
        print(f"importing {src} into {root} (once)", flush=True)
        module.import_files(src, root)


def quoted(path: Path) -> str:
    """A path as a Hydra override value (quoted, with quotes and backslashes escaped)."""
    return "'" + str(path).replace("\\", "\\\\").replace("'", "\\'") + "'"


def command(args, row: Row) -> list[str]:
    ov = list(row.overrides)
    folder = run_dir(args, row)
    ov.append(f"run.dir={quoted(folder)}")  # a stem may hold '=' and ',' (the overrides' tag)
    if args.data_root:
        ov.append(f"dataset.root={quoted(args.data_root)}")
    if args.threads:
        ov.append(f"trainer.threads={args.threads}")
    if row.status == "stale":
        ov.append("run.overwrite=true")
    if (folder / CHECKPOINT).exists():
        ov.append("trainer.resume=true")
    return ov


def run_rows(args, todo: list[Row]) -> int:
    """Run `todo`, --jobs at once; SIGTERM or Ctrl-C stops them after their current step (a checkpoint each)."""
    stopping = False

    def stop(signum, frame):
        nonlocal stopping
        stopping = True
        print(f"run_missing: {signal.Signals(signum).name}: stopping the running rows (each saves a checkpoint)",
              flush=True)
        for r in todo:
            if r.proc is not None and r.proc.poll() is None:
                r.proc.send_signal(signal.SIGTERM)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    waiting, running, failed, done = list(todo), [], 0, 0
    try:
        while waiting or running:
            while waiting and len(running) < args.jobs and not stopping:
                row = waiting.pop(0)
                ov = command(args, row)
                log = log_path(args, row)
                log.parent.mkdir(parents=True, exist_ok=True)
                print(f"[{time.strftime('%H:%M:%S')}] start {row.label}: frx-train {' '.join(ov)} (log {log})",
                      flush=True)
                with open(log, "a") as f:
                    row.proc = subprocess.Popen([sys.executable, "-m", "frx.train", *ov], cwd=ROOT, stdout=f,
                                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
                running.append(row)
            time.sleep(POLL_S if running else 0)
            for row in [r for r in running if r.proc.poll() is not None]:
                running.remove(row)
                code = row.proc.returncode
                if code == 0 and row.record.exists():
                    done += 1
                    keep_copy(args, row)
                    print(f"[{time.strftime('%H:%M:%S')}] done {row.label}: {row.record}", flush=True)
                elif code == 130 or stopping:
                    print(f"[{time.strftime('%H:%M:%S')}] stopped {row.label} (checkpoint kept)", flush=True)
                else:
                    failed += 1
                    print(f"[{time.strftime('%H:%M:%S')}] failed {row.label} (exit {code}): "
                          f"{failed_line(log_path(args, row)) or 'see its log'} ({log_path(args, row)})", flush=True)
            if stopping and not running:
                break
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    print(f"{done} of {len(todo)} run(s) done" + (f", {failed} failed" if failed else "")
          + (", stopped" if stopping else ""), flush=True)
    return 1 if failed else 0


def detach(argv: list[str], args) -> int:
    """Start this script again in the background, in its own session, logging to the work dir."""
    log = args.work_dir / "logs" / f"runner-table{'-'.join(map(str, args.table))}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    lock = runner_lock(args)  # refuse at once when one is running; the runner keeps this lock
    argv = [a for a in argv if a != "--detach"]
    with open(log, "a") as f, lock:
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), *argv], cwd=ROOT, stdout=f,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                pass_fds=(lock.fileno(),), env={**os.environ, LOCK_FD: str(lock.fileno())})
    print(f"runner started in the background (pid {proc.pid}); its log: {log}\n"
          f"  rows: {sys.executable} {Path(__file__).relative_to(ROOT)} {' '.join(argv)} --status")
    return 0


def parse(argv: list[str] | None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--table", type=int, nargs="+", required=True, choices=[1, 2, 3, 4])
    ap.add_argument("--scale", default="smoke")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--rows", nargs="+", default=None,
                    help="only these experiments of the table(s), e.g. resnet18_ref resnet18_v1 (default: all)")
    ap.add_argument("--records-dir", default=PAPER_RECORDS,
                    help=f"where the records go, relative to the repository (default {PAPER_RECORDS})")
    ap.add_argument("--work-dir", type=Path, default=None,
                    help="run folders (checkpoints), logs and record copies (default $FRX_WORK, else ~/.cache/frx)")
    ap.add_argument("--data-root", type=Path, default=None,
                    help="the runs' dataset.root (default: the config's, $FRX_DATA or ./data)")
    ap.add_argument("--import-from", default=None,
                    help="a data file or folder that `frx-data import` takes, imported into --data-root "
                         "when the table's data is not there")
    ap.add_argument("--jobs", type=int, default=1, help="rows at once (default 1)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads per row (default: the machine's cores divided among --jobs; "
                         "the record keeps it)")
    ap.add_argument("--dry-run", action="store_true", help="only list what would run")
    ap.add_argument("--status", action="store_true", help="print each row's state and exit")
    ap.add_argument("--detach", action="store_true", help="run in the background and return at once")
    ap.add_argument("--check-code", action="store_true",
                    help="also treat a record as stale when code under frx/ changed since its commit")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run (after --)")
    args = ap.parse_args(argv)
    if args.jobs < 1 or (args.threads is not None and args.threads < 1):
        ap.error("--jobs and --threads must be >= 1")
    if sum((args.dry_run, args.status, args.detach)) > 1:
        ap.error("--dry-run, --status and --detach go one at a time")
    known = {p.stem for t in args.table for p in (Path(CONF_DIR) / "experiment" / f"table{t}").glob("*.yaml")}
    unknown = sorted(set(args.rows or []) - known)
    if unknown:
        ap.error(f"unknown rows: {', '.join(unknown)} (the experiments of Table {', '.join(map(str, args.table))}: "
                 f"{', '.join(sorted(known))})")
    if args.import_from and not args.data_root:
        ap.error("--import-from needs --data-root (where the data is imported to)")
    if args.import_from and not Path(args.import_from).expanduser().exists():
        ap.error(f"--import-from {args.import_from} does not exist")
    args.work_dir = (args.work_dir or default_work_dir()).expanduser().absolute()
    args.data_root = args.data_root.expanduser().absolute() if args.data_root else None
    args.threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    return args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv)
    if args.detach:
        return detach(argv, args)
    rows = plan(args)
    restore_copies(args, rows)
    rows = plan(args) if any(r.status == "missing" and r.record.exists() for r in rows) else rows
    if args.status:
        for row in rows:
            print(status_line(args, row))
        return 0
    for row in rows:
        rel = row.record.relative_to(ROOT) if row.record.is_relative_to(ROOT) else row.record
        print(f"{row.status:8s} {row.label}: {rel} ({row.reason})")
    todo = [r for r in rows if r.status in ("missing", "stale")]
    if args.dry_run or not todo:
        print(f"{len(todo)} run(s) to do" + (" (dry run)" if args.dry_run else ""))
        return 0
    lock = runner_lock(args)
    try:
        ensure_data(args)
        return run_rows(args, todo)
    finally:
        lock.close()


if __name__ == "__main__":
    sys.exit(main())
