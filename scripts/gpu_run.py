"""Table 2 or Table 4 on one GPU within a time budget: as many rows as fit, most valuable first.

    python3 scripts/gpu_run.py --table 2|4 [--budget-s 480] [--device cuda|cpu] [--scale gpu|smoke]
                               [--rows ROW[:SEED] ...] [--parallel N] [--data PATH] [--work DIR]
                               [--archive-dir DIR] [-- override ...]

(`make gpu-table2 BUDGET_S=480` and `make gpu-table4 BUDGET_S=480` run it; docs/GPU.md gives the
one call for a GPU session.) A row is an experiment of frx/conf/experiment/table<N>/, with
`:SEED` for a seed other than 0 (gan_ref:1 runs `seed=1`).

1. Python packages: hydra-core, omegaconf and antlr4 (which a bare GPU machine lacks) are
   installed from the carried wheels (<carry>/wheels: `make wheels` fills .carry/ for Table 2,
   `make wheels-table4` fills .carry-table4/ for Table 4) into <work>/site with
   `pip install --no-index --no-deps --target`, only where they cannot be imported; the runs
   get it on PYTHONPATH. (Not a venv: the machine's python3 is itself a venv, and a nested
   --system-site-packages venv would see the base interpreter's packages, not its torch.)
   frx runs from this source tree.
2. Data, once into <work>/data from --data. Table 2: CIFAR-10 as JPEG copies
   (.carry/cifar10-jpeg.npz, with the lossless first test images found beside it or
   --lossless-test). Table 4: MNIST's four .gz files (.carry-table4/mnist, MD5-checked as
   `frx-data import mnist` does), then the FID feature network is trained once here (the rows
   load it from the data's cache: rows started together would each train it, on a GPU not
   bit-identically, and be scored by different networks).
3. Rows: `frx-train experiment=table<N>/<row> scale=<scale> [seed=S]` for each row in order, up to
   --parallel processes at once on the one device; a row is started only while the budget
   (less the time kept for the bench) lasts, and one whose model already had a finished run is
   started only if that run's wall time still fits; a row whose record exists is not run again.
   At the budget, running rows are stopped: each leaves the checkpoint of its last finished
   epoch and no record (a row with a checkpoint is started with `trainer.resume=true`, continuing it).
4. Bench: scripts/bench.py with the time left (CUDA only; Table 2 keeps 60 s for it, Table 4 none).
5. One archive, <archive-dir>/gpu_table<N>.tar.gz: records/table<N>/* (with their small packed
   models and, Table 4, the sample grids), logs/<row>.log, bench.txt, summary.txt (also printed)
   and status.json.

Exit status 0 when every started row finished or was stopped at the budget; 1 when one failed.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))  # scripts/table_rows.py, however this file is loaded
from table_rows import VALUE_ORDER  # noqa: E402  (imports nothing: fine on a bare machine)

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "frx" / "conf"  # read as files: frx itself is imported only once hydra is there
# distribution (as its carried wheel is named) -> version prefix frx needs (omegaconf's parser
# is generated for the antlr4 4.9 runtime: a newer runtime installed there does not do)
NEEDED = {"hydra_core": "1.3", "omegaconf": "2.3", "antlr4_python3_runtime": "4.9", "PyYAML": ""}
STOP_GRACE_S = 15
label = "gpu_run"  # gpu_table<N> once the table is known: the name of messages and of the archive


def say(msg: str) -> None:
    print(f"[{label} {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---- per table: data import and summary columns -----------------------------------------------

def import_cifar10(a, root: Path) -> None:
    """The full CIFAR-10 as JPEG copies (decoded in this process: it uses the machine's cores)."""
    from frx.data import cifar10

    if cifar10.present(root):
        jpeg = cifar10.jpeg_info(root) or {}
        say(f"data already imported in {root}: {jpeg.get('note') or 'CIFAR-10 (original images)'}")
        return
    t0 = time.time()  # without --lossless-test, the import looks for the lossless file beside the data
    cifar10.import_files(a.data, root, lossless=a.lossless_test)
    jpeg = cifar10.jpeg_info(root) or {}
    say(f"imported {a.data} in {time.time() - t0:.1f} s: {jpeg.get('note', '')}, "
        f"{jpeg.get('lossless_test', 0)} lossless test images")


def import_mnist(a, root: Path) -> None:
    """MNIST's four files, checked against the published MD5s (`frx-data import mnist`)."""
    from frx.data import mnist

    if mnist.present(root):
        say(f"data already imported in {mnist.raw_dir(root)}")
        return
    t0 = time.time()
    mnist.import_files(a.data, root, verify=not a.no_verify)
    say(f"imported {a.data} in {time.time() - t0:.1f} s" + (" (MD5 check skipped)" if a.no_verify else ""))


def cells_table2(r: dict) -> list[str]:
    m, ex = r["metric"], r["metric_extra"]
    note = r["data"].get("data_note", "") or r["data"].get("subset_note", "")
    return [f"{m['value']:7.4f}", f"{ex.get('top1_lossless1k', float('nan')):10.4f}",
            f"{r['counts']['kept_weights']:11,d}", f" {note.split(':')[0]}"]


def cells_table4(r: dict) -> list[str]:
    m, data = r["metric"], r["data"]
    return [f"{m['value']:9.2f}", f"{m['value_fp16']:9.2f}", f"{r['counts']['kept_weights']:11,d}",
            f" {data['source'].upper()}, {data['train_size']:,} training / {data['val_size']:,} test images"]


@dataclass(frozen=True)
class Table:
    rows: list[str]  # the order rows are started in: the table's main claims first
    carry: str  # the carried folder: <carry>/wheels and the data file(s)
    data: str  # what the import takes, in the carry
    imported: str  # what <work>/data holds once imported
    fill: str  # the command that fills the carry
    import_data: Callable
    columns: list[tuple[str, int]]  # summary titles and widths after row, status, wall s, epochs
    cells: Callable  # record -> the summary's cells for those columns
    parallel: int  # rows at once on CUDA
    bench_s: float  # time kept for scripts/bench.py on CUDA
    fid_network: bool = False  # train the FID feature network once before the rows


TABLES = {
    2: Table(rows=VALUE_ORDER[2],
             carry=".carry", data="cifar10-jpeg.npz", imported="cifar-10-batches-py", fill="make wheels",
             import_data=import_cifar10, columns=[("top1", 7), ("lossless1k", 10), ("kept", 11), (" data", 0)],
             cells=cells_table2, parallel=4, bench_s=60),
    # the two DCGAN rows, then a second seed of each while the budget lasts
    4: Table(rows=[*VALUE_ORDER[4], *(f"{row}:1" for row in VALUE_ORDER[4])],
             carry=".carry-table4", data="mnist", imported="MNIST/raw", fill="make wheels-table4",
             import_data=import_mnist, columns=[("fid", 9), ("fid fp16", 9), ("kept", 11), (" data", 0)],
             cells=cells_table4, parallel=2, bench_s=0, fid_network=True),
}


def parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--table", type=int, required=True, choices=sorted(TABLES))
    ap.add_argument("--budget-s", type=float, default=480, help="wall-clock budget for everything (default 480)")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--scale", default="gpu", help="scale config (gpu for the real run, smoke for a check)")
    ap.add_argument("--rows", nargs="+", default=None,
                    help="experiments of the table, ROW or ROW:SEED, in the order to start them "
                         "(default: " + "; ".join(f"Table {n}: {' '.join(t.rows)}" for n, t in TABLES.items()) + ")")
    ap.add_argument("--parallel", type=int, default=None,
                    help="rows at once (default on cuda: 4 for Table 2, 2 for Table 4; 1 on cpu)")
    ap.add_argument("--data", default=None, help="what the import takes (default: .carry/cifar10-jpeg.npz for "
                                                 "Table 2, the folder .carry-table4/mnist for Table 4)")
    ap.add_argument("--lossless-test", default=None,
                    help="Table 2: the lossless first test images (default: cifar10-subset.npz or "
                         "cifar10-lossless-test1k.npz beside --data, when there)")
    ap.add_argument("--no-verify", action="store_true",
                    help="Table 4: skip the check of MNIST's published MD5s (for test files)")
    ap.add_argument("--wheels", default=None, help="the carried wheels (default <carry>/wheels)")
    ap.add_argument("--work", default=None,
                    help="data, run folders (checkpoints), records and logs (default outputs/gpu_table<N>)")
    ap.add_argument("--archive-dir", default=os.environ.get("OUT") or None,
                    help="where gpu_table<N>.tar.gz goes (default: $OUT, else --work)")
    ap.add_argument("--bench-s", type=float, default=None,
                    help="time kept for scripts/bench.py (CUDA only; default 60 for Table 2, 0 (none) for Table 4)")
    ap.add_argument("--min-start-s", type=float, default=30, help="start no row with less budget left than this")
    ap.add_argument("overrides", nargs="*", help="extra frx-train overrides for every row (after --)")
    a = ap.parse_args(argv)
    t = TABLES[a.table]
    carry = ROOT / t.carry
    a.rows = [canonical(r) for r in (a.rows or t.rows)]
    a.parallel = a.parallel if a.parallel is not None else t.parallel if a.device == "cuda" else 1
    a.data = a.data or str(carry / t.data)
    a.wheels = a.wheels or str(carry / "wheels")
    a.work = a.work or str(ROOT / "outputs" / f"gpu_table{a.table}")
    a.bench_s = t.bench_s if a.bench_s is None else a.bench_s
    return a


def split_row(row: str) -> tuple[str, int | None]:
    """"gan_ref:1" -> ("gan_ref", 1), "gan_ref" -> ("gan_ref", 0); seed None when it is not a number >= 0."""
    exp, colon, seed = row.partition(":")
    if not colon:
        return exp, 0
    return exp, int(seed) if seed.isdigit() else None


def canonical(row: str) -> str:
    """gan_ref:0 -> gan_ref, gan_ref:01 -> gan_ref:1 (a bad seed is left for check_args)."""
    exp, seed = split_row(row)
    return row if seed is None else exp if seed == 0 else f"{exp}:{seed}"


def slug(row: str) -> str:
    """The row's name for its log and run folder: gan_ref, gan_ref_seed1."""
    exp, seed = split_row(row)
    return exp if seed == 0 else f"{exp}_seed{seed}"


def model_of(row: str) -> str:
    return row.split("_")[0]


def check_args(a) -> str | None:
    """One line saying what is wrong, before any work; None when all is well."""
    t = TABLES[a.table]
    known = {p.stem for p in (CONF / "experiment" / f"table{a.table}").glob("*.yaml")}
    bad = [r for r in a.rows if split_row(r)[0] not in known or split_row(r)[1] is None]
    if bad:
        return f"unknown Table {a.table} rows: {', '.join(bad)} (known: {', '.join(sorted(known))}, each " \
               f"optionally with :SEED)"
    twice = sorted({r for r in a.rows if a.rows.count(r) > 1})
    if twice:
        return f"rows given twice: {', '.join(twice)}"
    if a.budget_s <= 0 or a.parallel < 1:
        return "--budget-s must be > 0 and --parallel >= 1"
    if not (CONF / "scale" / f"{a.scale}.yaml").exists():
        return f"unknown scale {a.scale!r}: no frx/conf/scale/{a.scale}.yaml"
    if a.lossless_test and a.table != 2:
        return "--lossless-test is for Table 2 (CIFAR-10) only"
    if a.no_verify and a.table != 4:
        return "--no-verify is for Table 4 (MNIST) only"
    if not Path(a.data).exists() and not (Path(a.work) / "data" / t.imported).exists():
        return f"no data: {a.data} does not exist (run `{t.fill}` to put it in {t.carry}/)"
    if a.lossless_test and not Path(a.lossless_test).exists():
        return f"{a.lossless_test} does not exist"
    if a.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            return "--device cuda but torch sees no CUDA device (use --device cpu for a check)"
    return None


def prepare_python(a, work: Path) -> dict:
    """The environment for the runs: PYTHONPATH with this tree and, where needed, the carried wheels."""
    site = work / "site"
    missing = [d for d, want in NEEDED.items() if not _has(d, want, site)]
    if missing:
        wheels = Path(a.wheels)
        files = [f for d in missing for f in sorted((w for w in wheels.glob("*.whl")
                                                     if w.name.lower().startswith(d.lower() + "-")), key=_py_match)[:1]]
        lacking = [d for d in missing if not any(f.name.lower().startswith(d.lower() + "-") for f in files)]
        if lacking:
            raise SystemExit(f"{label}: error: python lacks {', '.join(missing)} (or has other versions) and "
                             f"{wheels} has no wheel for "
                             f"{', '.join(lacking)} (run `{TABLES[a.table].fill}` where pip reaches an index)")
        say(f"installing {', '.join(f.name for f in files)} into {site}")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                        "--target", str(site), *map(str, files)], check=True)
    env = dict(os.environ)
    paths = [str(ROOT)] + ([str(site)] if site.exists() else [])
    env["PYTHONPATH"] = os.pathsep.join(paths + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.setdefault("PYTHONUNBUFFERED", "1")
    subprocess.run([sys.executable, "-c", "import hydra, omegaconf, yaml"], env=env, check=True, cwd=ROOT)
    sys.path[:0] = paths  # for the data import and the FID network below
    return env


def _has(dist: str, want: str, site: Path) -> bool:
    """Whether `dist` at version `want`* is installed (in `site` first, as the runs will see it)."""
    from importlib import metadata

    for where in ([str(site)] if site.exists() else []) + [None]:
        found = metadata.distributions(name=dist, path=[where]) if where else metadata.distributions(name=dist)
        for d in found:
            return d.version.startswith(want)
    return False


def _py_match(path: Path) -> int:
    """Sort key: a wheel for this interpreter (cp312 on python 3.12) or a pure one first."""
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    return 0 if (tag in path.name or "-none-any" in path.name) else 1


def row_overrides(a, row: str, data_root: Path, work: Path) -> list[str]:
    """What `frx-train` gets for a row (trainer.resume aside)."""
    exp, seed = split_row(row)
    return [f"experiment=table{a.table}/{exp}", f"scale={a.scale}", f"trainer.device={a.device}",
            f"dataset.root={data_root}", f"run.records_dir={work / 'records'}", f"run.dir={work / 'runs' / slug(row)}",
            *([f"seed={seed}"] if seed else []), *a.overrides]


def prepare_data(a, work: Path) -> Path:
    """Import the data into <work>/data once; Table 4: then train (or load) the FID feature network."""
    t, root = TABLES[a.table], work / "data"
    t.import_data(a, root)
    if t.fid_network:
        import torch

        from frx.config import compose, validate
        from frx.tasks import fid

        t0 = time.time()  # every row of the table has the same data set, so the first row's config does
        cfg = validate(compose(row_overrides(a, a.rows[0], root, work)))
        _, info = fid.for_run(cfg, torch.device(a.device), log=say)
        say(f"FID network {info['fid_extractor_file']} (test top-1 {info['fid_extractor_val_top1']:.4f}) "
            f"ready after {time.time() - t0:.1f} s")
    return root


class Run:
    def __init__(self, row: str, cmd: list[str], log: Path, env: dict):
        self.row, self.log_path = row, log
        self.log = open(log, "w")
        self.start = time.time()
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                     start_new_session=True)
        self.status, self.wall = "running", None

    def poll(self) -> bool:
        rc = self.proc.poll()
        if rc is None:
            return False
        self.wall = time.time() - self.start
        self.log.close()
        text = self.log_path.read_text(errors="replace")
        if "this run is finished:" in text:  # frx-train skips a finished run with this note (exit 0)
            self.status = "already has its record"
        elif rc == 0:
            self.status = "finished"
        else:
            self.status = f"failed (exit {rc})"
        return True

    def record(self) -> Path | None:
        """The record this row wrote or found (frx-train names it in its log)."""
        found = re.findall(r"^  record\s+(\S+\.json)$|this run is finished: (\S+\.json) exists",
                           self.log_path.read_text(errors="replace"), flags=re.M)
        return Path(next(p for p in found[-1] if p)) if found else None

    def stop(self) -> None:
        """At the budget: the row leaves its last epoch's checkpoint and no record."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.wall = time.time() - self.start
        self.status = "stopped at the budget (checkpoint kept, no record)"
        self.log.close()


def run_rows(a, env: dict, data_root: Path, work: Path, deadline: float) -> dict[str, dict]:
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    threads = max(1, (os.cpu_count() or 1) // a.parallel)
    env = dict(env, OMP_NUM_THREADS=str(threads))
    pending, running, done = list(a.rows), [], {}
    per_epoch: dict[str, float] = {}  # model -> the longest wall time per epoch of its finished runs

    @functools.cache
    def epochs_of(row: str) -> int:  # FR and pruning rows may train longer than the reference
        from frx.config import compose

        return int(compose(row_overrides(a, row, data_root, work)).trainer.epochs)

    def needs(row: str) -> float:  # the time a row needs, from a finished run of its model (0: none yet)
        return per_epoch[model_of(row)] * epochs_of(row) if model_of(row) in per_epoch else 0.0

    while pending or running:
        for r in [r for r in running if r.poll()]:
            running.remove(r)
            record = r.record()
            done[r.row] = {"status": r.status, "wall_s": round(r.wall, 1), "record": str(record) if record else None}
            if r.status == "finished":
                per_epoch[model_of(r.row)] = max(per_epoch.get(model_of(r.row), 0.0), r.wall / epochs_of(r.row))
            say(f"{r.row}: {r.status} after {r.wall:.0f} s")
        left = deadline - time.time()
        if left <= 0:
            break
        while len(running) < a.parallel:
            # the first pending row that can still finish: a model with a finished run needs that run's time
            # per epoch times the row's epochs
            row = next((r for r in pending if left >= max(needs(r), a.min_start_s)), None)
            if row is None:
                break
            pending.remove(row)
            # continue a row that an earlier session left unfinished (trainer.resume=true needs its checkpoint)
            resume = ["trainer.resume=true"] if (work / "runs" / slug(row) / "checkpoint.pt").exists() else []
            cmd = [sys.executable, "-m", "frx.train", *row_overrides(a, row, data_root, work), *resume]
            say(f"start {row} ({left:.0f} s left): frx-train {' '.join(cmd[3:])}")
            running.append(Run(row, cmd, logs / f"{slug(row)}.log", env))
        if not running and pending:  # nothing fits any more
            break
        time.sleep(0.5)
    for r in running:
        r.stop()
        done[r.row] = {"status": r.status, "wall_s": round(r.wall, 1)}
        say(f"{r.row}: {r.status}")
    for row in pending:
        done[row] = {"status": "not started (budget)", "wall_s": None}
    return done


def run_bench(a, env: dict, work: Path, deadline: float) -> str:
    out = work / "bench.txt"
    left = deadline - time.time()
    if a.device != "cuda" or a.bench_s <= 0:
        out.write_text("bench: not run (needs --device cuda and --bench-s > 0)\n")
        return "not run"
    if left < 10:
        out.write_text(f"bench: not run ({left:.0f} s of the budget left)\n")
        return "not run (no time left)"
    with open(out, "w") as f:
        try:
            rc = subprocess.run([sys.executable, "scripts/bench.py"], stdout=f, stderr=subprocess.STDOUT, env=env,
                                cwd=ROOT, timeout=left).returncode
            return f"exit {rc}"
        except subprocess.TimeoutExpired:
            f.write(f"\nbench: stopped at the budget after {left:.0f} s\n")
            return "stopped at the budget"


def summarize(a, done: dict, bench: str, started: float) -> str:
    import torch

    t = TABLES[a.table]
    dev = torch.cuda.get_device_name(0) if a.device == "cuda" else "cpu"
    lines = [f"{label}: scale {a.scale}, device {a.device} ({dev}), budget {a.budget_s:.0f} s, "
             f"{a.parallel} at once, total {time.time() - started:.0f} s",
             f"{'row':20s} {'status':52s} {'wall s':>7s} {'epochs':>6s} "
             + " ".join(f"{title:>{width}s}" for title, width in t.columns)]
    for row in a.rows:
        d = done.get(row, {"status": "?", "wall_s": None})
        rec = Path(d["record"]) if d.get("record") else None
        if rec is not None and rec.exists():
            r = json.loads(rec.read_text())
            lines.append(f"{row:20s} {d['status']:52s} {r['wall_time_s']:7.0f} {len(r['epochs']):6d} "
                         + " ".join(t.cells(r)))
        else:
            wall = f"{d['wall_s']:7.0f}" if d["wall_s"] is not None else f"{'-':>7s}"
            lines.append(f"{row:20s} {d['status']:52s} {wall}")
    lines.append(f"bench: {bench}")
    return "\n".join(lines) + "\n"


def archive(work: Path, dest_dir: Path) -> Path:
    """records, logs, bench, summary and status in one .tar.gz (no checkpoints, no data)."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / f"{label}.tar.gz"
    tmp = dest.with_name(dest.name + ".tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        for name in ("records", "logs", "bench.txt", "summary.txt", "status.json"):
            if (work / name).exists():
                tar.add(work / name, arcname=f"{label}/{name}")
    os.replace(tmp, dest)
    return dest


def main(argv=None) -> int:
    global label
    started = time.time()
    a = parse(argv)
    label = f"gpu_table{a.table}"
    problem = check_args(a)
    if problem:
        print(f"{label}: error: {problem}", file=sys.stderr)
        return 2
    work = Path(a.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    deadline = started + a.budget_s
    bench_s = a.bench_s if a.device == "cuda" else 0
    say(f"Table {a.table}: budget {a.budget_s:.0f} s ({bench_s:.0f} s kept for the bench), rows {' '.join(a.rows)}, "
        f"{a.parallel} at once, scale {a.scale}, device {a.device}, work {work}")
    env = prepare_python(a, work)
    try:
        data_root = prepare_data(a, work)
    except (OSError, ValueError) as e:  # missing, damaged or wrong files (a checksum that does not match)
        print(f"{label}: error: {e}", file=sys.stderr)
        return 2
    done = run_rows(a, env, data_root, work, deadline - bench_s)
    bench = run_bench(a, env, work, deadline)
    summary = summarize(a, done, bench, started)
    (work / "summary.txt").write_text(summary)
    (work / "status.json").write_text(json.dumps({"args": {k: v for k, v in vars(a).items()}, "rows": done,
                                                  "bench": bench, "total_s": round(time.time() - started, 1)},
                                                 indent=1, default=str) + "\n")
    dest = archive(work, Path(a.archive_dir).resolve() if a.archive_dir else work)
    print(summary, end="")
    say(f"archive: {dest} ({dest.stat().st_size:,} B)")
    return 1 if any(d["status"].startswith("failed") for d in done.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
