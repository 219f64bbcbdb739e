"""One run on several processes: torchrun (`torchrun --nproc_per_node N -m frx.train ...`), or a submitit job
of several tasks (hydra/launcher=local or slurm_ddp). The process group, this process's rank, its rows of
each batch, the DDP wrapper, and the few things the processes must agree on.

Every process trains the same way on its own rows of the global batch (trainer.batch_size); only the
first (rank 0) writes files. Without torchrun's or submitit's variables every function here answers
as for a single process, and a run takes the path it always did.
"""

from __future__ import annotations

import datetime
import logging
import os
import re
from typing import Any, Optional

import torch
import torch.distributed as dist
from torch import nn

from .config import UserError
from .data.common import shard_rows
from .fr.parametrize import FrequencyWeight

_control = None  # the group for small messages on the CPU: gloo also when the gradients go through nccl


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Whether this process writes the run's files (the record, checkpoint, packed models, metrics.csv, logs)."""
    return rank() == 0


def launch_rank() -> int:
    """This process's rank from the launcher's variables (before the process group exists)."""
    return int(os.environ.get("RANK", os.environ.get("SUBMITIT_LOCAL_GLOBALID", os.environ.get("SLURM_PROCID", 0))))


def _variables_from_submitit() -> None:
    """Inside a submitit job of several tasks, set the variables torchrun would set."""
    if "WORLD_SIZE" in os.environ or not os.environ.get("SUBMITIT_EXECUTOR"):
        return
    from submitit.helpers import TorchDistributedEnvironment

    env = TorchDistributedEnvironment()
    if env.world_size > 1:
        for key, value in (("MASTER_ADDR", env.master_addr), ("MASTER_PORT", env.master_port), ("RANK", env.rank),
                           ("WORLD_SIZE", env.world_size), ("LOCAL_RANK", env.local_rank),
                           ("LOCAL_WORLD_SIZE", env.local_world_size)):
            os.environ.setdefault(key, str(value))


def init(device: torch.device, timeout_s: float) -> torch.device:
    """Join the run's process group when the launcher started several processes (nccl on GPUs, gloo on the
    CPU); returns the device this process trains on (the GPU of its LOCAL_RANK), else `device` as it is."""
    global _control
    _variables_from_submitit()
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world <= 1 or active():
        return device
    if device.type == "cuda":
        if device.index is not None:
            raise UserError(f"trainer.device={device} puts every process on one GPU: use trainer.device=cuda "
                            f"(or auto) on several processes, each takes the GPU of its LOCAL_RANK")
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise UserError(f"trainer.device={device.type} has no backend for several processes: use cuda or cpu")
    timeout = datetime.timedelta(seconds=timeout_s)
    dist.init_process_group(backend, timeout=timeout, **({"device_id": device} if backend == "nccl" else {}))
    _control = dist.new_group(backend="gloo", timeout=timeout) if backend == "nccl" else dist.group.WORLD
    if not is_main():  # one log: the first process's (its warnings and errors still reach stderr)
        root = logging.getLogger()
        for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(logging.ERROR)
    return device


def close() -> None:
    global _control
    if active():
        dist.destroy_process_group()
    _control = None


def shard() -> Optional[tuple[int, int]]:
    """(rank, world size) on several processes, else None: what the data's `batches(shard=...)` takes."""
    return (rank(), world_size()) if active() else None


def seed_process(seed: int) -> None:
    """Give each process other than the first its own stream of the global random generators (dropout and other
    random operations in a forward pass); the data order and augmentation have their own, shared generators."""
    r = rank()
    if r > 0:
        import random

        import numpy as np

        s = (int(seed) + r * 1_000_003) % 2**63
        random.seed(s)
        np.random.seed(s % 2**32)
        torch.manual_seed(s)


def sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """BatchNorm over the whole global batch (SyncBatchNorm) on several processes; the model itself otherwise."""
    if not active() or not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return model
    if device.type != "cuda":
        raise UserError("trainer.sync_bn=true: SyncBatchNorm runs on GPUs only; on the CPU set trainer.sync_bn=false "
                        "(each process then normalizes over its own rows of the batch)")
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """The model that training steps call: DistributedDataParallel around it on several processes. FR's kept
    counts (the `k` buffers) advance on every process alike and are not broadcast; its learnable tensors are
    the DCT coefficients, whose gradients are all-reduced like any other parameter's."""
    if not active():
        return model
    ddp = nn.parallel.DistributedDataParallel
    ddp._set_params_and_buffers_to_ignore_for_model(
        model, [f"{name}.k" for name, m in model.named_modules() if isinstance(m, FrequencyWeight)])
    return ddp(model, device_ids=[device.index] if device.type == "cuda" else None)


def batch_mean(values: dict, rows: int, total: int) -> dict:
    """A step's values, each a mean over this process's `rows` of the batch, as means over all `total` rows."""
    if not active():
        return values
    t = next((v for v in values.values() if isinstance(v, torch.Tensor)), None)
    where = t.device if t is not None else torch.device("cpu")
    stacked = torch.stack([torch.as_tensor(v, device=where).detach().float().reshape(()) for v in values.values()])
    stacked = stacked * rows
    dist.all_reduce(stacked)
    stacked = stacked / total
    return dict(zip(values, stacked.unbind()))


def agree(*flags: bool) -> list[bool]:
    """Each flag that is set on any process, set on all (a Ctrl-C or SIGTERM reaches them at different steps)."""
    if not active():
        return list(flags)
    t = torch.tensor([int(bool(f)) for f in flags])
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=_control)
    return [bool(v) for v in t.tolist()]


def gather(obj: Any) -> list:
    """`obj` of every process, in rank order."""
    if not active():
        return [obj]
    out: list = [None] * world_size()
    dist.all_gather_object(out, obj, group=_control)
    return out


def check_same(what: str, value: Any) -> None:
    """Stop when the processes do not hold the same `value` (they must advance in lockstep)."""
    values = gather(value)
    if any(v != values[0] for v in values):
        raise RuntimeError(f"the processes of this run disagree on {what}: {values}")


def lost_peer(e: BaseException) -> bool:
    """Whether `e` is a collective that failed because another process of the run is gone (or hangs)."""
    return active() and (isinstance(e, dist.DistError) or (isinstance(e, RuntimeError) and "gloo" in str(e)))


def lost_peer_message(e: BaseException) -> str:
    first = re.sub(r"^\[[^\]]*\]\s*", "", str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
    return (f"process {rank()} of {world_size()} lost contact with the others ({first.split('. ')[0]}): "
            f"another process stopped or was killed; the run stops")


__all__ = ["active", "agree", "batch_mean", "check_same", "close", "gather", "init", "is_main", "launch_rank",
           "lost_peer", "lost_peer_message", "rank", "seed_process", "shard", "shard_rows", "sync_batchnorm",
           "world_size", "wrap"]
