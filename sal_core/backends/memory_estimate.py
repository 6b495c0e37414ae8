"""GPU memory a decoder-only checkpoint needs, from its config.json alone (no weights read, no GPU).

Used for a PRM loaded beside vLLM (backends.gpu_memory) and for the table of docs/gpu.md
(bench/gpu_memory_table.py). What a transformers PRM holds while it scores one batch of
`batch_size` inputs of up to `max_length` tokens (prm/hf.py):

- weights: every parameter at the dtype it runs in (embeddings, attention, MLP, norms, and the LM
  head unless tied; Qwen2.5-Math-PRM has a 2-class score head instead of an LM head);
- activations of one decoder layer at a time (inference mode frees each layer's intermediates):
  the residual stream and the layer's output, plus the larger of attention (normed input, q, k, v,
  rotated q and k, attention output) and MLP (gate, up, their product); plus the attention mask
  transformers builds for a padded batch (batch x length x length);
- the shared-prefix KV cache, for the families that run a batch in two passes (RLHFlow and
  Math-Shepherd: backends.shared_prefix): after the prefix pass the cache is copied to every row, so
  it holds batch x length tokens of 2 x layers x KV heads x head dimension;
- the CUDA context of the job's own process (vLLM's engine runs in another), an allowance.

The LM-head judges apply their head to the score positions only, so no batch x length x vocabulary
logits are held; the token-classifier heads' outputs (2 per token) are negligible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GIB = 1024**3
#: the job process's CUDA context and cuBLAS workspace: an allowance (CUDA 12+ loads kernels lazily,
#: ~0.3-0.5 GiB is typical on an H100); bench/gpu_check.py measures what a job really peaks at
CUDA_CONTEXT_BYTES = GIB // 2
#: bytes per element of the dtypes a model runs in
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


@dataclass(frozen=True)
class Architecture:
    """The shape of a Llama / Qwen2 / Mistral-style decoder, as its config.json gives it."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool
    qkv_bias: bool
    #: "lm" (a causal LM head), "score" (Qwen2.5-Math-PRM's 2-layer head: hidden -> hidden -> 2)
    head: str

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Architecture:
        """From a config.json's fields; KV heads default to the heads, head_dim to hidden / heads."""
        text = config.get("text_config") or config
        heads = int(text["num_attention_heads"])
        architectures = " ".join(config.get("architectures") or [])
        return cls(
            hidden=int(text["hidden_size"]),
            layers=int(text["num_hidden_layers"]),
            heads=heads,
            kv_heads=int(text.get("num_key_value_heads") or heads),
            head_dim=int(text.get("head_dim") or text["hidden_size"] // heads),
            intermediate=int(text["intermediate_size"]),
            vocab=int(text["vocab_size"]),
            tied=bool(text.get("tie_word_embeddings", False)),
            qkv_bias=text.get("model_type") == "qwen2" or bool(text.get("attention_bias", False)),
            head="score" if "ProcessRewardModel" in architectures else "lm",
        )

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def parameters(self) -> int:
        """Parameter count: embeddings, layers (attention, MLP, two norms), final norm and head."""
        h = self.hidden
        attention = h * self.q_dim + 2 * h * self.kv_dim + self.q_dim * h
        if self.qkv_bias:
            attention += self.q_dim + 2 * self.kv_dim
        layer = attention + 3 * h * self.intermediate + 2 * h
        lm_head = 0 if self.tied else self.vocab * h
        head = h * h + h + 2 * h + 2 if self.head == "score" else lm_head
        return self.vocab * h + self.layers * layer + h + head

    def kv_bytes_per_token(self, dtype_bytes: int) -> int:
        """KV cache of one token over all layers: 2 (K and V) x layers x KV heads x head dimension."""
        return 2 * self.layers * self.kv_dim * dtype_bytes

    def activation_bytes(self, batch: int, length: int, dtype_bytes: int) -> int:
        """Peak activations of one forward pass over `batch` x `length` tokens (see module docstring)."""
        attention = 2 * self.hidden + 3 * self.q_dim + 4 * self.kv_dim
        mlp = 3 * self.intermediate + self.hidden
        per_token = 2 * self.hidden + max(attention, mlp)
        if self.head == "score":
            per_token += self.hidden  # the score head's hidden layer runs over every position
        mask = batch * length * length * dtype_bytes
        return batch * length * per_token * dtype_bytes + mask


@dataclass(frozen=True)
class PRMNeed:
    """What a PRM needs on the GPU beside the policy, in bytes, by part."""

    weights: int
    activations: int
    prefix_cache: int
    context: int = CUDA_CONTEXT_BYTES

    @property
    def total(self) -> int:
        return self.weights + self.activations + self.prefix_cache + self.context

    def describe(self) -> str:
        parts = ("weights", "activations", "prefix_cache", "context")
        return ", ".join(f"{p.replace('_', ' ')} {getattr(self, p) / GIB:.1f}" for p in parts) + " GiB"


def prm_need(
    arch: Architecture,
    dtype: str,
    batch: int,
    length: int,
    caches_prefixes: bool,
    weight_bytes: int | None = None,
) -> PRMNeed:
    """What a PRM of shape `arch` running in `dtype` needs to score batches of `batch` x `length`;
    `weight_bytes` (read from the safetensors headers) replaces the count from the config when known."""
    each = DTYPE_BYTES[dtype]
    weights = weight_bytes if weight_bytes is not None else arch.parameters() * each
    cache = batch * length * arch.kv_bytes_per_token(each) if caches_prefixes else 0
    return PRMNeed(weights, arch.activation_bytes(batch, length, each), cache)
