"""Configs that travel as JSON: the QGIS side writes one to a file, the worker reads it back
(``python -m dl_engine train --config FILE``). Standard library only."""

from __future__ import annotations

import json
from dataclasses import asdict, fields


class JsonConfig:
    """Mixin for a config dataclass: ``to_json`` and ``from_json`` (unknown keys are ignored,
    so a config written by a newer plugin still reads)."""

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str):
        raw = json.loads(text)
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in names})
