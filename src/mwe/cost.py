"""What model calls cost: a price table (src/mwe/data/prices.yaml, or MWE_PRICES) and the
tokens each call used, as the store records them.

Prices are per million tokens; local backends cost nothing. A model without a price is
reported with its tokens and an unknown cost, never a made-up one.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from mwe import settings
from mwe.checks import At
from mwe.config_reader import Locator, parse_yaml
from mwe.errors import DataError
from mwe.io import add_outputs, write_csv
from mwe.run_folder import USAGE


@dataclass(frozen=True)
class Price:
    input: float  # USD per 1M input tokens
    output: float  # USD per 1M output tokens
    batch: float = 1.0  # multiplier for batch-API requests


@dataclass(frozen=True)
class Prices:
    local: frozenset[str]
    models: dict[str, Price]
    source: str

    def for_model(self, spec: str) -> Price | None:
        """The price of a model string; Price(0, 0) for a local backend, None if unknown."""
        backend, _, rest = spec.partition(":")
        if backend in self.local:
            return Price(0.0, 0.0)
        name = rest.split("?", 1)[0].split("@", 1)[0]
        return self.models.get(f"{backend}:{name}")

    def cost(self, spec: str, tokens_in: int, tokens_out: int) -> float | None:
        price = self.for_model(spec)
        if price is None:
            return None
        factor = price.batch if "batch=1" in spec.partition("?")[2].split("&") else 1.0
        return factor * (tokens_in * price.input + tokens_out * price.output) / 1e6


def load_prices(path: str | Path | None = None) -> Prices:
    """The price table: `path`, else $MWE_PRICES, else the one mwe ships."""
    chosen = path or settings.current().prices
    if chosen:
        source = str(chosen)
        try:
            text = Path(chosen).read_text(encoding="utf-8")
        except OSError as exc:
            raise DataError(source, None, None, f"cannot read the price table: "
                            f"{exc.strerror}") from None
    else:
        source = "mwe/data/prices.yaml"
        text = (resources.files("mwe") / "data" / "prices.yaml").read_text("utf-8")
    data, root = parse_yaml(text, source)
    loc = Locator(text, root)
    at = At(source, 1)
    if not isinstance(data, dict) or not isinstance(data.get("models", {}), dict):
        raise at.error("models", "a price table maps `models:` to {input, output, batch} per "
                       "model string")
    models = {}
    for name, entry in (data.get("models") or {}).items():
        where = at.on(loc.line("models", name))
        if not isinstance(entry, dict) or not {"input", "output"} <= set(entry) or \
                set(entry) - {"input", "output", "batch"}:
            raise where.error(f"models.{name}", "expected {input, output} and optionally batch")
        price = {key: float(where.number(entry.get(key, 1.0), f"models.{name}.{key}", low=0,
                                         what="a price of at least 0"))
                 for key in ("input", "output", "batch")}
        models[str(name)] = Price(**price)
    local = data.get("local", ["llamacpp", "hf", "hf-rm"])
    where = at.on(loc.line(None, "local"))
    if not isinstance(local, list) or not all(isinstance(x, str) for x in local):
        raise where.expected("local", "a list of backend names", local)
    return Prices(frozenset(local), models, source)


def default_prices() -> Prices:
    """The table of $MWE_PRICES as set now, else the shipped one; each file is read once."""
    return _prices_at(settings.current().prices)


@cache
def _prices_at(path: Path | None) -> Prices:
    return load_prices(path)


USAGE_COLUMNS = ["stage", "model", "calls", "tokens_in", "tokens_out", "counted",
                 "price_per_1m_in", "price_per_1m_out", "cost_usd"]


def read_usage(path: Path, stage: str) -> list[dict[str, Any]]:
    """The rows of one stage in a usage.csv mwe wrote (none if the file is absent), typed as
    the ledger makes them: a later stage run in another process carries them forward."""
    import csv

    if not path.exists():
        return []
    ints, floats = ("calls", "tokens_in", "tokens_out"), ("price_per_1m_in", "price_per_1m_out",
                                                          "cost_usd")
    out = []
    with path.open(encoding="utf-8", newline="") as fh:
        for line, row in enumerate(csv.DictReader(fh), start=2):
            if row.get("stage") != stage:
                continue
            try:
                out.append({k: (int(v) if k in ints else
                                (None if v == "" else float(v)) if k in floats else v)
                            for k, v in row.items() if k in USAGE_COLUMNS})
            except (TypeError, ValueError):
                raise DataError(str(path), line, None, "not a usage.csv row mwe wrote") from None
    return out


class UsageLedger:
    """Tokens and estimated cost per stage and model, from the models a run opened (their
    running totals are read at each stage's end; a stage is what happened since the last).

    usage.csv prices each stage's calls as if run from scratch, whether they were computed now
    or read from the cache, so a resumed run writes the same file; what this run computed
    (and paid for) is printed, not written. Calls cached before mwe recorded tokens add to
    `calls` but not to the tokens, and `counted` says how many."""

    def __init__(self, prices: Prices | None = None) -> None:
        self.prices = prices or default_prices()
        self.rows: list[dict[str, Any]] = []
        self.computed: list[tuple[str, str, int, float | None]] = []  # stage, model, calls, $
        self._seen: dict[int, tuple[int, ...]] = {}

    def stage(self, name: str, models: Any) -> None:
        from mwe.redact import redact

        by_spec: dict[str, list[int]] = {}
        counted: dict[str, set[str]] = {}
        for m in models.opened:
            t = m.tokens
            now = (m.misses, m.hits, t.computed_in, t.computed_out, t.cached_in, t.cached_out,
                   t.cached_uncounted)
            before = self._seen.get(id(m), (0,) * 7)
            self._seen[id(m)] = now
            delta = [a - b for a, b in zip(now, before)]
            if not any(delta[:2]):
                continue
            acc = by_spec.setdefault(m.spec, [0] * 7)
            for k in range(7):
                acc[k] += delta[k]
            counted.setdefault(m.spec, set()).update(t.counted)
        for spec, (computed, cached, t_in, t_out, c_in, c_out, uncounted) in by_spec.items():
            price = self.prices.for_model(spec)
            how = "+".join(sorted(counted.get(spec, set()))) or "-"
            if uncounted:
                how += f" ({uncounted} calls cached before tokens were recorded)"
            self.rows.append({
                "stage": name, "model": redact(spec), "calls": computed + cached,
                "tokens_in": t_in + c_in, "tokens_out": t_out + c_out, "counted": how,
                "price_per_1m_in": price.input if price else None,
                "price_per_1m_out": price.output if price else None,
                "cost_usd": self.prices.cost(spec, t_in + c_in, t_out + c_out)})
            self.computed.append((name, redact(spec), computed,
                                  self.prices.cost(spec, t_in, t_out)))

    def write(self, path: Path) -> None:
        write_csv(path, self.rows, USAGE_COLUMNS)

    def summary(self) -> str:
        """One line per stage and model: what this run computed and what it cost."""
        lines = []
        for (stage, model, computed, cost), row in zip(self.computed, self.rows):
            price = "unknown price" if row["cost_usd"] is None else f"${row['cost_usd']:.4f}"
            now = "" if cost is None else f"; computed now: {computed} calls, ${cost:.4f}"
            lines.append(f"  {stage:9s} {model:36s} {row['calls']:>7} calls  "
                         f"{row['tokens_in']:>10,} in  {row['tokens_out']:>9,} out  {price}{now}")
        return "\n".join(lines)


def write_usage(models: Any, stage: str, out: Path, earlier: list[dict[str, Any]] | None = None
                ) -> tuple[list[dict[str, Any]], UsageLedger]:
    """usage.csv in `out` (listed in its manifest): the `earlier` stages' rows, then this
    stage's tokens and estimated cost per model. Returns the rows written and the ledger
    (whose summary says what this run computed)."""
    ledger = UsageLedger()
    ledger.stage(stage, models)
    rows = [*(earlier or []), *ledger.rows]
    write_csv(out / USAGE, rows, USAGE_COLUMNS)
    add_outputs(out, [out / USAGE])  # in an evaluate or sweep folder's manifest
    return rows, ledger
