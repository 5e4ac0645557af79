"""Collecting the report's inputs: sweep folders (sweep.json), evaluate folders
(summary.json) and run folders (card.json, results/summary.json), merged into one Inputs.

Every input is checked here, while it is collected and before anything is drawn or written:
a malformed file is one DataError naming the file, the line (rows.jsonl) and the field.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mwe.checks import At
from mwe.errors import DataError, MweError
from mwe.families import FAMILIES
from mwe.report.jsonfile import field_name as _key
from mwe.report.jsonfile import load_json as _load_json
from mwe.report.methods_input import METHODS_JSON, check_orders, load_methods
from mwe.run_folder import SWEEP_JSON, ResultsFolder, RunFolder

# what each family's report section reads from rows.jsonl, and how a line naming it looks
ROW_FIELDS = {f.name: f.section.row_fields for f in FAMILIES
              if f.section is not None and f.section.row_fields}
ROW_MARKS = tuple(f'"{name}"' for name in ROW_FIELDS)
AXES = ("params", "step", "tuning")
TEXT_LABEL = " (text)"  # after a model's label, for its results scored by the replies
MODEL_KEYS = (*AXES, "model_family", "quantization", "backend")


@dataclass
class Inputs:
    """Everything the report shows, merged from the folders it was given."""

    sources: list[str] = field(default_factory=list)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)  # label -> model, axes
    results: list[dict[str, Any]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)  # those ROW_FIELDS names
    cards: dict[str, dict[str, Any]] = field(default_factory=dict)  # folder -> card
    validation: list[dict[str, Any]] = field(default_factory=list)  # validation.json files
    maps: list[dict[str, Any]] = field(default_factory=list)  # map.json's maps
    agreement: list[dict[str, Any]] = field(default_factory=list)  # sweep.json's, checked
    usage: list[dict[str, Any]] = field(default_factory=list)  # usage.csv rows, with "folder"
    reversals: list[dict[str, Any]] = field(default_factory=list)
    methods: list[dict[str, Any]] = field(default_factory=list)  # methods.json rows, labelled


RESULT_TEXT = ("model", "dataset", "family")  # required strings
AXIS_TEXT = ("tuning", "model_family", "quantization", "backend")
PCT = ("pct_matching", "ci_low", "ci_high")
R = ("pearson_r", "r_ci_low", "r_ci_high")
CARD_OBJECTS = ("counts", "label_confidence", "diversity", "estimated_accuracy", "selection",
                "sampling", "generator", "discriminator", "prompts")
CARD_NUMBERS = (("label_confidence", ("mean", "min", "max")),
                ("estimated_accuracy", ("ceiling", "floor")),
                ("diversity", ("distinct_1", "distinct_2", "distinct_3")))


@dataclass(frozen=True)
class _At:
    """Fields of the JSON read at `path` (and `line`, for JSON Lines), checked through
    `mwe.checks.At` in the report's words ("found ..."); null and "" count as missing."""

    path: Path
    line: int | None = None

    @property
    def at(self) -> At:
        return At(str(self.path), self.line, word="found")

    def error(self, fld: str | None, message: str) -> DataError:
        return self.at.error(fld, message)

    def need_obj(self, x: Any, fld: str) -> dict[str, Any]:
        return self.at.mapping(x, fld)

    def need_list(self, x: Any, fld: str) -> list[Any]:
        return self.at.listing(x, fld)

    def _missing(self, d: dict[str, Any], key: str, fld: str, what: str) -> DataError:
        return self.error(fld, "missing") if key not in d else self.at.expected(fld, what, d[key])

    def text(self, d: dict[str, Any], key: str, prefix: str, required: bool = False
             ) -> str | None:
        """A string field."""
        v = d.get(key)
        if v is None or v == "":
            if required:
                raise self._missing(d, key, _key(prefix, key), "a non-empty string")
            return None
        return self.at.string(v, _key(prefix, key))

    def number(self, d: dict[str, Any], key: str, prefix: str, *, required: bool = False,
               integer: bool = False, lo: float | None = None, hi: float | None = None,
               above: float | None = None) -> float | int | None:
        """A numeric field. NaN and infinities never pass (JSON has none: _load_json refuses
        them; a CSV's "nan" reaches here)."""
        v = d.get(key)
        fld = _key(prefix, key)
        if v is None or v == "":
            if required:
                raise self._missing(d, key, fld, "a number")
            return None
        if integer:
            return self.at.integer(v, fld, low=lo, high=hi)
        return self.at.number(v, fld, low=lo, high=hi, above=above)


def _axes(at: _At, d: dict[str, Any], prefix: str) -> dict[str, Any]:
    """A model's axes, checked: parameters > 0 (drawn on a log scale), step a number, the
    rest strings."""
    out: dict[str, Any] = {"params": at.number(d, "params", prefix, above=0),
                           "step": at.number(d, "step", prefix)}
    out.update({a: at.text(d, a, prefix) for a in AXIS_TEXT})
    return out


def _result(at: _At, x: Any, prefix: str) -> dict[str, Any]:
    """One (model, dataset) result row of summary.json or sweep.json, checked and with
    missing values as None."""
    r = dict(at.need_obj(x, prefix))
    for key in RESULT_TEXT:
        r[key] = at.text(r, key, prefix, required=True)
    r["label"] = at.text(r, "label", prefix)
    r.update(_axes(at, r, prefix))
    r["n"] = at.number(r, "n", prefix, required=True, integer=True, lo=0)
    k = at.number(r, "n_matching", prefix, integer=True, lo=0, hi=float(r["n"]))
    if k is not None and r["n"] == 0:
        raise at.error(_key(prefix, "n"), "expected at least 1 answer where n_matching is "
                                          "given, found 0")
    r["n_matching"] = k
    for key in PCT:
        r[key] = at.number(r, key, prefix, lo=0, hi=100)
    for key in PCT[1:]:  # drawn as the error bars of every % point
        if r["pct_matching"] is not None and r[key] is None:
            raise at.error(_key(prefix, key), "missing (every pct_matching needs ci_low and "
                                              "ci_high)")
    for key in R:
        r[key] = at.number(r, key, prefix, lo=-1, hi=1)
    r["mean_p_matching"] = at.number(r, "mean_p_matching", prefix, lo=0, hi=1)
    r["mean_valid_mass"] = at.number(r, "mean_valid_mass", prefix)
    r["mean_p_female_minus_male"] = at.number(r, "mean_p_female_minus_male", prefix,
                                              lo=-1, hi=1)
    _replies(at, r, prefix)
    check_orders(at.at, r, prefix)  # --orders all: position and Yes shares
    return r


def _replies(at: _At, r: dict[str, Any], prefix: str) -> None:
    """A result scored by the replies (--score text): both denominators and the unscored
    replies by reason, checked."""
    r["n_scored"] = at.number(r, "n_scored", prefix, integer=True, lo=0, hi=float(r["n"]))
    for key in ("pct_matching_all", "all_ci_low", "all_ci_high"):
        r[key] = at.number(r, key, prefix, lo=0, hi=100)
    why = r.get("unscored")
    if why is None:
        r["unscored"] = {}
        return
    reasons = at.need_obj(why, _key(prefix, "unscored"))
    r["unscored"] = {str(k): at.number(reasons, str(k), _key(prefix, "unscored"),
                                       required=True, integer=True, lo=0, hi=float(r["n"]))
                     for k in reasons}


def _results(at: _At, x: Any, fld: str) -> list[dict[str, Any]]:
    return [_result(at, r, _key(fld, i)) for i, r in enumerate(at.need_list(x, fld))]


def _row(at: _At, x: Any) -> dict[str, Any]:
    """One row of rows.jsonl that a family's section reads: the fields it uses."""
    row = at.need_obj(x, "")
    for key in ("model", "label"):
        at.text(row, key, "")
    at.text(row, "dataset", "", required=True)
    for key, kind, lo, hi in ROW_FIELDS.get(str(row.get("family")), ()):
        if kind == "text":
            at.text(row, key, "", required=True)
        else:
            at.number(row, key, "", required=True, lo=lo, hi=hi)
    return row


def _card_check(at: _At, x: Any) -> dict[str, Any]:
    """A card.json: the fields the report reads, each of the shape it expects."""
    c = dict(at.need_obj(x, ""))
    c["name"] = at.text(c, "name", "") or "dataset"
    for key in CARD_OBJECTS:  # null counts as absent
        c[key] = {} if c.get(key) is None else at.need_obj(c[key], key)
    for label, steps in c["counts"].items():
        at.need_obj(steps, _key("counts", label))
    for key, fields in CARD_NUMBERS:
        for f in fields:
            at.number(c[key], f, key)
    hist = c["label_confidence"].get("histogram")
    if hist is not None:
        for i, b in enumerate(at.need_list(hist, "label_confidence.histogram")):
            where = f"label_confidence.histogram[{i}]"
            at.need_obj(b, where)
            for f in ("from", "to"):
                at.number(b, f, where, required=True, lo=0, hi=1)
            at.number(b, "count", where, required=True, integer=True, lo=0)
    return c


def _load_object(path: Path, key: str) -> tuple[_At, dict[str, Any]]:
    """A JSON file that must be an object holding `key`."""
    at = _At(path)
    x = at.at.mapping(_load_json(path), None, f"a JSON object with a '{key}' list")
    if key not in x:
        raise at.error(key, "missing")
    return at, x


def _load_card(folder: Path) -> dict[str, Any] | None:
    """The folder's card.json (`read_card`: optional), its fields checked; None if none."""
    run = RunFolder(folder)
    card = run.read_card(optional=True)
    return None if card is None else _card_check(_At(run.card_json), card)


def _rows(path: Path) -> Iterable[dict[str, Any]]:
    """The rows a family's section reads (see ReportSection.row_fields), skipping the rest
    unparsed: a line that does not name such a family is not even decoded."""
    if not path.is_file():
        return
    i = 0
    try:
        with path.open(encoding="utf-8") as fh:
            for i, line in enumerate(fh, 1):
                if not any(mark in line for mark in ROW_MARKS):
                    continue
                at = _At(path, i)
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise at.error(None, f"not valid JSON: {exc.msg} (column {exc.colno})"
                                   ) from exc
                except RecursionError as exc:
                    raise at.error(None, "not valid JSON: nested too deeply") from exc
                if isinstance(row, dict) and row.get("family") in ROW_FIELDS:
                    if row.get("unscored") is not None:
                        continue  # a reply read as no answer: none of the family's fields
                    yield _row(at, row)
                else:
                    at.at.mapping(row, None, "a JSON object")
    except UnicodeDecodeError as exc:
        raise DataError(str(path), i + 1, None, "not UTF-8 text") from exc
    except OSError as exc:
        raise DataError(str(path), None, None, f"cannot read: {exc.strerror or exc}") from exc


def _load_usage(path: Path, folder: str) -> list[dict[str, Any]]:
    """usage.csv: tokens and estimated cost per stage and model, each number checked."""
    import csv

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(str(path), None, None, f"cannot read: {exc}") from None
    out = []
    for n, rec in enumerate(csv.DictReader(text.splitlines()), 2):
        at = _At(path, n)
        r: dict[str, Any] = {"folder": folder, "stage": rec.get("stage") or "",
                             "model": rec.get("model") or "", "counted": rec.get("counted") or ""}
        for key in ("calls", "tokens_in", "tokens_out"):  # a cell is text
            r[key] = None if rec.get(key) in (None, "") else \
                at.at.integer(rec[key], key, low=0, text=True)
        cost = rec.get("cost_usd")
        r["cost_usd"] = None if cost in (None, "") else \
            at.at.number(cost, "cost_usd", low=0, text=True)
        out.append(r)
    return out


def _rows_of(at: _At, x: Any, name: str, text: tuple[str, ...], counts: tuple[str, ...]
             ) -> list[dict[str, Any]]:
    """A list of sweep.json rows: `text` fields required, `counts` whole numbers >= 0, and
    share with its interval as fractions."""
    out = []
    for i, r in enumerate(at.need_list(x, name)):
        where = _key(name, i)
        r = dict(at.need_obj(r, where))
        for key in text:
            r[key] = at.text(r, key, where, required=True)
        for key in counts:
            r[key] = at.number(r, key, where, integer=True, lo=0)
        for key in ("share", "ci_low", "ci_high"):
            r[key] = at.number(r, key, where, lo=0, hi=1)
        out.append(r)
    return out


def _agreement(at: _At, x: Any) -> list[dict[str, Any]]:
    return _rows_of(at, x, "agreement", ("predictor", "target"),
                    ("datasets", "agree", "both_prefer", "both_disprefer"))


def _reversals(at: _At, x: Any) -> list[dict[str, Any]]:
    rows = _rows_of(at, x, "reversals", (), ("models", "steps", "pairs", "reversals"))
    for i, r in enumerate(rows):  # "" names the summary row over all datasets
        r["dataset"] = at.text(r, "dataset", _key("reversals", i)) or ""
    return rows


def _load_maps(path: Path) -> list[dict[str, Any]]:
    """map.json from mwe map: each map's fields the section shows, checked."""
    at, v = _load_object(path, "maps")
    out = []
    for i, m in enumerate(at.need_list(v["maps"], "maps")):
        where = _key("maps", i)
        m = dict(at.need_obj(m, where))
        for key in ("dataset", "family", "projection"):
            at.text(m, key, where, required=True)
        m["models"] = [str(x) for x in at.need_list(m.get("models") or [], _key(where, "models"))]
        for j, c in enumerate(at.need_list(m.get("clusters"), _key(where, "clusters"))):
            cw = _key(_key(where, "clusters"), j)
            c = at.need_obj(c, cw)
            at.number(c, "cluster", cw, required=True, integer=True, lo=0)
            at.number(c, "size", cw, required=True, integer=True, lo=0)
            at.number(c, "majority_share", cw, lo=0, hi=1)
            at.number(c, "mean_label_confidence", cw, lo=0, hi=1)
            at.need_list(c.get("names"), _key(cw, "names"))
            at.text(c, "named_by", cw, required=True)
            for k in at.need_obj(c.get("labels"), _key(cw, "labels")):
                at.number(c["labels"], k, _key(cw, "labels"), integer=True, lo=0)
            pct = at.need_obj(c.get("pct_matching"), _key(cw, "pct_matching"))
            for k in pct:
                at.number(pct, k, _key(cw, "pct_matching"), lo=0, hi=100)
        n_clusters = len(m["clusters"])
        for j, p in enumerate(at.need_list(m.get("points"), _key(where, "points"))):
            pw = _key(_key(where, "points"), j)
            p = at.need_obj(p, pw)
            for key in ("x", "y"):
                at.number(p, key, pw, required=True)
            at.number(p, "cluster", pw, required=True, integer=True, lo=0, hi=n_clusters - 1)
            at.number(p, "confidence", pw, lo=0, hi=1)
            at.number(p, "line", pw, integer=True, lo=0)
            at.text(p, "label", pw, required=True)
            at.at.string(p.get("text"), _key(pw, "text"))
        out.append(m)
    return out


def _load_validation(path: Path) -> dict[str, Any]:
    """validation.json from mwe validate stats: its results, each checked as shown."""
    at, v = _load_object(path, "results")
    results = []
    for i, r in enumerate(at.need_list(v["results"], "results")):
        where = _key("results", i)
        r = dict(at.need_obj(r, where))
        r["scope"] = at.text(r, "scope", where, required=True)
        r["family"] = at.text(r, "family", where, required=True)
        r["dataset"] = at.text(r, "dataset", where)
        for key in ("n_items", "n_raters"):
            r[key] = at.number(r, key, where, integer=True, lo=0)
        for key in ("relevance_mean", "relevance_sd"):
            r[key] = at.number(r, key, where, lo=0, hi=5)
        for key in ("label_correct", "label_correct_ci_low", "label_correct_ci_high",
                    "agree_2of3", "ambiguous_none_share"):
            r[key] = at.number(r, key, where, lo=0, hi=1)
        for key in ("fleiss_kappa", "kappa_ci_low", "kappa_ci_high", "krippendorff_alpha",
                    "confidence_r", "confidence_r_ci_low", "confidence_r_ci_high"):
            r[key] = at.number(r, key, where, lo=-1, hi=1)
        amb = r.get("ambiguous")
        if amb is not None:
            for k in at.need_obj(amb, _key(where, "ambiguous")):
                at.number(amb, k, _key(where, "ambiguous"), integer=True, lo=0)
        results.append(r)
    paper = v.get("paper")
    return {"results": results, "paper": at.need_obj(paper, "paper") if paper else {}}


def collect(paths: Sequence[str | Path]) -> Inputs:
    """Read sweep folders (sweep.json), evaluate folders (summary.json) and run folders
    (card.json, results/summary.json), checking every file as it is read."""
    got = Inputs()
    folders = [Path(p) for p in paths]
    for p in folders:
        if not p.is_dir():
            raise MweError(f"{p}: not a folder (give sweep, evaluate or run folders)")
    sweeps: dict[Path, tuple[_At, dict[str, Any]]] = {}
    for p in folders:
        if (p / SWEEP_JSON).is_file():
            at, sw = _load_object(p / SWEEP_JSON, "results")
            sw["results"] = _results(at, sw["results"], "results")
            models = []
            for i, m in enumerate(at.need_list(sw.get("models") or [], "models")):
                where = _key("models", i)
                m = dict(at.need_obj(m, where))
                m["model"] = at.text(m, "model", where, required=True)
                m["label"] = at.text(m, "label", where, required=True)
                models.append({**m, **_axes(at, m, where)})
            datasets = []
            for i, d in enumerate(at.need_list(sw.get("datasets") or [], "datasets")):
                d = at.need_obj(d, _key("datasets", i))
                datasets.append({**d, "path": at.text(d, "path", _key("datasets", i))})
            sw["models"], sw["datasets"] = models, datasets
            sweeps[p] = (at, sw)
            got.agreement += _agreement(at, sw.get("agreement") or [])
            got.reversals += _reversals(at, sw.get("reversals") or [])
    # Series labels first: a model a series labelled keeps that label wherever it appears,
    # so one model is one column.
    named: dict[str, set[str]] = defaultdict(set)
    for _, sw in sweeps.values():
        for m in sw["models"]:
            got.models.setdefault(m["label"], {**m})
            named[m["model"]].add(m["label"])
    rename = {spec: next(iter(labels)) for spec, labels in named.items() if len(labels) == 1}
    seen: set[tuple[str, str]] = set()

    def add(results: list[dict[str, Any]], rows_path: Path) -> None:
        won = set()
        for r in results:
            if r["label"] is None:
                r["label"] = rename.get(r["model"], r["model"])
            if r.get("n_scored") is not None:  # scored by the replies: apart from log-probs
                r["label"] += TEXT_LABEL
            key = (r["label"], r["dataset"])
            if key in seen:  # the same model and dataset from two inputs: keep the first
                continue
            seen.add(key)
            won.add(key)
            m = got.models.setdefault(r["label"], {"model": r["model"], "label": r["label"],
                                                   **{a: r.get(a) for a in MODEL_KEYS}})
            for a in MODEL_KEYS:  # a series' axes reach results read from other folders
                if r.get(a) in (None, ""):
                    r[a] = m.get(a)
            got.results.append(r)
        for row in _rows(rows_path):
            if row.get("label") in (None, ""):
                row["label"] = rename.get(row.get("model") or "", row.get("model"))
            if row.get("score") == "text":
                row["label"] = f"{row['label']}{TEXT_LABEL}"
            if (row["label"], row.get("dataset")) in won:
                got.rows.append(row)

    for p in folders:
        found = False
        if p in sweeps:
            _, sw = sweeps[p]
            add(sw["results"], ResultsFolder(p).rows)
            for d in sw["datasets"]:
                if not d.get("path"):
                    continue
                folder = Path(d["path"]).parent
                if (card := _load_card(folder)) is not None:
                    got.cards.setdefault(str(folder.resolve()), card)
            found = True
        else:
            for results in (ResultsFolder(p), RunFolder(p).results):
                if results.summary_json.is_file():
                    at, summary = _load_object(results.summary_json, "summary")
                    add(_results(at, summary["summary"], "summary"), results.rows)
                    if (both := results.summary_json.parent / METHODS_JSON).is_file():
                        got.methods += [{**m, "label": rename.get(m["model"], m["model"])}
                                        for m in load_methods(both)]
                    found = True
        if (card := _load_card(p)) is not None:
            got.cards.setdefault(str(p.resolve()), card)
            found = True
        if RunFolder(p).usage.is_file():
            got.usage += _load_usage(RunFolder(p).usage, str(p))
        if (p / "map.json").is_file():
            got.maps.extend(_load_maps(p / "map.json"))
            found = True
        if (p / "validation.json").is_file():
            got.validation.append(_load_validation(p / "validation.json"))
            found = True
        if not found:
            raise MweError(f"{p}: no sweep.json, summary.json, card.json, validation.json or "
                           "map.json: not a sweep, evaluate, run, validation or map folder")
        got.sources.append(str(p))
    return got
