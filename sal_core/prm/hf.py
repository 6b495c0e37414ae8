"""What every transformers-based PRM shares: loading, batching, truncation and locating score positions.

A family only says how a (problem, steps) pair becomes token ids plus one *score position* per step
(`encode`), and how the model's output at those positions becomes a probability (`step_probs`).
This base class then scores all completions of a call in batches of `batch_size`: sorted by token
length, right-padded (so a causal model's outputs at real tokens do not depend on the padding), one
forward pass each, and the scores put back in order. A family whose backbone can run a prefix and its
suffixes apart (`split_probs`: the LM-head judges) instead sorts by content when that computes fewer
token positions, so inputs that begin alike share a batch and their prefix is computed once
(sal_core.backends.shared_prefix).

Completions longer than `max_length` tokens are truncated at the end with a warning. A step whose
score position falls beyond the cut gets the score of the last step that was scored (the judge's
latest opinion of the solution so far, so `last`/`min`/`prod` aggregation neither rewards nor
punishes a long completion for being cut); when not even the first step fits, every step gets 0.0,
the value `aggregate_steps` gives a completion with nothing scored.
"""

from __future__ import annotations

import bisect
import logging
import math
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sal_core.backends.shared_prefix import (
    Groups,
    Split,
    batch_cost,
    build_split,
    cache_argument,
    gather_positions,
    pad_batch,
    run_split,
    worth_splitting,
)
from sal_core.errors import ModelError
from sal_core.prm.base import PRM, Scored, scored_steps
from sal_core.settings.jobs import PRMSettings

log = logging.getLogger(__name__)

#: a placeholder that no tokenizer or chat template alters, replaced by the real tag after rendering
PLACEHOLDER = "\x00PRM-TAG-{}\x00"


@dataclass
class Encoded:
    """One completion as the PRM sees it: token ids and, per step, the index of the token whose
    output scores that step."""

    input_ids: list[int]
    positions: list[int]


def load_tokenizer(settings: PRMSettings, **kwargs: Any) -> Any:
    """The PRM's tokenizer; a fast one is required because score positions come from offsets."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(settings.path, **kwargs)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ModelError(f"prm {settings.name}: cannot load the tokenizer from {settings.path}: {err}") from err
    if not tokenizer.is_fast:
        raise ModelError(f"prm {settings.name}: {settings.path} has no fast tokenizer (tokenizer.json)")
    return tokenizer


def load_pretrained(settings: PRMSettings, auto_class: Any, device: Any, dtype: Any, **kwargs: Any) -> Any:
    """`auto_class.from_pretrained(settings.path)` in eval mode on `device`, errors naming the path.
    The weights go straight to `device` (`device_map`: built on the meta device, each tensor read into
    place), never a host copy of the whole checkpoint first: an 8B PRM would take 16 GB of a job's memory."""
    try:
        model = auto_class.from_pretrained(settings.path, dtype=dtype, device_map={"": device}, **kwargs)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
        raise ModelError(f"prm {settings.name}: cannot load a {settings.type} PRM from {settings.path}: {err}") from err
    return model.eval()


def single_token_id(tokenizer: Any, text: str) -> int:
    """The id the tokenizer gives `text` as its last token (how the reference code picks "+"/"-")."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    if not ids:
        raise ModelError(f"the PRM tokenizer has no token for {text!r}")
    return ids[-1]


def tokenize_with_tags(
    tokenizer: Any, text: str, tag: str, add_special_tokens: bool = False
) -> tuple[list[int], list[int]]:
    """Replace placeholders 0, 1, … in `text` by `tag`, tokenize once, and return the ids plus the
    index of the token that ends each tag (found through the tokenizer's character offsets, so a tag
    that also occurs inside a step is never mistaken for a step boundary)."""
    pieces: list[str] = []
    tag_ends: list[int] = []
    rest, length, k = text, 0, 0
    while (cut := rest.find(PLACEHOLDER.format(k))) >= 0:
        pieces.append(rest[:cut] + tag)
        length += cut + len(tag)
        tag_ends.append(length)
        rest = rest[cut + len(PLACEHOLDER.format(k)) :]
        k += 1
    pieces.append(rest)
    full = "".join(pieces)
    enc = tokenizer(full, add_special_tokens=add_special_tokens, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    token_ends = [e for _, e in offsets]
    positions = []
    for end in tag_ends:
        # the first token reaching the tag's last character; it must end exactly where the tag ends
        index = bisect.bisect_left(token_ends, end)
        if index == len(offsets) or offsets[index][1] != end or offsets[index][0] >= end:
            raise ModelError(f"the PRM tokenizer merges the step tag {tag!r} with the text after it")
        positions.append(index)
    return ids, positions


class TransformersPRM(PRM):
    """A PRM run with transformers: batching, padding, truncation and order restoring live here."""

    def __init__(self, settings: PRMSettings, tokenizer: Any, forward_module: Any, device: Any) -> None:
        self.settings = settings
        self.tokenizer = tokenizer
        #: the module called once per batch (tests hook it to count forward passes)
        self.forward_module = forward_module
        self.device = device
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = pad if pad is not None else 0

    @abstractmethod
    def encode(self, problem: str, steps: list[str]) -> Encoded:
        """Token ids of the whole scored text and one score position per step."""

    def steps(self, completion: str) -> list[str]:
        """The steps this PRM scores in `completion` (its family and `step_layout`)."""
        return scored_steps(completion, self.settings.type, self.settings.step_layout)

    def encode_completion(self, problem: str, completion: str) -> tuple[Encoded, int] | None:
        """The PRM's input for one completion and its number of steps; None when there is no step."""
        steps = self.steps(completion)
        return (self.encode(problem, steps), len(steps)) if steps else None

    @abstractmethod
    def step_probs(self, input_ids: Any, attention_mask: Any, rows: Any, cols: Any) -> Any:
        """One forward pass over a padded batch; the probability that the step is good at each
        (row, col) score position, as a 1-D float tensor."""

    def truncate(self, encoded: Encoded) -> tuple[Encoded, bool]:
        """`encoded` cut to `max_length` tokens (score positions beyond the cut dropped), and whether it was cut."""
        limit = self.settings.max_length
        if len(encoded.input_ids) <= limit:
            return encoded, False
        return Encoded(encoded.input_ids[:limit], [p for p in encoded.positions if p < limit]), True

    def encode_all(
        self, problems: Sequence[str], completions: Sequence[Sequence[str]]
    ) -> tuple[list[tuple[int, int, int, Encoded]], list[list[int]]]:
        """(problem, completion, number of steps, truncated input) for every completion with a step,
        and the tokens read per completion (0 for none); warns once about truncated inputs."""
        if len(problems) != len(completions):
            raise ValueError(f"{len(problems)} problems but {len(completions)} lists of completions")
        jobs: list[tuple[int, int, int, Encoded]] = []
        read = [[0] * len(comps) for comps in completions]
        truncated = 0
        for i, (problem, comps) in enumerate(zip(problems, completions, strict=True)):
            for j, completion in enumerate(comps):
                built = self.encode_completion(problem, completion)
                if built is not None:
                    encoded, cut = self.truncate(built[0])
                    truncated += cut
                    jobs.append((i, j, built[1], encoded))
                    read[i][j] = len(encoded.input_ids)
        if truncated:
            warn_truncated(self.settings, truncated, len(jobs))
        return jobs, read

    def score_with_tokens(self, problems: Sequence[str], completions: Sequence[Sequence[str]]) -> Scored:
        jobs, read = self.encode_all(problems, completions)
        scores: list[list[list[float]]] = [[[] for _ in comps] for comps in completions]
        probs = self.score_encoded([job[3] for job in jobs])
        for (i, j, n_steps, _), got in zip(jobs, probs, strict=True):
            scores[i][j] = fill_steps(got, n_steps)
        return Scored(scores, read)

    def score_encoded(self, encoded: Sequence[Encoded]) -> list[list[float]]:
        """The probability at every score position of each encoding: one forward pass per batch, or two
        where its rows share prefixes (`sal serve-prm` also calls this for token inputs it receives)."""
        import torch
        from tqdm import tqdm

        results: list[list[float]] = [[] for _ in encoded]
        batches = self.plan_batches(encoded)
        for batch, groups in tqdm(
            batches, desc=f"prm {self.settings.name}", unit="batch", leave=False, disable=len(batches) < 2
        ):
            encs = [encoded[k] for k in batch]
            rows = torch.tensor([r for r, e in enumerate(encs) for _ in e.positions], dtype=torch.long)
            cols = torch.tensor([p for e in encs for p in e.positions], dtype=torch.long)
            rows, cols = rows.to(self.device), cols.to(self.device)
            with torch.inference_mode():
                if groups is None:
                    probs = self.step_probs(*self.padded(encs), rows, cols)
                else:
                    seqs = [e.input_ids for e in encs]
                    probs = self.split_probs(build_split(seqs, groups, self.pad_id, self.device), rows, cols)
            flat = probs.float().clamp(0.0, 1.0).cpu().tolist()
            if not all(map(math.isfinite, flat)):
                raise ModelError(non_finite_message(self.settings, getattr(self.forward_module, "dtype", None)))
            start = 0
            for k, e in zip(batch, encs, strict=True):
                results[k] = flat[start : start + len(e.positions)]
                start += len(e.positions)
        return results

    def plan_batches(self, encoded: Sequence[Encoded]) -> list[tuple[list[int], Groups | None]]:
        """Batches of `batch_size` encodings: sorted by length (least padding), or, for a PRM that can
        share prefixes (`split_probs`) and when it computes fewer token positions, sorted by content so
        that inputs sharing a beginning (a problem, a beam's past steps) meet in a batch, each batch
        with its prefix groups (shared_prefix.worth_splitting)."""
        seqs = [e.input_ids for e in encoded]
        size = self.settings.batch_size
        by_length = sorted(range(len(seqs)), key=lambda k: len(seqs[k]))
        plain: list[tuple[list[int], Groups | None]] = [
            (by_length[s : s + size], None) for s in range(0, len(seqs), size)
        ]
        if not self.shares_prefixes:
            return plain
        by_text = sorted(range(len(seqs)), key=lambda k: seqs[k])
        shared = []
        for s in range(0, len(seqs), size):
            batch = by_text[s : s + size]
            shared.append((batch, worth_splitting([seqs[k] for k in batch])))

        def cost(batches: list[tuple[list[int], Groups | None]]) -> int:
            return sum(batch_cost([seqs[k] for k in batch], groups) for batch, groups in batches)

        return shared if cost(shared) < cost(plain) else plain

    def padded(self, encs: Sequence[Encoded]) -> tuple[Any, Any]:
        """Input ids and attention mask of `encs`, right-padded (so a causal model's outputs at real
        tokens do not depend on the padding), on the PRM's device."""
        ids, mask = pad_batch([e.input_ids for e in encs], self.pad_id, left=False)
        return ids.to(self.device), mask.to(self.device)

    #: whether `split_probs` is implemented (the backbone can run a prefix and its suffixes apart)
    shares_prefixes = False

    def split_probs(self, split: Split, rows: Any, cols: Any) -> Any:
        """As `step_probs`, over a batch laid out in two passes (see sal_core.backends.shared_prefix)."""
        raise NotImplementedError(f"{type(self).__name__} runs every input in one pass")


def non_finite_message(settings: PRMSettings, dtype: Any) -> str:
    """The one line for NaN or infinite scores: the PRM overflowed its dtype (float16 in some checkpoints)."""
    name = str(dtype).removeprefix("torch.") if dtype is not None else "its dtype"
    instead = "bfloat16 (on a GPU of compute capability 8.0+) or float32" if name == "float16" else "float32"
    return (
        f"prms.{settings.name}: scores are NaN or infinite in {name} (the model overflows it): "
        f"set prms.{settings.name}.dtype to {instead}"
    )


def fill_steps(got: list[float], n_steps: int) -> list[float]:
    """Scores for all `n_steps` steps from those that fit: the rest repeat the last one (0.0 if none fit)."""
    fill = got[-1] if got else 0.0
    return got + [fill] * (n_steps - len(got))


def warn_truncated(settings: PRMSettings, truncated: int, total: int) -> None:
    log.warning(
        "prm %s: %d of %d completions are longer than max_length=%d tokens and were truncated; "
        "their unscored steps take the score of the last scored step",
        settings.name,
        truncated,
        total,
        settings.max_length,
    )


class CandidateTokenPRM(TransformersPRM):
    """A causal LM judge: P(good) = softmax over the logits of the "+" and "-" tokens at a position.

    Only the backbone runs over the whole sequence; the LM head is applied to the score positions
    alone, so an 8B judge with a 128k vocabulary never materialises batch x length x vocab logits.
    """

    def __init__(
        self, settings: PRMSettings, tokenizer: Any, model: Any, device: Any, good: str = "+", bad: str = "-"
    ) -> None:
        super().__init__(settings, tokenizer, model.base_model, device)
        self.lm_head = model.get_output_embeddings()
        self.candidates = [single_token_id(tokenizer, good), single_token_id(tokenizer, bad)]
        self.cache_arg = cache_argument(self.forward_module)
        if self.candidates[0] == self.candidates[1]:
            raise ModelError(f"prm {settings.name}: {good!r} and {bad!r} map to the same token")

    shares_prefixes = True

    def step_probs(self, input_ids: Any, attention_mask: Any, rows: Any, cols: Any) -> Any:
        hidden = self.forward_module(
            input_ids=input_ids, attention_mask=attention_mask, use_cache=False
        ).last_hidden_state
        return self.good_probability(hidden[rows, cols])

    def split_probs(self, split: Split, rows: Any, cols: Any) -> Any:
        from transformers import DynamicCache

        def forward(input_ids: Any, attention_mask: Any, position_ids: Any, cache: Any) -> Any:
            return self.forward_module(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                use_cache=True,
                **{self.cache_arg: cache},
            ).last_hidden_state

        prefix, suffix = run_split(forward, split, DynamicCache())
        return self.good_probability(gather_positions(split, prefix, suffix, rows, cols))

    def good_probability(self, hidden: Any) -> Any:
        """P(good) from the backbone's hidden states at score positions (the LM head on those alone)."""
        logits = self.lm_head(hidden)[:, self.candidates].float()
        return logits.softmax(dim=-1)[:, 0]
