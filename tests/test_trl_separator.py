"""prms.<name>.step_separator for TRL-format PRMs whose checkpoint records no separator (issue 18, item 2)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from sal_core.errors import ConfigError
from sal_core.settings.build import to_json
from sal_core.settings.check import check_config
from sal_core.settings.jobs import PRMSettings

REPO = Path(__file__).resolve().parent.parent
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def _trl_config(**prm: str) -> dict:
    config = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    config["prms"]["tiny-judge"].update(type="trl", **prm)
    return config


def test_config_separator_wins_and_stays_out_of_identity_at_default() -> None:
    plain = check_config(_trl_config(), SCHEMA).run("tiny", "dvts.tiny-judge", "mix", 0).job
    assert "step_separator" not in to_json(plain)
    set_ = check_config(_trl_config(step_separator="\n\n"), SCHEMA).run("tiny", "dvts.tiny-judge", "mix", 0).job
    assert set_.prm.step_separator == "\n\n" and '"step_separator":"\\n\\n"' in to_json(set_)


def test_separator_for_other_types_is_refused() -> None:
    config = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    config["prms"]["tiny-judge"]["step_separator"] = "\n\n"
    with pytest.raises(ConfigError, match=r"prms\.tiny-judge\.step_separator: .*trl only"):
        check_config(config, SCHEMA)


def test_loader_uses_the_config_separator_else_warns_once(tiny_model_path: Path, caplog) -> None:
    from sal_core.prm import load_prm

    caplog.set_level(logging.WARNING, logger="sal_core.prm.trl_token")
    given = load_prm(PRMSettings(name="t", type="trl", path=str(tiny_model_path), step_separator="\n\n"))
    ours = lambda: [r.getMessage() for r in caplog.records if r.name == "sal_core.prm.trl_token"]  # noqa: E731
    assert given.step_separator == "\n\n" and not ours()
    fallback = load_prm(PRMSettings(name="t", type="trl", path=str(tiny_model_path)))
    assert fallback.step_separator == "\n"
    warnings = ours()
    assert len(warnings) == 1 and "prms.t.step_separator" in warnings[0] and "prm_config.json" in warnings[0]
