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
        num_gpus: 0.25           # `mwe sweep --ray`: what each of its tasks asks Ray for
        num_cpus: 2              # (ignored by the local sweep; see mwe.pipeline.ray_sweep)

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
# resource requests of a model's Ray tasks (`mwe sweep --ray`); not axes, not in any output
RESOURCES = ("num_cpus", "num_gpus")


@dataclass(frozen=True)
class SeriesModel:
    model: str
    label: str
    params: float | None = None
    step: float | None = None
    tuning: str | None = None
    family: str | None = None
    quantization: str | None = None
    num_cpus: float | None = None
    num_gpus: float | None = None

    def axes(self) -> dict[str, Any]:
        return {"params": self.params, "step": self.step, "tuning": self.tuning,
                "model_family": self.family, "quantization": self.quantization}

    def resources(self) -> dict[str, float]:
        """The Ray resource requests the series file gives (num_cpus, num_gpus), no others."""
        given = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}
        return {k: v for k, v in given.items() if v is not None}


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
        allowed = {"model", "label", "params", "step", "tuning", "family", "quantization",
                   *RESOURCES}
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
        resources = {key: resource(entry.get(key), path, loc.line(None, "models"),
                                   f"{where}.{key}") for key in RESOURCES}
        models.append(SeriesModel(str(spec), label, nums["params"], nums["step"], tuning,
                                  str(entry["family"]) if "family" in entry else None,
                                  str(entry["quantization"]) if "quantization" in entry
                                  else None, **resources))
    name = str(data.get("name", path.stem))
    return Series(name, tuple(models))


def resource(value: Any, path: Path, line: int | None, where: str) -> float | None:
    """A Ray resource request, as Ray takes it (to 0.0001): CPUs any number from 0; GPUs a
    fraction below 1 (tasks that share a GPU) or whole GPUs."""
    if value is None:
        return None
    if isinstance(value, str):  # YAML reads 1e0 (no dot) as a string
        with contextlib.suppress(ValueError):
            value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0:
        raise DataError(str(path), line, where,
                        f"expected a number of at least 0 (e.g. 1 or 0.25), got {value!r}")
    if 0 < value < 0.0001:
        raise DataError(str(path), line, where, f"{value!r}: Ray counts resources to 0.0001")
    if where.endswith("num_gpus") and value > 1 and value != int(value):
        raise DataError(str(path), line, where,
                        f"{value!r}: a fraction of a GPU only below 1 (tasks sharing one GPU), "
                        "else whole GPUs")
    return float(value)
