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
from collections.abc import Sequence
from typing import Any, cast

from mwe.errors import MweError
from mwe.models.base import Backend, LanguageModel, Sampling, ScoreRequest
from mwe.models.cached import CachedModel
from mwe.redact import redact
from mwe.store import Store

# backend name -> module implementing mwe.models.base.Backend. A separate package adds one
# without editing mwe by declaring an entry point in the group "mwe.backends", e.g. in its
# pyproject.toml:  [project.entry-points."mwe.backends"]  mybackend = "mypkg.mwe_backend"
# (a module or object with OUTPUT, identity(name) and load(spec, name, identity)).
BACKENDS: dict[str, str] = {
    "llamacpp": "mwe.models.llamacpp",
    "hf": "mwe.models.hf",
    "hf-rm": "mwe.models.reward",
    "openai": "mwe.models.openai_compat",
    "anthropic": "mwe.models.anthropic_api",
}
ENTRY_POINTS = "mwe.backends"
# backends behind an API: a concurrency window and provider batches, answers that do not
# depend on what else a call holds (a suite pools their calls across behaviors)
REMOTE_BACKENDS = ("openai", "anthropic")


def plugin_backends() -> dict[str, str]:
    """Backends other packages declare (name -> "module" or "module:object")."""
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINTS)
            if ep.name not in BACKENDS}


def known_backends() -> dict[str, str]:
    return {**BACKENDS, **plugin_backends()}


__all__ = ["BACKENDS", "CachedModel", "LanguageModel", "Models", "Sampling", "ScoreRequest",
           "UnusableModels", "check_model", "check_models", "open_model", "parse_spec"]


def parse_spec(spec: str) -> tuple[str, str]:
    backend, sep, name = spec.partition(":")
    if not sep or not name:
        raise MweError(
            f"model '{redact(spec)}': expected BACKEND:NAME, e.g. llamacpp:smollm2-135m-instruct "
            f"(backends: {', '.join(known_backends())})"
        )
    known = known_backends()
    if backend not in known:
        raise MweError(f"model '{redact(spec)}': unknown backend '{backend}' "
                       f"(known: {', '.join(known)})")
    return backend, name


def quiet_transformers() -> None:
    """mwe draws its own progress bars; transformers' per-load bars only add noise."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.disable_progress_bar()


def load_backend(backend: str, quiet: bool = True) -> Backend:
    """The backend named in a model string: a module of mwe, or a plugin's entry point.
    `quiet=False` for a check: quieting transformers imports it (seconds), a load's cost."""
    target = known_backends()[backend]
    module_name, _, attr = target.partition(":")
    try:
        if quiet and backend in ("hf", "hf-rm"):
            quiet_transformers()
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        hint = "run 'make setup'" if backend in BACKENDS else f"check the package providing it ({target})"
        raise MweError(f"backend '{backend}' is not installed ({exc}); {hint}") from None
    for part in filter(None, attr.split(".")):
        obj = getattr(obj, part)
    if getattr(obj, "OUTPUT", None) not in ("logprobs", "rewards") or not callable(
            getattr(obj, "identity", None)) or not callable(getattr(obj, "load", None)):
        raise MweError(f"backend '{backend}' ({target}) does not provide OUTPUT ('logprobs' or "
                       "'rewards'), identity(name) and load(spec, name, identity)")
    return cast(Backend, obj)


def check_model(spec: str) -> None:
    """Raise MweError saying why `spec` cannot be used: an unknown backend, one not installed,
    or its own check (files, cache, key, local server). Loads nothing. A plugin without a
    `check` is checked by computing its identity, which loads nothing either."""
    backend, name = parse_spec(spec)
    impl = load_backend(backend, quiet=False)
    check = getattr(impl, "check", None)
    if callable(check):
        check(name)
    else:
        impl.identity(name)


class UnusableModels(MweError):
    """Every model of a command that cannot be used, found before its first call; each
    problem is one line naming the role (spec field or option), the model and why."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        if len(problems) == 1:
            message = f"{problems[0]}; no model was called"
        else:
            message = (f"{len(problems)} models cannot be used; no model was called:\n"
                       + "\n".join(f"  {p}" for p in problems))
        super().__init__(message)


def _reason(message: str, shown: str) -> str:
    """A check's message without the model it names (the problem line names it already)."""
    for lead in (f"model '{shown}': ", f"{shown}: "):
        if message.startswith(lead):
            return message[len(lead):]
    return message


def check_models(uses: Sequence[tuple[str, str]], embedding: Sequence[str] = ()) -> None:
    """Check every (role, model string) a command will use, and the bundled embedding model
    for each role in `embedding`, before it calls any: all problems are raised together as
    one UnusableModels, so a run never stops for a model after paying for others' calls."""
    from mwe.models import bundled

    found: dict[str, str | None] = {}  # model string -> why it cannot be used, or None
    roles: dict[str, list[str]] = {}
    for role, spec in uses:
        if spec not in found:
            try:
                check_model(spec)
                found[spec] = None
            except MweError as exc:
                found[spec] = _reason(str(exc), redact(spec))
        roles.setdefault(spec, []).append(role)
    problems = [f"{', '.join(roles[spec])} '{redact(spec)}': {why}"
                for spec, why in found.items() if why is not None]
    for role in embedding:
        try:
            bundled.check(bundled.EMBEDDING, "embedding")
        except MweError as exc:
            problems.append(f"{role} (embedding model '{bundled.EMBEDDING}'): {exc}")
    if problems:
        raise UnusableModels(problems)


def open_model(spec: str, store: Store) -> CachedModel:
    """A cached model; weights are loaded only when a call misses the cache."""
    backend, name = parse_spec(spec)
    impl = load_backend(backend)
    ident = impl.identity(name)
    # the backend gets the string as given; everything shown or written gets it redacted
    return CachedModel(redact(spec), ident, lambda: impl.load(spec, name, ident), store,
                       rewards=impl.OUTPUT == "rewards", scores_by=scores_by(impl))


def scores_by(impl: Any) -> str:
    """How a backend's `score` gets its numbers: "logprob" (the model's log-probs), or
    "sample" (estimated from sampled answers, a backend without log-probs: SCORES_BY)."""
    return str(getattr(impl, "SCORES_BY", "logprob"))


class Models:
    """Where the pipeline gets its models, every one cached in one store. Passed down from the
    command, so a test can hand the pipeline stand-in models without patching modules."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.opened: list[CachedModel] = []  # for the usage ledger: what each model used

    def check(self, uses: Sequence[tuple[str, str]], embedding: Sequence[str] = ()) -> None:
        """Fail, naming every model that cannot be used, before any is called (see
        `check_models`); stand-in model sets override it with their own notion of usable."""
        check_models(uses, embedding)

    def open(self, spec: str) -> CachedModel:
        model = open_model(spec, self.store)
        self.opened.append(model)
        return model


class SharedModels(Models):
    """One model object per model string (a suite's behaviors share them): a local model is
    loaded once, and an API model keeps one concurrency window."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self._by_spec: dict[str, CachedModel] = {}

    def open(self, spec: str) -> CachedModel:
        if spec not in self._by_spec:
            self._by_spec[spec] = super().open(spec)
        return self._by_spec[spec]
