"""Human validation: sampling, answer files, the study on disk (unit tests); the rating app on
a real uvicorn server (tokens, kill -9, resuming) and in real chromium by keyboard; stats
and the report section end to end."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import REPO, Mwe

from mwe.errors import DataError, MweError
from mwe.validate import commands
from mwe.validate.answers import read_answers
from mwe.validate.sample import all_items, sample_items
from mwe.validate.study import Study

PERSONA = REPO / "examples" / "data" / "persona"
XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def small(tmp_path: Path, n: int = 6, name: str = "wants-more-power") -> Path:
    """A persona-style file with a statement that tries to be markup."""
    path = tmp_path / f"{name}.jsonl"
    rows = [{"question": f"Is the following statement something you would say?\n\"I want "
                         f"power number {k}{' ' + XSS if k == 2 else ''}\"",
             "statement": f"I want power number {k}", "label_confidence": 0.6 + 0.05 * k,
             "answer_matching_behavior": " Yes" if k % 2 else " No",
             "answer_not_matching_behavior": " No" if k % 2 else " Yes"} for k in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# --- sampling, answers, the study ---------------------------------------------------------

def test_sampling_is_seeded_and_the_same_for_everyone(tmp_path: Path) -> None:
    big = PERSONA / "agreeableness.jsonl"
    a = sample_items([str(big), str(small(tmp_path))], per_dataset=20, seed=3)
    b = sample_items([str(big), str(small(tmp_path))], per_dataset=20, seed=3)
    c = sample_items([str(big)], per_dataset=20, seed=4)
    assert a == b and [i.line for i in a if i.dataset == "agreeableness"] != [i.line for i in c]
    assert sum(i.dataset == "agreeableness" for i in a) == 20
    assert [i.line for i in a if i.dataset == "wants-more-power"] == [1, 2, 3, 4, 5, 6]  # all
    lines = [i.line for i in a if i.dataset == "agreeableness"]
    assert lines == sorted(lines) and len(set(lines)) == 20
    it = next(i for i in a if i.dataset == "wants-more-power")
    assert it.answers == (" Yes", " No") and it.label == (" No",)
    assert it.label_confidence == pytest.approx(0.6)
    assert it.description == 'has the behavior "wants more power"'
    assert sample_items([str(big)], 5, description="is agreeable")[0].description == "is agreeable"


def test_answer_files_are_checked_row_by_row(tmp_path: Path) -> None:
    items = all_items([str(small(tmp_path))])
    path = tmp_path / "answers.csv"
    head = "dataset,item,rater,relevance,answer,ambiguous\n"
    path.write_text(head + "wants-more-power,1,ann,5,Yes,no\nwants-more-power,2,ann,,,\n")
    got = read_answers(path, items)
    assert got[0].answer == " Yes" and got[0].relevance == 5 and got[0].ambiguous is False
    assert (got[1].relevance, got[1].answer, got[1].ambiguous) == (None, None, None)
    for body, where in [
        ("wants-more-power,1,ann,6,Yes,no\n", ":2: field 'relevance': expected 1 to 5"),
        ("wants-more-power,1,ann,5,Maybe,no\n", ":2: field 'answer': 'Maybe' is not one"),
        ("wants-more-power,1,ann,5,Yes,perhaps\n", ":2: field 'ambiguous': expected yes or no"),
        ("wants-more-power,99,ann,5,Yes,no\n", ":2: field 'item': dataset 'wants-more-power' "
                                               "has no item (line) 99"),
        ("wants-more-power,1,ann,5,Yes,no\nwants-more-power,1,ann,4,No,no\n",
         ":3: field 'rater': 'ann' answered this item already on line 2"),
        ("wants-more-power,1,,5,Yes,no\n", ":2: field 'rater': is empty"),
    ]:
        path.write_text(head + body)
        with pytest.raises(DataError) as err:
            read_answers(path, items)
        assert str(err.value).startswith(f"{path}{where}"), str(err.value)
    path.write_text("dataset,item,rater,answer\n")
    with pytest.raises(DataError, match=r"answers.csv:1: field 'relevance': missing column"):
        read_answers(path, items)


def test_a_study_keeps_its_sample_and_tokens(tmp_path: Path) -> None:
    data = [str(small(tmp_path))]
    study = commands.open_study(tmp_path / "s", data, per_dataset=4, seed=1)
    first = study.add_raters(["ann", "bo"])
    assert len({r.token for r in first}) == 2 and all(len(r.token) >= 24 for r in first)
    study.save("ann", 0, 3, " Yes", True)
    study.close()
    again = commands.open_study(tmp_path / "s", data, per_dataset=4, seed=1)
    assert again.add_raters(["bo", "cy"])[:2] == first
    assert again.ratings()[0].answer == " Yes" and len(again.items()) == 4
    with pytest.raises(MweError, match="holds a study of other datasets or settings"):
        commands.open_study(tmp_path / "s", data, per_dataset=4, seed=2)
    with pytest.raises(MweError, match="not a validation study"):
        Study(tmp_path / "nothing")
    for bad in ("", "a,a", "a b", "0"):
        with pytest.raises(MweError, match="--raters"):
            commands.rater_names(bad)
    assert commands.rater_names("2") == ["rater-1", "rater-2"]


# --- the app on a real server ---------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`mwe validate serve` in a subprocess, with the links it prints."""

    def __init__(self, mwe: Mwe, args: list[str], port: int) -> None:
        self.port = port
        self.proc = mwe.popen(["validate", "serve", *args, "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.links: dict[str, str] = {}
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            m = re.match(r"\s+(\S+): (http://\S+)$", line)
            if m:
                self.links[m.group(1)] = m.group(2)
            if line.startswith("Ctrl-C"):
                break
        else:
            raise AssertionError("the server did not start")
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("the server is not listening")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)


def call(url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="GET" if body is None else "POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            return res.status, json.loads(res.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture()
def served(tmp_path: Path, mwe: Mwe) -> Iterator[tuple[Server, Path, list[str]]]:
    data = [str(small(tmp_path))]
    args = [*data, "--raters", "ann,bo", "--out", str(tmp_path / "study")]
    server = Server(mwe, args, free_port())
    yield server, tmp_path / "study", args
    if server.proc.poll() is None:
        server.kill()


def test_tokens_keep_raters_apart_and_kill_9_loses_nothing(
        served: tuple[Server, Path, list[str]], mwe: Mwe) -> None:
    server, folder, args = served
    ann, bo = server.links["ann"], server.links["bo"]
    assert ann.startswith(f"http://127.0.0.1:{server.port}/rate/")
    for k, (rel, ans, amb) in enumerate([(5, " Yes", False), (2, " No", True), (4, None, None)]):
        code, got = call(f"{ann}/item/{k}", {"relevance": rel, "answer": ans, "ambiguous": amb})
        assert code == 200 and got["saved"] == {"relevance": rel, "answer": ans, "ambiguous": amb}
    assert got["done"] == 2  # the third is not complete yet
    # bo's link shows bo's own (empty) answers for the same items, and writes only bo's
    code, seen = call(f"{bo}/item/0")
    assert code == 200 and seen["saved"] == {"relevance": None, "answer": None, "ambiguous": None}
    call(f"{bo}/item/0", {"relevance": 1, "answer": None, "ambiguous": None})
    assert call(f"{ann}/item/0")[1]["saved"]["relevance"] == 5
    # no token, a wrong token, a bad answer
    base = ann.rsplit("/", 1)[0]
    assert call(f"{base}/not-a-token/item/0")[0] == 404
    assert call(f"{base}/{'x' * 24}")[0] == 404
    assert call(f"{ann}/item/0", {"answer": " Maybe"})[0] == 400
    assert call(f"{ann}/item/0", {"relevance": 9})[0] == 400
    assert call(f"{ann}/item/99")[0] == 404
    # the page carries no model-written text: it arrives as JSON, put in with textContent
    with urllib.request.urlopen(ann, timeout=10) as res:
        page = res.read().decode()
        assert "script-src 'nonce-" in res.headers["Content-Security-Policy"]
    assert "power number" not in page and "<script nonce=" in page
    server.kill()
    again = Server(mwe, args[-2:], server.port)  # reopened without the datasets
    try:
        assert again.links == server.links
        assert call(f"{ann}/item/1")[1]["saved"] == {"relevance": 2, "answer": " No",
                                                     "ambiguous": True}
        study = Study(folder)
        assert len(study.ratings()) == 4
        assert next(r for r in study.raters() if r.name == "ann").position == 1
    finally:
        again.kill()


def test_stats_from_the_study_and_from_an_answer_file_agree(tmp_path: Path, mwe: Mwe) -> None:
    data = [str(small(tmp_path))]
    study = commands.open_study(tmp_path / "s", data, per_dataset=100)
    study.add_raters(["ann", "bo", "cy"])
    labels = {it.line: it.label[0] for it in study.items()}
    for k, it in enumerate(study.items()):
        for j, who in enumerate(["ann", "bo", "cy"]):
            wrong = j == 2 and k % 3 == 0
            answer = labels[it.line] if not wrong else next(a for a in it.answers
                                                            if a != labels[it.line])
            study.save(who, k, 3 + (j + k) % 3, answer, j == 0 and k == 1)
    one = commands.write_stats(tmp_path / "a", *commands.study_ratings(study), "study")
    res = mwe(["validate", "stats", "--answers", tmp_path / "a" / "answers.csv",
               "--data", data[0], "--out", tmp_path / "b"], timeout=120)
    assert res.returncode == 0, res.stderr
    two = json.loads((tmp_path / "b" / "validation.json").read_text())["results"]
    assert one == two
    row = one[0]
    assert (row["n_items"], row["n_raters"], row["label_correct"]) == (6, 3, 1.0)
    assert row["ambiguous"]["1"] == 1 and row["ambiguous"]["0"] == 5
    assert "Fleiss kappa 0.875" in res.stdout
    # the report shows it, escaped, beside the paper's figures
    from mwe.pipeline.report import write_report

    html, _ = write_report([tmp_path / "b"], tmp_path / "r.html")
    section = html.read_text().split('<section id="validation">')[1].split("</section>")[0]
    assert "wants-more-power" in section and "Perez et al. (2022)" in section
    assert "0.875" in section and "<img src=x" not in section


@pytest.mark.slow
def test_a_rater_answers_by_keyboard_in_chromium_through_a_kill_9(
        served: tuple[Server, Path, list[str]], tmp_path: Path, mwe: Mwe) -> None:
    from test_pipeline import chromium

    exe = chromium()
    if exe is None:
        pytest.skip("no chromium (make test installs Debian's chromium as root; or set "
                    "MWE_CHROMIUM)")
    from playwright.sync_api import expect, sync_playwright

    def at(tab: Any, text: str) -> None:  # locator checks: the page's CSP forbids eval
        expect(tab.locator("#progress")).to_have_text(re.compile("^" + re.escape(text)))

    server, folder, args = served
    ann, bo = server.links["ann"], server.links["bo"]
    dialogs: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        tab = browser.new_page(viewport={"width": 1000, "height": 900})
        tab.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        tab.goto(ann)
        tab.wait_for_selector("#answer button")
        questions = []
        for k in range(3):
            at(tab, f"item {k + 1} of")
            questions.append(tab.inner_text("#question"))
            for key in ("4", "b", "n"):
                tab.keyboard.press(key)
                expect(tab.locator("#status")).to_have_text("saved ✓")
            tab.keyboard.press("Enter")
        at(tab, "item 4 of")
        tab.screenshot(path=str(tmp_path / "rating.png"))
        server.kill()  # mid-study: every answer given so far is on disk
        again = Server(mwe, args, server.port)
        try:
            tab.goto(ann)  # the same link: where the rater stopped
            at(tab, "item 4 of 6 · 3 done")
            tab.keyboard.press("ArrowLeft")
            at(tab, "item 3 of")
            assert tab.inner_text("#question") == questions[2]
            assert tab.locator("#relevance button.on").inner_text().endswith("Good")
            assert tab.locator("#answer button.on").inner_text().endswith("No")
            # the statement written as markup is text on the page, and ran nothing
            k = next(k for k in range(6) if XSS in call(f"{ann}/item/{k}")[1]["question"])
            tab.goto(ann)  # opens where the rater last was: item k, just fetched
            at(tab, f"item {k + 1} of")
            assert XSS in tab.inner_text("#question")
            assert tab.locator("#question img, #question script").count() == 0
            # the second rater's link shows none of the first rater's answers
            other = browser.new_page()
            other.goto(bo)
            other.wait_for_selector("#answer button")
            expect(other.locator("#progress")).to_have_text(re.compile("0 done$"))
            assert other.locator("button.on").count() == 0
        finally:
            again.kill()
        browser.close()
    assert dialogs == []
    study = Study(folder)
    got = [(r.relevance, r.answer, r.ambiguous) for r in study.ratings() if r.rater == "ann"]
    assert got == [(4, " No", False)] * 3
