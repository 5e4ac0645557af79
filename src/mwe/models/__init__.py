"""Backends, registered in one place and named by one string: `backend:name`.

    llamacpp:smollm2-135m-instruct   a bundled GGUF through llama.cpp
    llamacpp:/path/to/model.gguf     any GGUF file
    hf:gemma3-270m                   a bundled model, converted once to a transformers folder
    hf:/path/to/dir | hf:org/name    a transformers folder or a hub id already downloaded
    hf-rm:/path/to/dir               a reward model (sequence-classification head), for filtering
    openai:MODEL[@BASE_URL][?opts]   an OpenAI-compatible server (OpenAI, vLLM, llama.cpp, ...)
    anthropic:MODEL[@BASE_URL][?opts]  Anthropic's Messages API (scores by sampling answers)
"""

from __future__ import annotations

import importlib
from typing import Any

from mwe.errors import MweError
from mwe.models.base import LanguageModel, Sampling, ScoreRequest
from mwe.models.cached import CachedModel
from mwe.redact import redact
from mwe.store import Store

# backend name -> module implementing identity(name) and load(spec, name, identity)
BACKENDS: dict[str, str] = {
    "llamacpp": "mwe.models.llamacpp",
    "hf": "mwe.models.hf",
    "hf-rm": "mwe.models.reward",
    "openai": "mwe.models.openai_compat",
    "anthropic": "mwe.models.anthropic_api",
}

__all__ = ["BACKENDS", "CachedModel", "LanguageModel", "Models", "Sampling", "ScoreRequest",
           "open_model", "parse_spec"]


def parse_spec(spec: str) -> tuple[str, str]:
    backend, sep, name = spec.partition(":")
    if not sep or not name:
        raise MweError(
            f"model '{redact(spec)}': expected BACKEND:NAME, e.g. llamacpp:smollm2-135m-instruct "
            f"(backends: {', '.join(BACKENDS)})"
        )
    if backend not in BACKENDS:
        raise MweError(f"model '{redact(spec)}': unknown backend '{backend}' (known: {', '.join(BACKENDS)})")
    return backend, name


def quiet_transformers() -> None:
    """mwe draws its own progress bars; transformers' per-load bars only add noise."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.disable_progress_bar()


def _module(backend: str) -> Any:
    try:
        if backend in ("hf", "hf-rm"):
            quiet_transformers()
        return importlib.import_module(BACKENDS[backend])
    except ImportError as exc:
        raise MweError(f"backend '{backend}' is not installed ({exc}); run 'make setup'") from None


def open_model(spec: str, store: Store) -> CachedModel:
    """A cached model; weights are loaded only when a call misses the cache."""
    backend, name = parse_spec(spec)
    mod = _module(backend)
    ident = mod.identity(name)
    # the backend gets the string as given; everything shown or written gets it redacted
    return CachedModel(redact(spec), ident, lambda: mod.load(spec, name, ident), store)


class Models:
    """Where the pipeline gets its models, every one cached in one store. Passed down from the
    command, so a test can hand the pipeline stand-in models without patching modules."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def open(self, spec: str) -> CachedModel:
        return open_model(spec, self.store)
