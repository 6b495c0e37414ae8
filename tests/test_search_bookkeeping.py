"""The search's pure bookkeeping: slot filling, beam selection, final choice, DVTS subtree ending,
step termination and result records. No model is needed for these."""

from __future__ import annotations

import pytest

from sal_core.backends.base import GenerationOutput
from sal_core.search.beam_search import Beam, fill_slots, final_beams, select_beams
from sal_core.search.dvts import Subtree, finish_subtree
from sal_core.search.results import SearchResult
from sal_core.search.steps import ends_solution


def _beam(problem: int, text: str, score: float, slot: int = 0) -> Beam:
    return Beam(problem=problem, slot=slot, text=text, scores=[0.5, score])


def test_fill_slots_copies_each_kept_beam_consecutively_with_cycled_temperatures():
    kept = [_beam(0, "a", 0.9), _beam(0, "b", 0.8)]
    temps = [0.2, 1.0, 0.2, 1.0]
    slots = fill_slots(kept, 4, temps)
    assert [b.text for b in slots] == ["a", "a", "b", "b"]
    assert [b.slot for b in slots] == [0, 1, 2, 3]
    assert [b.temperature for b in slots] == temps
    # every kept beam meets both temperatures when it is copied beam_width = 2 times
    assert {b.temperature for b in slots if b.text == "a"} == {0.2, 1.0}
    # copies are independent objects
    slots[0].scores.append(1.0)
    assert slots[1].scores == [0.5, 0.9]


def test_fill_slots_gives_extra_copies_to_the_best_when_few_survive():
    slots = fill_slots([_beam(0, "best", 0.9), _beam(0, "next", 0.1)], 5, [0.8] * 5)
    assert [b.text for b in slots] == ["best", "best", "best", "next", "next"]
    with pytest.raises(ValueError):
        fill_slots([], 4, [0.8] * 4)


def test_select_beams_keeps_the_best_sorted():
    beams = [_beam(0, str(i), s, slot=i) for i, s in enumerate([0.3, 0.9, 0.1, 0.7, 0.5, 0.2])]
    kept = select_beams(beams, 2, "last", filter_duplicates=False)
    assert [b.text for b in kept] == ["1", "3"]
    # aggregation matters: by "min" the first step (0.5) caps everything
    beams[2].scores = [0.99, 0.99]
    assert [b.text for b in select_beams(beams, 1, "min", False)] == ["2"]


def test_select_beams_filters_duplicates_before_ranking():
    beams = [_beam(0, "same", 0.9), _beam(0, "same", 0.9), _beam(0, "other", 0.4)]
    assert [b.text for b in select_beams(beams, 2, "last", filter_duplicates=True)] == ["same", "other"]
    assert [b.text for b in select_beams(beams, 2, "last", filter_duplicates=False)] == ["same", "same"]


def test_final_beams_first_n_or_sorted_then_filled():
    done = [_beam(0, str(i), s) for i, s in enumerate([0.2, 0.9, 0.5, 0.7])]
    going = [_beam(0, "best-unfinished", 0.99), _beam(0, "next-unfinished", 0.95)]
    assert [b.text for b in final_beams(done, going, 3, "last", sort_completed=False)] == ["0", "1", "2"]
    assert [b.text for b in final_beams(done, going, 3, "last", sort_completed=True)] == ["1", "3", "2"]
    # too few finished: the best unfinished beams fill in (never ranked above finished ones)
    assert [b.text for b in final_beams(done[:1], going, 2, "last", sort_completed=True)] == [
        "0",
        "best-unfinished",
    ]
    # still too few: repeat what there is
    assert [b.text for b in final_beams(done[:2], [], 4, "last", sort_completed=False)] == ["0", "1", "0", "1"]


def _out(text: str, reason: str = "stop", tokens: int = 3) -> GenerationOutput:
    return GenerationOutput(text=text, num_tokens=tokens, finish_reason=reason)


def test_ends_solution():
    assert not ends_solution(_out("Step 1: add.\n\n"))
    assert ends_solution(_out("The answer is $\\boxed{5}$.\n\n"))
    assert ends_solution(_out("done", "eos"))
    assert ends_solution(_out("cut off", "length"))
    assert ends_solution(_out("", "stop"))


def test_finish_subtree_advances_on_an_unfinished_best():
    tree = Subtree(problem=0, index=1, temperature=0.8, text="A\n\n", tokens=4, scores=[0.5])
    cands = [_out("x\n\n"), _out("y\n\n", tokens=5), _out("z", "eos")]
    finish_subtree(tree, cands, [[0.5, 0.2], [0.5, 0.9], [0.5, 0.4]], last=False, how="last")
    assert tree.leaves is None
    assert (tree.text, tree.tokens, tree.scores) == ("A\n\ny\n\n", 9, [0.5, 0.9])


def test_finish_subtree_returns_only_finished_candidates():
    tree = Subtree(problem=0, index=2, temperature=0.8, text="A\n\n", tokens=4)
    cands = [_out("x\n\n"), _out("$\\boxed{5}$", "eos", tokens=6), _out("y", "length", tokens=8)]
    finish_subtree(tree, cands, [[0.5, 0.3], [0.5, 0.9], [0.5, 0.1]], last=False, how="last")
    assert [leaf.text for leaf in tree.leaves] == ["A\n\n$\\boxed{5}$", "A\n\ny"]
    assert [leaf.tokens for leaf in tree.leaves] == [10, 12]
    assert [leaf.finish_reason for leaf in tree.leaves] == ["eos", "length"]
    assert [leaf.scores for leaf in tree.leaves] == [[0.5, 0.9], [0.5, 0.1]]


def test_search_result_rejects_misaligned_lists():
    SearchResult(["a"], [1], [0.8], [0], ["eos"], [[0.5]])
    with pytest.raises(ValueError):
        SearchResult(["a", "b"], [1], [0.8], [0], ["eos"], None)
    with pytest.raises(ValueError):
        SearchResult(["a"], [1], [0.8], [0], ["eos"], [])
