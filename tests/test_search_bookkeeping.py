"""The search's pure bookkeeping: slot filling, beam selection, final choice, DVTS subtree ending,
step termination and result records. No model is needed for these."""

from __future__ import annotations

import pytest

from sal_core.backends.base import GenerationOutput
from sal_core.search.beam_search import Beam, fill_slots, final_beams, select_beams
from sal_core.search.dvts import Subtree, finish_subtree
from sal_core.search.results import SearchResult
from sal_core.search.steps import ends_solution
from sal_core.settings.jobs import SearchSettings


def _beam(problem: int, text: str, score: float, slot: int = 0) -> Beam:
    return Beam(problem=problem, slot=slot, text=text, scores=[0.5, score])


def test_fill_slots_repeats_the_kept_beams_cyclically_in_slot_order():
    """search-and-learn's `(active_beams * repeats)[: n]`, with hotncold's slot temperatures."""
    kept = [_beam(0, "a", 0.1, slot=1), _beam(0, "b", 0.9, slot=3)]
    temps = [0.2, 0.2, 1.0, 1.0]
    slots = fill_slots(kept, 4, temps)
    assert [b.text for b in slots] == ["a", "b", "a", "b"]
    assert [b.slot for b in slots] == [0, 1, 2, 3]
    assert [b.temperature for b in slots] == temps
    # every kept beam meets every temperature of the list once
    assert [b.temperature for b in slots if b.text == "a"] == [0.2, 1.0]
    # copies are independent objects
    slots[0].scores.append(1.0)
    assert slots[2].scores == [0.5, 0.1]


def test_fill_slots_gives_extra_copies_to_the_earliest_listed_when_few_survive():
    slots = fill_slots([_beam(0, "first", 0.1), _beam(0, "second", 0.9)], 5, [0.8] * 5)
    assert [b.text for b in slots] == ["first", "second", "first", "second", "first"]
    with pytest.raises(ValueError):
        fill_slots([], 4, [0.8] * 4)


def test_select_beams_keeps_the_best_in_slot_order():
    beams = [_beam(0, str(i), s, slot=i) for i, s in enumerate([0.3, 0.9, 0.1, 0.7, 0.5, 0.2])]
    assert [b.text for b in select_beams(beams, 2, "last", filter_duplicates=False)] == ["1", "3"]
    assert [b.text for b in select_beams(beams, 3, "last", filter_duplicates=False)] == ["1", "3", "4"]
    # slot order, not rank order: the kept beams stay where search-and-learn leaves them
    assert [b.text for b in select_beams(beams[3:5], 2, "last", False)] == ["3", "4"]
    # aggregation matters: by "min" the first step (0.5) caps everything
    beams[2].scores = [0.99, 0.99]
    assert [b.text for b in select_beams(beams, 1, "min", False)] == ["2"]


def test_select_beams_filters_duplicates_before_ranking():
    beams = [_beam(0, "same", 0.9), _beam(0, "same", 0.9), _beam(0, "other", 0.4)]
    assert [b.text for b in select_beams(beams, 2, "last", filter_duplicates=True)] == ["same", "other"]
    assert [b.text for b in select_beams(beams, 2, "last", filter_duplicates=False)] == ["same", "same"]


def test_final_beams_first_n_or_sorted_then_repeated():
    done = [_beam(0, str(i), s) for i, s in enumerate([0.2, 0.9, 0.5, 0.7])]
    assert [b.text for b in final_beams(done, 3, "last", sort_completed=False)] == ["0", "1", "2"]
    assert [b.text for b in final_beams(done, 3, "last", sort_completed=True)] == ["1", "3", "2"]
    # too few finished: repeat what there is, cyclically (search-and-learn)
    assert [b.text for b in final_beams(done[:2], 5, "last", sort_completed=False)] == ["0", "1", "0", "1", "0"]


def _out(text: str, reason: str = "stop", tokens: int = 3) -> GenerationOutput:
    return GenerationOutput(text=text, num_tokens=tokens, finish_reason=reason)


def test_ends_solution():
    assert not ends_solution(_out("Step 1: add.\n\n"))
    # a boxed answer alone does not end a step (search-and-learn's beam search); see stop_at_boxed
    assert not ends_solution(_out("The answer is $\\boxed{5}$.\n\n"))
    assert ends_solution(_out("done", "eos"))
    assert ends_solution(_out("cut off", "length"))
    assert ends_solution(_out("", "stop"))


DVTS = SearchSettings(method="dvts", n=6, beam_width=3)


def test_finish_subtree_advances_on_an_unfinished_best():
    tree = Subtree(problem=0, index=1, temperature=0.8, text="A\n\n", tokens=4, scores=[0.5])
    cands = [_out("x\n\n"), _out("y\n\n", tokens=5), _out("z", "eos")]
    finish_subtree(tree, cands, [[0.5, 0.2], [0.5, 0.9], [0.5, 0.4]], [0.6, 1.0, 0.6], False, DVTS)
    assert tree.leaves is None
    assert (tree.text, tree.tokens, tree.scores, tree.temperature) == ("A\n\ny\n\n", 9, [0.5, 0.9], 1.0)


def test_finish_subtree_returns_only_finished_candidates():
    tree = Subtree(problem=0, index=2, temperature=0.8, text="A\n\n", tokens=4)
    cands = [_out("x\n\n"), _out("$\\boxed{5}$", "eos", tokens=6), _out("y", "length", tokens=8)]
    finish_subtree(tree, cands, [[0.5, 0.3], [0.5, 0.9], [0.5, 0.1]], [0.6, 0.8, 1.0], False, DVTS)
    assert [leaf.text for leaf in tree.leaves] == ["A\n\n$\\boxed{5}$", "A\n\ny"]
    assert [leaf.tokens for leaf in tree.leaves] == [10, 12]
    assert [leaf.finish_reason for leaf in tree.leaves] == ["eos", "length"]
    assert [leaf.scores for leaf in tree.leaves] == [[0.5, 0.9], [0.5, 0.1]]
    assert [leaf.temperature for leaf in tree.leaves] == [0.8, 1.0]


def test_search_result_rejects_misaligned_lists():
    SearchResult(["a"], [1], [0.8], [0], ["eos"], [[0.5]])
    with pytest.raises(ValueError):
        SearchResult(["a", "b"], [1], [0.8], [0], ["eos"], None)
    with pytest.raises(ValueError):
        SearchResult(["a"], [1], [0.8], [0], ["eos"], [])


def test_finish_subtree_keep_unfinished_returns_every_candidate_as_search_and_learn():
    tree = Subtree(problem=0, index=0, temperature=0.8, text="A\n\n", tokens=4)
    cands = [_out("x\n\n"), _out("done", "eos"), _out("y\n\n")]
    scores = [[0.5, 0.1], [0.5, 0.9], [0.5, 0.2]]
    keep = SearchSettings(method="dvts", n=6, beam_width=3, keep_unfinished=True)
    finish_subtree(tree, cands, scores, [0.6, 0.8, 1.0], False, keep)
    assert [leaf.text for leaf in tree.leaves] == ["A\n\nx\n\n", "A\n\ndone", "A\n\ny\n\n"]
    assert [leaf.finish_reason for leaf in tree.leaves] == ["stop", "eos", "stop"]
