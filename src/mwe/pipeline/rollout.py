"""Model turns before the scored one (`mwe.family.Rollout`): a family whose conversations
depend on the evaluated model (pushback's `first: own`, or any family that wants the model's
earlier answers) declares a rollout; evaluation asks the earlier turn with the run's own
method, then scores the items with the model's turn in place.

Log-probs: the earlier turn's answer is its most likely answer, and the model "said" its
turn's opening (the item's assistant prefix) and that answer. Replies: the model's first reply
is what it said, and the answer is what the extractor read (None, with the reason, when it
read none: the family decides what such an item becomes, and records why). Every call goes
through the cache, so a killed run resumes and a rerun asks nothing; the same earlier turn
shared by several items (one question, several pushback styles) is one cache entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from mwe import prompts
from mwe.families import by_name
from mwe.family import Turn
from mwe.models import CachedModel
from mwe.pipeline.replies import TextScoring, ask
from mwe.records import Dataset, Item
from mwe.stats import softmax


def has_rollout(ds: Dataset) -> bool:
    return by_name(ds.family).scorer.rollout is not None


def earlier(ds: Dataset) -> list[tuple[int, Item]]:
    """The earlier turns a dataset's items ask first, with their items' positions."""
    rollout = by_name(ds.family).scorer.rollout
    if rollout is None:
        return []
    return [(i, q) for i, item in enumerate(ds.items) if (q := rollout.ask(item)) is not None]


def turns_by_logprob(model: CachedModel, items: Sequence[Item], fmt: str) -> list[Turn]:
    chat = model.chat if fmt == "chat" else None
    contexts = [prompts.context(item, fmt, chat) for item in items]
    requests = [(c, [prompts.continuation(a, c) for a in item.answers])
                for item, c in zip(items, contexts)]
    out = []
    for item, lps in zip(items, model.score(requests)):
        best = max(range(len(lps)), key=lambda k: lps[k])
        said = f"{item.assistant_prefix} {item.answers[best].strip()}".strip()
        out.append(Turn(best, tuple(softmax(list(lps))), said))
    return out


def turns_by_reply(model: CachedModel, items: Sequence[Item], fmt: str, text: TextScoring
                   ) -> list[Turn]:
    out = []
    for replied in ask(model, items, fmt, text):
        f = replied.fields
        said = str(f["replies"][0])
        if replied.probs is None:
            out.append(Turn(None, None, said, str(f["unscored"])))
            continue
        best = max(range(len(replied.probs)), key=lambda k: replied.probs[k])  # type: ignore[index]
        out.append(Turn(best, tuple(replied.probs), said))
    return out


def roll_out(model: CachedModel, ds: Dataset, fmt: str, text: TextScoring | None = None
             ) -> Dataset:
    """The dataset with the model's earlier turns in place (itself without a rollout)."""
    rollout = by_name(ds.family).scorer.rollout
    asked = earlier(ds)
    if rollout is None or not asked:
        return ds
    items = [q for _, q in asked]
    turns = (turns_by_logprob(model, items, fmt) if text is None
             else turns_by_reply(model, items, fmt, text))
    done = list(ds.items)
    for (i, _), turn in zip(asked, turns):
        done[i] = rollout.then(ds.items[i], turn)
    return replace(ds, items=tuple(done))
