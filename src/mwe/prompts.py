"""Prompt formats: how an evaluation question is shown to a model, and how answers attach."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from mwe.errors import MweError
from mwe.models.base import Chat, Prompt

if TYPE_CHECKING:
    from mwe.models import CachedModel


class Question(Protocol):
    """What a format reads of a question (`mwe.family.Item` has it): prompts sit below the
    families and the spec, which use them, so they do not import the Item's module."""

    @property
    def raw_text(self) -> str: ...
    @property
    def user_text(self) -> str: ...
    @property
    def assistant_prefix(self) -> str: ...
    @property
    def turns(self) -> tuple[tuple[str, str], ...]: ...


# what a chat format is given: one user turn, or (role, text) turns ending with the user's
ChatFn = Callable[[str | Sequence[tuple[str, str]]], Prompt]
SPEAKERS = {"user": "Human", "assistant": "Assistant"}  # the paper's dialogue format


FORMATS = ("human-assistant", "raw", "chat")
FORMAT_HELP = {
    "human-assistant": "the paper's '\\n\\nHuman: {question}\\n\\nAssistant:' dialogue",
    "raw": "the question text as is (as lm-evaluation-harness does)",
    "chat": "the model's own chat template around the question",
}


def context(item: Question, fmt: str, chat: ChatFn | None = None,
            prefill: bool = True) -> Prompt:
    """The question in a format, ready for the answer; `prefill` False leaves out the words
    the assistant's turn starts with (free-text scoring: the model answers in its own way).
    A conversation's earlier turns come first, each in the format's own way (the `raw` text
    is the family's, whole)."""
    start = item.assistant_prefix if prefill else ""
    if fmt == "human-assistant":
        prefix = f" {start}" if start else ""
        before = "".join(f"\n\n{SPEAKERS[role]}: {text}" for role, text in item.turns)
        return f"{before}\n\nHuman: {item.user_text}\n\nAssistant:{prefix}"
    if fmt == "raw":
        return item.raw_text
    if fmt == "chat":
        if chat is None:
            raise MweError("the chat format needs a model with a chat template")
        if item.turns:
            return chat([*item.turns, ("user", item.user_text)]) + start
        return chat(item.user_text) + start
    raise MweError(f"unknown format '{fmt}' (choose from {', '.join(FORMATS)})")


def shown(prompt: Prompt) -> str:
    """A prompt as a card shows it: the text, or chat turns as JSON."""
    return prompt if isinstance(prompt, str) else json.dumps(prompt.to_json(), indent=1)


def continuation(answer: str, ctx: Prompt) -> str:
    """The answer as the dataset writes it (" Yes", " (A)"), fixed only at a word boundary.

    After a context that ends in whitespace (a chat template's newline) the answer's leading
    space is dropped; an answer written without one ("(A)") gets one after a word. Chat turns
    for a server count as ending in a word: the answer keeps its space, as the server's
    template decides the spacing.
    """
    if isinstance(ctx, Chat):
        ctx = ctx.reply or "\x00"
    if ctx and ctx[-1].isspace():
        return answer.lstrip()
    if ctx and not answer[:1].isspace():
        return " " + answer
    return answer


def prompt_text(model: CachedModel, style: str, user: str, reply_start: str) -> Prompt:
    """A dialogue that ends inside the assistant's reply, in the paper's format or a chat one."""
    if style == "chat":
        return model.chat(user) + reply_start
    return f"\n\nHuman: {user}\n\nAssistant: {reply_start}"


def choice_request(model: CachedModel, fmt: str, user: str, start: str,
                   answers: Sequence[str]) -> tuple[Prompt, list[str]]:
    """A two-reply score request; with no reply opening, the answers carry the leading space."""
    ctx = prompt_text(model, fmt, user, start)
    if not start and isinstance(ctx, str):
        ctx = ctx.rstrip(" ")  # the answers bring their own leading space
    return ctx, [continuation(a, ctx) for a in answers]
