"""One forward pass per shared prefix: sequences that begin alike reuse one KV cache for that part.

Search feeds models many sequences that begin with the same tokens: a policy's prompts share the
system prompt (few-shot examples), a PRM's inputs share the problem, and a beam's candidates share
everything the beam wrote so far. On a CPU, where a forward pass costs in proportion to the tokens
it reads, computing each shared prefix once is the cheapest work to drop (vLLM's prefix caching does
the same on a GPU). A batch runs in two passes:

1. the groups' prefixes, right-padded, building a KV cache;
2. each row's own suffix, left-padded, over a copy of its group's cache. The attention mask is the
   prefix's mask followed by the suffix's, so the prefix's padding sits in the middle and is masked
   out, and positions count real tokens only: every row sees exactly its own tokens at their own
   positions, as in one pass over the whole sequence.

The results equal a single pass up to float rounding (the matrix shapes differ); tests compare both.
Groups are consecutive rows of a lexicographic order, chosen to save the most tokens (a dynamic
programme over the rows of one batch).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported where tensors are built, so importing this module stays cheap
    import torch

#: a batch is split only when that saves at least this many token positions
MIN_SAVED = 16


def cache_argument(module: Any) -> str:
    """The name `module.forward` takes its KV cache under (transformers 5 renamed it)."""
    params = inspect.signature(module.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def common_length(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of `a` and `b`."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


@dataclass(frozen=True)
class Groups:
    """Rows (indices into the sequences) grouped by a shared prefix of `lengths[g]` tokens."""

    members: list[list[int]]
    lengths: list[int]

    def cost(self, seqs: Sequence[Sequence[int]]) -> int:
        """Token positions the two passes compute, padding included."""
        suffix = max(len(seqs[r]) - n for rows, n in zip(self.members, self.lengths, strict=True) for r in rows)
        return len(self.lengths) * max(self.lengths) + sum(map(len, self.members)) * suffix


def plain_cost(seqs: Sequence[Sequence[int]]) -> int:
    """Token positions one padded pass over `seqs` computes."""
    return len(seqs) * max(map(len, seqs))


def batch_cost(seqs: Sequence[Sequence[int]], groups: Groups | None) -> int:
    """Token positions a batch computes: in two passes with `groups`, in one without."""
    return plain_cost(seqs) if groups is None else groups.cost(seqs)


def group_rows(seqs: Sequence[Sequence[int]]) -> Groups:
    """The grouping of consecutive rows (in lexicographic order) that saves the most tokens: a group
    of k rows sharing p tokens saves (k - 1) * p. Each row keeps at least one token of its own."""
    order = sorted(range(len(seqs)), key=lambda r: seqs[r])
    common = [common_length(seqs[a], seqs[b]) for a, b in zip(order, order[1:], strict=False)]
    best = [0] * (len(order) + 1)  # best[j]: most saved over the first j rows
    cut = [0] * (len(order) + 1)  # the last group of the best grouping of the first j rows: cut[j] .. j-1
    length = [0] * (len(order) + 1)  # and the prefix it shares
    for j in range(1, len(order) + 1):
        shared = len(seqs[order[j - 1]]) - 1
        best[j], cut[j], length[j] = best[j - 1], j - 1, shared
        for i in range(j - 2, -1, -1):  # group = rows i .. j-1
            shared = min(shared, common[i], len(seqs[order[i]]) - 1)
            if best[i] + (j - 1 - i) * shared > best[j]:
                best[j], cut[j], length[j] = best[i] + (j - 1 - i) * shared, i, shared
    members: list[list[int]] = []
    lengths: list[int] = []
    j = len(order)
    while j > 0:
        members.append(order[cut[j] : j])
        lengths.append(length[j])
        j = cut[j]
    return Groups(members[::-1], lengths[::-1])


def worth_splitting(seqs: Sequence[Sequence[int]]) -> Groups | None:
    """The grouping of `seqs` when two passes compute fewer positions than one, else None."""
    if len(seqs) < 2:
        return None
    groups = group_rows(seqs)
    return groups if groups.cost(seqs) + MIN_SAVED <= plain_cost(seqs) else None


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Input ids and attention mask of `seqs`, padded to the longest on the left or the right (CPU)."""
    import torch

    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, seq in enumerate(seqs):
        cols = slice(width - len(seq), width) if left else slice(0, len(seq))
        ids[row, cols] = torch.tensor(seq, dtype=torch.long)
        mask[row, cols] = 1
    return ids, mask


@dataclass
class Split:
    """The tensors of a two-pass batch; rows are in the caller's order."""

    prefix_ids: torch.Tensor  # (groups, prefix width), right-padded
    prefix_mask: torch.Tensor
    suffix_ids: torch.Tensor  # (rows, suffix width), left-padded
    mask: torch.Tensor  # (rows, prefix width + suffix width): the row's prefix mask, then its suffix's
    positions: torch.Tensor  # same shape: each real token's position in its own sequence
    group: torch.Tensor  # (rows,) the group of each row
    prefix_len: torch.Tensor  # (rows,) tokens of the row that are in its group's prefix
    suffix_start: torch.Tensor  # (rows,) column of the row's first suffix token in suffix_ids


def build_split(seqs: Sequence[Sequence[int]], groups: Groups, pad_id: int, device: Any) -> Split:
    """Lay out `seqs` for `run_split` (see module docstring)."""
    import torch

    group_of = {r: g for g, rows in enumerate(groups.members) for r in rows}
    prefixes = [seqs[rows[0]][:n] for rows, n in zip(groups.members, groups.lengths, strict=True)]
    prefix_ids, prefix_mask = pad_batch(prefixes, pad_id, left=False)
    cuts = [groups.lengths[group_of[r]] for r in range(len(seqs))]
    suffix_ids, suffix_mask = pad_batch([s[n:] for s, n in zip(seqs, cuts, strict=True)], pad_id, left=True)
    suffix_width = suffix_ids.shape[1]
    group = torch.tensor([group_of[r] for r in range(len(seqs))], dtype=torch.long)
    mask = torch.cat([prefix_mask[group], suffix_mask], dim=-1)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    prefix_len = torch.tensor(cuts, dtype=torch.long)
    return Split(
        *(t.to(device) for t in (prefix_ids, prefix_mask, suffix_ids, mask, positions, group, prefix_len)),
        suffix_start=(suffix_width - (lengths - prefix_len)).to(device),
    )


def run_split(forward: Callable[..., Any], split: Split, cache: Any) -> tuple[Any, Any]:
    """Both passes through `forward(input_ids, attention_mask, position_ids, cache)`; returns the
    prefix pass's and the suffix pass's outputs. `cache` (an empty transformers Cache) ends up
    holding every row's whole sequence, in row order."""
    width = split.prefix_ids.shape[1]
    prefix_positions = (split.prefix_mask.cumsum(-1) - 1).clamp(min=0)
    prefix_out = forward(split.prefix_ids, split.prefix_mask, prefix_positions, cache)
    cache.batch_select_indices(split.group)
    suffix_out = forward(split.suffix_ids, split.mask, split.positions[:, width:], cache)
    return prefix_out, suffix_out


def gather_positions(
    split: Split, prefix_hidden: torch.Tensor, suffix_hidden: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor
) -> torch.Tensor:
    """Hidden states at (row, col) of the rows' whole sequences, from whichever pass computed them."""
    import torch

    in_prefix = cols < split.prefix_len[rows]
    from_prefix = prefix_hidden[split.group[rows], cols.clamp(max=prefix_hidden.shape[1] - 1)]
    suffix_cols = (split.suffix_start[rows] + cols - split.prefix_len[rows]).clamp(min=0)
    from_suffix = suffix_hidden[rows, suffix_cols]
    return torch.where(in_prefix.unsqueeze(-1), from_prefix, from_suffix)
