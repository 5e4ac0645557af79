"""`mwe sweep --ray`: series resource fields, the plan, the driver and worker code on an
in-process stand-in for Ray (fast), and real Ray clusters on this machine with the bundled
models (slow): files byte-identical to the local sweep with a worker killed with SIGKILL, a
second run that submits nothing, and a driver killed with SIGKILL and resumed."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeLM, ReplyLM
from helpers import REPO, Mwe

from mwe.datasets import Dataset, load
from mwe.errors import DataError, MweError
from mwe.io import MANIFEST
from mwe.judge import open_judge
from mwe.models import BACKENDS, Models
from mwe.pipeline import ray_sweep as rs
from mwe.pipeline import ray_units
from mwe.pipeline.evaluate import with_variants
from mwe.pipeline.replies import TextScoring
from mwe.pipeline.sweep import sweep
from mwe.series import Series, SeriesModel, load_series
from mwe.store import Store

HAVE_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAVE_RAY, reason="Ray is not installed (pip install "
                               "'ray[default]', or mwe's 'ray' extra); --ray cannot run")
PERSONA = REPO / "examples" / "data" / "persona"
DATA = [PERSONA / "agreeableness.jsonl", PERSONA / "desire-for-self-improvement.jsonl"]
BUNDLED = REPO / "examples" / "series" / "bundled.yaml"
OUTPUTS = ("rows.jsonl", "results.csv", "trends.csv", "agreement.csv", "reversals.csv",
           "sweep.json")


# ---- series fields ------------------------------------------------------------------------
def test_series_resources(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("models:\n  - model: hf:a\n    num_gpus: 0.25\n    num_cpus: 2\n"
                    "  - model: hf:b\n    num_gpus: 1e0\n  - hf:c\n")
    a, b, c = load_series(path).models
    assert a.resources() == {"num_cpus": 2.0, "num_gpus": 0.25}
    assert b.resources() == {"num_gpus": 1.0}
    assert c.resources() == {}
    # not an axis: the outputs of a sweep do not change with where it ran
    assert "num_gpus" not in a.axes() and "num_cpus" not in a.axes()


@pytest.mark.parametrize(("value", "message"), [
    ("-1", "expected a number of at least 0"), ("two", "expected a number of at least 0"),
    ("true", "expected a number of at least 0"), (".inf", "expected a number of at least 0"),
    ("1.5", "a fraction of a GPU only below 1"), ("0.00001", "to 0.0001"),
    ("[1]", "expected a number of at least 0")])
def test_series_resource_errors_are_located(tmp_path: Path, value: str, message: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(f"name: x\nmodels:\n  - model: hf:a\n  - model: hf:b\n    num_gpus: {value}\n")
    with pytest.raises(DataError, match=message) as err:
        load_series(path)
    assert "s.yaml:2" in str(err.value) and "models[1].num_gpus" in str(err.value)


def test_series_resources_in_toml_and_unknown_fields(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('[[models]]\nmodel = "hf:a"\nnum_cpus = 1.5\n')
    assert load_series(path).models[0].num_cpus == 1.5  # CPUs: any amount
    path.write_text('[[models]]\nmodel = "hf:a"\nnum_gpu = 1\n')
    with pytest.raises(DataError, match="unknown field.*num_cpus, num_gpus"):
        load_series(path)


# ---- a stand-in backend and a stand-in for Ray --------------------------------------------
BATCHES: list[list[str]] = []  # every backend.score call: what it scored


def fake_backend() -> types.ModuleType:
    mod = types.ModuleType("mwe_fake_ray_backend")
    mod.__dict__.update(
        OUTPUT="logprobs",
        # "NAME+copy" has the identity of NAME: two series entries that share a cache
        identity=lambda name: {"backend": "fake", "name": name.split("+")[0]},
        # scores that, like torch's, move with the batch a request is scored in (its size), so
        # a batch composed otherwise than the local sweep's changes the files
        load=lambda spec, name, ident: FakeLM(ident["name"], batch_shift=1e-9,
                                              batches=BATCHES))
    return mod


class Ref:
    def __init__(self, run: Any) -> None:
        self.run = run
        self.done = False
        self.value: Any = None
        self.error: BaseException | None = None


class FakeRay:
    """Ray's calls that the driver makes, run in this process: tasks run when waited for,
    the latest submitted first (so units arrive out of the local order), after the tasks
    whose results they take."""

    def __init__(self) -> None:
        self.options: list[dict[str, Any]] = []
        self.refs: list[Ref] = []
        self.cancelled = 0

    def remote(self, fn: Any) -> Any:
        fake = self

        class Remote:
            def options(self, **kw: Any) -> Remote:
                fake.options.append(kw)
                return self

            def remote(self, *args: Any) -> Ref:
                def run() -> Any:
                    return fn(*(fake.get(a) if isinstance(a, Ref) else a for a in args))
                ref = Ref(run)
                fake.refs.append(ref)
                return ref
        return Remote()

    def get(self, ref: Ref) -> Any:
        if not ref.done:
            ref.done = True
            try:
                ref.value = ref.run()
            except Exception as exc:
                ref.error = exc
        if ref.error is not None:
            raise ref.error
        return ref.value

    def wait(self, refs: list[Ref], num_returns: int = 1, timeout: float | None = None
             ) -> tuple[list[Ref], list[Ref]]:
        if timeout == 0:  # nothing else has finished meanwhile
            return [], refs
        return [refs[-1]], refs[:-1]

    def cancel(self, ref: Ref) -> None:
        self.cancelled += 1


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeRay]:
    monkeypatch.setitem(sys.modules, "mwe_fake_ray_backend", fake_backend())
    monkeypatch.setitem(BACKENDS, "fake", "mwe_fake_ray_backend")
    monkeypatch.setattr(ray_units, "WORKER", None)
    monkeypatch.setenv("MWE_SCORE_CHUNK", "3")
    BATCHES.clear()
    yield FakeRay()
    BATCHES.clear()


def persona_file(path: Path, statements: list[str]) -> Path:
    import json

    with path.open("w") as f:
        for s in statements:
            yes, no = " Yes", " No"
            f.write(json.dumps({"question": f"Is the following statement something you would "
                                f"say?\n\"{s}\"", "statement": s, "label_confidence": 0.9,
                                "answer_matching_behavior": yes,
                                "answer_not_matching_behavior": no}) + "\n")
    return path


@pytest.fixture
def small(tmp_path: Path) -> tuple[Series, list[Dataset]]:
    # repeated questions inside a chunk, across the chunks of a file and across files
    a = persona_file(tmp_path / "a.jsonl", ["s1", "s2", "s1", "s3", "s4", "s2", "s5", "s6"])
    b = persona_file(tmp_path / "b.jsonl", ["s7", "s4", "s8", "s9", "s1"])
    datasets, _ = load([str(a), str(b)])
    series = Series("t", (SeriesModel("fake:m1", "one", params=1e6),
                          SeriesModel("fake:m2", "two", params=2e6, num_cpus=0.5,
                                      num_gpus=0.5),
                          SeriesModel("fake:m1+copy", "copy", params=3e6)))
    return series, with_variants(datasets)


def local_files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()}


def test_plan_follows_the_local_chunks(fake: FakeRay, small: tuple[Series, list[Dataset]],
                                       tmp_path: Path) -> None:
    series, datasets = small
    store = Store(tmp_path / "c.sqlite")
    models = [rs.StoredModel(m.model, rs.Probe({"backend": "fake", "name": m.model.split("+")[0]},
                                               False, None), store) for m in series.models]
    plan = rs.plan(series, datasets, "human-assistant", store, models, 3)
    # a: 3 chunks, b: 2 chunks, for each of the two identities; the copy shares m1's answers
    assert [(u.model, u.dataset, u.start) for u in plan.units] == [
        (0, 0, 0), (0, 0, 3), (0, 0, 6), (0, 1, 0), (0, 1, 3),
        (1, 0, 0), (1, 0, 3), (1, 0, 6), (1, 1, 0), (1, 1, 3)]
    assert plan.stored_rows == 13  # the copy: everything computed by m1's units
    # a's second chunk repeats s2 from the first; b's first chunk repeats s4 (a's 2nd chunk),
    # b's second repeats s1 (a's first)
    assert plan.after[1] == [0] and plan.after[3] == [1] and plan.after[4] == [0]
    assert plan.after[0] == plan.after[2] == []


@pytest.mark.parametrize("fmt", ["human-assistant", "chat"])
def test_fake_ray_sweep_is_the_local_sweep(fake: FakeRay, small: tuple[Series, list[Dataset]],
                                           tmp_path: Path, fmt: str) -> None:
    series, datasets = small
    local_models = Models(Store(tmp_path / "local.sqlite"))
    _, _, local_runs = sweep(series, datasets, fmt, tmp_path / "local", local_models,
                             progress=False)
    local_batches = sorted(BATCHES)
    BATCHES.clear()
    models = Models(Store(tmp_path / "ray.sqlite"))
    arrived: list[tuple[int, int, int]] = []
    results, _, runs = rs.run_plan(fake, series, datasets, fmt, tmp_path / "ray",
                                   models, False, 2,
                                   lambda u, r: arrived.append((u.model, u.dataset, u.start)))
    # the same batches were scored, and the same files written, though units arrived in
    # another order than the local one
    assert sorted(BATCHES) == local_batches
    assert arrived != sorted(arrived)
    assert local_files(tmp_path / "ray") == local_files(tmp_path / "local")
    # counted as the local sweep counts: a question found in the cache at its chunk (asked
    # in an earlier chunk, or by the other entry of the same model) is a cached row
    assert [(r.computed_rows, r.cached_rows) for r in runs] == \
        [(r.computed_rows, r.cached_rows) for r in local_runs] == [(10, 3), (10, 3), (0, 13)]
    # and their tokens as computed now (what the printed cost of this run prices), as locally

    def tokens(ms: Models) -> dict[str, tuple[int, int]]:
        return {m.spec: (m.tokens.computed_in, m.tokens.cached_in) for m in ms.opened}

    assert tokens(models) == tokens(local_models)
    assert all(t[0] > 0 for spec, t in tokens(models).items() if "copy" not in spec)
    assert {o["max_retries"] for o in fake.options} == {2}
    assert all((o.get("num_cpus"), o.get("num_gpus")) == ((0.5, 0.5) if "two" in o["name"]
               else (None, None)) for o in fake.options)
    # the model on GPUs, and every model for chat prompts, gets its identity from the cluster
    probed = {o["name"] for o in fake.options if o["name"].startswith("mwe-probe:")}
    assert probed == ({"mwe-probe:two"} if fmt != "chat" else
                      {"mwe-probe:one", "mwe-probe:two", "mwe-probe:copy"})
    # everything is in the store: a second run sends no unit (nor a probe but where needed)
    again = FakeRay()
    rs.run_plan(again, series, datasets, fmt, tmp_path / "again", models, False, 2, None)
    assert len(again.refs) == len(probed)
    assert local_files(tmp_path / "again") == local_files(tmp_path / "local")


def test_fake_ray_sweep_resumes_what_a_killed_driver_committed(
        fake: FakeRay, small: tuple[Series, list[Dataset]], tmp_path: Path) -> None:
    series, datasets = small
    sweep(series, datasets, "human-assistant", tmp_path / "local",
          Models(Store(tmp_path / "local.sqlite")), progress=False)
    store = Store(tmp_path / "ray.sqlite")

    class Killed(BaseException):
        pass

    def kill_after_three(unit: rs.Unit, result: rs.UnitResult) -> None:
        if len(done) == 2:
            raise Killed
        done.append(unit)

    done: list[rs.Unit] = []
    with pytest.raises(Killed):
        rs.run_plan(fake, series, datasets, "human-assistant", tmp_path / "ray", Models(store),
                    False, 2, kill_after_three)
    assert fake.cancelled == 10 - 3  # the rest were cancelled; the third unit was committed
    assert not (tmp_path / "ray").exists()
    again = FakeRay()
    rs.run_plan(again, series, datasets, "human-assistant", tmp_path / "ray", Models(store),
                False, 2, None)
    assert sum(o["name"].startswith("mwe-score:") for o in again.options) == 10 - 3
    assert local_files(tmp_path / "ray") == local_files(tmp_path / "local")


def test_fake_ray_errors_name_the_unit(fake: FakeRay, small: tuple[Series, list[Dataset]],
                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    series, datasets = small

    def broken(self: FakeLM, requests: Any) -> list[list[float]]:
        raise MweError("the backend broke")

    monkeypatch.setattr(FakeLM, "score", broken)
    with pytest.raises(MweError, match=r"^two on b \(rows 4-5\): the backend broke$"):
        rs.run_plan(fake, series, datasets, "human-assistant", tmp_path / "ray",
                    Models(Store(tmp_path / "c.sqlite")), False, 2, None)


def test_a_worker_with_another_identity_is_refused(fake: FakeRay, tmp_path: Path,
                                                   small: tuple[Series, list[Dataset]]) -> None:
    _, datasets = small
    with pytest.raises(MweError, match="another identity"):
        rs.score_unit("fake:m1", {}, {"backend": "fake", "name": "other"}, "human-assistant",
                      datasets[0], [])


def test_stored_model_never_loads(tmp_path: Path) -> None:
    model = rs.StoredModel("fake:x", rs.Probe({"a": 1}, False, {"hi": "<chat>hi"}),
                           Store(tmp_path / "c.sqlite"))
    assert model.chat("hi") == "<chat>hi"
    with pytest.raises(MweError, match="no chat prompt"):
        model.chat("other")
    with pytest.raises(MweError, match="missing from the store"):
        model.score([("ctx", [" Yes"])])


def test_forwarded_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MWE_THREADS", "2")
    monkeypatch.setenv("MWE_CACHE_DIR", "/somewhere")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("OPENAI_API_KEY", "secret")
    env = rs.forwarded_env()
    assert env["MWE_THREADS"] == "2" and env["HF_HUB_OFFLINE"] == "1"
    assert "MWE_CACHE_DIR" not in env and "OPENAI_API_KEY" not in env


def test_an_address_where_nothing_listens_fails_at_once() -> None:
    import socket

    with socket.socket() as sock:  # a port that was free a moment ago
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    start = time.perf_counter()
    with pytest.raises(MweError, match=f"--ray 127.0.0.1:{port}: no Ray cluster answers there"):
        rs.answers(f"127.0.0.1:{port}", f"127.0.0.1:{port}")
    with pytest.raises(MweError, match=f"RAY_ADDRESS=ray://127.0.0.1:{port}: no Ray cluster"):
        rs.answers(f"ray://127.0.0.1:{port}", None)
    assert time.perf_counter() - start < 5
    rs.answers("auto", "auto")  # Ray looks for the cluster itself


# ---- --score text on the stand-in ---------------------------------------------------------
CALLS: list[list[str]] = []  # every reply call (through generate): its prompts, sorted


@pytest.mark.parametrize("fmt", ["human-assistant", "chat"])
def test_fake_ray_text_sweep_with_a_judge_is_the_local_sweep(
        fake: FakeRay, small: tuple[Series, list[Dataset]], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    series, datasets = small
    monkeypatch.setattr(sys.modules["mwe_fake_ray_backend"], "load",
                        lambda spec, name, ident: ReplyLM(ident["name"], batches=BATCHES,
                                                           calls=CALLS))
    CALLS.clear()

    def scoring(models: Models) -> TextScoring:
        return TextScoring(max_tokens=8, judge=open_judge(models, "fake:judge"))

    local_models = Models(Store(tmp_path / "local.sqlite"))
    _, _, local_runs = sweep(series, datasets, fmt, tmp_path / "local", local_models,
                             progress=False, text=scoring(local_models))
    local_calls = sorted(CALLS)
    CALLS.clear()
    models = Models(Store(tmp_path / "ray.sqlite"))
    results: list[rs.UnitResult] = []
    _, _, runs = rs.run_plan(fake, series, datasets, fmt, tmp_path / "ray", models, False, 2,
                             lambda u, r: results.append(r), text=scoring(models))
    # the same reply calls, each a whole dataset's unasked prompts (duplicates included, as
    # CachedModel.reply asks them); the judge only on the driver: workers commit replies only
    assert sorted(CALLS) == local_calls and len(CALLS) == 4
    assert sorted(len(c) for c in CALLS) == [3, 3, 8, 8]
    assert {kind for r in results for kind, *_ in r.calls} == {"reply"}
    assert sum(o["name"].startswith("mwe-score:") for o in fake.options) == 4
    assert local_files(tmp_path / "ray") == local_files(tmp_path / "local")
    rows = [json.loads(line) for line in (tmp_path / "ray" / "rows.jsonl").open()]
    assert {r["score"] for r in rows} == {"text"} and len(rows) == 3 * 13
    judged = [d for r in rows for d in r["judge"]["decisions"] if d is not None]
    assert judged and any(r["extracted"][0] is not None for r in rows)
    # a: 8 asked (s1, s2 twice each); b: s4 and s1 from a's call, 3 asked; the copy: none
    assert [(r.computed_rows, r.cached_rows) for r in runs] == \
        [(r.computed_rows, r.cached_rows) for r in local_runs] == [(11, 2), (11, 2), (0, 13)]
    again = FakeRay()
    rs.run_plan(again, series, datasets, fmt, tmp_path / "again", models, False, 2, None,
                text=scoring(models))
    assert not any(o["name"].startswith("mwe-score:") for o in again.options)
    assert local_files(tmp_path / "again") == local_files(tmp_path / "local")


# ---- real Ray clusters with the bundled models (slow) -------------------------------------
SETTINGS = {"TOKENIZERS_PARALLELISM": "false", "MWE_SCORE_CHUNK": "10"}
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", **SETTINGS}


def datasets_30() -> list[Dataset]:
    found, _ = load([str(p) for p in DATA])
    return with_variants([Dataset(d.name, d.path, d.family, d.items[:30]) for d in found])


def same_files(a: Path, b: Path) -> None:
    """Every file the sweep writes, byte for byte (usage.csv is the command's, not the
    sweep function's)."""
    names = {p.name for p in a.iterdir()} - {"usage.csv"}
    assert names >= set(OUTPUTS)
    assert {p.name for p in b.iterdir()} - {"usage.csv"} == names
    for name in sorted(names):
        if name == MANIFEST:  # the command's list also holds its usage.csv
            listed = [json.loads((f / name).read_text())["files"] for f in (a, b)]
            assert sorted(set(listed[0]) - {"usage.csv"}) == sorted(set(listed[1]) - {"usage.csv"})
            continue
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory, mwe: Mwe) -> Path:
    """The local sweep through the command, with an empty cache."""
    work = tmp_path_factory.mktemp("local")
    res = mwe(["sweep", "--series", BUNDLED, *(x for p in DATA for x in ("-d", p)),
               "--limit", "30", "--out", work / "out"], cache=work / "c.sqlite", progress=False,
              env=SETTINGS)
    assert res.returncode == 0, res.stderr
    return work / "out"


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A head (no CPUs: it schedules, runs nothing) and two worker nodes of one CPU each."""
    if not HAVE_RAY:
        pytest.skip("Ray is not installed")
    from ray.cluster_utils import Cluster

    head = Cluster(initialize_head=True, head_node_args={"num_cpus": 0,
                                                         "include_dashboard": False})
    for _ in range(2):
        head.add_node(num_cpus=1)
    head.wait_for_nodes()
    yield head.address
    head.shutdown()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("HF_HUB_OFFLINE", "TOKENIZERS_PARALLELISM", "MWE_SCORE_CHUNK"):
        monkeypatch.setenv(k, ENV[k])


def score_processes() -> list[Any]:
    """Ray worker processes running a unit now (Ray titles them after the task)."""
    import psutil

    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if cmd.startswith("ray::mwe-score:"):
            found.append(p)
    return found


@needs_ray
@pytest.mark.slow
def test_ray_sweep_with_a_worker_killed_is_byte_identical_and_a_rerun_submits_nothing(
        local: Path, cluster: str, env: None, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """One real sweep on two worker nodes, one of whose processes is killed with SIGKILL in
    the middle of a unit: Ray reruns that unit elsewhere, and the files are the local ones."""
    import ray

    killed: list[int] = []
    arrived: list[rs.UnitResult] = []

    def kill_one() -> None:
        # once a unit has arrived (models loaded), kill the next worker seen scoring
        deadline = time.time() + 600
        while time.time() < deadline and not killed:
            if arrived:
                for p in score_processes():
                    p.send_signal(signal.SIGKILL)
                    killed.append(p.pid)
                    return
            time.sleep(0.05)

    watcher = threading.Thread(target=kill_one, daemon=True)
    watcher.start()
    store = Store(tmp_path / "c.sqlite")
    _, _, runs = rs.ray_sweep(load_series(BUNDLED), datasets_30(), "human-assistant",
                              tmp_path / "out", Models(store), address=cluster, progress=False,
                              on_unit=lambda u, r: arrived.append(r))
    watcher.join(timeout=5)
    assert killed, "no worker was seen running a unit"
    assert len(arrived) == 12  # every unit, the killed one rerun by Ray in a new process
    assert not any(p.pid == killed[0] for p in score_processes())
    assert len({r.worker for r in arrived}) >= 2  # units ran in more than one process
    same_files(local, tmp_path / "out")
    assert [r.computed_rows for r in runs] == [60, 60]

    class NoTask:
        def __init__(self, fn: Any) -> None:
            pass

        def options(self, **kw: Any) -> NoTask:
            return self

        def remote(self, *args: Any) -> Any:
            raise AssertionError("a Ray task was submitted for a sweep the store holds")

    monkeypatch.setattr(ray, "remote", NoTask)
    _, _, runs = rs.ray_sweep(load_series(BUNDLED), datasets_30(), "human-assistant",
                              tmp_path / "again", Models(store), address=cluster,
                              progress=False)
    same_files(local, tmp_path / "again")
    assert [r.computed_rows for r in runs] == [0, 0]


DRIVER = """
import sys
from pathlib import Path
from mwe.datasets import Dataset, load
from mwe.models import Models
from mwe.pipeline.evaluate import with_variants
from mwe.pipeline.ray_sweep import ray_sweep
from mwe.series import load_series
from mwe.store import Store
series, work, address, *data = sys.argv[1:]
found, _ = load(data)
ds = with_variants([Dataset(d.name, d.path, d.family, d.items[:30]) for d in found])
ray_sweep(load_series(series), ds, "human-assistant", Path(work) / "out",
          Models(Store(Path(work) / "c.sqlite")), address=address, progress=False)
"""


@needs_ray
@pytest.mark.slow
def test_a_driver_killed_mid_sweep_resumes_from_the_store(local: Path, cluster: str, env: None,
                                                          tmp_path: Path) -> None:
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    cache = tmp_path / "c.sqlite"
    proc = subprocess.Popen([sys.executable, str(script), str(BUNDLED), str(tmp_path), cluster,
                             *map(str, DATA)], env=ENV, cwd=REPO, stderr=subprocess.DEVNULL)
    committed = 0
    try:
        deadline = time.time() + 600
        while time.time() < deadline and proc.poll() is None:
            try:
                with sqlite3.connect(cache, timeout=1) as db:
                    committed = int(db.execute("SELECT COUNT(*) FROM calls").fetchone()[0])
            except sqlite3.Error:
                committed = 0
            if committed >= 20:  # two units of ten
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.1)
    finally:
        proc.kill()
        proc.wait()
    assert 20 <= committed < 120, committed
    assert not (tmp_path / "out").exists()
    with sqlite3.connect(cache) as db:  # what landed before the kill (a unit is atomic)
        committed = int(db.execute("SELECT COUNT(*) FROM calls").fetchone()[0])
    sent: list[rs.Unit] = []
    _, _, runs = rs.ray_sweep(load_series(BUNDLED), datasets_30(), "human-assistant",
                              tmp_path / "out", Models(Store(cache)), address=cluster,
                              progress=False, on_unit=lambda u, r: sent.append(u))
    with sqlite3.connect(cache) as db:
        assert int(db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]) == 120
    # only the units not committed before the kill were sent (these persona rows repeat no
    # question, so a unit is ten calls)
    assert len(sent) * 10 == 120 - committed
    assert sum(r.computed_rows for r in runs) == len(sent) * 10
    same_files(local, tmp_path / "out")


TEXT_SWEEP = ["sweep", "-m", "llamacpp:smollm2-135m-instruct",
              *(x for p in DATA for x in ("-d", p)), "--limit", "3", "--max-tokens", "8",
              "--format", "chat", "--judge", "llamacpp:smollm2-135m-instruct"]


@needs_ray
@pytest.mark.slow
def test_ray_text_sweep_through_the_command_is_byte_identical(cluster: str, tmp_path: Path,
                                                              mwe: Mwe) -> None:
    """`mwe sweep --score text --judge` with and without --ray on the bundled chat model: the
    replies asked on the cluster's nodes, read and judged on the driver, the same bytes; a
    rerun finds every reply in the store and sends no unit."""
    local = mwe([*TEXT_SWEEP, "--score", "text", "--out", tmp_path / "local"],
                cache=tmp_path / "local.sqlite", progress=False, env=SETTINGS, ok=True)
    assert "0 from the cache, 6 computed" in local.stderr
    ray = mwe([*TEXT_SWEEP, "--score", "text", "--out", tmp_path / "ray", "--ray", cluster],
              cache=tmp_path / "ray.sqlite", progress=False, env=SETTINGS, ok=True)
    assert "ray: 2 units to score, 0 rows already in the store" in ray.stderr  # a unit a file
    assert "0 from the cache, 6 computed" in ray.stderr
    same_files(tmp_path / "local", tmp_path / "ray")
    # and the usage ledger counts the workers' calls as computed now, as the local run does
    assert (tmp_path / "ray" / "usage.csv").read_bytes() == \
        (tmp_path / "local" / "usage.csv").read_bytes()
    rows = [json.loads(line) for line in (tmp_path / "ray" / "rows.jsonl").open()]
    assert len(rows) == 6 and all(r["score"] == "text" and r["replies"][0] for r in rows)
    again = mwe([*TEXT_SWEEP, "--score", "text", "--out", tmp_path / "again",
                 "--ray", cluster], cache=tmp_path / "ray.sqlite", progress=False,
                env=SETTINGS, ok=True)
    assert "ray: 0 units to score, 6 rows already in the store" in again.stderr
    same_files(tmp_path / "local", tmp_path / "again")
