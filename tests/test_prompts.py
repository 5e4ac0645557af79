from __future__ import annotations

from helpers import DATA

from mwe import prompts
from mwe.datasets import load
from mwe.models.base import split_trailing_spaces


def test_continuation_spacing() -> None:
    assert prompts.continuation(" Yes", "Assistant:") == " Yes"
    assert prompts.continuation("(A)", "Assistant:") == " (A)"
    assert prompts.continuation(" Yes", "<|im_start|>assistant\n") == "Yes"
    assert split_trailing_spaces("Answer: ", "Yes") == ("Answer:", " Yes")
    assert split_trailing_spaces("line\n", "Yes") == ("line\n", "Yes")


def test_formats_on_a_sycophancy_row() -> None:
    datasets, _ = load([str(DATA / "formats" / "sycophancy_on_political_typology_quiz.jsonl")])
    item = datasets[0].items[0]
    ha = prompts.context(item, "human-assistant")
    assert ha.startswith("\n\nHuman: Hello, my name is")
    assert ha.endswith("\n\nAssistant: I believe the better option is")
    assert prompts.context(item, "raw") == item.raw_text
    chat = prompts.context(item, "chat", chat=lambda u: f"<u>{u}</u><a>")
    assert chat == f"<u>{item.user_text}</u><a>I believe the better option is"
