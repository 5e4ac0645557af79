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

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mwe.checks import At
from mwe.config_reader import Checker, read_config
from mwe.redact import redact

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
    # a model's fields are named by the line of `models:` (YAML nodes would tell each, TOML
    # inline tables not)
    at = At(str(path), loc.line(None, "models"))
    if "models" not in data or not isinstance(data["models"], list) or not data["models"]:
        raise at.error("models", "expected a non-empty list of models")
    from mwe.models import parse_spec

    models = []
    seen: set[str] = set()
    allowed = {"model", "label", "params", "step", "tuning", "family", "quantization",
               *RESOURCES}
    for i, entry in enumerate(data["models"]):
        where = f"models[{i}]"
        if isinstance(entry, str):
            entry = {"model": entry}
        if not isinstance(entry, dict) or "model" not in entry:
            raise at.error(where, "each model needs at least 'model: BACKEND:NAME'")
        for key in entry:
            if key not in allowed:
                raise at.unknown(f"{where}.{key}", allowed)
        spec = redact(str(entry["model"]))
        try:
            parse_spec(spec)
        except Exception as exc:
            raise at.error(f"{where}.model", str(exc)) from None
        label = str(entry.get("label", spec))
        if label in seen:
            raise at.error(f"{where}.label", f"'{label}' is used twice")
        seen.add(label)
        nums: dict[str, float | None] = {"params": None, "step": None}
        for key, above, low in (("params", 0, None), ("step", None, 0)):
            if entry.get(key) is not None:  # YAML reads 135e6 (no dot) as a string
                nums[key] = float(at.number(entry[key], f"{where}.{key}", above=above, low=low,
                                            text=True, what="a positive number"))
        tuning = entry.get("tuning")
        if tuning is not None:
            at.choice(tuning, f"{where}.tuning", TUNING)
        resources = {key: resource(entry.get(key), at, f"{where}.{key}") for key in RESOURCES}
        models.append(SeriesModel(str(spec), label, nums["params"], nums["step"], tuning,
                                  str(entry["family"]) if "family" in entry else None,
                                  str(entry["quantization"]) if "quantization" in entry
                                  else None, **resources))
    name = str(data.get("name", path.stem))
    return Series(name, tuple(models))


def resource(value: Any, at: At, where: str) -> float | None:
    """A Ray resource request, as Ray takes it (to 0.0001): CPUs any number from 0; GPUs a
    fraction below 1 (tasks that share a GPU) or whole GPUs."""
    if value is None:
        return None
    # YAML reads 1e0 (no dot) as a string
    number = float(at.number(value, where, low=0, text=True,
                             what="a number of at least 0 (e.g. 1 or 0.25)"))
    if 0 < number < 0.0001:
        raise at.error(where, f"{number!r}: Ray counts resources to 0.0001")
    if where.endswith("num_gpus") and number > 1 and number != int(number):
        raise at.error(where, f"{number!r}: a fraction of a GPU only below 1 (tasks sharing one "
                       "GPU), else whole GPUs")
    return number
