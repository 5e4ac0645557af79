"""Reading what `--orders all` and `--score logprob,text` add to an evaluate folder, checked
as every other report input is: the answer-order fields of a summary row (mwe.orders) and
methods.json (mwe.pipeline.methods: how often log-probs and replies give the same answer).
A malformed value is one DataError naming the file and the field.

Kept apart from the section that shows them (methods_section) so that inputs.py can call
these checks without an import cycle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mwe.checks import At
from mwe.pipeline.methods import METHOD_FILES
from mwe.report.jsonfile import field_name, load_json

METHODS_JSON = METHOD_FILES[1]
METHOD_COUNTS = ("n", "n_both_scored", "n_same", "n_text_unscored")


def _blank(x: Any) -> bool:
    return x is None or x == ""


def _optional(at: At, d: dict[str, Any], key: str, prefix: str, low: float, high: float
              ) -> float | None:
    """A number field that may be null or absent."""
    v = d.get(key)
    return None if _blank(v) else at.number(v, field_name(prefix, key), low=low, high=high)


def _shares(at: At, d: dict[str, Any], key: str, prefix: str, high: float
            ) -> dict[str, float]:
    """An object of numbers between 0 and `high` (the share per letter, % per order)."""
    v = d.get(key)
    if _blank(v):
        return {}
    where = field_name(prefix, key)
    return {str(k): at.number(x, field_name(where, str(k)), low=0, high=high)
            for k, x in at.mapping(v, where).items()}


def check_orders(at: At, r: dict[str, Any], prefix: str) -> None:
    """A summary row's answer-order fields, checked in place (missing: None or {}): the
    share choosing each letter, the most chosen one and its share above chance (a fraction),
    % matching per order ("0" is the order the file gives) and the % answering Yes."""
    top = r.get("most_chosen_position")
    r["most_chosen_position"] = None if _blank(top) else \
        at.nonempty(top, field_name(prefix, "most_chosen_position"))
    r["position_bias"] = _optional(at, r, "position_bias", prefix, -1, 1)
    r["pct_yes"] = _optional(at, r, "pct_yes", prefix, 0, 100)
    r["chosen_position"] = _shares(at, r, "chosen_position", prefix, 1)
    by_order = _shares(at, r, "pct_matching_by_order", prefix, 100)
    for k in by_order:
        if not k.isdigit():
            raise at.error(field_name(field_name(prefix, "pct_matching_by_order"), k),
                           "expected an order number (0, 1, ...) as the key")
    r["pct_matching_by_order"] = dict(sorted(by_order.items(), key=lambda kv: int(kv[0])))


def _method(at: At, x: Any, where: str) -> dict[str, Any]:
    """One (model, dataset) row of methods.json, its counts consistent with each other."""
    m = at.mapping(x, where)
    out: dict[str, Any] = {}
    for key in ("model", "dataset"):
        if key not in m:
            raise at.error(field_name(where, key), "missing")
        out[key] = at.nonempty(m[key], field_name(where, key))
    highs = {"n": None, "n_both_scored": "n", "n_same": "n_both_scored", "n_text_unscored": "n"}
    for key in METHOD_COUNTS:
        if _blank(m.get(key)):
            raise at.error(field_name(where, key), "missing")
        hi = highs[key]
        out[key] = at.integer(m[key], field_name(where, key), low=0,
                              high=None if hi is None else out[hi])
    for key in ("pct_same", "ci_low", "ci_high"):
        out[key] = _optional(at, m, key, where, 0, 100)
    if out["pct_same"] is not None and (out["ci_low"] is None or out["ci_high"] is None):
        raise at.error(field_name(where, "ci_low" if out["ci_low"] is None else "ci_high"),
                       "missing (every pct_same needs ci_low and ci_high)")
    confusion: dict[str, dict[str, int]] = {}
    cw = field_name(where, "confusion")
    for lp, row in at.mapping({} if m.get("confusion") is None else m["confusion"], cw).items():
        rw = field_name(cw, str(lp))
        confusion[str(lp)] = {str(k): at.integer(v, field_name(rw, str(k)), low=0)
                              for k, v in at.mapping(row, rw).items()}
    out["confusion"] = confusion
    return out


def load_methods(path: Path) -> list[dict[str, Any]]:
    """methods.json (`mwe evaluate --score logprob,text`): each row checked."""
    at = At(str(path), None, word="found")
    x = at.mapping(load_json(path), None, "a JSON object with a 'methods' list")
    if "methods" not in x:
        raise at.error("methods", "missing")
    return [_method(at, m, field_name("methods", i))
            for i, m in enumerate(at.listing(x["methods"], "methods"))]
