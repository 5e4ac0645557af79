"""Report: one self-contained HTML file (every image embedded) from sweep, evaluate and run
folders, with every figure also saved as a PNG beside it.

    mwe report runs/sweep runs/demo --out report.html
      -> report.html, report-plots/*.png   (NAME.html -> NAME-plots/: reports never share)

Every input file is checked as it is read; a malformed one is a DataError naming the file,
line and field, and nothing is written. Rerunning into the same --out replaces the figures:
PNGs an earlier run wrote there and this one did not are removed.

Sections, always in this order and always present (a section with nothing to show says so):
overview, families, heatmap, lines, trends, winogenerated, sycophancy, cards.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mwe import __version__
from mwe.errors import DataError, MweError
from mwe.families.sycophancy import CONTROL_SUFFIX
from mwe.io import atomic_open
from mwe.stats import fisher_interval, pearson_r
from mwe.trends import strongest, trend_rows

SECTIONS = [
    ("overview", "Overview"),
    ("families", "Per-family summary"),
    ("heatmap", "% matching: datasets × models"),
    ("lines", "Each dataset across the series"),
    ("trends", "Trends"),
    ("winogenerated", "Winogenerated: gender bias vs labor statistics"),
    ("sycophancy", "Sycophancy: with and without a biography"),
    ("cards", "Dataset cards"),
]
AXES = ("params", "step", "tuning")
MODEL_KEYS = (*AXES, "model_family", "quantization", "backend")
TUNING_ORDER = ("base", "tuned", "rlhf", "pm")
LINE_PAGE = 48  # datasets per line-plot image


@dataclass
class Inputs:
    """Everything the report shows, merged from the folders it was given."""

    sources: list[str] = field(default_factory=list)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)  # label -> model, axes
    results: list[dict[str, Any]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)  # winogenerated + sycophancy only
    cards: dict[str, dict[str, Any]] = field(default_factory=dict)  # folder -> card


# --- reading and checking the inputs ------------------------------------------------------
# Every input is checked here, while it is collected and before anything is drawn or written:
# a malformed file is one DataError naming the file, the line (rows.jsonl) and the field.

RESULT_TEXT = ("model", "dataset", "family")  # required strings
AXIS_TEXT = ("tuning", "model_family", "quantization", "backend")
PCT = ("pct_matching", "ci_low", "ci_high")
R = ("pearson_r", "r_ci_low", "r_ci_high")
CARD_OBJECTS = ("counts", "label_confidence", "diversity", "estimated_accuracy", "selection",
                "sampling", "generator", "discriminator", "prompts")
CARD_NUMBERS = (("label_confidence", ("mean", "min", "max")),
                ("estimated_accuracy", ("ceiling", "floor")),
                ("diversity", ("distinct_1", "distinct_2", "distinct_3")))


def _found(x: Any) -> str:
    """What a value is, for an error message: one line, shortened."""
    if x is None:
        return "null"
    if isinstance(x, bool):
        return f"a boolean ({json.dumps(x)})"
    if isinstance(x, (int, float)):
        return f"a number ({x!r})"
    if isinstance(x, str):
        text = json.dumps(x, ensure_ascii=False)
        return f"a string ({text if len(text) <= 40 else text[:39] + '…'})"
    return "a list" if isinstance(x, list) else "an object" if isinstance(x, dict) else \
        type(x).__name__


def _key(prefix: str, key: str | int) -> str:
    """The field's name in an error: summary[3].dataset, counts."label with spaces"."""
    if isinstance(key, int):
        return f"{prefix}[{key}]"
    name = key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key, ensure_ascii=False)
    return f"{prefix}.{name}" if prefix else name


@dataclass(frozen=True)
class _At:
    """Where a value was read: the file, and the line for JSON Lines."""

    path: Path
    line: int | None = None

    def error(self, fld: str | None, message: str) -> DataError:
        return DataError(str(self.path), self.line, fld or None, message)

    def need_obj(self, x: Any, fld: str) -> dict[str, Any]:
        if not isinstance(x, dict):
            raise self.error(fld, f"expected an object, found {_found(x)}")
        return x

    def need_list(self, x: Any, fld: str) -> list[Any]:
        if not isinstance(x, list):
            raise self.error(fld, f"expected a list, found {_found(x)}")
        return x

    def text(self, d: dict[str, Any], key: str, prefix: str, required: bool = False
             ) -> str | None:
        """A string field; null and "" count as missing."""
        v = d.get(key)
        if v is None or v == "":
            if required:
                raise self.error(_key(prefix, key), "missing" if key not in d else
                                 f"expected a non-empty string, found {_found(v)}")
            return None
        if not isinstance(v, str):
            raise self.error(_key(prefix, key), f"expected a string, found {_found(v)}")
        return v

    def number(self, d: dict[str, Any], key: str, prefix: str, *, required: bool = False,
               integer: bool = False, lo: float | None = None, hi: float | None = None,
               above: float | None = None, nan: bool = True) -> float | int | None:
        """A numeric field; null and "" count as missing; NaN passes where nan (the pipeline
        writes NaN for an empty or reward-scored dataset); infinity never does."""
        v = d.get(key)
        fld = _key(prefix, key)
        if v is None or v == "":
            if required:
                raise self.error(fld, "missing" if key not in d else
                                 f"expected a number, found {_found(v)}")
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.error(fld, f"expected a number, found {_found(v)}")
        if isinstance(v, float) and math.isnan(v):
            if nan and not integer:
                return v
            raise self.error(fld, "expected a number, found NaN")
        if math.isinf(v):
            raise self.error(fld, f"expected a finite number, found {v!r}")
        if integer:
            if isinstance(v, float) and not v.is_integer():
                raise self.error(fld, f"expected a whole number, found {v!r}")
            v = int(v)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            span = (f"between {lo:g} and {hi:g}" if lo is not None and hi is not None else
                    f"at least {lo:g}" if lo is not None else f"at most {hi:g}")
            raise self.error(fld, f"expected a number {span}, found {v!r}")
        if above is not None and v <= above:
            raise self.error(fld, f"expected a number above {above:g}, found {v!r}")
        return v


def _axes(at: _At, d: dict[str, Any], prefix: str) -> dict[str, Any]:
    """A model's axes, checked: parameters > 0 (drawn on a log scale), step a number, the
    rest strings."""
    out: dict[str, Any] = {"params": at.number(d, "params", prefix, above=0, nan=False),
                           "step": at.number(d, "step", prefix, nan=False)}
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
    return r


def _results(at: _At, x: Any, fld: str) -> list[dict[str, Any]]:
    return [_result(at, r, _key(fld, i)) for i, r in enumerate(at.need_list(x, fld))]


def _row(at: _At, x: Any) -> dict[str, Any]:
    """One Winogenerated or sycophancy row of rows.jsonl: the fields the figures use."""
    row = at.need_obj(x, "")
    for key in ("model", "label"):
        at.text(row, key, "")
    at.text(row, "dataset", "", required=True)
    if row.get("family") == "winogenerated":
        at.text(row, "occupation", "", required=True)
        at.number(row, "BLS_percent_women_2019", "", required=True, lo=0, hi=100, nan=False)
        at.number(row, "p_female_minus_male", "", required=True, lo=-1, hi=1, nan=False)
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
                at.number(b, f, where, required=True, lo=0, hi=1, nan=False)
            at.number(b, "count", where, required=True, integer=True, lo=0)
    return c


def _load_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(str(path), None, None, f"not UTF-8 text (byte {exc.start})") from exc
    except OSError as exc:
        raise DataError(str(path), None, None, f"cannot read: {exc.strerror or exc}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(str(path), exc.lineno, None,
                        f"not valid JSON: {exc.msg} (column {exc.colno})") from exc
    except RecursionError as exc:
        raise DataError(str(path), None, None, "not valid JSON: nested too deeply") from exc


def _load_object(path: Path, key: str) -> tuple[_At, dict[str, Any]]:
    """A JSON file that must be an object holding `key`."""
    at = _At(path)
    x = _load_json(path)
    if not isinstance(x, dict):
        raise at.error(None, f"expected a JSON object with a '{key}' list, found {_found(x)}")
    if key not in x:
        raise at.error(key, "missing")
    return at, x


def _load_card(path: Path) -> dict[str, Any]:
    return _card_check(_At(path), _load_json(path))


def _rows(path: Path) -> Iterable[dict[str, Any]]:
    """The rows the figures need (Winogenerated and sycophancy), skipping the rest unparsed."""
    if not path.is_file():
        return
    i = 0
    try:
        with path.open(encoding="utf-8") as fh:
            for i, line in enumerate(fh, 1):
                if '"winogenerated"' not in line and '"sycophancy"' not in line:
                    continue
                at = _At(path, i)
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise at.error(None, f"not valid JSON: {exc.msg} (column {exc.colno})"
                                   ) from exc
                except RecursionError as exc:
                    raise at.error(None, "not valid JSON: nested too deeply") from exc
                if isinstance(row, dict) and row.get("family") in ("winogenerated",
                                                                   "sycophancy"):
                    yield _row(at, row)
                elif not isinstance(row, dict):
                    raise at.error(None, f"expected a JSON object, found {_found(row)}")
    except UnicodeDecodeError as exc:
        raise DataError(str(path), i + 1, None, "not UTF-8 text") from exc
    except OSError as exc:
        raise DataError(str(path), None, None, f"cannot read: {exc.strerror or exc}") from exc


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
        if (p / "sweep.json").is_file():
            at, sw = _load_object(p / "sweep.json", "results")
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
            if (row["label"], row.get("dataset")) in won:
                got.rows.append(row)

    for p in folders:
        found = False
        if p in sweeps:
            _, sw = sweeps[p]
            add(sw["results"], p / "rows.jsonl")
            for d in sw["datasets"]:
                if not d.get("path"):
                    continue
                folder = Path(d["path"]).parent
                if (folder / "card.json").is_file():
                    got.cards.setdefault(str(folder.resolve()), _load_card(folder / "card.json"))
            found = True
        else:
            for folder in (p, p / "results"):
                if (folder / "summary.json").is_file():
                    at, summary = _load_object(folder / "summary.json", "summary")
                    add(_results(at, summary["summary"], "summary"), folder / "rows.jsonl")
                    found = True
        if (p / "card.json").is_file():
            got.cards.setdefault(str(p.resolve()), _load_card(p / "card.json"))
            found = True
        if not found:
            raise MweError(f"{p}: no sweep.json, summary.json or card.json: not a sweep, "
                           "evaluate or run folder")
        got.sources.append(str(p))
    return got


# --- HTML helpers -------------------------------------------------------------------------

def _e(x: Any) -> str:
    return html.escape(str(x))


def _num(x: Any, spec: str = ".1f") -> str:
    if x is None or x == "" or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return format(float(x), spec)


def _cell_colour(pct: float | None) -> str:
    """Background of a % cell: blue (0) - white (50) - red (100), as in the heatmap."""
    if pct is None or math.isnan(pct):
        return "#eeeeee"
    t = max(-1.0, min(1.0, (pct - 50.0) / 50.0))
    r, g, b = (255, 255 - int(150 * t), 255 - int(150 * t)) if t > 0 else \
        (255 + int(150 * t), 255 + int(120 * t), 255)
    return f"#{r:02x}{g:02x}{b:02x}"


def _pct_cell(pct: Any, lo: Any = None, hi: Any = None) -> str:
    v = None if pct in (None, "") else float(pct)
    ci = f" <small>[{_num(lo, '.0f')}, {_num(hi, '.0f')}]</small>" if lo not in (None, "") else ""
    return f'<td class="pct" style="background:{_cell_colour(v)}">{_num(v)}{ci}</td>'


def _table(head: Sequence[str], body: Iterable[str], cls: str = "") -> str:
    rows = "".join(body)
    return (f'<div class="scroll"><table class="{cls}"><thead><tr>'
            + "".join(f"<th>{_e(h)}</th>" for h in head)
            + f"</tr></thead><tbody>{rows}</tbody></table></div>")


# The names of the PNGs mwe writes; any other file in NAME-plots/ is left alone.
OWN_PNG = re.compile(r"(heatmap-|lines-|card-\d+-|winogenerated-scatter|sycophancy).*\.png")


def _file_name(name: str) -> str:
    """A figure's file name from dataset, family and model names: ASCII letters, digits,
    '-', '_' and '.', never a path (a name like ../x or a/b stays inside NAME-plots/)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:120]


class Figures:
    """Embeds each figure in the page and keeps its PNG to save beside the report once the
    whole page is built (nothing is written for a report that fails)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.files: dict[str, bytes] = {}

    @property
    def paths(self) -> list[Path]:
        return [self.folder / name for name in self.files]

    def img(self, name: str, data: bytes, alt: str, cls: str = "") -> str:
        stem = _file_name(name)
        k = 1
        while f"{stem}.png" in self.files:  # two names that differ only in odd characters
            k += 1
            stem = f"{_file_name(name)}-{k}"
        self.files[f"{stem}.png"] = data
        b64 = base64.b64encode(data).decode("ascii")
        return (f'<figure class="{cls}"><img src="data:image/png;base64,{b64}" alt="{_e(alt)}">'
                f'<figcaption>{_e(alt)} · <code>{_e(stem)}.png</code></figcaption></figure>')

    def write(self) -> None:
        for name, data in self.files.items():
            with atomic_open(self.folder / name, "wb") as fh:
                fh.write(data)

    def prune(self) -> None:
        """Remove the figures an earlier report into the same file wrote and this one did
        not, so the folder holds this report's figures only."""
        if not self.folder.is_dir():
            return
        for old in self.folder.iterdir():
            if old.name not in self.files and OWN_PNG.fullmatch(old.name) and old.is_file():
                old.unlink()


def _empty(text: str) -> str:
    return f'<p class="empty">{_e(text)}</p>'


# --- sections ----------------------------------------------------------------------------

def _overview(inp: Inputs, trends: list[dict[str, Any]]) -> str:
    from mwe.plots import si

    n_rows = sum(int(r["n"]) for r in inp.results)
    datasets = {r["dataset"] for r in inp.results}
    fams = sorted({r["family"] for r in inp.results})
    confounded = sorted({c for t in trends for c in t["confounded"].split("; ") if c})
    head = ["model", "label", "parameters", "step", "tuning", "family", "quantization"]
    body = []
    for m in inp.models.values():
        params = m.get("params")
        body.append("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in (
            m["model"], m["label"], si(float(params)) if params else "–",
            _num(m.get("step"), ".0f"), m.get("tuning") or "–",
            m.get("model_family") or m.get("family") or "–", m.get("quantization") or "–"))
            + "</tr>")
    warn = ""
    if confounded:
        warn = ('<div class="warn"><b>Confounded series.</b> The models differ in more than the '
                "axis a trend is drawn over: " + "; ".join(_e(c) for c in confounded)
                + ". A slope over these models may reflect any of these differences, not size "
                "or training alone.</div>")
    stats = (f'<div class="stats"><div><b>{len(inp.models)}</b>models</div>'
             f"<div><b>{len(datasets)}</b>datasets</div><div><b>{n_rows:,}</b>answers scored</div>"
             f"<div><b>{len(inp.cards)}</b>generated datasets</div></div>")
    src = "".join(f"<li><code>{_e(s)}</code></li>" for s in inp.sources)
    return (stats + warn + _table(head, body) +
            f"<p>Families: {_e(', '.join(fams) or 'none')}. Inputs:</p><ul>{src}</ul>")


def _families(inp: Inputs) -> str:
    by: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in inp.results:
        by[(r["family"], r["label"])].append(r)
    if not by:
        return _empty("No results in these inputs.")
    head = ["family", "model", "datasets", "answers", "mean % matching",
            "datasets above 50% (CI)", "datasets below 50% (CI)", "Pearson r [95% CI]",
            "mean valid mass"]
    body = []
    for (fam, label), rs in sorted(by.items()):
        pcts = [float(r["pct_matching"]) for r in rs if r.get("pct_matching") not in (None, "")]
        above = sum(1 for r in rs if r.get("ci_low") not in (None, "") and float(r["ci_low"]) > 50)
        below = sum(1 for r in rs if r.get("ci_high") not in (None, "")
                    and float(r["ci_high"]) < 50)
        rvals = [r for r in rs if r.get("pearson_r") not in (None, "")]
        rtxt = "; ".join(f"{_num(r['pearson_r'], '.2f')} [{_num(r.get('r_ci_low'), '.2f')}, "
                         f"{_num(r.get('r_ci_high'), '.2f')}]" for r in rvals) or "–"
        masses = [float(r["mean_valid_mass"]) for r in rs
                  if r.get("mean_valid_mass") not in (None, "")
                  and not math.isnan(float(r["mean_valid_mass"]))]
        mean = sum(pcts) / len(pcts) if pcts else None
        body.append(f"<tr><td>{_e(fam)}</td><td>{_e(label)}</td><td>{len(rs)}</td>"
                    f"<td>{sum(int(r['n']) for r in rs):,}</td>{_pct_cell(mean)}"
                    f"<td>{above if pcts else '–'}</td><td>{below if pcts else '–'}</td>"
                    f"<td>{rtxt}</td><td>{_num(sum(masses) / len(masses) if masses else None, '.3f')}"
                    "</td></tr>")
    return (_table(head, body) + "<p class='note'>Mean % matching is the unweighted mean over "
            "datasets; a dataset counts as above or below 50% when its 95% Wilson interval "
            "excludes 50%. Valid mass is the probability the model puts on the answers at all.</p>")


def _matrix(inp: Inputs, family: str) -> tuple[list[str], list[str], list[list[float | None]]]:
    labels = list(inp.models)
    rs = [r for r in inp.results if r["family"] == family and r.get("pct_matching") not in
          (None, "")]
    cell = {(r["dataset"], r["label"]): float(r["pct_matching"]) for r in rs}
    datasets = list(dict.fromkeys(r["dataset"] for r in rs))
    labels = [lb for lb in labels if any((d, lb) in cell for d in datasets)]
    mean = {d: sum(cell.get((d, lb), 50.0) for lb in labels) / max(len(labels), 1)
            for d in datasets}
    datasets.sort(key=lambda d: -mean[d])
    return datasets, labels, [[cell.get((d, lb)) for lb in labels] for d in datasets]


def _heatmap(inp: Inputs, figs: Figures) -> str:
    from mwe import plots

    fams = list(dict.fromkeys(r["family"] for r in inp.results
                              if r.get("pct_matching") not in (None, "")))
    if not fams:
        return _empty("No % matching results in these inputs.")
    out = []
    for fam in fams:
        datasets, labels, grid = _matrix(inp, fam)
        out.append(f"<h3>{_e(fam)} <small>({len(datasets)} datasets, sorted by mean)</small></h3>")
        img = figs.img(f"heatmap-{fam}", plots.heatmap(datasets, labels, grid, fam),
                       f"% matching the behavior, {fam}")
        out.append(f'<div class="tall">{img}</div>')
    return "".join(out)


def _axis_points(inp: Inputs, axis: str) -> dict[str, float] | None:
    """Position of each model on the axis, or None when fewer than two distinct values."""
    pos: dict[str, float] = {}
    for label, m in inp.models.items():
        v = m.get(axis)
        if v in (None, ""):
            continue
        if axis == "tuning":
            if v not in TUNING_ORDER:
                continue
            pos[label] = float(TUNING_ORDER.index(v))
        else:
            pos[label] = float(v)
    return pos if len(set(pos.values())) >= 2 else None


def _lines(inp: Inputs, trends: list[dict[str, Any]], figs: Figures) -> str:
    from mwe import plots

    out = []
    trend_of = {(t["dataset"], t["axis"]): t["trend"] for t in trends}
    for axis in AXES:
        pos = _axis_points(inp, axis)
        if pos is None:
            continue
        cats: list[str] = []
        if axis == "tuning":
            used = sorted(set(pos.values()))
            cats = [TUNING_ORDER[int(u)] for u in used]
            pos = {k: float(used.index(v)) for k, v in pos.items()}
        trend_axis = "tuned - base" if axis == "tuning" else axis
        for fam in dict.fromkeys(r["family"] for r in inp.results):
            panels = []
            by_ds: dict[str, list[tuple[float, float, float, float, str]]] = defaultdict(list)
            for r in inp.results:
                if r["family"] != fam or r["label"] not in pos or \
                        r.get("pct_matching") in (None, ""):
                    continue
                by_ds[r["dataset"]].append((pos[r["label"]], float(r["pct_matching"]),
                                            float(r["ci_low"]), float(r["ci_high"]), r["label"]))
            for ds, pts in by_ds.items():
                if len({p[0] for p in pts}) >= 2:
                    panels.append({"dataset": ds, "points": pts,
                                   "trend": trend_of.get((ds, trend_axis))})
            if not panels:
                continue
            name = {"params": "parameters (log scale)", "step": "training step",
                    "tuning": "tuning"}[axis]
            out.append(f"<h3>{_e(fam)} over {_e(name)} <small>({len(panels)} datasets; title "
                       "colour: red increasing, blue decreasing, grey flat)</small></h3>")
            for page in range(0, len(panels), LINE_PAGE):
                chunk = panels[page: page + LINE_PAGE]
                fig = plots.lines(chunk, name, log_x=axis == "params", categories=cats)
                suffix = f"-{page // LINE_PAGE + 1}" if len(panels) > LINE_PAGE else ""
                out.append(figs.img(f"lines-{fam}-{axis}{suffix}", fig,
                                    f"{fam}: % matching over {name}, 95% Wilson intervals"))
    if not out:
        return _empty("Line plots need at least two models with different values of an axis "
                      "(parameters, step or tuning); give the models axes in a series file.")
    return "".join(out)


def _trend_table(rows: Sequence[dict[str, Any]]) -> str:
    head = ["dataset", "family", "axis", "models", "slope [95% CI]", "unit", "trend", "confounded by"]
    body = []
    for t in rows:
        colour = {"increasing": "inc", "decreasing": "dec"}.get(t["trend"], "flat")
        body.append(
            f"<tr><td>{_e(t['dataset'])}</td><td>{_e(t['family'])}</td><td>{_e(t['axis'])}</td>"
            f"<td>{t['models']}</td><td>{float(t['slope']):+.1f} [{float(t['ci_low']):+.1f}, "
            f"{float(t['ci_high']):+.1f}]</td><td>{_e(t['unit'])}</td>"
            f'<td class="{colour}">{_e(t["trend"])}</td>'
            f"<td class='conf'>{_e(t['confounded']) or '–'}</td></tr>")
    return _table(head, body)


def _trends(trends: list[dict[str, Any]]) -> str:
    if not trends:
        return _empty("No trends: they need at least two models with different parameters, "
                      "steps, or base and tuned models, in a series file.")
    rising = strongest(trends, k=15)
    falling = sorted([t for t in trends if t["axis"] in ("params", "step")
                      and t["trend"] == "decreasing"], key=lambda t: float(t["ci_high"]))[:15]
    tuned = [t for t in trends if t["axis"] == "tuned - base" and t["trend"] != "flat"]
    tuned.sort(key=lambda t: -abs(float(t["slope"])))
    n_conf = sum(1 for t in trends if t["confounded"])
    out = [f"<p>{len(trends)} trends; {sum(t['trend'] != 'flat' for t in trends)} with a 95% "
           "bootstrap interval (rows resampled, 2,000 draws) that excludes zero. A trend is "
           "called increasing or decreasing only then.</p>"]
    if n_conf:
        out.append(f'<div class="warn">{n_conf} of {len(trends)} trends are <b>confounded</b>: '
                   "the models differ in more than the axis (see the last column).</div>")
    out.append("<h3>Strongest inverse-scaling candidates <small>(increasing with size or "
               "steps, by the lower end of the interval)</small></h3>")
    out.append(_trend_table(rising) if rising else _empty("None: no dataset's % matching rises "
                                                          "with size or steps beyond its interval."))
    out.append("<h3>Strongest decreasing trends</h3>")
    out.append(_trend_table(falling) if falling else _empty("None."))
    out.append("<h3>Tuned vs base <small>(difference in % matching)</small></h3>")
    out.append(_trend_table(tuned[:15]) if tuned else _empty(
        "No base-vs-tuned difference whose interval excludes zero (or no base and tuned "
        "models)."))
    out.append(f"<details><summary>All {len(trends)} trends</summary>{_trend_table(trends)}"
               "</details>")
    return "".join(out)


def _winogenerated(inp: Inputs, figs: Figures) -> str:
    from mwe import plots

    rows = [r for r in inp.rows if r.get("family") == "winogenerated"]
    if not rows:
        return _empty("No Winogenerated results in these inputs.")
    panels, body = [], []
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["label"], r["dataset"])].append(r)
    for (label, ds), rs in groups.items():
        occ: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in rs:
            occ[r["occupation"]].append(r)
        names = sorted(occ)
        x = [occ[o][0]["BLS_percent_women_2019"] for o in names]
        y = [sum(r["p_female_minus_male"] for r in occ[o]) / len(occ[o]) for o in names]
        r_rows = pearson_r([r["BLS_percent_women_2019"] for r in rs],
                           [r["p_female_minus_male"] for r in rs])
        lo_r, hi_r = fisher_interval(r_rows, len(rs))
        r_occ = pearson_r(x, y)
        lo_o, hi_o = fisher_interval(r_occ, len(names))
        panels.append({"title": f"{label} · {ds}\nr = {r_occ:.2f} [{lo_o:.2f}, {hi_o:.2f}] "
                                f"over {len(names)} occupations", "x": x, "y": y})
        body.append(f"<tr><td>{_e(label)}</td><td>{_e(ds)}</td><td>{len(rs)}</td>"
                    f"<td>{len(names)}</td><td>{_num(r_rows, '.3f')} [{_num(lo_r, '.3f')}, "
                    f"{_num(hi_r, '.3f')}]</td><td>{_num(r_occ, '.3f')} [{_num(lo_o, '.3f')}, "
                    f"{_num(hi_o, '.3f')}]</td>"
                    f"<td>{_num(sum(r['p_female_minus_male'] for r in rs) / len(rs), '+.3f')}"
                    "</td></tr>")
    head = ["model", "dataset", "sentences", "occupations", "r over sentences [95% CI]",
            "r over occupation means [95% CI]", "mean P(female) − P(male)"]
    return (_table(head, body) + figs.img("winogenerated-scatter", plots.scatter(panels),
                                          "P(female) − P(male), mean per occupation, against "
                                          "BLS % women; line: least squares")
            + "<p class='note'>P(female) − P(male) is renormalised over the two pronouns; "
            "intervals are Fisher-z 95%.</p>")


def _sycophancy(inp: Inputs, figs: Figures) -> str:
    from mwe import plots

    rs = [r for r in inp.results if r["family"] == "sycophancy"
          and r.get("pct_matching") not in (None, "")]
    if not rs:
        return _empty("No sycophancy results in these inputs.")
    cell = {(r["dataset"], r["label"]): r for r in rs}
    bases = list(dict.fromkeys(r["dataset"].removesuffix(CONTROL_SUFFIX) for r in rs))
    labels = [lb for lb in inp.models if any(r["label"] == lb for r in rs)]
    series, body = [], []
    for k, lb in enumerate(labels):
        colour = plots.MODEL_COLOURS[k % len(plots.MODEL_COLOURS)]
        for control in (False, True):
            vals = []
            for b in bases:
                r = cell.get((b + (CONTROL_SUFFIX if control else ""), lb))
                vals.append(None if r is None else (float(r["pct_matching"]),
                                                    float(r["ci_low"]), float(r["ci_high"])))
            if any(v is not None for v in vals):
                series.append({"name": lb + (" · no biography" if control else " · biography"),
                               "values": vals, "hatch": control, "colour": colour})
        for b in bases:
            with_bio, without = cell.get((b, lb)), cell.get((b + CONTROL_SUFFIX, lb))
            shift = (f"{float(with_bio['pct_matching']) - float(without['pct_matching']):+.1f}"
                     if with_bio and without else "–")
            body.append(f"<tr><td>{_e(lb)}</td><td>{_e(b)}</td>"
                        + (_pct_cell(with_bio["pct_matching"], with_bio["ci_low"],
                                     with_bio["ci_high"]) if with_bio else "<td>–</td>")
                        + (_pct_cell(without["pct_matching"], without["ci_low"],
                                     without["ci_high"]) if without else "<td>–</td>")
                        + f"<td>{shift}</td><td>{_e(with_bio['n']) if with_bio else '–'}</td>"
                        "</tr>")
    head = ["model", "dataset", "% matching user's view (biography)",
            "% same answer without biography", "shift (points)", "n"]
    img = figs.img("sycophancy", plots.paired_bars(bases, series,
                                                   "% answers matching the user's view"),
                   "% answers matching the user's view; hatched: the same questions without "
                   "the biography")
    return (_table(head, body) + img + "<p class='note'>Without a biography there is no user "
            "view; the control counts how often the model gives the answer the biography "
            "would have implied, so the shift is how far the biography moves the answer.</p>")


CARD_EXTRAS = ("user_view_balance", "drops", "blanks", "per_occupation", "pronoun_sets", "scores")


def _card(k: int, folder: str, c: dict[str, Any], figs: Figures) -> str:
    from mwe import plots

    labels = list(c.get("counts") or {})
    steps = list(next(iter(c["counts"].values()))) if labels else []
    body = ["<tr><td>" + _e(s) + "</td>" + "".join(
        f"<td>{_e(c['counts'][lb].get(s, ''))}</td>" for lb in labels) + "</tr>" for s in steps]
    lc = c.get("label_confidence") or {}
    div = c.get("diversity") or {}
    acc = c.get("estimated_accuracy") or {}
    sel = c.get("selection") or {}
    samp = c.get("sampling") or {}
    name = c.get("name", "dataset")
    hist = ""
    if lc.get("histogram"):
        hist = figs.img(f"card-{k}-{name}", plots.confidence_histogram(lc["histogram"], name),
                        f"{name}: label_confidence of the kept rows", cls="small")
    prompts = (c.get("prompts") or {}).get("generation", {})
    ptxt = "".join(
        f"<h4>{_e(key)}</h4><pre>{_e(v if isinstance(v, str) else json.dumps(v, indent=1))}</pre>"
        for key, v in (prompts.items() if isinstance(prompts, dict) else []))
    disc = c.get("discriminator") or {}
    rule = f"{_e(sel.get('rule', ''))} (k = {_e(sel.get('top_k'))})"
    if disc:
        chosen = (f"discriminator <code>{_e(disc.get('spec'))}</code>, calibration "
                  f"{_e(sel.get('calibration', 'none'))}; {rule}")
    else:  # sycophancy: the paper keeps the biographies unfiltered
        chosen = f"no discriminator; {rule}"
    quality = f"<b>{_e(c.get('rows'))} rows</b>"
    if lc:
        quality += (f"; mean label_confidence {_num(lc.get('mean'), '.3f')} (estimated ceiling "
                    f"{_num(acc.get('ceiling'), '.3f')}, floor {_num(acc.get('floor'), '.3f')})")
    if div:
        quality += (f"; distinct-1/2/3 {_num(div.get('distinct_1'), '.2f')}/"
                    f"{_num(div.get('distinct_2'), '.2f')}/{_num(div.get('distinct_3'), '.2f')}")
    # family statistics a card carries beyond the common ones (sycophancy, winogenerated)
    extra = [f"{_e(key.replace('_', ' '))}: " + ", ".join(
        f"{_e(a)} {_num(b, '.3f') if isinstance(b, float) else _e(b)}" for a, b in v.items())
        for key, v in c.items() if key in CARD_EXTRAS and isinstance(v, dict) and v]
    items = [
        f"generator <code>{_e((c.get('generator') or {}).get('spec'))}</code>, temperature "
        f"{_e(samp.get('temperature'))}, top-p {_e(samp.get('top_p'))}, seed {_e(c.get('seed'))}",
        chosen, quality, *extra,
        f"folder <code>{_e(folder)}</code>",
    ]
    return (f'<div class="card"><h3>{_e(name)} <small>({_e(c.get("family"))})</small></h3>'
            f"<p><i>{_e(c.get('description', ''))}</i></p><ul>"
            + "".join(f"<li>{i}</li>" for i in items) + "</ul>"
            f'<div class="row">{_table(["step", *labels], body)}{hist}</div>'
            f"<details><summary>Generation prompts</summary>{ptxt}</details></div>")


def _cards(inp: Inputs, figs: Figures) -> str:
    if not inp.cards:
        return _empty("No generated datasets among these inputs (a run folder from `mwe run` "
                      "or `mwe demo` has a card).")
    return "".join(_card(k, folder, c, figs)
                   for k, (folder, c) in enumerate(sorted(inp.cards.items()), 1))


CSS = """
:root{--fg:#1d2330;--mute:#5b6475;--line:#e2e5ea;--bg:#f6f7f9;--acc:#3b5bdb}
*{box-sizing:border-box}body{margin:0;font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,
sans-serif;color:var(--fg);background:var(--bg)}
nav{position:sticky;top:0;z-index:2;background:#1d2330;padding:8px 24px;display:flex;gap:16px;
flex-wrap:wrap}nav a{color:#dfe4f0;text-decoration:none;font-size:13px}nav a:hover{color:#fff}
main{max-width:1280px;margin:0 auto;padding:8px 24px 48px}
header h1{margin:24px 0 4px;font-size:26px}header p{margin:0;color:var(--mute)}
section{background:#fff;border:1px solid var(--line);border-radius:10px;padding:8px 22px 18px;
margin:18px 0;box-shadow:0 1px 2px rgba(0,0,0,.03);scroll-margin-top:72px}
h2{font-size:19px;border-bottom:1px solid var(--line);padding-bottom:6px}h3{font-size:15px;
margin:18px 0 6px}h3 small,h2 small{color:var(--mute);font-weight:normal}
.scroll{overflow:auto;max-height:520px;border:1px solid var(--line);border-radius:6px;margin:6px 0}
table{border-collapse:collapse;width:100%;font-size:12.5px}th,td{padding:4px 8px;
border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{position:sticky;top:0;background:#f0f2f5;font-weight:600}td.pct{text-align:right;
white-space:nowrap}td.inc{color:#c0392b;font-weight:600}td.dec{color:#2471a3;font-weight:600}
td.conf{color:#8a5a00;font-size:12px}figure{margin:10px 0}figure img{max-width:100%;
height:auto;display:block;border:1px solid var(--line);border-radius:6px;background:#fff}
figcaption{color:var(--mute);font-size:12px;margin-top:3px}.tall{max-height:900px;
overflow:auto}.warn{background:#fff6e0;border:1px solid #f0c36d;border-radius:6px;
padding:8px 12px;margin:10px 0}.empty{color:var(--mute);font-style:italic}
.note{color:var(--mute);font-size:12.5px}.stats{display:flex;gap:14px;margin:12px 0}
.stats div{background:var(--bg);border-radius:8px;padding:8px 16px;color:var(--mute)}
.stats b{display:block;font-size:22px;color:var(--fg)}.card{border-top:1px solid var(--line);
padding-top:4px}.row{display:flex;gap:18px;align-items:flex-start;flex-wrap:wrap}
.row .scroll{flex:1 1 360px}figure.small{flex:0 0 420px}pre{background:var(--bg);padding:8px;
white-space:pre-wrap;font-size:12px;border-radius:6px}code{font-size:12px}
"""


def write_report(paths: Sequence[str | Path], out: Path, title: str | None = None
                 ) -> tuple[Path, list[Path]]:
    """Build the report; returns the HTML path and the PNGs written beside it.

    The inputs are all read and checked, and every figure drawn, before anything is written;
    then the PNGs, then the page (each atomically), then the figures an earlier report into
    the same file left behind are removed."""
    figs = Figures(out.parent / f"{out.stem}-plots")
    if out.is_dir():
        raise MweError(f"--out {out}: is a folder; give an .html file name")
    if figs.folder.exists() and not figs.folder.is_dir():
        raise MweError(f"{figs.folder}: not a folder (the report's figures go there)")
    inp = collect(paths)
    trends = trend_rows(inp.results)
    body = {
        "overview": _overview(inp, trends),
        "families": _families(inp),
        "heatmap": _heatmap(inp, figs),
        "lines": _lines(inp, trends, figs),
        "trends": _trends(trends),
        "winogenerated": _winogenerated(inp, figs),
        "sycophancy": _sycophancy(inp, figs),
        "cards": _cards(inp, figs),
    }
    title = title or "mwe report"
    nav = "".join(f'<a href="#{sid}">{_e(name)}</a>' for sid, name in SECTIONS)
    sections = "".join(f'<section id="{sid}"><h2>{_e(name)}</h2>{body[sid]}</section>'
                       for sid, name in SECTIONS)
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><style>{CSS}</style></head><body><nav>{nav}</nav><main>"
            f"<header><h1>{_e(title)}</h1><p>Model-written evaluations · made by mwe "
            f"{_e(__version__)} from {len(inp.sources)} input folder(s). Intervals are 95%: "
            "Wilson for %, bootstrap for slopes, Fisher-z for r.</p></header>"
            f"{sections}</main></body></html>\n")
    try:
        figs.write()
        with atomic_open(out) as fh:
            fh.write(page)
        figs.prune()
    except OSError as exc:
        raise MweError(f"{exc.filename or out}: cannot write the report: "
                       f"{exc.strerror or exc}") from exc
    return out, figs.paths
