"""prepare_model builds folders that load with plain transformers calls."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from sal_core.errors import ModelError
from sal_core.pipeline.prepare_model import prepare_model


def test_tiny_random_loads_with_real_tokenizer(tiny_model_path: Path) -> None:
    config = json.loads((tiny_model_path / "config.json").read_text())
    assert config["num_hidden_layers"] == 2 and config["hidden_size"] == 64
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    assert config["vocab_size"] == len(tokenizer) == 49152
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.chat_template
    ids = tokenizer("1 + 1 =", return_tensors="pt")
    with torch.no_grad():
        logits = model(**ids).logits
    assert logits.shape == (1, ids["input_ids"].shape[1], len(tokenizer))
    assert (tiny_model_path / "generation_config.json").is_file()
    assert not list(tiny_model_path.parent.glob(".tiny-random.*")), "temp folder left behind"


def test_tiny_random_is_reproducible(tiny_model_path: Path, tmp_path: Path) -> None:
    again = prepare_model("tiny-random", tmp_path / "again")
    a = AutoModelForCausalLM.from_pretrained(tiny_model_path).state_dict()
    b = AutoModelForCausalLM.from_pretrained(again).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_prepare_replaces_existing_folder(tmp_path: Path) -> None:
    out = tmp_path / "model"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    prepare_model("tiny-random", out)
    assert not (out / "stale.txt").exists() and (out / "config.json").is_file()


def test_unknown_source_names_it(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="llama-7b"):
        prepare_model("llama-7b", tmp_path / "x")


def test_cli_rejects_unknown_source(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sal_core.cli",
            "prepare-model",
            "--source",
            "nope",
            "--out",
            str(tmp_path / "m"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and "nope" in result.stderr


@pytest.mark.slow
def test_smollm2_folder_has_no_gguf_leftovers(smollm2_path: Path) -> None:
    config = json.loads((smollm2_path / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["model_type"] == "llama" and config["num_hidden_layers"] == 30


@pytest.mark.slow
def test_smollm2_weights_are_transformers_own_gguf_load(smollm2_path: Path) -> None:
    """prepare_model parses the GGUF once (gguf_parsed_once); the weights must be exactly what
    transformers' uncached GGUF loader gives."""
    from safetensors.torch import load_file

    from sal_core.pipeline.prepare_model import GGUF_FILE, smollm2_gguf_folder

    reference = AutoModelForCausalLM.from_pretrained(smollm2_gguf_folder(), gguf_file=GGUF_FILE, dtype=torch.float32)
    expected = reference.state_dict()
    saved = load_file(smollm2_path / "model.safetensors")
    assert set(saved) <= set(expected) and len(saved) >= len(expected) - 1  # a tied lm_head is not saved
    for name, tensor in saved.items():
        assert torch.equal(tensor, expected[name]), name
