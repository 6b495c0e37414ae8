"""The config schema repeats the code's enums (JSON schema cannot import Python): they must agree."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sal_core import constants

SCHEMA = yaml.safe_load(
    (Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "config.schema.yaml").read_text()
)
DEFS = SCHEMA["$defs"]
DATASET = DEFS["dataset"]["properties"]


@pytest.mark.parametrize(
    ("schema_enum", "code"),
    [
        (DEFS["approach"]["properties"]["method"]["enum"], constants.METHODS),
        (DEFS["prm"]["properties"]["type"]["enum"], constants.PRM_TYPES),
        (DEFS["prm"]["properties"]["step_layout"]["enum"], constants.STEP_LAYOUTS),
        (DEFS["approach"]["properties"]["continuation"]["enum"], constants.CONTINUATIONS),
        (DEFS["model"]["properties"]["backend"]["enum"], constants.BACKENDS),
        (DEFS["prm"]["properties"]["api"]["enum"], constants.SERVER_APIS),
        (DEFS["aggregation"]["enum"], constants.AGGREGATIONS),
        (DEFS["dtype"]["enum"], constants.DTYPES),
        (DEFS["prepared"]["enum"], constants.PREPARED_SOURCES),
        (DATASET["source"]["enum"], constants.DATASET_SOURCES),
        (DATASET["answer_format"]["enum"], constants.ANSWER_FORMATS),
        (SCHEMA["properties"]["evaluation"]["properties"]["protocol"]["enum"], constants.PROTOCOLS),
    ],
    ids=[
        "methods",
        "prm types",
        "step layouts",
        "continuations",
        "backends",
        "server apis",
        "aggregations",
        "dtypes",
        "prepared",
        "sources",
        "formats",
        "protocols",
    ],
)
def test_schema_enum_matches_the_code(schema_enum: list, code: tuple) -> None:
    assert list(schema_enum) == list(code)


def test_every_aggregation_and_dtype_setting_uses_the_shared_definition() -> None:
    """No second, drifting copy of an enum inside the schema."""
    refs = {
        "evaluation.aggregation": SCHEMA["properties"]["evaluation"]["properties"]["aggregation"],
        "approach.aggregation": DEFS["approach"]["properties"]["aggregation"],
        "model.dtype": DEFS["model"]["properties"]["dtype"],
        "prm.dtype": DEFS["prm"]["properties"]["dtype"],
    }
    for key, prop in refs.items():
        assert "enum" not in prop, key
        assert prop["$ref"] in ("#/$defs/aggregation", "#/$defs/dtype"), key
