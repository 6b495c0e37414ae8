"""Process reward models behind one interface; `load_prm` picks the family named by `PRMSettings.type`.

| type          | model                                    | score of a step                               |
|---------------|------------------------------------------|-----------------------------------------------|
| rlhflow       | causal LM chat judge (RLHFlow, SmolLM2)  | P("+") vs "-" before each assistant "+"        |
| math-shepherd | causal LM with " ки" step tags            | P("+") vs "-" at each tag                      |
| skywork       | base LM + value head (Skywork-o1-PRM)     | sigmoid(v_head) at each step's newline         |
| qwen2.5-math  | per-token 2-class head (Qwen2.5-Math-PRM) | softmax[1] at each "<extra_0>"                 |
| trl           | token classifier from TRL's PRMTrainer    | softmax[1] at each step's last token           |
| verifier      | none: exact arithmetic (prm/verifier.py)  | 0.05 false claim, 0.95 checked, 0.5 neither    |
| server        | any of the above behind `sal serve-prm`,  | as its family scores it (sal_core/prm/server)  |
|               | or Qwen2.5-Math-PRM behind `vllm serve`   |                                                |
"""

from __future__ import annotations

from sal_core.backends.base import LoadedWeights
from sal_core.hub import staged
from sal_core.prm.base import PRM, scored_steps, split_steps
from sal_core.settings.endpoint import Servers, location_of
from sal_core.settings.jobs import PRMSettings

__all__ = ["PRM", "load_prm", "scored_steps", "shares_prefixes", "split_steps"]


def shares_prefixes(prm_type: str) -> bool:
    """Whether a PRM family scores a batch in two passes over a shared-prefix KV cache (prm/hf.py), which
    it holds for the whole batch (backends.memory_estimate counts it)."""
    from sal_core.prm.math_shepherd import MathShepherdPRM
    from sal_core.prm.rlhflow import RLHFlowPRM

    family = {"rlhflow": RLHFlowPRM, "math-shepherd": MathShepherdPRM}.get(prm_type)
    return bool(family and family.shares_prefixes)


def load_prm(settings: PRMSettings, servers: Servers | None = None, reuse: LoadedWeights | None = None) -> PRM:
    """Validate `settings`, then load the PRM; a path that cannot be loaded raises ModelError naming it.
    A `type: server` PRM loads no model: it connects to its server (its location in `servers`, by PRM
    name) and checks what it serves. A causal-LM judge (rlhflow, math-shepherd) of the checkpoint in
    `reuse` (the policy's, same device and dtype) scores with those weights instead of a second copy."""
    settings.validate("prm")
    settings = staged(settings, "prms")  # a Hub PRM (or its tokenizer) loads from its staged snapshot
    location = location_of(settings, servers or {}, "PRM")
    if location is not None:
        from sal_core.prm.server import load_server_prm

        return load_server_prm(settings, location)
    if settings.type == "verifier":  # no weights, no torch
        from sal_core.prm.verifier import VerifierPRM

        return VerifierPRM(settings)
    from sal_core.backends.gpu_platform import check_gpu_platform

    check_gpu_platform(settings.device, False, f"prms.{settings.name}")
    from transformers import AutoModelForCausalLM

    from sal_core.devices import resolve_device, resolve_dtype
    from sal_core.prm.hf import load_pretrained, load_tokenizer

    device = resolve_device(settings.device, "prm.device")
    dtype = resolve_dtype(settings.dtype, device, "prm.dtype")
    if settings.type in ("rlhflow", "math-shepherd"):
        from sal_core.prm.math_shepherd import MathShepherdPRM
        from sal_core.prm.rlhflow import RLHFlowPRM

        same = reuse is not None and (reuse.path, reuse.device, reuse.dtype) == (settings.path, device, dtype)
        tokenizer = reuse.tokenizer if same else load_tokenizer(settings)
        model = reuse.model if same else load_pretrained(settings, AutoModelForCausalLM, device, dtype)
        family = RLHFlowPRM if settings.type == "rlhflow" else MathShepherdPRM
        return family(settings, tokenizer, model, device)
    tokenizer = load_tokenizer(settings)
    if settings.type == "skywork":
        from sal_core.prm.skywork import load_skywork

        return load_skywork(settings, tokenizer, device, dtype)
    if settings.type == "qwen2.5-math":
        from sal_core.prm.qwen_math import load_qwen_math

        return load_qwen_math(settings, tokenizer, device, dtype)
    from sal_core.prm.trl_token import load_trl

    return load_trl(settings, tokenizer, device, dtype)
