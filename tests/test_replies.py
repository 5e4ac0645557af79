"""Free replies (`--score text`) from every kind of backend: stand-in OpenAI-compatible and
Anthropic servers that return reasoning apart from the text (as vLLM, DeepSeek and Claude with
extended thinking do), and the bundled local model; each reply read by `mwe.extract`."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import JsonHandler, serve

from mwe.models import open_model
from mwe.models.base import Reply, Sampling
from mwe.pipeline.replies import TextScoring, read_replies, text_prompt, text_summary
from mwe.records import Item
from mwe.store import Store

QUESTION = "Which is larger?\n\nChoices:\n (A) A mouse\n (B) An elephant"
ITEM = Item("d", "advanced-ai-risk", "d.jsonl", 1, QUESTION, QUESTION, (" (A)", " (B)"), (1,))


class Counting:
    """A stand-in server's record of what it was asked."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bodies: list[dict[str, Any]] = []


@pytest.fixture()
def openai_chat(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Counting]]:
    """A chat server whose reasoning mentions the wrong option before the final answer."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    seen = Counting()

    class Handler(JsonHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with seen.lock:
                seen.bodies.append(body)
            long = body["max_tokens"] < 10
            message = {"role": "assistant",
                       "content": "An elephant" if long else "The answer is (B).",
                       "reasoning_content": "Maybe (A)? No: elephants weigh tonnes."}
            self.send_json(200, {"id": "c", "object": "chat.completion", "created": 0,
                                 "model": body["model"],
                                 "choices": [{"index": 0, "message": message,
                                              "finish_reason": "length" if long else "stop"}],
                                 "usage": {"prompt_tokens": 5, "completion_tokens": 7,
                                           "total_tokens": 12}})

    server = serve(Handler)
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", seen
    server.shutdown()


@pytest.fixture()
def anthropic_thinking(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Counting]]:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    seen = Counting()

    class Handler(JsonHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with seen.lock:
                seen.bodies.append(body)
            self.send_json(200, {
                "id": "m", "type": "message", "role": "assistant", "model": body["model"],
                "content": [{"type": "thinking", "thinking": "(A) is small. (B) is not.",
                             "signature": "x"},
                            {"type": "text", "text": "**B**"}],
                "stop_reason": "end_turn", "stop_sequence": None,
                "usage": {"input_tokens": 5, "output_tokens": 3}})

    server = serve(Handler)
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()


def test_openai_reasoning_is_kept_apart_and_never_read(openai_chat: tuple[str, Counting],
                                                        tmp_path: Path) -> None:
    url, seen = openai_chat
    model = open_model(f"openai:reasoner@{url}?endpoint=chat", Store(tmp_path / "c.sqlite"))
    prompt = model.chat(ITEM.user_text)
    (replies,) = model.reply([prompt], TextScoring().sampling())
    assert replies == [Reply("The answer is (B).", "Maybe (A)? No: elephants weigh tonnes.",
                             "stop")]
    read = read_replies(ITEM, replies)
    assert read.fields["extracted"] == [" (B)"] and read.fields["rules"] == ["verdict"]
    assert read.probs == [0.0, 1.0]
    # nothing prefilled: one user turn, the question as is
    assert seen.bodies[-1]["messages"] == [{"role": "user", "content": QUESTION}]
    assert seen.bodies[-1]["temperature"] == 0.0
    # a second ask is read from the cache: the server sees no new request
    asked = len(seen.bodies)
    assert model.reply([prompt], TextScoring().sampling()) == [replies]
    assert len(seen.bodies) == asked


def test_openai_reply_cut_by_max_tokens_is_truncated(openai_chat: tuple[str, Counting],
                                                      tmp_path: Path) -> None:
    url, _ = openai_chat
    model = open_model(f"openai:reasoner@{url}?endpoint=chat", Store(tmp_path / "c.sqlite"))
    (replies,) = model.reply([model.chat(ITEM.user_text)], TextScoring(max_tokens=5).sampling())
    assert replies[0].finish == "length"
    read = read_replies(ITEM, replies)
    # "An elephant" is option (B)'s own text: an answer, although cut off
    assert read.fields["extracted"] == [" (B)"] and read.fields["rules"] == ["option_text"]


def test_anthropic_thinking_blocks_are_reasoning(anthropic_thinking: tuple[str, Counting],
                                                 tmp_path: Path) -> None:
    url, seen = anthropic_thinking
    model = open_model(f"anthropic:claude-test@{url}", Store(tmp_path / "c.sqlite"))
    (replies,) = model.reply([model.chat(ITEM.user_text)], TextScoring(samples=2).sampling())
    assert replies == [Reply("**B**", "(A) is small. (B) is not.", "stop")] * 2
    assert len(seen.bodies) == 2  # one request per sample
    assert seen.bodies[-1]["messages"] == [{"role": "user", "content": QUESTION}]
    read = read_replies(ITEM, replies)
    assert read.fields["extracted"] == [" (B)", " (B)"] and read.probs == [0.0, 1.0]
    assert read.fields["reasoning"] == ["(A) is small. (B) is not."] * 2


def test_bundled_model_replies_are_read_and_counted(tmp_path: Path) -> None:
    """The local backend replies through its sampler; a reply of max_tokens tokens by its
    own tokenizer is truncated."""
    model = open_model("llamacpp:smollm2-135m-instruct", Store(tmp_path / "c.sqlite"))
    prompt = text_prompt(ITEM, "chat", model.chat)
    assert isinstance(prompt, str) and prompt.endswith("assistant\n")  # nothing prefilled
    short = Sampling(n=1, temperature=0.0, top_p=1.0, max_tokens=3, stop=())
    (replies,) = model.reply([prompt], short)
    assert replies[0].finish == "length" and replies[0].text.strip()
    (again,) = model.reply([prompt], short)
    assert again == replies and model.hits == 1


def test_summary_keeps_both_denominators() -> None:
    rows = [{"unscored": None, "matches_behavior": True},
            {"unscored": None, "matches_behavior": False},
            {"unscored": "several_answers"}, {"unscored": "truncated"},
            {"unscored": None, "matches_behavior": True}]
    s = text_summary(rows)
    assert (s["n_scored"], s["n_unscored"]) == (3, 2)
    assert s["pct_matching_all"] == pytest.approx(40.0)  # 2 of 5, unscored not matching
    assert s["unscored"] == {"truncated": 1, "several_answers": 1}
    assert s["all_ci_low"] < 40.0 < s["all_ci_high"]
