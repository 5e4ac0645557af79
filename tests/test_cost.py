"""Tokens and cost: the price table, the usage ledger (same file after a rerun from the
cache), and --dry-run's counts against the calls a real run makes."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from helpers import REPO, Mwe

from mwe.cost import load_prices
from mwe.errors import DataError

DATA = str(REPO / "examples" / "data" / "persona" / "agreeableness.jsonl")


def test_price_table(tmp_path: Path) -> None:
    prices = load_prices()
    assert prices.cost("hf:gemma3-270m", 10**6, 10**6) == 0.0
    assert prices.cost("openai:nobody-priced-this", 1, 1) is None
    mini = prices.for_model("openai:gpt-4o-mini@https://example.org/v1?concurrency=4")
    assert mini is not None
    plain = prices.cost("openai:gpt-4o-mini", 2 * 10**6, 10**6)
    assert plain == pytest.approx(2 * mini.input + mini.output)
    assert prices.cost("openai:gpt-4o-mini?batch=1", 2 * 10**6, 10**6) == \
        pytest.approx(plain * mini.batch)
    own = tmp_path / "p.yaml"
    own.write_text("models:\n  openai:m: {input: 1, output: 2}\n  openai:n: {input: -1, "
                   "output: 2}\n")
    with pytest.raises(DataError, match=r"p.yaml:3: field 'models.openai:n.input'"):
        load_prices(own)
    own.write_text("models:\n  openai:m: {input: 1}\n")
    with pytest.raises(DataError, match=r"p.yaml:2: field 'models.openai:m'"):
        load_prices(own)


@pytest.mark.slow
def test_dry_run_counts_then_usage_is_the_same_after_a_rerun(tmp_path: Path, mwe: Mwe) -> None:
    cache = tmp_path / "c.sqlite"
    base = ["sweep", "-m", "llamacpp:smollm2-135m-instruct", "-d", DATA, "--limit", "12",
            "--no-progress"]
    dry = mwe([*base, "--out", str(tmp_path / "dry"), "--dry-run"], cache=cache)
    assert dry.returncode == 0, dry.stderr
    line = next(x for x in dry.stdout.splitlines() if x.startswith("evaluate"))
    assert line.split()[2:5] == ["12", "0", "12"]  # calls, cached, to run
    assert not (tmp_path / "dry").exists()
    first = mwe([*base, "--out", str(tmp_path / "a")], cache=cache)
    assert first.returncode == 0, first.stderr
    again = mwe([*base, "--out", str(tmp_path / "dry"), "--dry-run"], cache=cache)
    assert next(x for x in again.stdout.splitlines()
                if x.startswith("evaluate")).split()[2:5] == ["12", "12", "0"]
    second = mwe([*base, "--out", str(tmp_path / "b")], cache=cache)
    assert second.returncode == 0
    usage = (tmp_path / "a" / "usage.csv").read_bytes()
    assert usage == (tmp_path / "b" / "usage.csv").read_bytes()  # computed, then all cached
    row = next(csv.DictReader((tmp_path / "a" / "usage.csv").open()))
    assert row["calls"] == "12" and row["counted"] == "tokenizer" and float(row["cost_usd"]) == 0
    # the tokens are the model's own count of what was scored: context plus each answer
    from mwe.datasets import load
    from mwe.models import Models
    from mwe.pipeline.evaluate import requests_for
    from mwe.store import Store

    model = Models(Store(cache)).open("llamacpp:smollm2-135m-instruct")
    (ds,), _ = load([DATA])
    reqs = requests_for(model, ds, "human-assistant")[:12]
    counts = model.backend.count_tokens([t for c, conts in reqs for t in [c, *conts]])  # type: ignore[attr-defined]
    assert int(row["tokens_in"]) == sum(counts)


def test_usage_rows_read_back_as_written(tmp_path: Path) -> None:
    """`mwe filter` carries generation's usage.csv rows into its card: they must come back
    with the types the ledger wrote (a missing price stays None)."""
    from mwe.cost import USAGE_COLUMNS, read_usage
    from mwe.io import write_csv

    rows = [{"stage": "generate", "model": "openai:gpt-4o-mini", "calls": 3, "tokens_in": 1234,
             "tokens_out": 567, "counted": "api", "price_per_1m_in": 0.15,
             "price_per_1m_out": 0.6, "cost_usd": 1234 * 0.15e-6 + 567 * 0.6e-6},
            {"stage": "generate", "model": "openai:unpriced", "calls": 1, "tokens_in": 10,
             "tokens_out": 2, "counted": "tokenizer", "price_per_1m_in": None,
             "price_per_1m_out": None, "cost_usd": None},
            {"stage": "filter", "model": "hf:gemma3-270m", "calls": 9, "tokens_in": 90,
             "tokens_out": 0, "counted": "tokenizer", "price_per_1m_in": 0.0,
             "price_per_1m_out": 0.0, "cost_usd": 0.0}]
    path = tmp_path / "usage.csv"
    write_csv(path, rows, USAGE_COLUMNS)
    assert read_usage(path, "generate") == rows[:2]
    assert read_usage(tmp_path / "absent.csv", "generate") == []
    path.write_text(path.read_text().replace(",1234,", ",12x4,"))
    with pytest.raises(DataError, match=r"usage.csv:2"):
        read_usage(path, "generate")
