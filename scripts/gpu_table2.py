"""Table 2 on one GPU within a time budget: as many rows as fit, most valuable first.

    python3 scripts/gpu_table2.py [--budget-s 480] [--device cuda|cpu] [--scale gpu|smoke]
                                  [--rows resnet18_ref ...] [--parallel N] [--data cifar10-jpeg.npz]
                                  [--work outputs/gpu_table2] [--archive-dir DIR] [-- override ...]

(`make gpu-table2 BUDGET_S=480` runs it; docs/GPU.md gives the one call for a GPU session.)

1. Python packages: hydra-core, omegaconf and antlr4 (which a bare GPU machine lacks) are
   installed from the wheels in .carry/wheels (`make wheels`) into <work>/site with
   `pip install --no-index --no-deps --target`, only where they cannot be imported; the runs
   get it on PYTHONPATH. (Not a venv: the machine's python3 is itself a venv, and a nested
   --system-site-packages venv would see the base interpreter's packages, not its torch.)
   frx runs from this source tree.
2. Data: CIFAR-10 is imported once into <work>/data from --data (the full set as JPEG copies,
   .carry/cifar10-jpeg.npz, with the lossless first test images found beside it or --lossless-test).
3. Rows: `frx-train experiment=table2/<row> scale=<scale>` for each row in ROWS order, up to
   --parallel processes at once on the one device; a row is started only while the budget
   (less the time kept for the bench) lasts, and one whose model already had a finished run is
   started only if that run's wall time still fits; a row whose record exists is not run again.
   At the budget, running rows are stopped: each leaves the checkpoint of its last finished
   epoch and no record (a row with a checkpoint is started with `trainer.resume=true`, continuing it).
4. Bench: scripts/bench.py with the time left (CUDA only).
5. One archive, <archive-dir>/gpu_table2.tar.gz: records/table2/*.json (with their small packed
   models), logs/<row>.log, bench.txt, summary.txt (also printed) and status.json.

Exit status 0 when every started row finished or was stopped at the budget; 1 when one failed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "frx" / "conf"  # read as files: frx itself is imported only once hydra is there
# the order rows are started in: the table's main claims first
ROWS = ["resnet18_ref", "resnet18_v1", "resnet18_v2", "resnet18_v3", "resnet18_v1_prune",
        "vgg16_ref", "vgg16_v1", "vgg16_v2", "vgg16_v3",
        "alexnet_ref", "alexnet_v1", "alexnet_v2", "alexnet_v3"]
# distribution (as its wheel in .carry/wheels is named) -> version prefix frx needs (omegaconf's
# parser is generated for the antlr4 4.9 runtime: a newer runtime installed there does not do)
NEEDED = {"hydra_core": "1.3", "omegaconf": "2.3", "antlr4_python3_runtime": "4.9", "PyYAML": ""}
STOP_GRACE_S = 15


def say(msg: str) -> None:
    print(f"[gpu_table2 {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget-s", type=float, default=480, help="wall-clock budget for everything (default 480)")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--scale", default="gpu", help="scale config (gpu for the real run, smoke for a check)")
    ap.add_argument("--rows", nargs="+", default=ROWS, help="Table 2 experiments, in the order to start them")
    ap.add_argument("--parallel", type=int, default=None, help="rows at once (default: 4 on cuda, 1 on cpu)")
    ap.add_argument("--data", default=str(ROOT / ".carry" / "cifar10-jpeg.npz"),
                    help="what `frx-data import cifar10` takes (default .carry/cifar10-jpeg.npz)")
    ap.add_argument("--lossless-test", default=None,
                    help="the lossless first test images (default: cifar10-subset.npz or "
                         "cifar10-lossless-test1k.npz beside --data, when there)")
    ap.add_argument("--wheels", default=str(ROOT / ".carry" / "wheels"))
    ap.add_argument("--work", default=str(ROOT / "outputs" / "gpu_table2"),
                    help="data, run folders (checkpoints), records and logs (default outputs/gpu_table2)")
    ap.add_argument("--archive-dir", default=os.environ.get("OUT") or None,
                    help="where gpu_table2.tar.gz goes (default: $OUT, else --work)")
    ap.add_argument("--bench-s", type=float, default=60, help="time kept for scripts/bench.py (CUDA only; 0: none)")
    ap.add_argument("--min-start-s", type=float, default=30, help="start no row with less budget left than this")
    ap.add_argument("overrides", nargs="*", help="extra frx-train overrides for every row (after --)")
    a = ap.parse_args(argv)
    if a.parallel is None:
        a.parallel = 4 if a.device == "cuda" else 1
    return a


def check_args(a) -> str | None:
    """One line saying what is wrong, before any work; None when all is well."""
    known = {p.stem for p in (CONF / "experiment" / "table2").glob("*.yaml")}
    bad = [r for r in a.rows if r not in known]
    if bad:
        return f"unknown Table 2 rows: {', '.join(bad)} (known: {', '.join(sorted(known))})"
    if a.budget_s <= 0 or a.parallel < 1:
        return "--budget-s must be > 0 and --parallel >= 1"
    if not (CONF / "scale" / f"{a.scale}.yaml").exists():
        return f"unknown scale {a.scale!r}: no frx/conf/scale/{a.scale}.yaml"
    if not Path(a.data).exists() and not (Path(a.work) / "data" / "cifar-10-batches-py").exists():
        return f"no data: {a.data} does not exist (run `make wheels` to put the CIFAR-10 file in .carry/)"
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
        dists = missing
        files = [f for d in dists for f in sorted((w for w in wheels.glob("*.whl")
                                                     if w.name.lower().startswith(d.lower() + "-")), key=_py_match)[:1]]
        lacking = [d for d in dists if not any(f.name.lower().startswith(d.lower() + "-") for f in files)]
        if lacking:
            raise SystemExit(f"gpu_table2: error: python lacks {', '.join(missing)} (or has other versions) and "
                             f"{wheels} has no wheel for "
                             f"{', '.join(lacking)} (run `make wheels` where pip reaches an index)")
        say(f"installing {', '.join(f.name for f in files)} into {site}")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                        "--target", str(site), *map(str, files)], check=True)
    env = dict(os.environ)
    paths = [str(ROOT)] + ([str(site)] if site.exists() else [])
    env["PYTHONPATH"] = os.pathsep.join(paths + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.setdefault("PYTHONUNBUFFERED", "1")
    subprocess.run([sys.executable, "-c", "import hydra, omegaconf, yaml"], env=env, check=True, cwd=ROOT)
    sys.path[:0] = paths  # for the data check below
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


def prepare_data(a, work: Path, env: dict) -> Path:
    """Import CIFAR-10 into <work>/data once (in this process: decoding uses the machine's cores)."""
    from frx.data import cifar10

    root = work / "data"
    if cifar10.present(root):
        jpeg = cifar10.jpeg_info(root) or {}
        say(f"data already imported in {root}: {jpeg.get('note') or 'CIFAR-10 (original images)'}")
        return root
    t0 = time.time()  # without --lossless-test, the import looks for the lossless file beside the data
    cifar10.import_files(a.data, root, lossless=a.lossless_test)
    jpeg = cifar10.jpeg_info(root) or {}
    say(f"imported {a.data} in {time.time() - t0:.1f} s: {jpeg.get('note', '')}, "
        f"{jpeg.get('lossless_test', 0)} lossless test images")
    return root


def model_of(row: str) -> str:
    return row.split("_")[0]


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
        if rc == 0:
            self.status = "finished"
        elif "this run is finished:" in text:
            self.status = "already has its record"
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
    records, logs = work / "records", work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    threads = max(1, (os.cpu_count() or 1) // a.parallel)
    env = dict(env, OMP_NUM_THREADS=str(threads))
    pending, running, done = list(a.rows), [], {}
    walls: dict[str, float] = {}  # model -> longest finished run
    while pending or running:
        for r in [r for r in running if r.poll()]:
            running.remove(r)
            done[r.row] = {"status": r.status, "wall_s": round(r.wall, 1),
                           "record": str(r.record()) if r.record() else None}
            if r.status == "finished":
                walls[model_of(r.row)] = max(walls.get(model_of(r.row), 0), r.wall)
            say(f"{r.row}: {r.status} after {r.wall:.0f} s")
        left = deadline - time.time()
        if left <= 0:
            break
        while len(running) < a.parallel:
            # the first pending row that can still finish: a model with a finished run needs that run's time
            row = next((r for r in pending if left >= max(walls.get(model_of(r), 0), a.min_start_s)), None)
            if row is None:
                break
            pending.remove(row)
            # continue a row that an earlier session left unfinished (trainer.resume=true needs its checkpoint)
            resume = ["trainer.resume=true"] if (work / "runs" / row / "checkpoint.pt").exists() else []
            cmd = [sys.executable, "-m", "frx.train", f"experiment=table2/{row}", f"scale={a.scale}",
                   f"trainer.device={a.device}", f"dataset.root={data_root}", f"run.records_dir={records}",
                   f"run.dir={work / 'runs' / row}", *resume, *a.overrides]
            say(f"start {row} ({left:.0f} s left): frx-train {' '.join(cmd[3:])}")
            running.append(Run(row, cmd, logs / f"{row}.log", env))
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


def summarize(a, done: dict, work: Path, bench: str, started: float) -> str:
    import torch

    dev = torch.cuda.get_device_name(0) if a.device == "cuda" else "cpu"
    lines = [f"gpu_table2: scale {a.scale}, device {a.device} ({dev}), budget {a.budget_s:.0f} s, "
             f"{a.parallel} at once, total {time.time() - started:.0f} s",
             f"{'row':20s} {'status':52s} {'wall s':>7s} {'epochs':>6s} {'top1':>7s} {'lossless1k':>10s} "
             f"{'kept':>11s}  data"]
    for row in a.rows:
        d = done.get(row, {"status": "?", "wall_s": None})
        rec = Path(d["record"]) if d.get("record") else None
        if rec is not None and rec.exists():
            r = json.loads(rec.read_text())
            m, ex = r["metric"], r["metric_extra"]
            note = r["data"].get("data_note", "") or r["data"].get("subset_note", "")
            lines.append(f"{row:20s} {d['status']:52s} {r['wall_time_s']:7.0f} {len(r['epochs']):6d} "
                         f"{m['value']:7.4f} {ex.get('top1_lossless1k', float('nan')):10.4f} "
                         f"{r['counts']['kept_weights']:11,d}  {note.split(':')[0]}")
        else:
            wall = f"{d['wall_s']:7.0f}" if d["wall_s"] is not None else f"{'-':>7s}"
            lines.append(f"{row:20s} {d['status']:52s} {wall}")
    lines.append(f"bench: {bench}")
    return "\n".join(lines) + "\n"


def archive(work: Path, dest_dir: Path) -> Path:
    """records, logs, bench, summary and status in one .tar.gz (no checkpoints, no data)."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / "gpu_table2.tar.gz"
    tmp = dest.with_name(dest.name + ".tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        for name in ("records", "logs", "bench.txt", "summary.txt", "status.json"):
            if (work / name).exists():
                tar.add(work / name, arcname=f"gpu_table2/{name}")
    os.replace(tmp, dest)
    return dest


def main(argv=None) -> int:
    started = time.time()
    a = parse(argv)
    problem = check_args(a)
    if problem:
        print(f"gpu_table2: error: {problem}", file=sys.stderr)
        return 2
    work = Path(a.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    deadline = started + a.budget_s
    bench_s = a.bench_s if a.device == "cuda" else 0
    say(f"budget {a.budget_s:.0f} s ({bench_s:.0f} s kept for the bench), rows {' '.join(a.rows)}, "
        f"{a.parallel} at once, scale {a.scale}, device {a.device}, work {work}")
    env = prepare_python(a, work)
    data_root = prepare_data(a, work, env)
    done = run_rows(a, env, data_root, work, deadline - bench_s)
    bench = run_bench(a, env, work, deadline)
    summary = summarize(a, done, work, bench, started)
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
