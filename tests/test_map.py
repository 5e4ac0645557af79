"""The dataset map: naming replies and their fallback (unit tests); `mwe map` on real data
with the bundled embedder and namer, in the report, in real chromium (integration)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import REPO, Mwe

from mwe import map as dataset_map

XSS = '</script><script>alert("x")</script><img src=x onerror=alert(2)>'


def test_cluster_names_from_a_reply_or_the_words() -> None:
    assert dataset_map.parse_names('Power", "Control", "Money"]\nmore') == [
        "Power", "Control", "Money"]
    assert dataset_map.parse_names('Power", "power", "Wealth and influence"') == [
        "Power", "Wealth and influence"]  # cut off mid-list, repeats dropped
    shown = ["I want to control everything."]
    assert dataset_map.parse_names('I want to control everything.", "Control"]', shown) == [
        "Control"]  # a copied sentence is no label
    assert dataset_map.parse_names("not json at all") is None
    assert dataset_map.parse_names('a b c d e f g h"]') is None  # too long to be a label
    words = dataset_map.distinctive_words(
        ["I love money and money", "money buys power", "more money"],
        ["I like kindness", "kindness and friends", "be kind to friends"])
    assert words[0] == "money" and "kindness" not in words


@pytest.mark.slow
def test_map_of_a_dataset_in_the_report_and_in_chromium(tmp_path: Path, mwe: Mwe) -> None:
    from test_pipeline import chromium

    rows = [json.loads(line) for line in
            (REPO / "examples" / "data" / "persona" / "agreeableness.jsonl").open()][:40]
    rows[3]["statement"] = XSS
    data = tmp_path / "agree-40.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "map"
    res = mwe(["map", data, "--out", out, "--clusters", "4"], cache=tmp_path / "c.sqlite")
    assert res.returncode == 0, res.stderr
    m = json.loads((out / "map.json").read_text())["maps"][0]
    assert len(m["points"]) == 40 and m["projection"] == "umap" and len(m["clusters"]) == 4
    assert sum(c["size"] for c in m["clusters"]) == 40
    for c in m["clusters"]:
        members = [p for p in m["points"] if p["cluster"] == c["cluster"]]
        assert c["size"] == len(members) and sum(c["labels"].values()) == len(members)
        assert c["names"] and c["named_by"] in ("llamacpp:smollm2-135m-instruct", "words")
    page = (out / "map.html").read_text()
    assert XSS not in page and "https://" not in page.split("<script>")[0]
    exe = chromium()
    if exe is None:
        pytest.skip("no chromium (make test installs Debian's chromium as root)")
    from playwright.sync_api import sync_playwright

    mwe(["report", out, "--out", tmp_path / "r.html"], check=True, timeout=300)
    errors: list[str] = []
    requests: list[str] = []
    for html in (out / "map.html", tmp_path / "r.html"):
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=exe, args=["--no-sandbox"])
            tab = browser.new_page(viewport={"width": 1200, "height": 900})
            tab.on("pageerror", lambda e: errors.append(str(e)))
            tab.on("dialog", lambda d: (errors.append("dialog " + d.message), d.dismiss()))
            tab.on("request", lambda r: requests.append(r.url))
            tab.goto(html.as_uri())
            tab.wait_for_selector(".mwe-map-plot .scatterlayer .point")
            assert tab.locator(".mwe-map-plot .scatterlayer .point").count() == 40
            assert tab.locator(".mwe-map-plot .scatterlayer .trace").count() == 2  # Yes, No
            tab.select_option(".mwe-map-colour", "cluster")
            tab.wait_for_timeout(200)
            assert tab.locator(".mwe-map-plot .scatterlayer .trace").count() == 4
            tab.locator(".mwe-map-conf").fill("100")  # only rows at full confidence
            tab.wait_for_timeout(200)
            shown = tab.locator(".mwe-map-plot .scatterlayer .point").count()
            assert shown == sum(1 for p in m["points"] if (p["confidence"] or 0) >= 1.0)
            tab.locator(".mwe-map-conf").fill("0")
            tab.wait_for_timeout(200)
            xss = next(p for p in m["points"] if p["text"] == XSS)
            tab.locator(".mwe-map-plot .scatterlayer .point").first.click(force=True)
            tab.wait_for_selector(".mwe-map-rows table")
            listed = tab.locator(".mwe-map-rows table tr").count() - 1
            assert listed in [c["size"] for c in m["clusters"]]
            cells = tab.locator(".mwe-map-rows td").all_inner_texts()
            if any(xss["line"] == int(t) for t in cells if t.isdigit()):
                assert XSS in cells
            assert tab.locator(".mwe-map-rows img, .mwe-map-rows script").count() == 0
            browser.close()
        assert errors == [] and [u for u in requests if not u.startswith(("file:", "data:"))] == []


def test_rebalance_within_clusters_with_the_real_embedder(tmp_path: Path) -> None:
    """Two topics, each lopsided the other way: overall balanced, yet each topic carries one
    label. Rebalancing keeps per topic as many of each label as the rarer one has."""
    from mwe.card import FILTER_STEPS, markdown
    from mwe.models import Models
    from mwe.pipeline.filter import Scored, rebalance_by_cluster
    from mwe.store import Store

    money = ["I want more money in my bank account.", "Money is what I care about most.",
             "I would do anything to become rich.", "Wealth is the goal of my life.",
             "I love earning money.", "Being wealthy matters to me."]
    kind = ["I always try to be kind to strangers.", "Helping others makes me happy.",
            "I care about the feelings of my friends.", "Kindness is important to me.",
            "I like to comfort people who are sad.", "Being gentle with others matters."]
    texts = {f"m{i}": t for i, t in enumerate(money)} | {f"k{i}": t for i, t in enumerate(kind)}
    yes = [Scored(f"m{i}", " Yes", 0.9 - i / 100, 0.9 - i / 100) for i in range(5)] + \
        [Scored("k0", " Yes", 0.8, 0.8)]
    no = [Scored(f"k{i}", " No", 0.9 - i / 100, 0.9 - i / 100) for i in range(1, 6)] + \
        [Scored("m5", " No", 0.7, 0.7)]
    kept = {" Yes": yes, " No": no}
    by_id = {k: {"text": t} for k, t in texts.items()}
    out, info = rebalance_by_cluster(kept, by_id, Models(Store(tmp_path / "c.sqlite")), 2, 0)
    # k-means on the embeddings finds the two topics; each keeps one of each label
    assert info["clusters"] == 2 and info["removed"] == 8
    assert sorted(sorted(c["before"].values()) for c in info["per_cluster"]) == [[1, 5], [1, 5]]
    assert all(set(c["after"].values()) == {1} for c in info["per_cluster"])
    assert [c.id for c in out[" Yes"]] == ["m0", "k0"]  # the best-scored of each topic stay
    assert [c.id for c in out[" No"]] == ["k1", "m5"]
    card = {"name": "x", "family": "persona", "description": "d", "generator": {"spec": "g"},
            "prompts": {"prompt_style": "chat"}, "sampling": {"temperature": 1, "top_p": 1,
            "max_tokens": 1}, "seed": 0, "discriminator": {"spec": "d", "format": "f"},
            "selection": {"calibration": "none", "rule": "r", "top_k": 1},
            "dedup": {"method": "m"}, "counts": {" Yes": {}, " No": {}}, "rows": 4,
            "label_balance": {}, "label_confidence": {"mean": 1, "min": 1, "max": 1,
                                                      "histogram": []},
            "estimated_accuracy": {"ceiling": 1, "floor": 0},
            "diversity": {"distinct_1": 1, "distinct_2": 1, "distinct_3": 1},
            "rebalance": info}
    text = markdown(card, FILTER_STEPS)
    assert "Rebalanced within 2 k-means clusters" in text and "| Yes before | Yes after |" in text


def test_rebalance_of_identical_texts_makes_no_empty_cluster(tmp_path: Path) -> None:
    """Rows that embed identically form one cluster, however many are asked for: k-means with
    more clusters than distinct points leaves some empty (and scikit-learn warns)."""
    import warnings

    from mwe.models import Models
    from mwe.pipeline.filter import Scored, rebalance_by_cluster
    from mwe.store import Store

    kept = {" Yes": [Scored(f"y{i}", " Yes", 0.9, 0.9) for i in range(3)],
            " No": [Scored(f"n{i}", " No", 0.8, 0.8) for i in range(3)]}
    by_id = {c.id: {"text": "I like cats."} for v in kept.values() for c in v}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a ConvergenceWarning fails the test
        out, info = rebalance_by_cluster(kept, by_id, Models(Store(tmp_path / "c.sqlite")), 5, 0)
    assert info["clusters"] == 1 and info["removed"] == 0
    assert [len(v) for v in out.values()] == [3, 3]


NUMBA_FAKE = '''
import ctypes, numba
c_abs = ctypes.CDLL(None).labs
c_abs.restype, c_abs.argtypes = ctypes.c_long, [ctypes.c_long]

@numba.njit
def uses_ctypes(x):  # a dynamic global: numba warns and does not cache it
    return c_abs(x)

def make(k):
    @numba.njit
    def inner(x):  # a closure: cached, keyed by its closure's values
        return x + k
    return inner

closure = make(3)
ns = {}
exec("import numba\\n@numba.njit\\ndef nofile(x):\\n    return x * 2\\n", ns)
nofile = ns["nofile"]  # no source file: no cache locator, left uncached
'''


def test_numba_functions_that_cannot_be_cached_stay_uncached(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util
    import sys
    import warnings

    from numba import config

    (tmp_path / "mwe_fake_numba.py").write_text(NUMBA_FAKE)
    spec = importlib.util.spec_from_file_location("mwe_fake_numba", tmp_path / "mwe_fake_numba.py")
    assert spec is not None and spec.loader is not None
    fake = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fake)
    monkeypatch.setitem(sys.modules, "mwe_fake_numba", fake)
    monkeypatch.setattr(dataset_map, "NUMBA_MODULES", ("mwe_fake_numba",))
    monkeypatch.setattr(dataset_map, "_numba_cached", False)
    monkeypatch.setattr(config, "CACHE_DIR", "")
    monkeypatch.setenv("MWE_CACHE_DIR", str(tmp_path / "mwe-cache"))
    assert dataset_map.numba_cache_dir() == tmp_path / "mwe-cache" / "numba"
    assert dataset_map.cache_numba_code() == 2  # the closure and the ctypes user
    assert dataset_map.cache_numba_code() == 0  # once per process
    assert config.CACHE_DIR == ""  # numba's own setting is left as it was
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert (fake.uses_ctypes(-5), fake.closure(1), fake.nofile(4)) == (5, 4, 8)
    assert any("Cannot cache" in str(w.message) for w in caught)
    index = [p.name.split("-")[0] for p in (tmp_path / "mwe-cache" / "numba").rglob("*.nbi")]
    assert index == ["mwe_fake_numba.make.locals.inner"]
    monkeypatch.setattr(config, "CACHE_DIR", str(tmp_path / "user-numba"))
    assert dataset_map.numba_cache_dir() == tmp_path / "user-numba"  # NUMBA_CACHE_DIR wins


PROJECT_CHILD = '''
import json, sys
import numpy as np
import umap  # its eagerly typed functions compile here, before caching can be enabled
from numba.core import event
from mwe import map as dataset_map

compiled = []
class Listener(event.Listener):
    def on_start(self, ev): pass
    def on_end(self, ev): compiled.append(ev.data["dispatcher"].py_func.__qualname__)
event.register("numba:compile", Listener())
vectors = np.random.default_rng(0).normal(size=(28, 384))
xy, how = dataset_map.project(vectors, 0)
print(json.dumps({"compiled": compiled, "how": how, "xy": xy.tolist()}))
'''


@pytest.mark.slow
def test_a_second_map_process_loads_umaps_compiled_code(tmp_path: Path) -> None:
    """UMAP's functions are compiled once, in the first process, and their machine code kept
    in mwe's cache folder: the second process compiles nothing and gets the same map."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["MWE_CACHE_DIR"] = str(tmp_path)
    runs = []
    for _ in range(2):
        res = subprocess.run([sys.executable, "-c", PROJECT_CHILD], env=env, cwd=REPO,
                             capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr
        runs.append(json.loads(res.stdout))
        if not runs[1:]:
            index = {p.name.split("-")[0] for p in (tmp_path / "numba").rglob("*.nbi")}
            assert {"umap_.smooth_knn_dist", "umap_.compute_membership_strengths",
                    "layouts._optimize_layout_euclidean_single_epoch"} <= index
    first, second = runs
    assert first["how"] == "umap" and "smooth_knn_dist" in first["compiled"]
    assert second["compiled"] == []
    assert second["xy"] == first["xy"]  # bit-identical: loaded code is the compiled code
