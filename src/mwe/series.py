"""Model series: the models a sweep runs over, each with a label and numeric axes.

    name: bundled
    models:
      - model: hf:smollm2-135m-instruct
        label: SmolLM2-135M-Instruct
        params: 135e6            # parameters: the x axis of a size ladder
        tuning: tuned            # base | tuned | rlhf | pm
        family: smollm2          # architecture / training family
        quantization: fp32 from Q4_1
      - model: hf:gemma3-270m
        params: 270e6
        step: 0                  # training or RLHF step: the x axis of a checkpoint series
        tuning: base

A trend over `params` is only clean when the models share family, tuning and quantization;
the report says when they do not.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mwe.errors import DataError
from mwe.redact import redact
from mwe.spec import Checker, read_config

TUNING = ("base", "tuned", "rlhf", "pm")


@dataclass(frozen=True)
class SeriesModel:
    model: str
    label: str
    params: float | None = None
    step: float | None = None
    tuning: str | None = None
    family: str | None = None
    quantization: str | None = None

    def axes(self) -> dict[str, Any]:
        return {"params": self.params, "step": self.step, "tuning": self.tuning,
                "model_family": self.family, "quantization": self.quantization}


@dataclass(frozen=True)
class Series:
    name: str
    models: tuple[SeriesModel, ...] = field(default_factory=tuple)


def from_specs(specs: list[str]) -> Series:
    specs = [redact(s) for s in specs]
    return Series("models", tuple(SeriesModel(s, s) for s in specs))


def load_series(path: str | Path) -> Series:
    """Read and validate a series file; errors name the file, line and field."""
    path = Path(path)
    data, loc = read_config(path)
    c = Checker(path, loc)
    c.table(data, None, {"name", "models"})
    if "models" not in data or not isinstance(data["models"], list) or not data["models"]:
        raise DataError(str(path), loc.line(None, "models"), "models",
                        "expected a non-empty list of models")
    from mwe.models import parse_spec

    models = []
    seen: set[str] = set()
    for i, entry in enumerate(data["models"]):
        where = f"models[{i}]"
        if isinstance(entry, str):
            entry = {"model": entry}
        if not isinstance(entry, dict) or "model" not in entry:
            raise DataError(str(path), loc.line(None, "models"), where,
                            "each model needs at least 'model: BACKEND:NAME'")
        allowed = {"model", "label", "params", "step", "tuning", "family", "quantization"}
        for key in entry:
            if key not in allowed:
                raise DataError(str(path), loc.line(None, "models"), f"{where}.{key}",
                                f"unknown field (expected one of: {', '.join(sorted(allowed))})")
        spec = redact(str(entry["model"]))
        try:
            parse_spec(spec)
        except Exception as exc:
            raise DataError(str(path), loc.line(None, "models"), f"{where}.model",
                            str(exc)) from None
        label = str(entry.get("label", spec))
        if label in seen:
            raise DataError(str(path), loc.line(None, "models"), f"{where}.label",
                            f"'{label}' is used twice")
        seen.add(label)
        nums: dict[str, float | None] = {}
        for key in ("params", "step"):
            v = entry.get(key)
            if isinstance(v, str):  # YAML reads 135e6 (no dot) as a string
                with contextlib.suppress(ValueError):
                    v = float(v)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                                  or not math.isfinite(v) or v < 0
                                  or (key == "params" and v == 0)):
                raise DataError(str(path), loc.line(None, "models"), f"{where}.{key}",
                                f"expected a positive number, got {v!r}")
            nums[key] = float(v) if v is not None else None
        tuning = entry.get("tuning")
        if tuning is not None and tuning not in TUNING:
            raise DataError(str(path), loc.line(None, "models"), f"{where}.tuning",
                            f"'{tuning}' is not one of: {', '.join(TUNING)}")
        models.append(SeriesModel(str(spec), label, nums["params"], nums["step"], tuning,
                                  str(entry["family"]) if "family" in entry else None,
                                  str(entry["quantization"]) if "quantization" in entry
                                  else None))
    name = str(data.get("name", path.stem))
    return Series(name, tuple(models))
