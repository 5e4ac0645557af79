"""The `MWE_*` environment, parsed in one place.

Every variable is a field below, named after it (`threads` is MWE_THREADS, `http.rpm` is
MWE_HTTP_RPM), with its type, default and meaning beside it, so that a new setting is one
field and every bad value fails with the same one line naming the variable. `current()`
reads the environment at each call, never at import: a test's `monkeypatch.setenv` and the
variables a Ray worker receives from its driver count at once. An empty variable counts as
unset.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from mwe.checks import COUNT, NON_NEGATIVE, POSITIVE, POSITIVE_INT, Kind, one_of

PREFIX = "MWE_"
# the kinds of text a variable holds are mwe.checks' (a model string's options read them too)
PATH = Kind("a path", Path)
DEVICE = Kind("one of auto, cpu, cuda", one_of("auto", "cpu", "cuda"))


def _var(default: Any, kind: Kind, meaning: str, shown: str | None = None) -> Any:
    """A settings field: its default, kind and one-line meaning (`shown`: the default in
    words, where the value alone would not say it)."""
    if shown is None:
        shown = f"{default:g}" if isinstance(default, float) else str(default)
    return field(default=default, metadata={"kind": kind, "meaning": meaning, "shown": shown})


@dataclass
class HttpSettings:
    """Throughput and fault tolerance of the HTTP backends; none of these change a call's
    result. A model string's options (`?concurrency=16`) override the environment. Not
    frozen: mwe.models.retry's RetrySettings protocol declares settable attributes."""

    concurrency: int = _var(8, POSITIVE_INT, "requests in flight")
    rpm: float = _var(0.0, NON_NEGATIVE, "requests per minute, 0 = no limit")
    tpm: float = _var(0.0, NON_NEGATIVE, "tokens per minute (prompt estimate + max tokens), "
                      "0 = no limit")
    timeout: float = _var(60.0, POSITIVE, "seconds per attempt")
    max_attempts: int = _var(8, POSITIVE_INT, "attempts per request, the first included")
    backoff: float = _var(0.5, NON_NEGATIVE, "first backoff in seconds, doubled per attempt")
    max_backoff: float = _var(30.0, NON_NEGATIVE, "longest backoff in seconds")
    poll: float = _var(30.0, POSITIVE, "batch mode: longest wait between status checks, "
                       "in seconds")
    batch_retries: int = _var(3, COUNT, "batch mode: new batches for lines that failed or "
                              "expired")


@dataclass(frozen=True)
class Settings:
    """Every `MWE_*` variable, parsed; `http` holds the MWE_HTTP_* ones."""

    cache_dir: Path | None = _var(None, PATH, "the call cache, converted weights and "
                                  "UMAP's compiled code (numba/)",
                                  "the user cache folder (~/.cache/mwe)")
    threads: int | None = _var(None, POSITIVE_INT, "CPU threads per local model "
                               "(?threads=N on the model string wins)", "physical cores")
    # smaller chunks lose less work to a kill, larger ones give the backend bigger batches;
    # keep it fixed between a killed run and its resumption for bit-identical results
    score_chunk: int = _var(256, POSITIVE_INT, "questions scored and committed together")
    # a question longer than this is a mistake (the longest released one has ~9,000
    # characters), cheaper to refuse when reading than after a model is loaded
    max_chars: int = _var(100_000, POSITIVE_INT, "longest text field a dataset may have",
                          "100,000")
    prices: Path | None = _var(None, PATH, "the price table (--prices wins)",
                               "mwe/data/prices.yaml")
    device: Literal["auto", "cpu", "cuda"] = _var("auto", DEVICE, "where hf models run "
                                                  "(auto: a CUDA GPU when torch sees one)")
    http: HttpSettings = field(default_factory=HttpSettings)


@dataclass(frozen=True)
class Variable:
    """One environment variable, as the README's table and the tests list it."""

    name: str
    field: str
    kind: Kind
    default: str
    meaning: str


def _variables(cls: type, prefix: str) -> Iterator[Variable]:
    for f in fields(cls):
        if "kind" in f.metadata:
            yield Variable(f"{prefix}{f.name.upper()}", f.name, f.metadata["kind"],
                           f.metadata["shown"], f.metadata["meaning"])


def http_variables() -> list[Variable]:
    """The MWE_HTTP_* variables, whose fields are also a model string's options."""
    return list(_variables(HttpSettings, f"{PREFIX}HTTP_"))


def variables() -> list[Variable]:
    """Every variable mwe reads, MWE_HTTP_* last."""
    return [*_variables(Settings, PREFIX), *http_variables()]


def env_name(name: str) -> str:
    """The variable of a `Settings` field: "score_chunk" -> "MWE_SCORE_CHUNK"."""
    return f"{PREFIX}{name.upper()}"


def parse(variable: Variable, raw: str) -> Any:
    """`raw` as `variable` holds it, or the one-line error naming the variable (a DataError
    whose file is the variable: "MWE_THREADS: expected a positive integer, got 'x'")."""
    return variable.kind.parse(variable.name, raw)


def current(environ: Mapping[str, str] | None = None) -> Settings:
    """The settings the environment gives now (`environ`: os.environ by default)."""
    env = os.environ if environ is None else environ
    http = HttpSettings(**{v.field: parse(v, env[v.name]) for v in http_variables()
                           if env.get(v.name, "").strip()})
    top = {v.field: parse(v, env[v.name]) for v in _variables(Settings, PREFIX)
           if env.get(v.name, "").strip()}
    return Settings(**top, http=http)


@contextmanager
def overriding(**values: object) -> Iterator[None]:
    """Set `Settings` fields (by name) in the environment for the duration, where every
    reader in this process, and any child it starts, sees them; restored afterwards."""
    names = {env_name(k): str(v) for k, v in values.items()}
    unknown = [k for k in values if k not in {v.field for v in _variables(Settings, PREFIX)}]
    if unknown:
        raise TypeError(f"no such setting: {', '.join(unknown)}")
    saved = {k: os.environ.get(k) for k in names}
    os.environ.update(names)
    try:
        yield
    finally:
        for k, old in saved.items():
            if old is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = old

