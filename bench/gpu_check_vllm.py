"""The vLLM checks of bench/gpu_check.py that only a GPU decides, runnable on the CPU build too.

- `vllm/job-start`: a beam-search job's models loaded as `sal generate` loads them
  (pipeline.generate.load_models: the build check, the memory plan, vLLM, then the PRM beside it): the
  dtype both took (bfloat16 on compute capability >= 8.0, float16 below, float32 on CPU), CUDA not yet
  initialised when `vllm.LLM` was called (vLLM then forks its workers), and on a GPU the PRM's
  measured peak memory for a batch of batch_size x max_length against the estimate the job planned by;
- `vllm/bon-throughput`: the project's Best-of-N (run_search through VLLMBackend) against raw vLLM
  (`LLM.generate` on the same token prompts and SamplingParams, `ignore_eos`, no stop strings), on a
  policy that cannot end early (its EOS token lies outside the model's vocabulary), so both generate
  the same tokens; target >= 0.9x;
- `vllm/tensor-parallel`: the chain model's outputs over two GPUs (skipped with fewer).
Engines run eager (`enforce_eager`): start-up compile time is not what is checked.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch

from sal_core.settings.jobs import GenerateJob, ModelSettings

#: the throughput target: the project's Best-of-N against raw vLLM on the same work
TARGET = 0.9
#: problems x samples x tokens of the throughput check, per device
BON_SIZE = {"cuda": (64, 16, 256), "cpu": (4, 4, 32)}
#: the PRM's batch in the memory check: inputs of up to this many tokens
PRM_BATCH, PRM_LENGTH = 8, 1024


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def never_ending_policy(tokenizer_folder: Path, folder: Path) -> Path:
    """A random Llama-architecture policy (SmolLM2's tokenizer, heads of 64 dimensions) whose EOS token
    is one id past the model's vocabulary: no engine can sample it, so every sample runs to its limit."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder)
    vocab = len(tokenizer)
    tokenizer.add_special_tokens({"eos_token": "<|never-sampled|>"})
    config = LlamaConfig(
        vocab_size=vocab, hidden_size=512, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=8,
        num_key_value_heads=4, max_position_embeddings=2048, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
    )  # fmt: skip
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _job(folders: dict[str, Path], method: str, **search: Any) -> GenerateJob:
    data: dict[str, Any] = {
        "model": {"name": "policy", "path": str(folders["policy"]), "backend": "vllm", "max_model_len": 2048},
        "search": {"method": method, **search},
    }
    data["model"]["enforce_eager"] = True
    if method != "best_of_n":
        prm = {"name": "qwen-prm", "type": "qwen2.5-math", "path": str(folders["qwen-prm"])}
        data["prm"] = {**prm, "batch_size": PRM_BATCH, "max_length": PRM_LENGTH}
    return GenerateJob.from_dict(data)


def _record_llm_calls(seen: list[dict[str, Any]]) -> Any:
    """Wrap vllm.LLM so each call records its arguments and whether CUDA was initialised before it."""
    import vllm

    original = vllm.LLM

    def recording(*args: Any, **kwargs: Any) -> Any:
        seen.append({**kwargs, "cuda_initialised": torch.cuda.is_initialized()})
        return original(*args, **kwargs)

    vllm.LLM = recording
    return original


def expected_dtype(device: str) -> str:
    from sal_core.devices import dtype_name, gpu_capability

    kind = device.split(":")[0]
    return dtype_name("auto", kind, gpu_capability(0) if kind == "cuda" else None, "model.dtype")


def job_start(report: Any, device: str, folders: dict[str, Path], holder: dict[str, Any]) -> None:
    """Load a beam-search job's policy (vLLM) and PRM (in process) as `sal generate` does."""
    import vllm

    from sal_core.pipeline.generate import load_models

    seen: list[dict[str, Any]] = []

    def start() -> str:
        original = _record_llm_calls(seen)
        try:
            backend, prm = load_models(_job(folders, "beam_search", n=4, beam_width=2), {})
        finally:
            vllm.LLM = original
        holder.update(backend=backend, prm=prm)
        call, want = seen[0], expected_dtype(device)
        expect(call["dtype"] == want, f"engine dtype {call['dtype']}, the rule says {want}")
        prm_dtype = str(prm.forward_module.dtype).removeprefix("torch.")
        expect(prm_dtype == want, f"PRM dtype {prm_dtype}, the rule says {want}")
        expect(not call["cuda_initialised"], "CUDA was initialised in the job before vllm.LLM (workers spawn)")
        method = os.environ.get("VLLM_WORKER_MULTIPROC_METHOD", "fork")
        if device.startswith("cuda"):  # vLLM's CUDA default; it switches to spawn when CUDA is initialised
            expect(method == "fork", f"vLLM started its workers with {method}, not fork")
        share = call["gpu_memory_utilization"]
        return f"engine and PRM in {want}; CUDA untouched before vllm.LLM (workers: {method}); share {share}"

    report.check("vllm/job-start", start)


def prm_memory(report: Any, device: str, folders: dict[str, Path], holder: dict[str, Any]) -> None:
    """The PRM's measured peak for one full batch beside the engine, against the job's estimate."""
    if "prm" not in holder or not device.startswith("cuda"):
        report.skip("vllm/prm-memory", "needs a CUDA device and the job-start check's PRM")
        return
    from sal_core.backends.gpu_memory import GIB, prm_need_for
    from sal_core.prm import shares_prefixes

    def measure() -> str:
        prm = holder["prm"]
        need = prm_need_for(prm.settings, expected_dtype(device), shares_prefixes(prm.settings.type))
        expect(need is not None, "no estimate for the tiny PRM (config.json unreadable?)")
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        words = " ".join(["one"] * (PRM_LENGTH // 2))
        prm.score(["What is 1 + 1?"] * PRM_BATCH, [[f"Step 1: {words}\n\nStep 2: done."]] * PRM_BATCH)
        peak = torch.cuda.max_memory_allocated() - base
        planned = need.activations + need.prefix_cache
        expect(
            peak <= planned,
            f"activations peaked at {peak / 2**20:.0f} MiB, above the {planned / 2**20:.0f} MiB planned",
        )
        free, total = torch.cuda.mem_get_info()
        room = f"{free / GIB:.1f} of {total / GIB:.1f} GiB free beside the engine"
        return f"peak {peak / 2**20:.0f} MiB <= planned {planned / 2**20:.0f} MiB; {room}"

    report.check("vllm/prm-memory", measure)


def _raw_inputs(vllm: Any, tokenizer: Any, requests: list[Any], outputs: list[Any]) -> tuple[list[Any], list[Any]]:
    """Raw vLLM's inputs for the project's requests: the same token prompts and sampling, fixed lengths."""
    from vllm.inputs import TokensPrompt

    from sal_core.backends.tokens import prompt_token_ids

    prompts = [TokensPrompt(prompt_token_ids=prompt_token_ids(tokenizer, r.prompt)) for r in requests]
    params = [
        vllm.SamplingParams(
            n=1, temperature=r.temperature, top_p=r.top_p, max_tokens=o.num_tokens, seed=r.seed, ignore_eos=True
        )
        for r, o in zip(requests, outputs, strict=True)
    ]
    return prompts, params


def bon_throughput(report: Any, device: str, folders: dict[str, Path], holder: dict[str, Any]) -> None:
    """The project's Best-of-N against raw vLLM on the same engine, prompts, SamplingParams and lengths."""
    if "backend" not in holder:
        report.skip("vllm/bon-throughput", "the job-start check did not start an engine")
        return
    import vllm

    from sal_core.search import run_search

    problems_n, samples, tokens = BON_SIZE[device.split(":")[0]]
    backend = holder["backend"]
    job = _job(folders, "best_of_n", n=samples, max_tokens=tokens, temperatures=[0.8])
    problems = [f"What is {k} + {k + 1}?" for k in range(problems_n)]

    def measure() -> str:
        seen: dict[str, Any] = {}
        generate = backend.generate

        def recording(requests: list[Any]) -> list[Any]:
            seen["requests"], seen["outputs"] = list(requests), generate(requests)
            return seen["outputs"]

        run_search(problems[:2], job, backend, None)  # warm-up
        backend.generate = recording
        ours = raw = float("inf")
        for _ in range(2):  # alternate, best of two each
            started = time.perf_counter()
            results = run_search(problems, job, backend, None)
            ours = min(ours, time.perf_counter() - started)
            prompts, params = _raw_inputs(vllm, backend.tokenizer, seen["requests"], seen["outputs"])
            started = time.perf_counter()
            raw_out = backend.llm.generate(prompts, params, use_tqdm=False)
            raw = min(raw, time.perf_counter() - started)
        del backend.generate
        generated = sum(r.generated_tokens for r in results)
        expect(generated == problems_n * samples * tokens, f"{generated} tokens, not every sample at its limit")
        expect(sum(len(o.outputs[0].token_ids) for o in raw_out) == generated, "raw vLLM generated other lengths")
        ratio = raw / ours
        expect(ratio >= TARGET, f"{ratio:.2f}x raw vLLM's throughput (target {TARGET}x)")
        speeds = f"{generated / ours:.0f} vs raw {generated / raw:.0f} tokens/s"
        return f"{speeds} = {ratio:.2f}x ({problems_n} problems x {samples} samples x {tokens} tokens)"

    report.check("vllm/bon-throughput", measure)


def close(holder: dict[str, Any]) -> None:
    """Stop the job-start check's engine and free its PRM before the next engine starts."""
    if "backend" in holder:
        holder.pop("backend").close()
    holder.pop("prm", None)
    if torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def tensor_parallel(report: Any, device: str, folders: dict[str, Path], check_outputs: Any, requests: Any) -> None:
    """The chain model over two GPUs gives the outputs wired into it."""
    from sal_core.gpu_info import visible_gpus

    if not device.startswith("cuda") or len(visible_gpus()) < 2:
        report.skip("vllm/tensor-parallel", f"needs two GPUs, {len(visible_gpus())} visible")
        return
    from sal_core.backends.vllm_backend import VLLMBackend

    def run() -> str:
        settings = dict(name="chain", path=str(folders["chain"]), backend="vllm", max_model_len=128)
        engine = VLLMBackend(
            ModelSettings(**settings, tensor_parallel_size=2, enforce_eager=True, gpu_memory_utilization=0.3)
        )
        try:
            return "2 GPUs: " + check_outputs(engine.generate(requests(engine.tokenizer)))
        finally:
            engine.close()

    report.check("vllm/tensor-parallel", run)


def run_job_checks(report: Any, device: str, folders: dict[str, Path]) -> None:
    """Every check above that needs the job's engine, in order, then the engine stopped."""
    holder: dict[str, Any] = {}
    try:
        job_start(report, device, folders, holder)
        prm_memory(report, device, folders, holder)
        bon_throughput(report, device, folders, holder)
    finally:
        close(holder)
