"""Where a dataset comes from and how to read it: the `dataset:` block of the config."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from sal_core.constants import ANSWER_FORMATS, DATASET_SOURCES
from sal_core.errors import ConfigError
from sal_core.settings.build import Settings, build_settings, require_at_least, require_one_of


@dataclass
class DatasetFields(Settings):
    """Names of the dataset's own columns; `id` and `level` may be absent from the data."""

    KEY = "dataset.fields"

    problem: str = "problem"
    answer: str = "answer"
    id: str | None = "unique_id"
    level: str | None = "level"

    def validate(self, where: str) -> None:
        for key in ("problem", "answer"):
            if not getattr(self, key):
                raise ConfigError(f"{where}.{key}: must name a column")


@dataclass
class DatasetSettings(Settings):
    """Where a dataset comes from and how to read it (the `dataset:` block of the config)."""

    KEY = "dataset"

    name: str
    source: str = "hub"
    path: str = "HuggingFaceH4/MATH-500"
    split: str = "test"
    subset: str | None = None
    fields: DatasetFields = field(default_factory=DatasetFields)
    answer_format: str = "plain"
    limit: int | None = None
    shard_size: int = 25

    def validate(self, where: str) -> None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", self.name):
            raise ConfigError(f"{where}.name: {self.name!r} must be letters, digits, '_', '.', '-'")
        require_one_of(self.source, DATASET_SOURCES, f"{where}.source")
        require_one_of(self.answer_format, ANSWER_FORMATS, f"{where}.answer_format")
        if self.limit is not None:
            require_at_least(self.limit, 1, f"{where}.limit")
        require_at_least(self.shard_size, 1, f"{where}.shard_size")

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "dataset") -> DatasetSettings:
        data = dict(data)
        data["fields"] = build_settings(DatasetFields, dict(data.get("fields") or {}), f"{where}.fields")
        return build_settings(cls, data, where)

    def fingerprint(self) -> str:
        """A stable text of every setting that changes the problems (not the shard size)."""
        settings = asdict(self)
        settings.pop("shard_size")
        return json.dumps(settings, sort_keys=True)
