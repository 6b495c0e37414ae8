"""Votes, ties, pass@k, subsampling and intervals on small hand-checked arrays."""

import itertools
from math import comb

import numpy as np
import pytest

from sal_core.evaluation import votes as metrics


def credit(classes, scores):
    c = np.array([classes])
    return {k: float(v[0]) for k, v in metrics.vote_credit(c, np.array([scores], float), 4).items()}


def test_votes_on_a_hand_checked_subsample():
    # class 0 is correct; the no-answer completion has the best score but cannot win
    got = credit([0, 1, 1, -1], [0.9, 0.3, 0.4, 0.99])
    assert got == {"majority": 0.0, "naive": 1.0, "weighted": 1.0}


def test_ties_get_fractional_credit():
    assert credit([0, 1], [0.5, 0.5]) == {"majority": 0.5, "naive": 0.5, "weighted": 0.5}
    assert credit([0, 1, 2], [0.2, 0.1, 0.3]) == {"majority": pytest.approx(1 / 3), "naive": 0.0, "weighted": 0.0}


def test_no_answer_never_wins_against_an_answer():
    assert credit([-1, -1, -1, 0], [0.9, 0.9, 0.9, 0.1]) == {"majority": 1.0, "naive": 1.0, "weighted": 1.0}
    assert credit([-1, -1], [0.9, 0.9]) == {"majority": 0.0, "naive": 0.0, "weighted": 0.0}
    assert credit([-1, 2], [0.9, 0.0]) == {"majority": 0.0, "naive": 0.0, "weighted": 0.0}


@pytest.mark.parametrize(("total", "correct", "k"), [(6, 2, 3), (5, 0, 2), (5, 5, 1), (7, 1, 7), (8, 3, 1)])
def test_pass_at_k_matches_closed_form_and_enumeration(total, correct, k):
    got = metrics.pass_at_k(np.array([correct]), np.array([total]), k)[0]
    closed = 1 - comb(total - correct, k) / comb(total, k)
    labels = [1] * correct + [0] * (total - correct)
    subsets = list(itertools.combinations(labels, k))
    brute = sum(any(s) for s in subsets) / len(subsets)
    assert got == pytest.approx(closed) == pytest.approx(brute)


def test_subsamples_keep_whole_groups():
    groups = np.array([[7, 7, 3, 3, 5, 5, 1, 1]])
    valid = np.ones_like(groups, bool)
    orders = metrics.subsample_orders(groups, valid, 200, np.random.default_rng(0))
    for order in orders[0]:
        picked = groups[0, order[:4]]
        assert sorted(np.unique(picked, return_counts=True)[1]) == [2, 2]
        assert len(set(groups[0, order[:1]])) == 1
    first_groups = {groups[0, o[0]] for o in orders[0]}
    assert first_groups == {1, 3, 5, 7}  # every group gets drawn


def test_padding_is_never_drawn():
    groups = np.array([[0, 1, 2, -1]])
    valid = np.array([[True, True, True, False]])
    orders = metrics.subsample_orders(groups, valid, 50, np.random.default_rng(1))
    assert (orders[0, :, -1] == 3).all()


def test_subsampled_accuracy_estimates_and_full_n_is_exact():
    classes = np.array([[0, 0, 1, 2], [1, 1, 0, -1]])
    scores = np.array([[0.1, 0.2, 0.9, 0.3], [0.5, 0.5, 0.6, 1.0]])
    groups = np.tile(np.arange(4), (2, 1))
    orders = metrics.subsample_orders(groups, np.ones_like(groups, bool), 4000, np.random.default_rng(2))
    full = metrics.subsampled_accuracy(classes, scores, orders, 4, 3)
    assert full["majority"].tolist() == [1.0, 0.0]
    assert full["naive"].tolist() == [0.0, 1.0]
    assert full["weighted"].tolist() == [0.0, 0.0]  # 0.9 > 0.3 and 1.0 (two 0.5) > 0.6
    one = metrics.subsampled_accuracy(classes, scores, orders, 1, 3)
    assert one["majority"] == pytest.approx([0.5, 0.25], abs=0.03)  # = fraction correct at n = 1


def test_bootstrap_interval_brackets_the_mean():
    rng = np.random.default_rng(3)
    values = rng.random((2, 300))
    values[1] = 0.4
    low, high = metrics.bootstrap_ci(values, rng, 1000)
    assert low[0] < values[0].mean() < high[0]
    assert high[0] - low[0] == pytest.approx(2 * 1.96 * values[0].std() / np.sqrt(300), rel=0.2)
    assert low[1] == pytest.approx(0.4) and high[1] == pytest.approx(0.4)


def test_n_values():
    assert metrics.n_values(6, "best_of_n") == [1, 2, 4, 6]
    assert metrics.n_values(16, "beam_search") == [16]
    assert metrics.n_values(16, "dvts", group_size=4) == [4, 8, 16]


def test_dvts_budgets_take_whole_subtrees_of_any_finished_size():
    # run n = 8, beam_width 2: four subtrees that finished 2, 1, 2 and 1 candidates
    groups = np.array([[0, 0, 1, 2, 2, 3]])
    classes = np.array([[0, 0, 1, 2, 2, 0]])  # subtree 0 and 3 correct, 1 and 2 wrong
    valid = np.ones_like(groups, bool)
    scores = np.zeros(groups.shape)
    assert metrics.group_budgets(8, 2) == [2, 4, 8]
    orders = metrics.subsample_orders(groups, valid, 2000, np.random.default_rng(0))
    at = {
        n: metrics.subsampled_group_accuracy(classes, scores, groups, valid, orders, n // 2, 3)["majority"][0]
        for n in (2, 4, 8)
    }
    assert at[8] == 1.0  # all subtrees: class 0 has 3 votes, class 2 has 2, class 1 has 1
    # one subtree: right for subtrees 0 and 3; two subtrees: 3 of 6 pairs win, with two ties at 1/2
    assert at[2] == pytest.approx(0.5, abs=0.05)
    assert at[4] == pytest.approx(0.5, abs=0.05)
