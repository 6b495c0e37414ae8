"""What the search tests share: counting wrappers around the real backend and PRM, the tiny policy
biased to write short steps, and a `search` helper that runs one method through the wrappers.

Counting wrappers delegate every call and only record what was asked (and, for the PRM, the tokens
it reported reading), so tests can check batching, alignment and the compute a search records. The
policy is a real tiny transformers model (random weights plus an output bias), not canned text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from sal_core.backends.base import GenerationBackend, GenerationOutput, GenerationRequest
from sal_core.prm.base import PRM, Scored
from sal_core.search import SearchResult, build_prompts, run_search
from sal_core.settings.jobs import GenerateJob

PROBLEMS = [
    "What is $2 + 3$?",
    "Find the remainder when $17$ is divided by $5$.",
    "Compute $\\sqrt{81}$.",
]


class CountingBackend(GenerationBackend):
    """Delegates to `inner`, recording each generate call's requests and outputs. `max_model_len`
    may be set lower than the engine's, to make the search prune beams early."""

    def __init__(self, inner: GenerationBackend, max_model_len: int | None = None) -> None:
        self.inner = inner
        self.tokenizer = inner.tokenizer
        self.max_model_len = max_model_len or inner.max_model_len
        self.calls: list[list[tuple[GenerationRequest, GenerationOutput]]] = []

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationOutput]:
        outputs = self.inner.generate(requests)
        self.calls.append(list(zip(requests, outputs, strict=True)))
        return outputs

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)


class CountingPRM(PRM):
    """Delegates to `inner`, recording each score call's problems, completions and reported tokens."""

    def __init__(self, inner: PRM) -> None:
        self.inner = inner
        self.calls: list[tuple[list[str], list[list[str]]]] = []
        self.tokens: list[list[list[int]]] = []

    def score_with_tokens(self, problems: Sequence[str], completions: Sequence[Sequence[str]]) -> Scored:
        self.calls.append((list(problems), [list(c) for c in completions]))
        scored = self.inner.score_with_tokens(problems, completions)
        self.tokens.append(scored.tokens)
        return scored


def favour_steps(backend: GenerationBackend, separator_bias: float = 7.0, eos_bias: float = 4.0) -> None:
    """Give the model's output layer a bias towards "\\n\\n" and end-of-sequence, so a random model
    writes short steps (a few tokens) and sometimes ends, like a real solver, instead of hitting the
    token limit on every step."""
    model = backend.model  # the transformers engine's model
    tokenizer = backend.tokenizer
    (separator,) = tokenizer.encode("\n\n", add_special_tokens=False)
    head = model.lm_head
    biased = torch.nn.Linear(
        head.in_features, head.out_features, bias=True, dtype=head.weight.dtype, device=head.weight.device
    )
    with torch.no_grad():
        biased.weight.copy_(head.weight)
        biased.bias.zero_()
        biased.bias[separator] = separator_bias
        biased.bias[tokenizer.eos_token_id] = eos_bias
    model.lm_head = biased


def make_job(
    model_path: str, method: str, max_model_len: int = 4096, model: dict | None = None, **search
) -> GenerateJob:
    """A GenerateJob for the tiny model (`model`: more model settings), guided (beam search, DVTS)
    by an RLHFlow judge on the same model."""
    data = {
        "model": {
            "name": "tiny",
            "path": str(model_path),
            "max_model_len": max_model_len,
            "batch_size": 64,
            **(model or {}),
        },
        "search": {"method": method, **search},
    }
    if method != "best_of_n":
        data["prm"] = {"name": "judge", "type": "rlhflow", "path": str(model_path), "batch_size": 16}
    return GenerateJob.from_dict(data)


@dataclass
class Run:
    """One search through counting wrappers: its results, the recorded calls, and the prompts."""

    settings: dict
    results: list[SearchResult]
    backend: CountingBackend
    prm: CountingPRM | None
    prompts: list[str]

    def requests_of(self, call: int, problem: int) -> list[GenerationRequest]:
        return [req for req, _ in self.backend.calls[call] if req.prompt.startswith(self.prompts[problem])]


def search(engine, judge, model_path, method, problems=PROBLEMS, max_model_len=None, model=None, **settings) -> Run:
    """Run `method` on `problems` through counting wrappers around `engine` and `judge`."""
    backend = CountingBackend(engine, max_model_len)
    prm = CountingPRM(judge) if method != "best_of_n" else None
    job = make_job(model_path, method, model=model, **settings)
    results = run_search(list(problems), job, backend, prm)
    return Run(settings, results, backend, prm, build_prompts(problems, job, engine))


#: a chain policy's text: every token has one successor, so what it writes is fixed by construction
CHAIN_STEP_BOXED = "$\\boxed{5}$\n\n"  # after a prompt ending in ":" (contains "\boxed{")
CHAIN_STEP_PLAIN = "Theboxed{5}$\n\n"  # after a prompt ending in "?" (contains "boxed{" but no backslash)
CHAIN_END = "Done."  # after "\n\n", then end of sequence
#: a chat template that renders the problem alone, so the prompt's last token picks the chain's branch
BARE_TEMPLATE = "{% for m in messages %}{% if m['role'] == 'user' %}{{ m['content'] }}{% endif %}{% endfor %}"


def chain_policy(tiny_model_path, folder):
    """A tiny Llama with SmolLM2's tokenizer whose next token depends only on the current one
    (attention and MLP outputs zeroed, one unit embedding per chain token, the output layer mapping
    each token to its successor with a margin no temperature below 2 overcomes): after ":" it writes
    CHAIN_STEP_BOXED, after "?" CHAIN_STEP_PLAIN, then CHAIN_END and end of sequence."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    ids = lambda text: tokenizer.encode(text, add_special_tokens=False)  # noqa: E731
    pairs = []
    for start, step in ((":", CHAIN_STEP_BOXED), ("?", CHAIN_STEP_PLAIN)):
        chain = ids(start) + ids(step[:-2]) + ids("\n\n") + ids(CHAIN_END) + [tokenizer.eos_token_id]
        pairs += list(zip(chain, chain[1:], strict=False))
    tokens = sorted({t for pair in pairs for t in pair})
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.embed_tokens.weight.zero_()
        model.lm_head.weight.zero_()
        for k, token in enumerate(tokens):
            model.model.embed_tokens.weight[token, k] = 1.0
        for current, successor in pairs:
            model.lm_head.weight[successor, tokens.index(current)] = 10.0  # logit 80 after the final norm
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
