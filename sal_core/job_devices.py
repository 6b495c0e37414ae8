"""How many GPUs a job needs, from its settings, and taking them at the start of a step.

A job's GPUs are numbered from 0 in the job (CUDA_VISIBLE_DEVICES lists them in that order, on Slurm
and locally alike): the policy takes the first `tensor_parallel_size` (vLLM; 1 for a transformers
model on a GPU), an in-process PRM the one its `device` names (`cuda:1`: the job's second GPU; `auto`
or `cuda`: the first, beside the policy). So a PRM set to `cuda:1` beside a one-GPU policy makes the
job hold two GPUs and the PRM really has one to itself; vLLM's engine is started seeing only the
policy's (`policy_only`). Served models and PRMs (and `device: cpu`) need none.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from sal_core.device_locks import VISIBLE_ENV, Claim, claim_gpus, hold_gpus, step_description
from sal_core.settings.grid import Grid
from sal_core.settings.jobs import ModelSettings, PRMSettings


def device_index(device: str) -> int | None:
    """The job's GPU a device string names: 0 for `auto` / `cuda`, k for `cuda:k`, None for the CPU
    (or any other device: torch refuses a bad one when the model loads, naming the key)."""
    if device in ("auto", "cuda"):
        return 0
    prefix, _, index = device.partition(":")
    return int(index) if prefix == "cuda" and index.isdigit() else None


def policy_gpus(model: ModelSettings, where: str = "model") -> tuple[int, str]:
    """GPUs the policy takes (the job's first ones) and the setting that decides it."""
    if model.served:
        return 0, f"{where}.backend"
    if model.backend == "vllm":
        return model.tensor_parallel_size or 1, f"{where}.tensor_parallel_size"
    index = device_index(model.device)
    return (0 if index is None else index + 1), f"{where}.device"


def prm_gpus(prm: PRMSettings, where: str = "prm") -> tuple[int, str]:
    """GPUs up to and including the PRM's (0 when it runs on the CPU or behind a server)."""
    if prm.served or prm.type == "verifier":  # behind a server, or no model at all
        return 0, f"{where}.type"
    index = device_index(prm.device)
    return (0 if index is None else index + 1), f"{where}.device"


def job_gpus(model: ModelSettings | None, prm: PRMSettings | None) -> tuple[int, str]:
    """GPUs a job holding `model` and/or `prm` needs (a served PRM: none), and the setting that asks most."""
    needs = [(0, "model.device")]
    if model is not None:
        needs.append(policy_gpus(model, f"models.{model.name}"))
    if prm is not None:
        needs.append(prm_gpus(prm, f"prms.{prm.name}"))
    return max(needs, key=lambda need: need[0])


def shares_policy_gpu(model: ModelSettings, prm: PRMSettings) -> bool:
    """Whether an in-process PRM lands on one of the policy's GPUs (vLLM then leaves it room)."""
    index = device_index(prm.device)
    return index is not None and index < max(policy_gpus(model)[0], 1)


def grid_gpus(grid: Grid) -> dict[str, int]:
    """GPUs per `generate` and `score` job, the most any of the grid's jobs needs: the rules' default
    `gpu` resource (Snakemake's count; on Slurm, sbatch's). 0 for a grid whose models and PRMs are all
    served or on the CPU."""
    generate = {
        job_gpus(run.job.model, run.job.prm if run.job.search.guided else None)[0]
        for run in {(run.model, run.search_prm): run for run in grid.runs}.values()
    }
    scoring = {*grid.score_prms, *(name for run in grid.runs for name in run.score_prms)}
    score = {prm_gpus(grid.prms[name])[0] for name in scoring}
    return {"generate": max(generate, default=0), "score": max(score, default=0)}


@contextmanager
def job_gpus_held(model: ModelSettings | None, prm: PRMSettings | None, wait: bool = True) -> Iterator[Claim | None]:
    """Hold the GPUs a step's job needs while it loads and runs its models (device_locks.claim_gpus),
    then give them back with CUDA_VISIBLE_DEVICES as it was. A `sal` step's process exits right after;
    a step run inside a longer process (tests, a notebook) leaves them to the next step or to its
    children. Nothing to load (`model` and `prm` None): nothing held."""
    if model is None and prm is None:
        yield None
        return
    before = {name: os.environ.get(name) for name in (VISIBLE_ENV, "CUDA_DEVICE_ORDER")}
    count, key = job_gpus(model, prm)
    claim = claim_gpus(count, step_description(), key, wait)
    try:
        yield claim
    finally:
        claim.release()
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def hold_server_gpus(name: str, settings: ModelSettings | PRMSettings) -> Claim:
    """The GPUs of a server `sal with-servers` starts on this machine, locked like a job's (the jobs of
    the command it runs then take others), without waiting: held ones are one line naming them. The
    caller hands them to the server through its CUDA_VISIBLE_DEVICES and releases them once it stops."""
    if isinstance(settings, ModelSettings):
        count, key = policy_gpus(settings, f"models.{name}")
    else:
        count, key = prm_gpus(settings, f"prms.{name}")
    return hold_gpus(count, f"the server of {name} (sal with-servers, pid {os.getpid()})", key, wait=False)


@contextmanager
def policy_only(model: ModelSettings) -> Iterator[None]:
    """CUDA_VISIBLE_DEVICES narrowed to the policy's GPUs (the job's first tensor_parallel_size) while
    vLLM starts its engine processes, which keep that view; restored after, for an in-process PRM on
    a later GPU of the job. vLLM's parent process does not initialise CUDA (it would switch its
    workers to spawn), so the restored list is what torch sees when the PRM loads."""
    listed = os.environ.get(VISIBLE_ENV)
    count = policy_gpus(model)[0]
    gpus = [gpu for gpu in (listed or "").split(",") if gpu.strip()]
    if listed is None or len(gpus) <= count:
        yield
        return
    os.environ[VISIBLE_ENV] = ",".join(gpus[:count])
    try:
        yield
    finally:
        os.environ[VISIBLE_ENV] = listed
