"""Generation with plain transformers on CPU or one GPU: the engine for laptops, CI and small models.

`model.generate` cannot give each row of a batch its own temperature, top_p, seed and stop
strings, and search methods need all four, so this runs its own sampling loop over a KV cache:
requests are sorted by prompt length and batched (left padding), each row samples with its own
torch.Generator (so its text depends on its seed only, not on what else is in the batch), and
finished rows are dropped from the batch so long stragglers do not pay for short ones.
"""

from __future__ import annotations

import inspect
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from sal_core.backends.base import (
    NO_ROOM,
    FinishReason,
    GenerationBackend,
    GenerationOutput,
    GenerationRequest,
    LoadedWeights,
)
from sal_core.backends.shared_prefix import build_split, cache_argument, pad_batch, run_split, worth_splitting
from sal_core.backends.tokens import prepare_prompts
from sal_core.devices import resolve_device, resolve_dtype
from sal_core.errors import ModelError
from sal_core.settings.jobs import ModelSettings

log = logging.getLogger(__name__)


def find_stop(text: str, stops: Sequence[str]) -> int | None:
    """End index of the earliest stop string in `text` (so the cut keeps the stop), or None."""
    best: tuple[int, int] | None = None
    for stop in stops:
        start = text.find(stop)
        if start >= 0 and (best is None or start < best[0]):
            best = (start, start + len(stop))
    return None if best is None else best[1]


def top_p_filter(probs: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Zero the tail of each row's distribution beyond its nucleus (the smallest set of most
    likely tokens whose mass reaches top_p); the most likely token is always kept."""
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
    sorted_probs = sorted_probs.masked_fill(mass_before >= top_p.unsqueeze(-1), 0.0)
    return torch.zeros_like(probs).scatter(-1, order, sorted_probs)


def draw(probs: torch.Tensor, generators: Sequence[torch.Generator | None]) -> torch.Tensor:
    """One token per row of `probs` (rows need not sum to 1), each row using its own generator.

    Inverse-CDF sampling: one uniform per row, then one vectorised search for all rows (a per-row
    torch.multinomial call over a 49k vocabulary was about 10% of a decoding step on CPU).
    """
    cdf = probs.double().cumsum(dim=-1)
    uniform = torch.cat([torch.rand(1, generator=g, device=probs.device) for g in generators]).double()
    target = (uniform * cdf[:, -1]).unsqueeze(-1)
    return torch.searchsorted(cdf, target, right=True).squeeze(-1).clamp(max=probs.shape[-1] - 1)


@dataclass
class _Row:
    """Decoding state of one request inside a batch."""

    index: int
    request: GenerationRequest
    budget: int
    generator: torch.Generator | None
    tokens: list[int] = field(default_factory=list)
    reason: FinishReason | None = None


class TransformersBackend(GenerationBackend):
    """Batched sampling with a hand-written KV-cache loop (see module docstring)."""

    def __init__(self, settings: ModelSettings) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.settings = settings
        path = Path(settings.path)
        if not path.exists():
            raise ModelError(f"model.path {settings.path}: not found (run `sal prepare-model` or fix the path)")
        self.device = resolve_device(settings.device, "model.device")
        self.dtype = resolve_dtype(settings.dtype, self.device, "model.dtype")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModelForCausalLM.from_pretrained(path, dtype=self.dtype)
        except (OSError, ValueError, KeyError) as err:
            raise ModelError(f"model.path {settings.path}: cannot load ({err.__class__.__name__}: {err})") from err
        self.model.to(self.device).eval()
        self.weights = LoadedWeights(str(path), self.device, self.dtype, self.model, self.tokenizer)
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.tokenizer.eos_token_id
        self.eos_ids = self._eos_ids()
        params = inspect.signature(self.model.forward).parameters
        self._cache_arg = cache_argument(self.model)
        # only the last position's logits are needed (skips a vocab-sized matmul per prompt token)
        self._logits_arg = next((a for a in ("logits_to_keep", "num_logits_to_keep") if a in params), None)
        limit = getattr(self.model.config, "max_position_embeddings", None)
        self.max_model_len = min(settings.max_model_len, limit) if limit else settings.max_model_len
        if self.max_model_len < settings.max_model_len:
            log.warning("model.max_model_len %d capped to the model's %d positions", settings.max_model_len, limit)

    def _eos_ids(self) -> set[int]:
        ids: set[int] = set()
        for source in (self.model.generation_config.eos_token_id, self.tokenizer.eos_token_id):
            if isinstance(source, int):
                ids.add(source)
            elif source:
                ids.update(source)
        return ids

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationOutput]:
        """One output per request, in request order (see GenerationBackend).

        Prompt ids and budgets come from `tokens.prepare_prompts`, as for vLLM. `num_tokens` counts
        every generated token, including an end-of-sequence token (as vLLM does); a request
        without a seed gets a fresh random one.
        """
        if not requests:
            return []
        prepared, no_room = prepare_prompts(self.tokenizer, requests, self.max_model_len)
        outputs: list[GenerationOutput | None] = [None] * len(requests)
        for index in no_room:
            outputs[index] = NO_ROOM
        rows = [
            (_Row(p.index, p.request, p.max_tokens, self._generator(p.request)), p.prompt_token_ids) for p in prepared
        ]
        rows.sort(key=lambda item: len(item[1]))
        size = self.settings.batch_size
        batches = [rows[i : i + size] for i in range(0, len(rows), size)]
        for batch in tqdm(batches, desc="generate", unit="batch", disable=len(batches) < 2):
            for row in self._run_batch(batch):
                outputs[row.index] = self._finish(row)
        return [out for out in outputs if out is not None]

    def _generator(self, request: GenerationRequest) -> torch.Generator | None:
        if request.temperature == 0:
            return None
        seed = request.seed if request.seed is not None else random.SystemRandom().randrange(2**63)
        return torch.Generator(device=self.device).manual_seed(seed)

    @torch.inference_mode()
    def _run_batch(self, batch: list[tuple[_Row, list[int]]]) -> list[_Row]:
        """Decode every row of `batch` to completion; rows come back with tokens and a reason set."""
        rows = [row for row, _ in batch]
        temperature = torch.tensor([r.request.temperature for r in rows], device=self.device)
        top_p = torch.tensor([r.request.top_p for r in rows], device=self.device)
        cache, logits, mask, positions = self._prefill([ids for _, ids in batch])
        extra = self._forward_kwargs(cache)
        done: list[_Row] = []
        while rows:
            next_tokens = self._sample(logits, rows, temperature, top_p)
            keep: list[int] = []
            for i, (row, token) in enumerate(zip(rows, next_tokens.tolist(), strict=True)):
                row.tokens.append(token)
                row.reason = self._check(row)
                if row.reason is None:
                    keep.append(i)
                else:
                    done.append(row)
            if not keep:
                break
            if len(keep) < len(rows):
                index = torch.tensor(keep, device=self.device)
                cache.batch_select_indices(index)
                rows = [rows[i] for i in keep]
                next_tokens, mask, positions = next_tokens[index], mask[index], positions[index]
                temperature, top_p = temperature[index], top_p[index]
            mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=-1)
            positions = positions[:, -1:] + 1
            step = next_tokens.unsqueeze(-1)
            logits = self.model(input_ids=step, attention_mask=mask, position_ids=positions, **extra).logits[:, -1, :]
            logits = logits.float()
        return done

    def _forward_kwargs(self, cache: Any) -> dict[str, Any]:
        """The cache (under the argument name this transformers release uses) and, where the model
        takes it, a request for the last position's logits only."""
        extra: dict[str, Any] = {self._cache_arg: cache, "use_cache": True}
        if self._logits_arg:
            extra[self._logits_arg] = 1
        return extra

    def _prefill(self, prompts: list[list[int]]) -> tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The forward pass over the batch's distinct prompts; returns the KV cache, the last logits,
        the attention mask and the positions, each copied out to every row.

        Rows with the same prompt (Best-of-N's n samples of a problem, a DVTS subtree's candidates, a
        beam's copies) share one prefill: on a CPU the prompt's forward pass is most of the cost of a
        short step, and the n copies would compute the same numbers n times. Distinct prompts that
        begin alike (the system prompt, a problem, a beam's past steps) share that part the same way
        when it saves work (sal_core.backends.shared_prefix).
        """
        from transformers import DynamicCache

        distinct: dict[tuple[int, ...], int] = {}
        owner = [distinct.setdefault(tuple(ids), len(distinct)) for ids in prompts]
        seqs = list(distinct)
        cache = DynamicCache()
        groups = worth_splitting(seqs)
        if groups is None:
            logits, mask, positions = self._prefill_padded(seqs, cache)
        else:
            split = build_split(seqs, groups, self.pad_id, self.device)

            def forward(input_ids: Any, attention_mask: Any, position_ids: Any, cache: Any) -> Any:
                return self.model(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    position_ids=position_ids,
                    **self._forward_kwargs(cache),
                ).logits[:, -1, :]

            logits = run_split(forward, split, cache)[1]
            mask, positions = split.mask, split.positions
        logits = logits.float()
        if len(distinct) < len(prompts):
            index = torch.tensor(owner, device=self.device)
            cache.batch_select_indices(index)
            logits, mask, positions = logits[index], mask[index], positions[index]
        return cache, logits, mask, positions

    def _prefill_padded(
        self, seqs: list[tuple[int, ...]], cache: Any
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One left-padded forward pass over `seqs`: last logits, attention mask, positions."""
        input_ids, mask = pad_batch(seqs, self.pad_id, left=True)
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        extra = self._forward_kwargs(cache)
        logits = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions, **extra).logits
        return logits[:, -1, :], mask, positions

    def _sample(
        self, logits: torch.Tensor, rows: list[_Row], temperature: torch.Tensor, top_p: torch.Tensor
    ) -> torch.Tensor:
        """Next token per row: argmax for temperature 0, else a draw from that row's generator."""
        tokens = logits.argmax(dim=-1)
        sampled = (temperature > 0).nonzero().flatten().tolist()
        if not sampled:
            return tokens
        idx = torch.tensor(sampled, device=logits.device)
        probs = torch.softmax(logits[idx] / temperature[idx].unsqueeze(-1), dim=-1)
        if bool((top_p[idx] < 1).any()):
            probs = top_p_filter(probs, top_p[idx])
        tokens[idx] = draw(probs, [rows[i].generator for i in sampled])
        return tokens

    def _check(self, row: _Row) -> FinishReason | None:
        """Why the row just finished, or None to keep going."""
        if row.tokens[-1] in self.eos_ids:
            return "eos"
        if row.request.stop:
            text = self.tokenizer.decode(row.tokens, skip_special_tokens=True)
            if find_stop(text, row.request.stop) is not None:
                return "stop"
        if len(row.tokens) >= row.budget:
            return "length"
        return None

    def _finish(self, row: _Row) -> GenerationOutput:
        assert row.reason is not None, "row finished without a reason"
        tokens = row.tokens[:-1] if row.reason == "eos" else row.tokens
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        if row.reason == "stop":
            text = text[: find_stop(text, row.request.stop)]
        return GenerationOutput(
            text=text, num_tokens=len(row.tokens), finish_reason=row.reason, token_ids=tuple(row.tokens)
        )
