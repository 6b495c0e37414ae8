"""A tiny random-weight checkpoint of Qwen2.5-Math-PRM's architecture (`Qwen2ForProcessRewardModel`,
its modelling code shipped in tests/fixtures/qwen2_rm as the released model ships its own), for the
vLLM pooling tests, and the `vllm serve` flags that serve it."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch

FIXTURE = Path(__file__).parent / "fixtures" / "qwen2_rm"


def tiny_qwen_prm(tokenizer_folder: Path, folder: Path) -> Path:
    """A random Qwen2ForProcessRewardModel (heads of 64 dimensions: vLLM's CPU attention needs 32+)
    with SmolLM2's tokenizer and chat template plus the "<extra_0>" step tag."""
    from transformers import AutoTokenizer, Qwen2Config

    sys.path.insert(0, str(FIXTURE))
    try:
        from modeling_qwen2_rm import Qwen2ForProcessRewardModel
    finally:
        sys.path.remove(str(FIXTURE))
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder)
    tokenizer.add_tokens(["<extra_0>"], special_tokens=True)
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024, initializer_range=0.3,
        pad_token_id=tokenizer.pad_token_id, architectures=["Qwen2ForProcessRewardModel"],
        auto_map={"AutoModel": "modeling_qwen2_rm.Qwen2ForProcessRewardModel"},
    )  # fmt: skip
    torch.manual_seed(3)
    Qwen2ForProcessRewardModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    shutil.copy(FIXTURE / "modeling_qwen2_rm.py", folder)
    config_file = folder / "config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), "model_type": "qwen2"}))
    return folder
