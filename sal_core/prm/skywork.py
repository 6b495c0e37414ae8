"""Skywork-o1-Open-PRM (Qwen2.5-based, 1.5B / 7B): a value head on the base model, read per step.

Input, as in SkyworkAI/skywork-o1-prm-inference: the tokenizer's BOS text + problem + "\\n", then
each step tokenized on its own and followed by the newline token; the reward of a step is
sigmoid(v_head(hidden state)) at that newline token. Skywork (and search-and-learn, which calls its
code) splits a response at every "\\n", blank lines included: `step_layout: sal`. By default a step is
one non-empty blank-line-separated chunk (the workflow's step), so a chunk's inner newlines stay
text and the blank line between chunks is not read.

The value head (`v_head.summary.weight` / `.bias`: a linear hidden -> 1, as TRL's value-head wrapper
saves it) is read from the checkpoint's safetensors; the base model is loaded with AutoModel, which
ignores those extra keys.
"""

from __future__ import annotations

import json
from typing import Any

from sal_core.errors import ModelError
from sal_core.prm.hf import Encoded, TransformersPRM, load_pretrained, single_token_id
from sal_core.settings.jobs import PRMSettings

V_HEAD_KEYS = ("v_head.summary.weight", "v_head.summary.bias")
STEP_TOKEN = "\n"


def _checkpoint_file(path: str, filename: str) -> str | None:
    """Local path of `filename` in the checkpoint (a folder, or a Hub id already in the cache)."""
    from transformers.utils import cached_file

    try:
        return cached_file(path, filename, _raise_exceptions_for_missing_entries=False)
    except OSError:
        return None


def load_value_head(settings: PRMSettings) -> dict[str, Any]:
    """The value-head tensors from the checkpoint's safetensors; ModelError naming the path if absent."""
    from safetensors import safe_open

    index = _checkpoint_file(settings.path, "model.safetensors.index.json")
    if index:
        with open(index) as handle:
            weight_map = json.load(handle)["weight_map"]
        files = sorted({weight_map[k] for k in V_HEAD_KEYS if k in weight_map})
    else:
        files = ["model.safetensors"]
    found: dict[str, Any] = {}
    for name in files:
        local = _checkpoint_file(settings.path, name)
        if local is None:
            continue
        with safe_open(local, framework="pt") as handle:
            found.update({k: handle.get_tensor(k) for k in V_HEAD_KEYS if k in handle.keys()})  # noqa: SIM118
    if V_HEAD_KEYS[0] not in found:
        raise ModelError(
            f"prm {settings.name}: {settings.path} has no value head ({V_HEAD_KEYS[0]} is not in "
            f"its safetensors); is it a Skywork-o1-Open-PRM checkpoint?"
        )
    return found


class SkyworkPRM(TransformersPRM):
    """Step rewards from a value head on a causal LM's last hidden states."""

    def __init__(self, settings: PRMSettings, tokenizer: Any, model: Any, device: Any, v_head: Any) -> None:
        super().__init__(settings, tokenizer, model, device)
        self.v_head = v_head
        self.step_token_id = single_token_id(tokenizer, STEP_TOKEN)

    def encode(self, problem: str, steps: list[str]) -> Encoded:
        bos = self.tokenizer.bos_token or ""
        ids = list(self.tokenizer.encode(bos + problem + "\n", add_special_tokens=False))
        positions = []
        for step in steps:
            ids += self.tokenizer.encode(step, add_special_tokens=False) + [self.step_token_id]
            positions.append(len(ids) - 1)
        return Encoded(ids, positions)

    def step_probs(self, input_ids: Any, attention_mask: Any, rows: Any, cols: Any) -> Any:
        hidden = self.forward_module(
            input_ids=input_ids, attention_mask=attention_mask, use_cache=False
        ).last_hidden_state
        picked = hidden[rows, cols].to(self.v_head.weight.dtype)
        return self.v_head(picked).squeeze(-1).float().sigmoid()


def load_skywork(settings: PRMSettings, tokenizer: Any, device: Any, dtype: Any) -> SkyworkPRM:
    """Base model plus value head; the head stays in float32 (as Skywork's wrapper upcasts)."""
    import torch
    from transformers import AutoModel

    tensors = load_value_head(settings)
    model = load_pretrained(settings, AutoModel, device, dtype)
    weight = tensors[V_HEAD_KEYS[0]].float()
    head = torch.nn.Linear(weight.shape[1], 1, bias=V_HEAD_KEYS[1] in tensors)
    with torch.no_grad():
        head.weight.copy_(weight.reshape(1, -1))
        if head.bias is not None:
            head.bias.copy_(tensors[V_HEAD_KEYS[1]].float().reshape(1))
    return SkyworkPRM(settings, tokenizer, model, device, head.to(device).eval())
