"""The training loop of one run: seeding and device, the FR or pruning schedule, optimizers and LR
schedules, epochs with evaluation, a checkpoint after each epoch, and resuming from it."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn
from tqdm.auto import tqdm

from . import checkpoint as ckpt
from . import csvlog, distributed
from .config import UserError, config_diff, flatten, resolved_config
from .method import Plain
from .naming import NOT_COMPUTING
from .optim import make_schedulers

log = logging.getLogger("frx.train")
PROGRESS_EVERY_S = 30.0  # a progress line in the log this often when no bar is shown (output not a terminal)
# a progress line's speed and ETA: over the last 5 minutes (FR's steps get cheaper as its mask shrinks)
RATE_WINDOW_S = 300.0


class Interrupted(Exception):
    """Ctrl-C during training: the loop stopped between two steps and saved a checkpoint there."""

    def __init__(self, epoch: int, step: int, steps: int, path: Path):
        super().__init__(f"interrupted in epoch {epoch}, after step {step} of {steps}; checkpoint saved to {path}")
        self.path = path


@contextlib.contextmanager
def stop_on_sigint():
    """An Event that the first Ctrl-C or SIGTERM (what a cluster scheduler sends before it preempts a
    job) sets: the loop then stops after the current step and saves a checkpoint. A second signal raises
    KeyboardInterrupt at once. Outside the main thread, or for a signal that is ignored (Ctrl-C in a job
    a shell started in the background), the usual effect stays. SIGUSR2 (submitit's signal before a Slurm
    preemption or time limit) stops the loop too, and then goes on to the handler that was there (submitit's
    requeues the job, which then continues from the checkpoint: frx.train.requeued_by_slurm)."""
    stop = threading.Event()
    caught = []

    def handler(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        caught.append(signum)
        what = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        log.warning("%s: saving a checkpoint after this step (a second one stops at once)", what)

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2):
        if signal.getsignal(sig) is signal.SIG_IGN:
            continue
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread
            pass
    try:
        yield stop
    finally:
        for sig, handler_before in previous.items():
            signal.signal(sig, handler_before)
        if caught == [signal.SIGUSR2] and callable(previous[signal.SIGUSR2]):
            previous[signal.SIGUSR2](signal.SIGUSR2, None)


def _duration(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(bool(deterministic), warn_only=True)
    torch.backends.cudnn.benchmark = not deterministic


def steps_per_epoch(n: int, batch_size: int, cap: Optional[int]) -> int:
    steps = max(1, math.ceil(n / batch_size))
    return min(steps, cap) if cap else steps


class Loop:
    """The epochs of one run; `method` (frx.method) is what it trains with: plain, FR or pruning."""

    def __init__(self, cfg: DictConfig, model: nn.Module, task: Any, splits: Any, method: Plain, stem: str,
                 run_dir: Path):
        self.cfg, self.tr, self.model, self.task, self.splits = cfg, cfg.trainer, model, task, splits
        self.method, self.stem = method, stem
        self.optimizers = task.optimizers(model)
        self.steps = steps_per_epoch(len(splits.train), self.tr.batch_size, self.tr.max_steps_per_epoch)
        total = self.steps * self.tr.epochs
        self.schedulers = make_schedulers(self.optimizers, self.tr.scheduler, total)
        smallest = min(self.tr.batch_size, len(splits.train) - (self.steps - 1) * self.tr.batch_size)
        if distributed.world_size() > smallest:
            raise UserError(f"a batch of {smallest} cannot be shared by {distributed.world_size()} processes: "
                            f"raise trainer.batch_size, or change dataset.limit_train (the epoch's last batch is the "
                            f"smallest)")
        trained = distributed.wrap(model, task.device)  # DDP on several processes, else the model itself
        self.train_model = torch.compile(trained) if self.tr.compile else trained
        self.show_progress = self.tr.progress and distributed.is_main()
        self.gen = torch.Generator().manual_seed(int(cfg.seed))  # data order
        self.ckpt_path, self.csv_path = run_dir / ckpt.FILENAME, run_dir / csvlog.FILENAME
        self.epoch, self.log, self.elapsed_before = 0, [], 0.0
        self.step_log: list[dict] = []  # one entry per optimizer step, for metrics.csv
        # an epoch stopped by Ctrl-C: steps done, their losses and time, the data-order state at its start
        self.partial: Optional[dict] = None
        self.session_start, self.session_steps, self.last_line = time.time(), 0, time.time()
        self.rate_marks: list[tuple[float, int]] = []  # (time, session_steps): the epoch's start, recent progress lines
        self.last_save = time.time()  # trainer.checkpoint_every_s counts from here

    # -- checkpoints --------------------------------------------------------------------------
    def resume(self) -> None:
        """Continue from the run folder's checkpoint when trainer.resume is set (else only warn of one).
        Refused, with the reason, when there is none, it is unreadable, or it was made with other settings."""
        path = self.ckpt_path
        if not path.exists():
            if self.tr.resume:
                raise UserError(f"trainer.resume=true but there is no checkpoint {path}: nothing to resume "
                                f"(the run folder follows the run's settings; drop trainer.resume to start afresh)")
            return
        if not self.tr.resume:
            log.warning("%s exists from an unfinished run; starting afresh (trainer.resume=true continues it)", path)
            return
        try:
            state = ckpt.load(path)
        except Exception as e:  # noqa: BLE001  truncated, empty or foreign: torch raises many kinds
            raise UserError(f"cannot resume: {path} is damaged ({type(e).__name__}: {str(e).splitlines()[0][:120]}); "
                            f"delete it to start afresh") from None
        differ = config_differences(state.get("config"), resolved_config(self.cfg))
        if differ:
            raise UserError(f"cannot resume: {path} was made with other settings: {'; '.join(differ)} "
                            f"(resume with the checkpoint's settings, or drop trainer.resume to start afresh)")
        if state.get("stem") != self.stem:
            raise UserError(f"{path} belongs to run {state.get('stem')!r}, not {self.stem!r}")
        self.method.before_model_load(state)
        self.model.load_state_dict(state["model"])
        self.method.after_model_load(state)
        for o, s in zip(self.optimizers, state["optimizers"]):
            o.load_state_dict(s)
        for s, st in zip(self.schedulers, state["schedulers"]):
            s.load_state_dict(st)
        self.task.load_state_dict(state["task"])
        ckpt.set_rng_state(state["rng"], self.gen)
        if distributed.rank() > 0:  # the others' own streams, or fresh ones after a change in the number of processes
            by_rank = state.get("rng_ranks") or []
            if len(by_rank) == distributed.world_size():
                ckpt.set_rng_state(by_rank[distributed.rank()])
            else:
                distributed.seed_process(int(self.cfg.seed) + int(state["epoch"]) + 1)
        self.epoch, self.log = int(state["epoch"]), list(state["epochs"])
        self.elapsed_before = float(state.get("elapsed", 0.0))
        self.step_log, self.partial = list(state.get("steps", [])), state.get("partial")
        where = f", step {self.partial['step']} of epoch {self.epoch + 1}" if self.partial else ""
        log.info("resuming %s after epoch %d%s from %s", self.stem, self.epoch, where, path)

    def mid_epoch_save_due(self) -> bool:
        every = self.tr.checkpoint_every_s
        return bool(self.tr.checkpoint and every) and time.time() - self.last_save >= every

    def save(self, elapsed: float) -> None:
        """Write the checkpoint (the first process; every process calls this at the same step)."""
        self.last_save = time.time()
        rng = distributed.gather(ckpt.rng_state(self.gen))  # per process: their global streams differ
        if not distributed.is_main():
            return
        ckpt.save(self.ckpt_path, {
            "stem": self.stem, "config": resolved_config(self.cfg), "epoch": self.epoch, "epochs": self.log,
            "model": self.model.state_dict(),
            **self.method.checkpoint_entries(),
            "optimizers": [o.state_dict() for o in self.optimizers],
            "schedulers": [s.state_dict() for s in self.schedulers], "task": self.task.state_dict(),
            "rng": rng[0], "elapsed": elapsed, "steps": self.step_log, "partial": self.partial,
            **({"rng_ranks": rng} if len(rng) > 1 else {})})

    def write_csv(self) -> None:
        if distributed.is_main():
            csvlog.write(self.csv_path, self.step_log, self.log)

    # -- training -----------------------------------------------------------------------------
    def fit(self) -> None:
        """Train the remaining epochs, a checkpoint after each; Ctrl-C saves one and raises Interrupted."""
        self.session_start, self.session_steps, self.last_save = time.time(), 0, time.time()
        with stop_on_sigint() as stop:
            while self.epoch < self.tr.epochs:
                entry = self.train_epoch(stop)
                elapsed = self.elapsed_before + time.time() - self.session_start
                if entry is not None:
                    self.log.append(entry)
                    self.epoch += 1
                    distributed.check_same("the epoch and FR's kept count and beta",
                                           (self.epoch, entry["kept"], entry["beta"]))
                    if self.tr.checkpoint:
                        self.save(elapsed)
                    self.write_csv()
                if entry is None or distributed.agree(stop.is_set())[0]:
                    if entry is None or not self.tr.checkpoint:
                        self.save(elapsed)
                    self.write_csv()
                    step = self.partial["step"] if self.partial else self.steps
                    raise Interrupted(self.epoch + (1 if self.partial else 0), step, self.steps, self.ckpt_path)

    def progress_line(self, epoch: int, step: int, losses: list[float], kept: int) -> None:
        """One log line (for logs, where no bar is drawn): position, recent loss, kept, speed, time left."""
        now = time.time()
        self.rate_marks = [(t, n) for t, n in self.rate_marks if now - t <= RATE_WINDOW_S] or self.rate_marks[-1:]
        since, done = self.rate_marks[0]  # train_epoch puts the epoch's start there
        rate = (self.session_steps - done) / max(now - since, 1e-9)
        self.rate_marks.append((now, self.session_steps))
        left = (self.tr.epochs - epoch) * self.steps + self.steps - step
        recent = [float(v) for v in losses[-50:]]
        log.info("epoch %d/%d  step %d/%d  loss %.4f  kept %s  %.2f steps/s  ETA %s (training steps only)",
                 epoch, self.tr.epochs, step, self.steps, sum(recent) / max(len(recent), 1), f"{kept:,}", rate,
                 _duration(left / rate) if rate > 0 else "?")
        self.last_line = time.time()

    def train_epoch(self, stop: Optional[threading.Event] = None) -> Optional[dict]:
        """One epoch of optimizer steps, the schedules' epoch ends and (when due) evaluation; its log entry.
        None when `stop` was set (Ctrl-C): `self.partial` then says where the epoch stopped."""
        t0, epoch, epochs = time.time(), self.epoch + 1, self.tr.epochs
        self.rate_marks = [(t0, self.session_steps)]  # speed from this epoch's steps, not the evaluation before
        part, self.partial = self.partial, None
        if part is not None:  # the epoch was interrupted: the same data order, then skip the steps done
            self.gen.set_state(part["gen"])
        gen_at_start = self.gen.get_state()
        # losses: floats or 0-dim tensors on the device, read back at the epoch's end
        done, losses = (part["step"], list(part["losses"])) if part else (0, [])
        self.model.train()
        bar = tqdm(total=self.steps, initial=done, desc=f"epoch {epoch}/{epochs}", leave=False, dynamic_ncols=True,
                   disable=None if self.show_progress else True)  # None: only on a terminal
        shard = distributed.shard()  # on several processes: (rank, world size), each trains on its rows of a batch
        batches = iter(self.task.batches(self.splits.train, self.tr.batch_size, shuffle=True, generator=self.gen,
                                         **({"shard": shard} if shard else {})))
        if done:
            # skipping must not draw from the random states saved at the interrupt (the augmentation's too)
            rng, task_state = ckpt.rng_state(), self.task.state_dict()
            for _ in range(done):
                next(batches)
            ckpt.set_rng_state(rng)
            self.task.load_state_dict(task_state)
        kept = self.method.kept()
        for i, batch in enumerate(batches, start=done):
            if i >= self.steps:
                break
            if shard is None:
                out = self.task.train_step(self.train_model, batch, self.optimizers)
            else:  # the loss over the whole batch: rows weighted by their share (the last batch may not split evenly)
                total = min(self.tr.batch_size, len(self.splits.train) - i * self.tr.batch_size)
                lo, hi = distributed.shard_rows(total, *shard)
                weight = shard[1] * (hi - lo) / total
                out = self.task.train_step(self.train_model, batch, self.optimizers, weight=weight)
                out = distributed.batch_mean(out, hi - lo, total)
            for s in self.schedulers:
                s.step()
            self.method.step()
            losses.append(out["loss"])
            self.session_steps += 1
            if (i + 1) % self.tr.log_every == 0:  # numbers are read back from the device only here
                out = {k: float(v) for k, v in out.items()}
                kept = self.method.kept()
                if not math.isfinite(out["loss"]):
                    raise UserError(f"training diverged at epoch {epoch}, step {i + 1}: loss {out['loss']}")
                self.step_log.append({"epoch": epoch, "step": self.epoch * self.steps + i + 1, **out, "kept": kept,
                                      "beta": self.method.beta,
                                      "lr": self.optimizers[0].param_groups[0]["lr"]})
                bar.set_postfix({k: f"{v:.4f}" for k, v in out.items()} | {"kept": f"{kept:,}"}, refresh=False)
            bar.update()
            if self.show_progress and bar.disable and time.time() - self.last_line >= PROGRESS_EVERY_S:
                self.progress_line(epoch, i + 1, losses, kept)
            if i + 1 < self.steps:
                where = {"step": i + 1, "losses": [float(v) for v in losses], "gen": gen_at_start,
                         "time_s": (part or {}).get("time_s", 0.0) + time.time() - t0}
                stopping, saving = distributed.agree(stop is not None and stop.is_set(), self.mid_epoch_save_due())
                if stopping:
                    bar.close()
                    self.partial = where
                    return None
                if saving:
                    self.partial = where
                    self.save(self.elapsed_before + time.time() - self.session_start)
                    self.partial = None
        bar.close()
        losses = [float(v) for v in losses]
        bad = [(i, v) for i, v in enumerate(losses) if not math.isfinite(v)]
        if bad:  # the steps between log lines are checked here
            raise UserError(f"training diverged at epoch {epoch}, step {bad[0][0] + 1}: loss {bad[0][1]}")
        self.method.epoch_end()
        due = self.tr.eval_every and epoch % self.tr.eval_every == 0
        val = None
        if due or epoch == epochs:
            with self.method.evaluation():
                val = self.task.evaluate(self.model, self.splits.val)
        entry = {"epoch": epoch, "train_loss": float(np.mean(losses)) if losses else None, "val_metric": val,
                 "kept": self.method.kept(), "beta": self.method.beta,
                 "lr": self.optimizers[0].param_groups[0]["lr"],
                 "time_s": round((part or {}).get("time_s", 0.0) + time.time() - t0, 3)}
        log.info("epoch %d/%d  loss %.4f  %skept %s  (%.1f s)", epoch, epochs, entry["train_loss"],
                 f"{self.task.metric} {val:.4f}  " if val is not None else "", f"{entry['kept']:,}", entry["time_s"])
        return entry


def config_differences(saved: dict | None, now: dict) -> list[str]:
    """'key: saved -> now' for each computing setting that differs (run.* and NOT_COMPUTING ignored)."""
    if saved is None:  # a checkpoint written before checkpoints kept their config
        return []
    a, b = flatten(saved), flatten(now)
    keys = config_diff(saved, now, NOT_COMPUTING + ("run",))
    return [f"{k} {a.get(k, '(unset)')} -> {b.get(k, '(unset)')}" for k in keys]
