"""What the published grids need on one GPU: each policy on vLLM beside its guiding PRM, on 40 GB and
80 GB cards, computed by the code a job runs before its engine starts (sal_core.backends.gpu_memory,
plan_share; the estimate in sal_core.backends.memory_estimate). Prints the markdown table of
docs/gpu.md ("Memory: a PRM beside the policy"); tests/test_gpu_memory.py checks the two agree.

    python bench/gpu_memory_table.py

No network: the config.json values of the published checkpoints are written below, each with its
source. The PRM settings (batch_size, max_length) and the policies' max_model_len are read from
config/experiments/math500.yaml. An empty GPU is assumed (free = total).
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sal_core.backends.gpu_memory import GIB, plan_share, policy_floor_bytes  # noqa: E402
from sal_core.backends.memory_estimate import Architecture, prm_need  # noqa: E402
from sal_core.errors import ModelError  # noqa: E402
from sal_core.prm import shares_prefixes  # noqa: E402
from sal_core.settings.jobs import ModelSettings, PRMSettings  # noqa: E402

GRID = ROOT / "config" / "experiments" / "math500.yaml"
#: nominal memory of the two cards (A100 40 GB / A100 and H100 80 GB report 40960 / 81920 MiB)
GPUS = {"40 GB": 40 * GIB, "80 GB": 80 * GIB}
DTYPE = "bfloat16"  # what `dtype: auto` picks on compute capability >= 8.0 (A100, H100)


def _llama(hidden: int, layers: int, heads: int, kv: int, inter: int, vocab: int, tied: bool, **kw) -> dict:
    return dict(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        intermediate_size=inter,
        vocab_size=vocab,
        tie_word_embeddings=tied,
        **kw,
    )


#: config.json fields of the published checkpoints (Hub id -> fields), from each repository's config.json
CONFIGS = {
    # https://huggingface.co/meta-llama/Llama-3.2-1B-Instruct/blob/main/config.json
    "meta-llama/Llama-3.2-1B-Instruct": _llama(2048, 16, 32, 8, 8192, 128256, True, head_dim=64, model_type="llama"),
    # https://huggingface.co/meta-llama/Llama-3.2-3B-Instruct/blob/main/config.json
    "meta-llama/Llama-3.2-3B-Instruct": _llama(3072, 28, 24, 8, 8192, 128256, True, head_dim=128, model_type="llama"),
    # https://huggingface.co/Qwen/Qwen2.5-1.5B-Instruct/blob/main/config.json
    "Qwen/Qwen2.5-1.5B-Instruct": _llama(1536, 28, 12, 2, 8960, 151936, True, model_type="qwen2"),
    # https://huggingface.co/nvidia/AceMath-7B-Instruct/blob/main/config.json (Qwen2.5-Math-7B's shape)
    "nvidia/AceMath-7B-Instruct": _llama(3584, 28, 28, 4, 18944, 152064, False, model_type="qwen2"),
    # https://huggingface.co/RLHFlow/Llama3.1-8B-PRM-Deepseek-Data/blob/main/config.json (Llama-3.1-8B's shape)
    "RLHFlow/Llama3.1-8B-PRM-Deepseek-Data": _llama(4096, 32, 32, 8, 14336, 128256, False, model_type="llama"),
    # https://huggingface.co/Qwen/Qwen2.5-Math-PRM-7B/blob/main/config.json
    "Qwen/Qwen2.5-Math-PRM-7B": _llama(
        3584, 28, 28, 4, 18944, 152064, False, model_type="qwen2", architectures=["Qwen2ForProcessRewardModel"]
    ),
}


def pairs(grid: dict) -> list[tuple[ModelSettings, PRMSettings]]:
    """Each policy of the grid with its guiding PRM (the model's `search_prm`, else the grid's)."""
    prms = {name: PRMSettings(name=name, **fields) for name, fields in grid["prms"].items()}
    out = []
    for name, fields in grid["models"].items():
        fields = dict(fields)
        prm = prms[fields.pop("search_prm", grid["search_prm"])]
        fields.pop("score_prms", None)
        out.append((ModelSettings(name=name, **fields), prm))
    return out


def cell(model: ModelSettings, prm: PRMSettings, total: int) -> str:
    """vLLM's share on a GPU of `total` bytes and the KV cache it leaves the policy, or why it does not fit."""
    policy = Architecture.from_config(CONFIGS[model.path])
    need = prm_need(
        Architecture.from_config(CONFIGS[prm.path]), DTYPE, prm.batch_size, prm.max_length, shares_prefixes(prm.type)
    )
    floor = policy_floor_bytes(policy, DTYPE, model.max_model_len)
    try:
        share = plan_share(total, total, need, floor, model, prm)
    except ModelError:
        return f"does not fit (needs {(need.total + floor) / GIB:.0f} GiB)"
    kv = share * total - (floor - model.max_model_len * policy.kv_bytes_per_token(2))
    return f"{share:.2f}: {kv / GIB:.1f} GiB KV = {kv / policy.kv_bytes_per_token(2) / 1000:.0f}k tokens"


def table() -> str:
    """The markdown table of docs/gpu.md."""
    grid = yaml.safe_load(GRID.read_text())
    head = "| policy | guiding PRM (batch × length) | the PRM needs (GiB) | " + " | ".join(
        f"{gpu}: vLLM share, policy KV cache" for gpu in GPUS
    )
    lines = [head + " |", "|" + "---|" * (3 + len(GPUS))]
    for model, prm in pairs(grid):
        need = prm_need(
            Architecture.from_config(CONFIGS[prm.path]),
            DTYPE,
            prm.batch_size,
            prm.max_length,
            shares_prefixes(prm.type),
        )
        parts = f"{need.total / GIB:.1f} ({need.describe().replace(' GiB', '')})"
        cells = " | ".join(cell(model, prm, total) for total in GPUS.values())
        lines.append(f"| {model.path} | {prm.path} ({prm.batch_size} × {prm.max_length}) | {parts} | {cells} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
