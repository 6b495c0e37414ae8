"""The dependency floors in pyproject.toml are what the code needs (issue 18, item 6)."""

from __future__ import annotations

from pathlib import Path

import tomllib
import torch
from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parent.parent
#: the first transformers release whose from_pretrained takes `dtype=` (huggingface/transformers#39782,
#: "Use `dtype` instead of `torch_dtype` everywhere"); the loaders (prm/hf.py, backends/transformers_backend.py,
#: pipeline/prepare_model.py) pass `dtype=`, which older releases hand to the model config (4.55.4: TypeError,
#: "Object of type dtype is not JSON serializable"; 4.56.0 loads the tiny model in bfloat16, checked by hand)
DTYPE_KEYWORD = Version("4.56.0")


def _floor(name: str) -> Version:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for line in project["dependencies"]:
        requirement = Requirement(line)
        if requirement.name == name:
            floors = [Version(s.version) for s in requirement.specifier if s.operator in (">=", "==", "~=")]
            assert floors, f"{name}: no floor in pyproject.toml"
            return max(floors)
    raise AssertionError(f"{name} is not a dependency")


def test_transformers_floor_takes_the_dtype_keyword() -> None:
    assert _floor("transformers") >= DTYPE_KEYWORD


def test_the_dtype_keyword_decides_the_loaded_dtype(tiny_model_path: Path) -> None:
    """What the floor protects: `dtype=` reaches the weights (fp32 checkpoint loaded as bfloat16)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.bfloat16)
    assert next(model.parameters()).dtype == torch.bfloat16
