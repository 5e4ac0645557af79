"""Control flow of the cache wrapper (a counting stand-in model; real scoring is tested elsewhere)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fakes import FakeChatLM

from mwe.models.base import Sampling
from mwe.models.cached import CachedModel
from mwe.store import Store


def test_only_misses_reach_the_backend(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.sqlite")
    loads = []
    backend = FakeChatLM()

    def loader() -> FakeChatLM:
        loads.append(1)
        return backend

    reqs = [(f"q{i}", [" Yes", " No"]) for i in range(10)]
    m = CachedModel("fake:counting", {"backend": "fake"}, loader, store)
    first = m.score(reqs[:6], chunk_size=4)
    assert (m.hits, m.misses) == (0, 6)
    m2 = CachedModel("fake:counting", {"backend": "fake"}, loader, Store(tmp_path / "c.sqlite"))
    again = m2.score(reqs, chunk_size=4)
    assert again[:6] == first
    assert (m2.hits, m2.misses) == (6, 4)
    assert backend.scored == [f"q{i}" for i in range(6)] + [f"q{i}" for i in range(6, 10)]
    m3 = CachedModel("fake:counting", {"backend": "fake"}, loader, Store(tmp_path / "c.sqlite"))
    m3.score(reqs)
    assert m3.misses == 0
    assert len(loads) == 2  # m3 never loaded the backend: everything was cached


def test_identity_separates_models(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.sqlite")
    a = CachedModel("a", {"backend": "fake", "weights": "1"}, FakeChatLM, store)
    b = CachedModel("b", {"backend": "fake", "weights": "2"}, FakeChatLM, store)
    a.score([("q", [" Yes"])])
    b.score([("q", [" Yes"])])
    assert (a.misses, b.misses) == (1, 1)


def test_generation_cached_per_prompt_and_sampling(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.sqlite")
    backend = FakeChatLM()
    m = CachedModel("f", {"backend": "fake"}, lambda: backend, store)
    s = Sampling(n=2, seed=3)
    out = m.generate(["p1", "p2"], s)
    assert out == [["p1/3/0", "p1/3/1"], ["p2/3/0", "p2/3/1"]]
    assert m.generate(["p2", "p1"], s) == [out[1], out[0]]
    m.generate(["p1"], Sampling(n=2, seed=4))
    assert backend.generated == ["p1", "p2", "p1"]


def test_run_with_nothing_parsed_writes_an_empty_dataset(tmp_path: Path) -> None:
    """Control flow when every sample is dropped: the card says so, nothing crashes, and no
    target is evaluated. (A stand-in generator whose samples are all too short.)"""
    import json

    from mwe.models import Models
    from mwe.pipeline.run import run_all
    from mwe.spec import load_spec

    def terse() -> FakeChatLM:  # every sample " Yes"
        return FakeChatLM(sample=" Yes")

    class StandIns(Models):
        def check(self, uses: Sequence[tuple[str, str]], embedding: Sequence[str] = ()) -> None:
            pass  # every stand-in can be used

        def open(self, spec: str) -> CachedModel:
            return CachedModel(spec, {"backend": "fake", "spec": spec}, terse, self.store)

    spec_path = tmp_path / "s.yaml"
    spec_path.write_text("name: t\nfamily: persona\ndescription: likes cats\n"
                         "generator: llamacpp:x\ndiscriminator: llamacpp:y\n"
                         "targets: [llamacpp:z]\ngenerate: {per_label: 5, batch: 2}\n")
    card, runs = run_all(load_spec(spec_path), tmp_path / "out", StandIns(Store(tmp_path / "c.sqlite")),
                         progress=False)
    assert runs == [] and card["rows"] == 0
    assert card["counts"]["matching"] == {"sampled": 5, "parsed": 0, "unique": 0,
                                          "status_too_short": 5, "agreeing": 0, "top_k": 0,
                                          "kept": 0}
    assert (tmp_path / "out" / "dataset.jsonl").read_text() == ""
    assert json.loads((tmp_path / "out" / "card.json").read_text())["rows"] == 0
    assert "**0 rows**" in (tmp_path / "out" / "card.md").read_text()
