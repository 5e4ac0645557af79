"""The `MWE_*` environment (mwe.settings): every variable parsed in one place, read at call
time, and a bad value refused with one line naming the variable."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from helpers import REPO, Mwe

from mwe import settings
from mwe.errors import MweError
from mwe.settings import Settings, Variable

VARIABLES = settings.variables()
NAMES = [v.name for v in VARIABLES]
PERSONA = str(REPO / "examples" / "data" / "persona" / "agreeableness.jsonl")

# per kind: a text to parse and what it gives, and texts refused
GOOD: dict[str, tuple[str, Any]] = {
    settings.POSITIVE_INT.what: (" 3 ", 3),
    settings.COUNT.what: ("0", 0),
    settings.POSITIVE.what: ("2.5", 2.5),
    settings.NON_NEGATIVE.what: ("0", 0.0),
    settings.PATH.what: ("/some/where", Path("/some/where")),
    settings.DEVICE.what: ("cpu", "cpu"),
}
BAD: dict[str, list[str]] = {
    settings.POSITIVE_INT.what: ["0", "-2", "x", "2.0", "1e3", "\u00b2"],
    settings.COUNT.what: ["-1", "x", "1.5"],
    settings.POSITIVE.what: ["0", "-1", "x", "nan", "inf"],
    settings.NON_NEGATIVE.what: ["-0.5", "x", "nan", "inf"],
    settings.PATH.what: [],
    settings.DEVICE.what: ["gpu", "CUDA"],
}


@pytest.fixture
def clean(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No MWE_* variable from the calling environment."""
    for name in NAMES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def value_of(s: Settings, v: Variable) -> Any:
    return getattr(s.http, v.field) if v.name.startswith("MWE_HTTP_") else getattr(s, v.field)


def test_the_variables() -> None:
    assert NAMES[:6] == ["MWE_CACHE_DIR", "MWE_THREADS", "MWE_SCORE_CHUNK", "MWE_MAX_CHARS",
                         "MWE_PRICES", "MWE_DEVICE"]
    assert {n for n in NAMES if n.startswith("MWE_HTTP_")} == {
        "MWE_HTTP_CONCURRENCY", "MWE_HTTP_RPM", "MWE_HTTP_TPM", "MWE_HTTP_TIMEOUT",
        "MWE_HTTP_MAX_ATTEMPTS", "MWE_HTTP_BACKOFF", "MWE_HTTP_MAX_BACKOFF", "MWE_HTTP_POLL",
        "MWE_HTTP_BATCH_RETRIES"}
    assert all(v.meaning and v.default and v.kind.what in GOOD for v in VARIABLES)
    assert settings.env_name("score_chunk") == "MWE_SCORE_CHUNK"


def test_defaults() -> None:
    s = settings.current({})
    assert s == Settings()
    assert (s.cache_dir, s.threads, s.score_chunk, s.max_chars, s.prices, s.device) == \
        (None, None, 256, 100_000, None, "auto")
    assert (s.http.concurrency, s.http.timeout, s.http.max_attempts, s.http.poll) == \
        (8, 60.0, 8, 30.0)
    # an empty or blank variable counts as unset
    assert settings.current({n: "" for n in NAMES}) == s
    assert settings.current({"MWE_THREADS": "  "}) == s


@pytest.mark.parametrize("variable", VARIABLES, ids=NAMES)
def test_every_variable_is_parsed(variable: Variable) -> None:
    text, expected = GOOD[variable.kind.what]
    s = settings.current({variable.name: text})
    assert value_of(s, variable) == expected
    others = [v for v in VARIABLES if v is not variable]
    assert all(value_of(s, v) == value_of(Settings(), v) for v in others)


@pytest.mark.parametrize(("variable", "bad"),
                         [(v, b) for v in VARIABLES for b in BAD[v.kind.what]],
                         ids=[f"{v.name}={b!r}" for v in VARIABLES for b in BAD[v.kind.what]])
def test_a_bad_value_is_one_line_naming_the_variable(variable: Variable, bad: str) -> None:
    with pytest.raises(MweError) as err:
        settings.current({variable.name: bad})
    assert str(err.value) == f"{variable.name}: expected {variable.kind.what}, got {bad!r}"


def test_the_message_style() -> None:
    with pytest.raises(MweError) as err:
        settings.current({"MWE_THREADS": "x"})
    assert str(err.value) == "MWE_THREADS: expected a positive integer, got 'x'"


def test_read_at_call_time_by_every_reader(clean: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from mwe import cost, paths, threads
    from mwe.models.http import settings_from

    clean.setenv("MWE_CACHE_DIR", str(tmp_path / "cache"))
    assert paths.cache_dir() == tmp_path / "cache" and (tmp_path / "cache").is_dir()
    clean.setenv("MWE_THREADS", "3")
    assert threads.from_env() == 3 and threads.resolve() == 3
    prices = tmp_path / "prices.yaml"
    prices.write_text("models:\n  openai:m: {input: 1, output: 2}\n")
    clean.setenv("MWE_PRICES", str(prices))
    assert cost.default_prices().source == str(prices)
    clean.delenv("MWE_PRICES")
    assert cost.default_prices().source == "mwe/data/prices.yaml"
    clean.setenv("MWE_HTTP_CONCURRENCY", "3")
    clean.setenv("MWE_HTTP_BACKOFF", "0.01")
    assert settings_from({}).concurrency == 3
    # a model string's option wins over the environment
    chosen = settings_from({"concurrency": "5", "rpm": "60"})
    assert (chosen.concurrency, chosen.rpm, chosen.backoff) == (5, 60.0, 0.01)


def test_http_options_keep_their_messages(clean: pytest.MonkeyPatch) -> None:
    from mwe.models.http import settings_from

    for options, message in [({"concurrency": "x"}, "'concurrency' must be a number, got 'x'"),
                             ({"poll": "0"}, "'poll' must be positive, got '0'"),
                             ({"concurrency": "2.5"}, "'concurrency' must be a number, got '2.5'"),
                             ({"rpm": "-1"}, "'rpm' must be positive, got '-1'")]:
        with pytest.raises(MweError) as err:
            settings_from(options)
        assert str(err.value) == message
    clean.setenv("MWE_HTTP_TIMEOUT", "soon")
    with pytest.raises(MweError, match=re.escape(
            "MWE_HTTP_TIMEOUT: expected a positive number, got 'soon'")):
        settings_from({})


def test_overriding_restores(clean: pytest.MonkeyPatch) -> None:
    clean.setenv("MWE_SCORE_CHUNK", "7")
    with settings.overriding(score_chunk=3, max_chars=10):
        assert (settings.current().score_chunk, settings.current().max_chars) == (3, 10)
    assert (settings.current().score_chunk, settings.current().max_chars) == (7, 100_000)
    with pytest.raises(TypeError, match="no such setting: chunk"), settings.overriding(chunk=3):
        pass


def test_cli_error_is_one_line(clean: pytest.MonkeyPatch, tmp_path: Path, mwe: Mwe) -> None:
    clean.setenv("MWE_MAX_CHARS", "lots")
    code, _, err = mwe.main(["evaluate", "-m", "llamacpp:/no/such/model.gguf", "-d", PERSONA,
                             "--limit", "3", "--out", str(tmp_path / "o"),
                             "--cache", str(tmp_path / "c.sqlite"), "--no-progress"])
    assert code == 2
    assert err.strip() == "mwe: error: MWE_MAX_CHARS: expected a positive integer, got 'lots'"


def test_no_module_reads_an_mwe_variable_itself() -> None:
    """Only mwe.settings reads MWE_* values (ray_sweep forwards them all to its workers)."""
    read = re.compile(r"""(environ(\.get)?|getenv)\s*[\[(]\s*f?["']MWE_""")
    found = [f"{p.relative_to(REPO)}:{n}" for p in sorted((REPO / "src" / "mwe").rglob("*.py"))
             for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
             if read.search(line)]
    assert not found, found


def test_readme_lists_every_variable() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    missing = [n for n in NAMES if f"| `{n}` |" not in readme]
    assert not missing, f"README's Environment table lacks {missing}"
