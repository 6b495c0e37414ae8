"""Best-of-N's `temperature_layout` (issue 18, item 7): with temperature_ratios the samples come in
temperature blocks, so search-and-learn's first-n subsets smaller than a block hold one temperature;
`interleaved` keeps the counts and puts every temperature in every first n, in proportion."""

from __future__ import annotations

import pytest
from search_helpers import PROBLEMS, search
from test_config_grid import SCHEMA, smoke

from sal_core.errors import ConfigError
from sal_core.evaluation.sal_protocol import sal_sizes
from sal_core.search.temperatures import interleave, temperature_list
from sal_core.settings.build import to_json
from sal_core.settings.check import check_config

HOT_COLD = ([0.4, 1.2], [0.5, 0.5])


def test_blocks_give_first_n_subsets_of_one_temperature() -> None:
    listed = temperature_list(64, *HOT_COLD)
    assert [len(set(listed[:n])) for n in sal_sizes(64)] == [1, 1, 1, 1, 1, 1, 2]  # n = 1 ... 32: only 0.4


@pytest.mark.parametrize(
    ("n", "temperatures", "ratios"),
    [(64, *HOT_COLD), (12, [0.6, 0.8, 1.0], [0.33, 0.34, 0.33]), (16, [0.4, 1.2], [0.25, 0.75])],
)
def test_interleaved_keeps_the_counts_and_every_prefix_in_proportion(n, temperatures, ratios) -> None:
    blocks = temperature_list(n, temperatures, ratios)
    mixed = temperature_list(n, temperatures, ratios, "interleaved")
    assert sorted(mixed) == sorted(blocks)
    counts = [blocks.count(t) for t in temperatures]
    for k in range(1, n + 1):
        for t, c in zip(temperatures, counts, strict=True):
            assert abs(mixed[:k].count(t) - k * c / n) < 1, (k, t)
    assert all(len(set(mixed[:size])) == len(temperatures) for size in sal_sizes(n) if size >= len(temperatures))


def test_interleave_ties_go_to_the_earlier_index() -> None:
    assert interleave([2, 2]) == [0, 1, 0, 1] and interleave([1, 3]) == [1, 0, 1, 1]


def test_the_layout_stays_out_of_identity_at_blocks_and_is_best_of_n_only() -> None:
    config = smoke()
    plain = to_json(check_config(config, SCHEMA).run("tiny", "bon", "mix", 0).job)
    assert "temperature_layout" not in plain
    config["approaches"]["bon"]["temperature_layout"] = "interleaved"
    changed = to_json(check_config(config, SCHEMA).run("tiny", "bon", "mix", 0).job)
    assert '"temperature_layout":"interleaved"' in changed
    config = smoke()
    config["approaches"]["dvts"]["temperature_layout"] = "interleaved"
    with pytest.raises(ConfigError, match=r"approaches\.dvts.*temperature_layout: for best_of_n only"):
        check_config(config, SCHEMA)


def test_best_of_n_samples_in_the_interleaved_order(engine, judge, tiny_model_path) -> None:
    run = search(
        engine,
        judge,
        tiny_model_path,
        "best_of_n",
        problems=PROBLEMS[:1],
        n=8,
        max_tokens=2,
        temperatures=[0.4, 1.2],
        temperature_ratios=[0.25, 0.75],
        temperature_layout="interleaved",
    )
    assert run.results[0].temperatures == [1.2, 0.4, 1.2, 1.2, 1.2, 0.4, 1.2, 1.2]
    assert [req.temperature for req, _ in run.backend.calls[0]] == run.results[0].temperatures
