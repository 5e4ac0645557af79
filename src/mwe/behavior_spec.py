"""Behavior specs: one small YAML or TOML file that says what evaluation to write and how.

    name: deceive-users
    family: ...                     # a family's name (mwe.families.FAMILIES)
    description: is willing to deceive its users to reach its goals
    generator: llamacpp:smollm2-135m-instruct
    discriminator: hf:gemma3-270m
    targets: [hf:smollm2-135m-instruct, hf:gemma3-270m]
    seed: 0
    generate: {per_label: 200, prompt: chat, temperature: 1.4, top_p: 0.975, max_tokens: 48}
    filter: {top_k: 500, format: human-assistant, calibration: none}

Every problem is reported with the file, the line (where the parser can tell) and the field.

This module knows no family: `read_spec` is given the families' declarations (`SpecRules`,
a family's `mwe.family.SpecSchema`), so the families can import the spec record without an
import cycle. `mwe.spec.load_spec` reads a spec against the registered families.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, Protocol

from mwe.config_reader import Checker, read_config
from mwe.errors import DataError
from mwe.orders import ORDERS
from mwe.prompts import FORMATS

REBALANCE = ("none", "cluster")
PROMPT_STYLES = ("human-assistant", "chat")
DEDUP = ("normalized", "embedding")
CALIBRATION = ("none", "batch")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# top-level settings a family may not read (SpecSchema.spec_fields), besides generate.* and filter.*
SETTINGS = ("discriminator", "instruction")
# evaluate.score and --score: a method, or log-probs (or sampled answers) and replies both
SCORES = ("logprob", "sample", "text", "logprob,text", "sample,text")
# evaluate: settings only free-text scoring reads, and their defaults
TEXT_DEFAULTS: dict[str, Any] = {"max_tokens": 256, "samples": 1, "temperature": 0.0}
# the top-level fields every spec may have (besides the families' own, SpecSchema.options)
SPEC_FIELDS = frozenset({"name", "family", "description", "generator", "discriminator",
                         "targets", "seed", "gold", "instruction", "bank", "occupations",
                         "generate", "filter", "evaluate"})


@dataclass(frozen=True)
class GenerateSettings:
    per_label: int = 100  # samples drawn per label (paper: 5,000)
    prompt: str = "human-assistant"  # or "chat": the generator's chat template
    temperature: float = 1.4
    top_p: float = 0.975
    max_tokens: int = 48
    batch: int = 64  # sequences sampled per model call (and per cache entry)
    dedup: str = "normalized"  # or "embedding": also drop near-duplicates by MiniLM cosine
    similarity: float = 0.9  # cosine at or above which two statements are near-duplicates
    shots: int = 5  # few-shot families: gold examples per prompt
    min_lines: int = 3  # few-shot families: a question needs this many non-empty lines


@dataclass(frozen=True)
class FilterSettings:
    top_k: int = 500  # kept per label at most (paper: 500)
    format: str = "human-assistant"  # how the discriminator sees its prompt
    balance: bool = True  # cut the larger label down to the smaller one
    calibration: str = "none"  # or "batch": centre the discriminator's log-odds on their mean
    # "cluster": after selection, down-sample the over-represented label within each k-means
    # cluster of the kept rows (the paper's suggestion from its dataset explorer)
    rebalance: str = "none"
    clusters: int = 10  # k for rebalance: cluster


@dataclass(frozen=True)
class Option:
    """A spec field only one family takes (e.g. the user attributes it varies)."""

    kind: Literal["strings", "integer"]  # a list of distinct non-empty strings, or a whole number
    default: Any
    help: str
    low: int = 1  # an integer's least value
    high: int | None = None  # an integer's greatest value, if any
    limit: str = ""  # why `high` is the greatest, for the error message


class SpecCheck(Protocol):
    """What `SpecRules.check_spec` reports through: located errors and warnings on spec
    fields ('questions', 'filter.top_k'), naming the spec's file and the field's line."""

    def error(self, field_name: str, message: str) -> DataError: ...

    def warn(self, field_name: str, message: str) -> None: ...


class SpecRules(Protocol):
    """What a family declares about its specs (a `mwe.family.SpecSchema`):
    given to `read_spec` and kept in the spec, so that reading and writing a spec never look
    a family up in the registry."""

    @property
    def name(self) -> str: ...
    @property
    def data_field(self) -> str | None: ...
    @property
    def data_help(self) -> str: ...
    @property
    def required(self) -> tuple[str, ...]: ...
    @property
    def default_description(self) -> str: ...
    @property
    def generate_defaults(self) -> Mapping[str, Any]: ...
    @property
    def filter_defaults(self) -> Mapping[str, Any]: ...
    @property
    def options(self) -> Mapping[str, Option]: ...
    @property
    def spec_fields(self) -> frozenset[str] | None: ...

    def check_spec(self, spec: BehaviorSpec, check: SpecCheck) -> None: ...


@dataclass(frozen=True)
class BehaviorSpec:
    name: str
    family: str
    description: str
    generator: str
    discriminator: str
    targets: tuple[str, ...] = ()
    seed: int = 0
    # a family's input file, named by the field its SpecSchema.data_field says
    gold: str | None = None  # JSONL of gold questions (matching answer (A))
    instruction: str | None = None  # overrides a few-shot family's default instruction
    bank: str | None = None  # a question bank (.yaml or .jsonl)
    occupations: str | None = None  # the BLS occupation table (released format)
    generate: GenerateSettings = field(default_factory=GenerateSettings)
    filter: FilterSettings = field(default_factory=FilterSettings)
    evaluate_format: str = "human-assistant"
    # how targets are scored: "logprob" (the paper's), or "text" (the reply read as an
    # answer: mwe.pipeline.replies), with the reply settings text scoring reads
    evaluate_score: str = "logprob"
    evaluate_text: dict[str, Any] = field(default_factory=dict)
    # a model reading the replies the rules cannot (mwe.judge), and the answer orders
    evaluate_judge: str | None = None
    evaluate_orders: str = "given"
    source: str = ""  # the file it was read from
    # the family's own fields (SpecSchema.options), as given or their defaults
    options: dict[str, Any] = field(default_factory=dict)
    # what the family declares about its specs (its SpecSchema): defaults, fields, input file
    rules: SpecRules = field(kw_only=True, compare=False, repr=False)

    def option(self, name: str) -> Any:
        """A field of the family's own (SpecSchema.options): as the spec gives it, or its default."""
        if name in self.options:
            return self.options[name]
        return self.rules.options[name].default

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "rules"}
        d["generate"], d["filter"] = asdict(self.generate), asdict(self.filter)
        d["targets"] = list(self.targets)
        d.pop("source")
        d["evaluate"] = {"format": d.pop("evaluate_format")}
        score, text = d.pop("evaluate_score"), d.pop("evaluate_text")
        judge, orders = d.pop("evaluate_judge"), d.pop("evaluate_orders")
        if score != "logprob":  # listed only where used: log-prob runs' spec.json stays
            d["evaluate"].update({"score": score, **text})
        if judge is not None:
            d["evaluate"]["judge"] = judge
        if orders != "given":
            d["evaluate"]["orders"] = orders
        d.pop("options")
        if self.filter.rebalance == "none":  # listed only where used: older runs' spec.json
            d["filter"].pop("rebalance")     # stays the same
            d["filter"].pop("clusters")
        fam = self.rules
        d.update({k: self.option(k) for k in fam.options})
        if fam.spec_fields is not None:  # only what the family reads, so spec.json reloads
            for section in ("generate", "filter"):
                d[section] = {k: v for k, v in d[section].items()
                              if f"{section}.{k}" in fam.spec_fields}
            for key in SETTINGS:
                if key not in fam.spec_fields:
                    d.pop(key, None)
        return {k: v for k, v in d.items() if v is not None and v != ""}

    def gold_path(self) -> Path | None:
        return self._resolve(self.gold)

    def data_path(self) -> Path | None:
        """The family's input file (gold questions, question bank or occupation table)."""
        key = self.rules.data_field
        return self._resolve(getattr(self, key)) if key else None

    def _resolve(self, value: str | None) -> Path | None:
        if value is None:
            return None
        p = Path(value).expanduser()
        return p if p.is_absolute() else (Path(self.source).parent / p).resolve()

    def resolved_dict(self) -> dict[str, Any]:
        """to_dict with the input file as an absolute path, for spec.json in a run folder."""
        d = self.to_dict()
        key = self.rules.data_field
        if key and d.get(key) is not None:
            d[key] = str(self.data_path())
        return d


def read_spec(path: str | Path, families: Sequence[SpecRules]) -> BehaviorSpec:
    """Read and validate a spec for one of `families`; a bad one raises DataError naming
    file, line and field."""
    path = Path(path)
    data, loc = read_config(path)
    return spec_from_data(data, Checker(path, loc), path, families)


def spec_from_data(data: dict[str, Any], c: Checker, path: Path,
                   families: Sequence[SpecRules]) -> BehaviorSpec:
    """Validate a spec's fields as read from `path` (its `source`, against which relative
    input files resolve); `c` locates every refusal, so a suite can name its own lines."""
    by_name = {f.name: f for f in families}
    own = {name for f in families for name in f.options}
    c.table(data, None, set(SPEC_FIELDS) | own)
    for key in ("name", "family", "generator"):
        if key not in data:  # the checker finds no line for an absent key (a suite: its item's)
            raise c.fail(None, key, "missing (every spec needs name, family, "
                         "generator; most also description and discriminator)")
    name = c.string(data, None, "name")
    if not NAME_RE.match(name):
        raise c.fail(None, "name", f"'{name}' must be letters, digits, '.', '_' or '-' "
                     "(it names the dataset file)")
    family = c.string(data, None, "family", tuple(by_name))
    fam = by_name[family]
    for key in fam.required:
        if key not in data:
            raise c.fail(None, key, f"missing (a {family} spec needs it)")
    description = c.string(data, None, "description") if "description" in data else \
        fam.default_description
    models = {"generator": c.string(data, None, "generator"),
              "discriminator": c.string(data, None, "discriminator")
              if "discriminator" in data else ""}
    targets = data.get("targets", [])
    if isinstance(targets, str):
        targets = [targets]
    if not isinstance(targets, list) or not all(isinstance(t, str) and t for t in targets):
        raise c.fail(None, "targets", "expected a list of model names (BACKEND:NAME)")
    from mwe.models import parse_spec
    from mwe.redact import redact

    # credentials in a model's URL are never kept: the backends drop them, and every file
    # that names a model (spec.json, cards, results) must not show them
    models = {k: redact(v) for k, v in models.items()}
    targets = [redact(t) for t in targets]
    for key, value in [*((k, v) for k, v in models.items() if v),
                       *(("targets", t) for t in targets)]:
        try:
            parse_spec(value)
        except Exception as exc:
            raise c.fail(None, key, str(exc)) from None
    seed = c.integer(data, None, "seed", 0) if "seed" in data else 0
    gold = c.string(data, None, "gold") if "gold" in data else None
    bank = c.string(data, None, "bank") if "bank" in data else None
    occupations = c.string(data, None, "occupations") if "occupations" in data else None
    instruction = c.string(data, None, "instruction") if "instruction" in data else None
    options: dict[str, Any] = {}
    for key in sorted(own & set(data)):
        if key not in fam.options:
            takers = [f.name for f in families if key in f.options]
            raise c.fail(None, key, f"only {', '.join(takers)} specs take '{key}'")
        opt = fam.options[key]
        if opt.kind == "integer":
            options[key] = c.integer(data, None, key, opt.low, opt.high, opt.limit)
        else:
            options[key] = c.strings(data, None, key)

    gen = data.get("generate", {})
    if not isinstance(gen, dict):
        raise c.fail(None, "generate", "expected a table of settings")
    g_defaults = replace(GenerateSettings(), **fam.generate_defaults)
    c.table(gen, "generate", set(asdict(g_defaults)))
    g: dict[str, Any] = {}
    for key in ("per_label", "max_tokens", "batch", "shots", "min_lines"):
        if key in gen:
            g[key] = c.integer(gen, "generate", key, 1)
    for key, choices in (("prompt", PROMPT_STYLES), ("dedup", DEDUP)):
        if key in gen:
            g[key] = c.string(gen, "generate", key, choices)
    if "temperature" in gen:
        g["temperature"] = c.number(gen, "generate", "temperature", 0.0, 5.0)
    if "top_p" in gen:
        g["top_p"] = c.number(gen, "generate", "top_p", 0.0, 1.0, low_open=True)
    if "similarity" in gen:
        g["similarity"] = c.number(gen, "generate", "similarity", 0.0, 1.0, low_open=True)
    generate = replace(g_defaults, **g)

    flt = data.get("filter", {})
    if not isinstance(flt, dict):
        raise c.fail(None, "filter", "expected a table of settings")
    c.table(flt, "filter", set(asdict(FilterSettings())))
    f_defaults = replace(FilterSettings(), **fam.filter_defaults)
    f: dict[str, Any] = {}
    if "top_k" in flt:
        f["top_k"] = c.integer(flt, "filter", "top_k", 1)
    if "format" in flt:
        f["format"] = c.string(flt, "filter", "format", PROMPT_STYLES)
    if "calibration" in flt:
        f["calibration"] = c.string(flt, "filter", "calibration", CALIBRATION)
    if "balance" in flt:
        f["balance"] = c.boolean(flt, "filter", "balance")
    if "rebalance" in flt:
        f["rebalance"] = c.string(flt, "filter", "rebalance", REBALANCE)
    if "clusters" in flt:
        f["clusters"] = c.integer(flt, "filter", "clusters", 1)

    if fam.spec_fields is not None:
        given = [*(k for k in SETTINGS if k in data), *(f"generate.{k}" for k in gen),
                 *(f"filter.{k}" for k in flt)]
        for key in given:
            if key not in fam.spec_fields:
                raise c.error(key, f"a {family} spec does not use it, so it would be silently "
                              f"ignored; remove it (the settings it uses: "
                              f"{', '.join(sorted(fam.spec_fields))})")

    ev = data.get("evaluate", {})
    if not isinstance(ev, dict):
        raise c.fail(None, "evaluate", "expected a table of settings")
    c.table(ev, "evaluate", {"format", "score", "judge", "orders", *TEXT_DEFAULTS})
    fmt = c.string(ev, "evaluate", "format", FORMATS) if "format" in ev else "human-assistant"
    score = c.string(ev, "evaluate", "score", SCORES) if "score" in ev else "logprob"
    replies = "text" in score.split(",")
    text: dict[str, Any] = {}
    for key, default in [*TEXT_DEFAULTS.items(), ("judge", None)]:
        if key in ev and not replies:
            raise c.fail("evaluate", key, "only --score text reads it (set evaluate.score: "
                         "text, or remove it)")
        if key == "judge":
            continue
        if replies:
            text[key] = (c.number(ev, "evaluate", key, 0.0, 2.0) if key == "temperature"
                         else c.integer(ev, "evaluate", key, 1)) if key in ev else default

    spec = BehaviorSpec(
        name=name, family=family, description=description, generator=models["generator"],
        discriminator=models["discriminator"], targets=tuple(targets), seed=seed, gold=gold,
        instruction=instruction, bank=bank, occupations=occupations, generate=generate,
        filter=replace(f_defaults, **f),
        evaluate_format=fmt, evaluate_score=score, evaluate_text=text,
        evaluate_judge=c.string(ev, "evaluate", "judge") if "judge" in ev else None,
        evaluate_orders=c.string(ev, "evaluate", "orders", ORDERS) if "orders" in ev
        else "given", source=str(path),
        options=options, rules=fam,
    )
    for other in families:
        data_key = other.data_field
        if data_key is None:
            continue
        value = {"gold": gold, "bank": bank, "occupations": occupations}[data_key]
        if other is fam:
            if value is None:
                raise c.fail(None, data_key, f"{family} needs '{data_key}': {fam.data_help}")
            dp = spec.data_path()
            assert dp is not None
            if not dp.is_file():
                raise c.fail(None, data_key, f"no such file: {dp}")
        elif value is not None and data_key != fam.data_field:
            raise c.fail(None, data_key, f"only {other.name} specs take '{data_key}'")
    fam.check_spec(spec, c)
    return spec
