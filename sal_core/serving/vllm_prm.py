"""`vllm serve` for a PRM entry: Qwen2.5-Math-PRM behind vLLM's pooling API, as `sal with-servers --serve-vllm`
starts it and as `type: server, api: vllm-pooling` reads it (prm/server.py).

The server is given what the in-process `qwen2.5-math` family would use, so both score alike:
- `--runner pooling` and vLLM's own `Qwen2ForProcessRewardModel` (its two-layer token head);
  `--trust-remote-code`, as the family loads the released checkpoint's own code;
- `--pooler-config {"step_tag_id": ID}` with the id of "<extra_0>" in the entry's tokenizer, read from
  a local folder: vLLM otherwise takes the released vocabulary's 151651
  (vllm/model_executor/models/config.py, Qwen2ForProcessRewardModelConfig), which a retrained or
  tiny checkpoint need not share; for a Hub id the default is kept (it is the released models');
- `dtype: auto` resolved by the project's device rule (float32 on CPU), `max_model_len` the entry's
  `max_length` capped at the model's positions;
- the run's key on every route (serving/vllm_auth.py: vLLM's own guards /v1 only, not /pooling);
- on vLLM's CPU build, PRM_CPU_SHARE of the memory for the KV cache (vLLM's default 0.9 refuses to
  start) and the eager start. On a GPU vLLM's own memory default stands: a server job has its GPU
  to itself.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from sal_core.backends.vllm_engine import model_positions
from sal_core.errors import ConfigError
from sal_core.prm.qwen_math import STEP_TAG
from sal_core.serving.vllm_auth import middleware_args
from sal_core.settings.jobs import PRMSettings

log = logging.getLogger(__name__)

#: what a PRM server reserves on vLLM's CPU build (no sampling, short inputs: half a policy's share)
PRM_CPU_SHARE = 0.1


def step_tag_id(path: str, where: str) -> int | None:
    """The id of "<extra_0>" in a local tokenizer folder (None for a Hub id: vLLM's default is the
    released models'); ConfigError when the folder's vocabulary has no such token."""
    if not Path(path).is_dir():
        return None
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    token_id = tokenizer.convert_tokens_to_ids(STEP_TAG)
    if token_id is None or token_id == tokenizer.unk_token_id:
        raise ConfigError(f"{where}: the tokenizer in {path} has no {STEP_TAG} token, which Qwen2.5-Math-PRM scores at")
    return int(token_id)


def pooling_command(settings: PRMSettings, cpu: bool, where: str = "prms") -> list[str]:
    """`vllm serve PATH ...` for a `type: qwen2.5-math` PRM entry (`cpu`: vLLM's CPU build serves it)."""
    if settings.type != "qwen2.5-math":
        raise ConfigError(
            f"{where}: vLLM's pooling API serves Qwen2.5-Math-PRM (type qwen2.5-math); this entry is type "
            f"{settings.type}: serve it with --serve (sal serve-prm)"
        )
    positions = model_positions(settings.path)
    length = min(settings.max_length, positions) if positions else settings.max_length
    argv = ["vllm", "serve", settings.path, "--runner", "pooling", "--served-model-name", settings.name]
    argv += ["--trust-remote-code", "--max-model-len", str(length)]
    dtype = "float32" if cpu and settings.dtype == "auto" else settings.dtype
    argv += ["--dtype", dtype]
    tag = step_tag_id(settings.path, where)
    if tag is not None:
        argv += ["--pooler-config", json.dumps({"step_tag_id": tag})]
    if cpu:
        argv += ["--enforce-eager", "--gpu-memory-utilization", str(PRM_CPU_SHARE)]
    return argv + middleware_args()
