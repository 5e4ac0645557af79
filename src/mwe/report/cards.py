"""The report's dataset cards: how each generated dataset was made and how good it looks, from
its card.json (template: sections/cards.html.j2). Every value is shown as the card gives it;
the card is model-written in part (name, description, prompts, answer keys), so the template
escapes each one."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mwe.families import FAMILIES
from mwe.report.figures import Figure, Figures
from mwe.report.inputs import Inputs

# the statistics families put on their cards (their builder's card_statistics); diversity has its own
# line on every card
STATISTICS = {k for f in FAMILIES for k in f.builder.card_statistics} - {"diversity"}


@dataclass(frozen=True)
class Card:
    folder: str
    name: str
    family: Any
    description: Any
    generator: Any  # the generator's spec
    temperature: Any
    top_p: Any
    seed: Any
    has_discriminator: bool  # False where the paper keeps the generated data unfiltered
    discriminator: Any
    calibration: Any
    rule: Any
    top_k: Any
    rows: Any
    confidence: tuple[Any, Any, Any] | None  # mean label_confidence, estimated ceiling, floor
    diversity: tuple[Any, Any, Any] | None  # distinct-1/2/3
    extras: list[tuple[str, list[tuple[Any, Any]]]]  # ("user view balance", [(key, value)])
    labels: list[str]  # the counts table: a column per label, a row per step
    counts: list[tuple[str, list[Any]]]
    histogram: Figure | None  # label_confidence of the kept rows
    prompts: list[tuple[str, str]]  # the generation prompts, by name


def card(k: int, folder: str, c: dict[str, Any], figs: Figures) -> Card:
    from mwe import plots

    labels = list(c.get("counts") or {})
    steps = list(next(iter(c["counts"].values()))) if labels else []
    lc = c.get("label_confidence") or {}
    div = c.get("diversity") or {}
    acc = c.get("estimated_accuracy") or {}
    sel = c.get("selection") or {}
    samp = c.get("sampling") or {}
    disc = c.get("discriminator") or {}
    name = c.get("name", "dataset")
    hist = None
    if lc.get("histogram"):
        hist = figs.add(f"card-{k}-{name}", plots.confidence_histogram(lc["histogram"], name),
                        f"{name}: label_confidence of the kept rows", cls="small")
    prompts = (c.get("prompts") or {}).get("generation", {})
    return Card(
        folder=folder, name=name, family=c.get("family"), description=c.get("description", ""),
        generator=(c.get("generator") or {}).get("spec"), temperature=samp.get("temperature"),
        top_p=samp.get("top_p"), seed=c.get("seed"),
        has_discriminator=bool(disc), discriminator=disc.get("spec"),
        calibration=sel.get("calibration", "none"), rule=sel.get("rule", ""),
        top_k=sel.get("top_k"), rows=c.get("rows"),
        confidence=(lc.get("mean"), acc.get("ceiling"), acc.get("floor")) if lc else None,
        diversity=(div.get("distinct_1"), div.get("distinct_2"), div.get("distinct_3"))
        if div else None,
        extras=[(key.replace("_", " "), list(v.items())) for key, v in c.items()
                if key in STATISTICS and isinstance(v, dict) and v],
        labels=labels,
        counts=[(s, [c["counts"][lb].get(s, "") for lb in labels]) for s in steps],
        histogram=hist,
        prompts=[(key, v if isinstance(v, str) else json.dumps(v, indent=1))
                 for key, v in (prompts.items() if isinstance(prompts, dict) else [])])


def cards(inp: Inputs, figs: Figures) -> list[Card]:
    return [card(k, folder, c, figs) for k, (folder, c) in enumerate(sorted(inp.cards.items()), 1)]
