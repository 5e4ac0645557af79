"""CPU threads of the local backends (?threads=N, MWE_THREADS, the default) and clear errors
for files that are not usable GGUF models."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from helpers import REPO, Mwe

from mwe import threads
from mwe.errors import MweError

DATA = str(REPO / "examples" / "data" / "persona" / "agreeableness.jsonl")
SMOL = "smollm2-135m-instruct"


def _bundled_gguf() -> Path:
    from mwe.models import bundled

    try:
        return bundled.gguf_path(SMOL)
    except MweError as exc:
        pytest.skip(str(exc))


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv(threads.ENV, raising=False)
    return monkeypatch


# ---- the setting ------------------------------------------------------------------------
def test_split_name_without_option() -> None:
    assert threads.split_name("llamacpp", SMOL) == (SMOL, None)
    assert threads.split_name("hf", "/some/dir") == ("/some/dir", None)


@pytest.mark.parametrize("backend", ["llamacpp", "hf", "hf-rm"])
def test_split_name_with_option(backend: str) -> None:
    assert threads.split_name(backend, f"{SMOL}?threads=3") == (SMOL, 3)
    assert threads.split_name(backend, "/m/x.gguf?threads=1") == ("/m/x.gguf", 1)


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5", ""])
def test_split_name_bad_value(value: str) -> None:
    with pytest.raises(MweError) as err:
        threads.split_name("llamacpp", f"{SMOL}?threads={value}")
    msg = str(err.value)
    assert f"llamacpp:{SMOL}?threads={value}" in msg and "threads" in msg


@pytest.mark.parametrize("query", ["thread=2", "threads=2&batch=8", "", "2"])
def test_split_name_unknown_or_missing_option(query: str) -> None:
    with pytest.raises(MweError, match="threads"):
        threads.split_name("hf", f"{SMOL}?{query}")


def test_split_name_keeps_an_existing_path_with_a_question_mark(tmp_path: Path) -> None:
    odd = tmp_path / "model?threads=2.gguf"
    odd.write_bytes(b"GGUF")
    assert threads.split_name("llamacpp", str(odd)) == (str(odd), None)


def test_env(no_env: pytest.MonkeyPatch) -> None:
    assert threads.from_env() is None
    no_env.setenv(threads.ENV, "")
    assert threads.from_env() is None
    no_env.setenv(threads.ENV, " 3 ")
    assert threads.from_env() == 3


@pytest.mark.parametrize("value", ["0", "-2", "many", "2.0", "1e3", "\u00b2"])
def test_env_bad_value_names_variable_and_value(no_env: pytest.MonkeyPatch, value: str) -> None:
    no_env.setenv(threads.ENV, value)
    with pytest.raises(MweError) as err:
        threads.resolve()
    assert "MWE_THREADS" in str(err.value) and repr(value) in str(err.value)


def test_precedence_option_env_default(no_env: pytest.MonkeyPatch) -> None:
    assert threads.resolve() == threads.default_threads()
    no_env.setenv(threads.ENV, "5")
    assert threads.resolve() == 5
    assert threads.resolve(2) == 2  # the model string wins over the environment


def test_default_is_physical_cores_within_affinity(monkeypatch: pytest.MonkeyPatch) -> None:
    n = threads.default_threads()
    assert 1 <= n <= len(os.sched_getaffinity(0))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert threads.physical_cores() == 1
    monkeypatch.setattr(threads, "_cgroup_cpus", lambda: 0.5)  # a quota below one CPU
    assert threads.default_threads() == 1


def test_openmp_spin_respects_the_users_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOMP_SPINCOUNT", "1")  # so that the test's own setting is undone
    monkeypatch.delenv("GOMP_SPINCOUNT")
    monkeypatch.setenv("OMP_WAIT_POLICY", "active")
    threads.quiet_openmp_spin()
    assert "GOMP_SPINCOUNT" not in os.environ
    monkeypatch.delenv("OMP_WAIT_POLICY")
    threads.quiet_openmp_spin()
    assert os.environ["GOMP_SPINCOUNT"] == threads.SPINCOUNT


def test_torch_threads() -> None:
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    try:
        threads.set_torch_threads(1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


# ---- the option never changes what is cached -------------------------------------------
def test_llamacpp_identity_ignores_threads(no_env: pytest.MonkeyPatch) -> None:
    from mwe.models import llamacpp

    _bundled_gguf()
    plain = llamacpp.identity(SMOL)
    assert llamacpp.identity(f"{SMOL}?threads=1") == plain
    no_env.setenv(threads.ENV, "2")
    assert llamacpp.identity(SMOL) == plain
    no_env.setenv(threads.ENV, "zero")
    with pytest.raises(MweError, match="MWE_THREADS"):
        llamacpp.identity(SMOL)


def test_hf_and_reward_identity_ignore_threads(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from mwe.models import hf, reward

    (tmp_path / "config.json").write_text("{}")
    assert hf.identity(f"{tmp_path}?threads=2") == hf.identity(str(tmp_path))
    assert reward.identity(f"{tmp_path}?threads=1") == reward.identity(str(tmp_path))


def test_open_model_same_cache_entry(tmp_path: Path) -> None:
    from mwe.models import open_model
    from mwe.store import Store

    _bundled_gguf()
    store = Store(tmp_path / "c.sqlite")
    try:
        a = open_model(f"llamacpp:{SMOL}", store)
        b = open_model(f"llamacpp:{SMOL}?threads=1", store)
        assert a.model_id == b.model_id
    finally:
        store.close()


# ---- files that are not usable GGUF models ---------------------------------------------
def test_gguf_checks_are_cheap(tmp_path: Path) -> None:
    from mwe.models import llamacpp

    cases = {"text.gguf": (b"hello, world\n", "not a GGUF file (starts with b'hello, w'"),
             "empty.gguf": (b"", "empty file"),
             "short.gguf": (b"GGUF\x03\x00", "truncated GGUF file (6 bytes)")}
    for name, (data, expected) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(MweError) as err:
            llamacpp.identity(str(path))
        assert f"llamacpp:{path}" in str(err.value) and expected in str(err.value)


def _cli_error(mwe: Mwe, model_path: Path, tmp_path: Path, **env: str) -> str:
    res = mwe(["evaluate", "-m", f"llamacpp:{model_path}", "-d", DATA, "--limit", "2",
               "--out", tmp_path / "out"], cache=tmp_path / "c.sqlite", progress=False, env=env,
              timeout=300)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    errors = [x for x in res.stderr.splitlines() if x.startswith("mwe: error:")]
    others = [x for x in res.stderr.splitlines() if x.strip() and x not in errors]
    assert len(errors) == 1, res.stderr
    assert all("questions" in x for x in others), res.stderr  # only the opening summary line
    assert not (tmp_path / "out").exists()
    return errors[0]


def test_cli_text_file_as_gguf(tmp_path: Path, mwe: Mwe) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_text("this is not a model\n")
    line = _cli_error(mwe, bad, tmp_path)
    assert f"llamacpp:{bad}" in line and "not a GGUF file" in line


def test_cli_truncated_gguf(tmp_path: Path, mwe: Mwe) -> None:
    bad = tmp_path / "bad.gguf"
    with _bundled_gguf().open("rb") as f:
        bad.write_bytes(f.read(4 << 20))  # the header and part of the first tensor
    line = _cli_error(mwe, bad, tmp_path)
    assert f"llamacpp:{bad}" in line and "truncated or unreadable GGUF" in line
    assert "not within the file bounds" in line  # llama.cpp's own reason


def test_cli_gguf_cut_in_its_metadata(tmp_path: Path, mwe: Mwe) -> None:
    bad = tmp_path / "bad.gguf"
    with _bundled_gguf().open("rb") as f:
        bad.write_bytes(f.read(200))
    line = _cli_error(mwe, bad, tmp_path)
    assert "truncated or unreadable GGUF" in line


def test_cli_bad_threads(tmp_path: Path, mwe: Mwe) -> None:
    gguf = _bundled_gguf()
    line = _cli_error(mwe, gguf, tmp_path, MWE_THREADS="lots")
    assert "MWE_THREADS" in line and "'lots'" in line
    line = _cli_error(mwe, Path(f"{gguf}?threads=0"), tmp_path)
    assert "threads" in line and "'0'" in line


# ---- real models -----------------------------------------------------------------------
def _requests() -> list[tuple[str, list[str]]]:
    from mwe import prompts
    from mwe.datasets import load

    datasets, _ = load([DATA])
    reqs = []
    for item in datasets[0].items[:12]:
        ctx = prompts.context(item, "human-assistant")
        reqs.append((ctx, [prompts.continuation(a, ctx) for a in item.answers]))
    return reqs


@pytest.mark.slow
def test_llamacpp_thread_count_leaves_scores_bit_identical(no_env: pytest.MonkeyPatch) -> None:
    """Why the thread count is not part of the cache identity."""
    from mwe.models import llamacpp

    _bundled_gguf()
    reqs = _requests()
    results: dict[int, Any] = {}
    for n in (1, 2, 3):
        name = f"{SMOL}?threads={n}"
        model = llamacpp.load(f"llamacpp:{name}", name, llamacpp.identity(name))
        assert model.n_threads == n
        assert model.llm.context_params.n_threads == n
        assert model.llm.context_params.n_threads_batch == n
        results[n] = model.score(reqs)
        del model
    assert results[1] == results[2] == results[3]


@pytest.mark.slow
def test_hf_follows_the_setting(no_env: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    from mwe.models import hf

    _bundled_gguf()
    before = torch.get_num_threads()
    try:
        name = f"{SMOL}?threads=1"
        model = hf.load(f"hf:{name}", name, hf.identity(name))
        assert torch.get_num_threads() == 1
        assert model.score(_requests()[:2])[0][0] < 0
        no_env.setenv(threads.ENV, "2")
        hf.load(f"hf:{SMOL}", SMOL, hf.identity(SMOL))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
