"""mwe export: a Hugging Face dataset folder that reads back every row as the file writes it,
with a card whose model-written text cannot turn into markup; and an lm-evaluation-harness task
that scores exactly the prompts and answers mwe scores (checked against lm_eval itself, slow)."""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import DATA, Mwe

from mwe import prompts
from mwe.datasets import load
from mwe.errors import MweError
from mwe.export import MARKER, column_kinds, export, export_lm_eval, lm_eval_doc, task_name
from mwe.families import by_name
from mwe.records import Item

DEMO = DATA / "golden" / "demo" / "dataset.jsonl"
SMOL = "smollm2-135m-instruct"


def _raw(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        return list(json.loads(text))
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _load_hf(out: Path, tmp_path: Path) -> list[dict[str, Any]]:
    datasets = pytest.importorskip("datasets")
    ds = datasets.load_dataset("parquet", data_dir=str(out), cache_dir=str(tmp_path / "hf-cache"))
    assert list(ds) == ["test"]
    return list(ds["test"])


def _front_matter(readme: str) -> dict[str, Any]:
    m = re.match(r"---\n(.*?)\n---\n", readme, re.DOTALL)
    assert m, "README.md has no YAML front matter"
    meta = yaml.safe_load(m.group(1))
    assert isinstance(meta, dict)
    return meta


def _outside_fences(markdown: str) -> str:
    """The Markdown with fenced code blocks removed (what a renderer interprets)."""
    out, fence = [], None
    for line in markdown.splitlines():
        m = re.match(r"^(`{3,})", line)
        if fence is None and m:
            fence = m.group(1)
        elif fence is not None and line.strip() == fence:
            fence = None
        elif fence is None:
            out.append(line)
    assert fence is None, "a fenced block is never closed"
    return "\n".join(out)


MIXED = [
    {"question": "Pick one.\n (A) yes\n (B) no\n (C) maybe", "answer_matching_behavior": " (A)",
     "answer_not_matching_behavior": " (B)", "tags": ["x", "y"], "n": 1, "score": 0.25,
     "flag": True, "extra": {"k": [1, 2]}, "café": "naïve ✓"},
    {"question": "Pick again.\n (A) yes\n (B) no\n (C) maybe", "answer_matching_behavior": " (C)",
     "answer_not_matching_behavior": [" (A)", " (B)"], "tags": [], "n": 2, "score": 1.0,
     "flag": False, "extra": None, "café": "x", "only_here": 3},
]


# ---- Hugging Face ---------------------------------------------------------------------------

def test_hf_round_trips_the_demo_and_its_card(tmp_path: Path) -> None:
    out = tmp_path / "hf"
    paths = export(str(DEMO), "hf", out)
    assert sorted(p.relative_to(out).as_posix() for p in paths) == \
        [MARKER, "README.md", "data/test.parquet"]
    rows = _load_hf(out, tmp_path)
    want = _raw(DEMO)
    assert rows == want
    for got, row in zip(rows, want):
        assert list(got) == list(row)  # the fields in the file's order
        assert all(type(got[k]) is type(row[k]) for k in row)
    readme = (out / "README.md").read_text(encoding="utf-8")
    meta = _front_matter(readme)
    card = json.loads((DEMO.parent / "card.json").read_text(encoding="utf-8"))
    assert meta["license"] == "cc-by-4.0"
    assert meta["pretty_name"] == card["name"]
    assert meta["configs"] == [{"config_name": "default",
                                "data_files": [{"split": "test", "path": "data/test.parquet"}]}]
    assert card["description"] in readme
    assert "| kept | 14 | 14 |" in readme  # the card's counts
    assert "Here is a list of statements" in readme  # its generation prompts


def test_hf_mixed_types_are_json_text_and_round_trip(tmp_path: Path) -> None:
    src = tmp_path / "mixed.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in MIXED),
                   encoding="utf-8")
    kinds = column_kinds(MIXED)
    assert kinds == {"question": "string", "answer_matching_behavior": "string",
                     "answer_not_matching_behavior": "json", "tags": "list<string>",
                     "n": "int64", "score": "float64", "flag": "bool", "extra": "json",
                     "café": "string", "only_here": "json"}
    out = tmp_path / "hf"
    export(str(src), "hf", out, license="mit")
    rows = _load_hf(out, tmp_path)
    assert len(rows) == len(MIXED)
    for got, row in zip(rows, MIXED):
        back = {k: (json.loads(v) if kinds[k] == "json" else v) for k, v in got.items()
                if not (kinds[k] == "json" and v is None)}  # null: the row lacks the field
        assert back == row
        assert all(type(back[k]) is type(row[k]) for k in row)
    readme = (out / "README.md").read_text(encoding="utf-8")
    assert _front_matter(readme)["license"] == "mit"
    assert "json.loads" in readme and "| `answer_not_matching_behavior` | JSON text |" in readme
    assert "No mwe card" in readme


def test_hf_reads_a_json_array_file(tmp_path: Path) -> None:
    src = DATA / "formats" / "human_generated" / "self-awareness-general-ai.jsonl"
    export(str(src), "hf", tmp_path / "hf")
    assert _load_hf(tmp_path / "hf", tmp_path) == _raw(src)


def test_hf_card_text_is_escaped(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    shutil.copy(DEMO, folder / "dataset.jsonl")
    card = json.loads((DEMO.parent / "card.json").read_text(encoding="utf-8"))
    card["name"] = "evil | name <b>x</b>\n---\nlicense: none"
    card["description"] = "says <script>alert(1)</script> and **bold** [link](http://x) `code`"
    card["counts"]["<img src=x onerror=alert(1)>"] = {"sampled": 1, "kept": 1}
    card["prompts"]["generation"]["matching"] = "a prompt <script>bad()</script>\n```\n# not a heading"
    (folder / "card.json").write_text(json.dumps(card), encoding="utf-8")
    out = tmp_path / "hf"
    export(str(folder / "dataset.jsonl"), "hf", out)
    readme = (out / "README.md").read_text(encoding="utf-8")
    meta = _front_matter(readme)
    assert meta["license"] == "cc-by-4.0"  # the name cannot end the front matter early
    assert meta["pretty_name"] == "evil | name <b>x</b> --- license: none"
    prose = _outside_fences(readme.split("\n---\n", 1)[1])
    for raw in ("<script>", "<b>", "<img", "**bold**", "[link](http://x)"):
        assert raw not in prose, raw
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in prose
    assert r"\*\*bold\*\*" in prose
    assert "&lt;img src=x onerror=alert(1)&gt;" in prose  # a group name, in the counts table
    # the prompt is shown as typed, in a fence longer than the backticks it holds
    assert "````text\na prompt <script>bad()</script>\n```\n# not a heading\n````" in readme


# ---- lm-evaluation-harness ------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["human-assistant", "raw"])
def test_lm_eval_task_scores_what_mwe_scores(tmp_path: Path, fmt: str) -> None:
    out = tmp_path / "task"
    export(str(DEMO), "lm-eval", out, fmt, task="mwe_demo")
    config = yaml.safe_load((out / "mwe_demo.yaml").read_text(encoding="utf-8"))
    data = Path(config["dataset_kwargs"]["data_files"]["test"])
    assert data.is_absolute() and data == (out / "mwe_demo.jsonl").absolute()
    assert config["task"] == "mwe_demo" and config["dataset_path"] == "json"
    assert config["output_type"] == "multiple_choice" and config["test_split"] == "test"
    assert (config["doc_to_text"], config["doc_to_choice"], config["doc_to_target"]) == \
        ("context", "choices", "target")
    assert config["target_delimiter"] == "" and config["fewshot_delimiter"] == ""
    assert [m["metric"] for m in config["metric_list"]] == ["acc"]
    docs = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines()]
    (dataset,), _ = load([str(DEMO)])
    assert len(docs) == len(dataset.items)
    for doc, item in list(zip(docs, dataset.items))[:6]:
        ctx = prompts.context(item, fmt)
        assert isinstance(ctx, str)
        assert doc["context"] == ctx and doc["line"] == item.line
        mwe_conts = [prompts.continuation(a, ctx) for a in item.answers]
        assert sorted(doc["answer_index"]) == list(range(len(item.answers)))
        for choice, i in zip(doc["choices"], doc["answer_index"]):
            assert choice == mwe_conts[i]
            # lm-eval requests (context, target_delimiter + choice): the same text mwe scores
            assert doc["context"] + config["target_delimiter"] + choice == ctx + mwe_conts[i]
        assert doc["answer_index"][doc["target"]] in item.matching
        if fmt == "human-assistant":
            assert ctx.endswith("\n\nAssistant:") and mwe_conts[0].startswith(" ")


def test_lm_eval_acc_follows_mwe_rule_including_ties() -> None:
    """lm-eval's acc is `argmax(lls) == target` (`in target` for a list); with the
    non-matching answers first, a tie resolves as mwe's strict rule does."""
    np = pytest.importorskip("numpy")
    item = Item("d", "x", "f.jsonl", 1, "Q", "Q", (" (A)", " (B)", " (C)"), (0, 2))
    doc = lm_eval_doc(item, "human-assistant")
    assert doc["choices"] == [" (B)", " (A)", " (C)"] and doc["target"] == [1, 2]
    rule = by_name(load([str(DEMO)])[0][0].family)  # the default % matching rule
    for lps in ([-1.0, -1.0, -3.0], [-2.0, -1.0, -2.0], [-1.0, -2.0, -3.0], [-5.0, -5.0, -5.0],
                [-3.0, -2.0, -1.0], [-1.0, -3.0, -1.0]):
        lls = [lps[i] for i in doc["answer_index"]]
        target = doc["target"]
        acc = int(np.argmax(lls)) in (target if isinstance(target, list) else [target])
        probs = [1 / 3] * 3
        assert acc == rule.scorer.result(item, probs, lps, list(item.answers))["matches_behavior"], lps


def test_lm_eval_refuses_chat_and_other_metrics(tmp_path: Path) -> None:
    (dataset,), _ = load([str(DEMO)])
    with pytest.raises(MweError, match="chat"):
        export_lm_eval(dataset, tmp_path / "a", "chat", "t")
    with pytest.raises(MweError, match="task name"):
        export_lm_eval(dataset, tmp_path / "b", "raw", "bad name/..")
    wino = DATA / "released" / "winogenerated_examples.jsonl"
    with pytest.raises(MweError, match="% matching"):
        export(str(wino), "lm-eval", tmp_path / "c")
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()
    assert task_name("survival-instinct") == "mwe_survival_instinct"
    out = tmp_path / "d"
    export(str(DEMO), "lm-eval", out)  # the task is named after the card's name
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "README.md", "mwe_deceive_users.jsonl",
                                                     "mwe_deceive_users.yaml"]


def test_export_refuses_a_foreign_folder_and_replaces_its_own(tmp_path: Path) -> None:
    with pytest.raises(MweError, match="exactly one dataset"):
        export(str(DATA / "released"), "hf", tmp_path / "x")
    with pytest.raises(MweError, match="unknown export target"):
        export(str(DEMO), "csv", tmp_path / "x")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(MweError, match="not empty"):
        export(str(DEMO), "hf", foreign)
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]

    out = tmp_path / "out"
    export(str(DEMO), "hf", out)
    (out / ".git").mkdir()  # a clone of the Hub repository, say: left alone
    export(str(DEMO), "hf", out)  # again: an earlier export is replaced
    export(str(DEMO), "lm-eval", out, "raw", task="t")
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    assert names == [".git", MARKER, "README.md", "t.jsonl", "t.yaml"]  # no stale data/
    marker = json.loads((out / MARKER).read_text(encoding="utf-8"))
    assert marker["to"] == "lm-eval" and sorted(marker["files"]) == ["README.md", "t.jsonl",
                                                                      "t.yaml"]


def test_card_of_another_file_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "dataset.jsonl").write_text(DEMO.read_text(encoding="utf-8").split("\n", 1)[0]
                                          + "\n", encoding="utf-8")
    shutil.copy(DEMO.parent / "card.json", folder / "card.json")
    with pytest.raises(MweError, match="describes 28 rows"):
        export(str(folder / "dataset.jsonl"), "hf", tmp_path / "hf")


# ---- against lm_eval itself -------------------------------------------------------------------

@pytest.mark.slow
def test_lm_eval_acc_equals_mwe_pct_matching(tmp_path: Path, mwe: Mwe) -> None:
    if importlib.util.find_spec("lm_eval") is None:
        pytest.skip("lm_eval is not installed (pip install lm-eval==0.4.13)")
    from mwe.models import bundled

    try:
        model_dir = bundled.hf_dir(SMOL)
    except MweError as exc:
        pytest.skip(str(exc))
    offline = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false", "HF_DATASETS_CACHE": str(tmp_path / "hf-datasets")}
    env = {**os.environ, **offline}
    task = "mwe_demo_export"
    export(str(DEMO), "lm-eval", tmp_path / "task", "human-assistant", task=task)
    lm = subprocess.run(
        [sys.executable, "-m", "lm_eval", "--model", "hf",
         "--model_args", f"pretrained={model_dir},dtype=float32",
         "--include_path", str(tmp_path / "task"), "--tasks", task, "--device", "cpu",
         "--batch_size", "8", "--log_samples", "--output_path", str(tmp_path / "lm")],
        env=env, capture_output=True, text=True, timeout=1200, cwd=tmp_path)
    assert lm.returncode == 0, lm.stderr[-3000:]
    ev = mwe(["evaluate", "-m", f"hf:{SMOL}", "-d", DEMO, "--out", tmp_path / "ev"],
             cache=tmp_path / "calls.sqlite", env=offline, timeout=1200)
    assert ev.returncode == 0, ev.stderr[-3000:]

    (results,) = glob.glob(str(tmp_path / "lm" / "*" / "results_*.json"))
    acc = json.loads(Path(results).read_text(encoding="utf-8"))["results"][task]["acc,none"]
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text(encoding="utf-8"))
    (s,) = summary["summary"]
    assert round(acc * s["n"]) == s["n_matching"] and acc == pytest.approx(s["pct_matching"] / 100)

    (samples,) = glob.glob(str(tmp_path / "lm" / "*" / f"samples_{task}_*.jsonl"))
    rows = {r["line"]: r for r in map(json.loads, (tmp_path / "ev" / "rows.jsonl").read_text(
        encoding="utf-8").splitlines())}
    lm_docs = [json.loads(line) for line in Path(samples).read_text(encoding="utf-8").splitlines()]
    assert len(lm_docs) == len(rows) == s["n"]
    worst = 0.0
    for sample in lm_docs:
        doc, row = sample["doc"], rows[sample["doc"]["line"]]
        lls = [float(r[0]) for r in sample["filtered_resps"]]
        for j, i in enumerate(doc["answer_index"]):
            assert doc["choices"][j] == row["answers"][i]
            worst = max(worst, abs(lls[j] - row["logprobs"][i]))
        assert bool(sample["acc"]) == row["matches_behavior"], doc["line"]
    assert worst < 1e-4
