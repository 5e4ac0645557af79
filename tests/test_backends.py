"""Backends from other packages: an installed distribution declaring a `mwe.backends` entry
point is usable by its name in every model string, without editing mwe. (The plugin's model
is a stand-in: this tests registration and the contract, not scoring.)"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import REPO

from mwe import cli
from mwe.errors import MweError
from mwe.models import Models, known_backends, load_backend
from mwe.store import Store

PLUGIN = '''
from fakes import FakeChatLM

OUTPUT = "logprobs"


def identity(name):
    return {"backend": "lengths", "name": name}


def load(spec, name, ident):
    return FakeChatLM(name, spec=spec, scores="length", sample="x")  # short answers win
'''


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A distribution installed on sys.path: its module and its entry-point metadata."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "mwe_lengths_plugin.py").write_text(PLUGIN)
    info = site / "mwe_lengths_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mwe-lengths-plugin\n"
                                   "Version: 1.0\n")
    (info / "entry_points.txt").write_text("[mwe.backends]\nlengths = mwe_lengths_plugin\n")
    monkeypatch.syspath_prepend(str(site))
    yield site
    sys.modules.pop("mwe_lengths_plugin", None)


def test_plugin_backend_is_registered_and_evaluates(plugin: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert known_backends()["lengths"] == "mwe_lengths_plugin"
    model = Models(Store(tmp_path / "c.sqlite")).open("lengths:tiny")
    assert model.rewards is False and model.identity() == {"backend": "lengths", "name": "tiny"}
    out = tmp_path / "out"
    data = REPO / "examples" / "data" / "persona" / "agreeableness.jsonl"
    code = cli.main(["evaluate", "-m", "lengths:tiny", "-d", str(data), "--limit", "4",
                     "--out", str(out), "--cache", str(tmp_path / "c.sqlite"), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    rows = [json.loads(x) for x in (out / "rows.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(r["model"] == "lengths:tiny" for r in rows)
    # " No" is shorter than " Yes": the stand-in always prefers it
    assert all(r["logprobs"] == [-4.0, -3.0] or r["logprobs"] == [-3.0, -4.0] for r in rows)
    assert all(r["matches_behavior"] == (r["answer_matching_behavior"] == [" No"]) for r in rows)


def test_a_plugin_that_breaks_the_contract_is_one_clear_error(
        plugin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (plugin / "mwe_lengths_plugin.py").write_text("def identity(name):\n    return {}\n")
    with pytest.raises(MweError, match="does not provide OUTPUT"):
        load_backend("lengths")


def test_unknown_backend_lists_the_known_ones() -> None:
    with pytest.raises(MweError, match="unknown backend 'nope'.*llamacpp, hf, hf-rm"):
        Models(Store(":memory:")).open("nope:x")
