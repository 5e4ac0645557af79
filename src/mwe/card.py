"""The dataset card: how a generated dataset was made and what it looks like.

card.json holds everything; card.md is a one-page summary for people. Neither records
timings or cache hits, so a resumed run writes the same bytes. `build_card` makes the card of
a staged family (the label filter); a family built in its own steps makes its card dict with
its counts and statistics (read as a `mwe.results.Card` by `write_build`). Both are written
by `write_card`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mwe import __version__
from mwe.checks import At
from mwe.io import atomic_open, write_json, write_jsonl
from mwe.results import Card
from mwe.run_folder import RunFolder

if TYPE_CHECKING:
    from mwe.behavior_spec import BehaviorSpec
    from mwe.models import CachedModel, Models

BINS = [0.5 + 0.05 * i for i in range(11)]


@dataclass(frozen=True)
class ModelCalls:
    """How many of a stage's model calls the cache answered and how many were computed: what
    the commands print, never in a written file (a resumed run writes the same bytes)."""

    cached: int
    computed: int

    @classmethod
    def of(cls, models: Models) -> ModelCalls:
        """Over every model `models` opened (a command's stage opens its own Models)."""
        return cls(sum(m.hits for m in models.opened), sum(m.misses for m in models.opened))


def distinct_n(texts: Sequence[str], n: int) -> float | None:
    """Distinct n-grams over all n-grams of the texts (lower-cased words): 1.0 = no repeats."""
    grams = [tuple(ws[i : i + n]) for t in texts for ws in [t.lower().split()]
             for i in range(len(ws) - n + 1)]
    return len(set(grams)) / len(grams) if grams else None


def histogram(values: Sequence[float]) -> list[dict[str, Any]]:
    out = []
    for lo, hi in zip(BINS, BINS[1:]):
        last = hi >= 1.0 - 1e-9
        k = sum(1 for v in values if lo <= v < hi or (last and v == hi))
        out.append({"from": round(lo, 2), "to": round(hi, 2), "count": k})
    return out


def build_card(spec: BehaviorSpec, gen_meta: dict[str, Any], model: CachedModel,
               cands: Sequence[Any], agreeing: dict[str, int], top: dict[str, int],
               kept: dict[str, list[Any]], by_id: dict[str, dict[str, Any]],
               data_field: str | None = None) -> Card:
    """The label filter's card: its settings, counts per label and step, and the kept rows'
    label confidences and diversity."""
    counts: dict[str, dict[str, int]] = {}
    for label, c in gen_meta["counts"].items():
        counts[label] = {**c, "agreeing": agreeing.get(label, 0), "top_k": top.get(label, 0),
                         "kept": len(kept.get(label, []))}
    final = [c for v in kept.values() for c in v]
    confs = [c.label_confidence for c in final]
    ceiling = sum(confs) / len(confs) if confs else None
    texts = [by_id[c.id]["text"] for c in final]
    total = len(final)
    prompts: dict[str, Any] = {"generation": gen_meta["prompts"],
                               "prompt_style": gen_meta["prompt_style"]}
    if data_field:  # the few-shot examples the generator was shown
        prompts[data_field] = getattr(spec, data_field)
    return Card(spec.name, spec.family, spec.description, __version__, {
        "generator": gen_meta["generator"],
        "discriminator": {"spec": spec.discriminator, "identity": model.identity(),
                          "format": spec.filter.format},
        "prompts": prompts,
        "sampling": gen_meta["sampling"],
        "dedup": gen_meta["dedup"],
        "seed": spec.seed,
        "selection": {"top_k": spec.filter.top_k, "balance": spec.filter.balance,
                      "calibration": spec.filter.calibration,
                      "rule": "per label: the top k by score among samples the discriminator "
                              "labels as intended (P > 0.5); then cut to the smallest label"
                              if spec.filter.balance else
                              "per label: the top k by score among samples the discriminator "
                              "labels as intended (P > 0.5)"},
        "counts": counts,
        "rows": total,
        "label_balance": {label: (len(v) / total if total else None) for label, v in kept.items()},
        "label_confidence": {
            "mean": ceiling,
            "min": min(confs) if confs else None,
            "max": max(confs) if confs else None,
            "histogram": histogram(confs),
        },
        "estimated_accuracy": {"ceiling": ceiling,
                               "floor": 1.0 - ceiling if ceiling is not None else None},
        "diversity": {f"distinct_{n}": distinct_n(texts, n) for n in (1, 2, 3)},
        "scored_samples": len(cands),
    })


def _f(x: Any, spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


# card.md is read in terminals as much as in renderers, so mwe's own words (the selection
# rule, step names, settings from the spec's fixed choices, numbers) are written as they are;
# only text a person or a model wrote (the spec's name and description, labels, statistics'
# keys and text, model names) goes through md() or md_code(), so it cannot become markup.
#
# Markdown that would turn text into markup: inline HTML (escaped as entities, which every
# renderer shows as the characters), and the characters that start code, emphasis, links,
# headings' closing sequence and table cells (backslash-escaped). '_' inside a word is left as
# is: no renderer reads it as emphasis, and names like desire_for_power stay readable.
_MD_PUNCT = re.compile(r"[\\`*\[\]|#]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def _one_line(x: Any) -> str:
    """Text on one line: a line break would end a table row or list item, or start a block."""
    return re.sub(r"\s*[\r\n]+\s*", " ", str(x)).strip()


def md(x: Any) -> str:
    """Untrusted text (a spec's name or description, model-written text, labels) as inline
    Markdown that renders as exactly that text, never as HTML, links, emphasis or cells."""
    text = _MD_PUNCT.sub(lambda m: "\\" + m.group(0), _one_line(x))
    return re.sub(r"[&<>]", lambda m: _ENTITIES[m.group(0)], text)


def md_code(x: Any) -> str:
    """Untrusted text as a code span: fenced by more backticks than it holds in a row, so it
    cannot close the span early (inside a span, Markdown shows everything as typed)."""
    text = _one_line(x)
    if not text:
        return "` `"
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text[0] == "`" or text[-1] == "`" else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def md_cell_code(x: Any) -> str:
    """md_code for a table cell: a '|' would end the cell even inside a code span, so it is
    escaped (tables read '\\|' as '|', in code spans too)."""
    return md_code(x).replace("|", "\\|")


# the count steps of a card built by the label filter (pipeline/filter.py), in order
FILTER_STEPS = ("sampled", "parsed", "unique", "agreeing", "top_k", "kept")
def markdown(card: Card | Mapping[str, Any], steps: Sequence[str],
             statistics: Sequence[str] = ()) -> str:
    """card.md: who made the data and how, the counts per step, then the statistics.

    A card from the label filter (it has label_confidence) describes its discriminator's
    selection in full; a family built in its own steps lists its `statistics` (card.json
    keys) as they are. A card.json read as a dict is read as a Card first.
    """
    if not isinstance(card, Card):
        card = Card.from_dict(card)
    filtered = card.filtered
    kind = "evaluation: an AI system" if filtered else "dataset: a model"
    lines = [f"# {md(card.name)}", "",
             f"A model-written **{card.family}** {kind} that "
             f"*{md(card.description or '')}*.", ""]
    lines += _setup(card) if filtered else _generic_setup(card)
    groups = list(card.counts)
    lines += ["", "| step | " + " | ".join(md(g) for g in groups) + " |",
              "|---|" + "---|" * len(groups)]
    for step in steps:
        lines.append(f"| {step} | " + " | ".join(str(card.counts[g].get(step, ""))
                                               for g in groups) + " |")
    lines += _quality(card) if filtered else _extras(card, statistics)
    return "\n".join(lines)


def _setup(card: Card) -> list[str]:
    samp = card["sampling"]
    return [
        f"- generator: {md_code(card['generator']['spec'])} "
        f"({card['prompts']['prompt_style']} prompt), temperature {samp['temperature']}, "
        f"top-p {samp['top_p']}, at most {samp['max_tokens']} tokens, seed {card['seed']}",
        f"- discriminator: {md_code(card['discriminator']['spec'])} "
        f"({card['discriminator']['format']} prompt, calibration: "
        f"{card['selection']['calibration']})",
        f"- selection: {card['selection']['rule']} (k = {card['selection']['top_k']})",
        f"- deduplication: {card['dedup']['method']}",
    ]


def _generic_setup(card: Card) -> list[str]:
    lines = [f"- {key}: {md_code(card[key]['spec'])}" for key in ("generator", "discriminator")
             if key in card]
    s = card.get("sampling", {})
    return lines + [
        f"- sampling: temperature {s.get('temperature')}, top-p {s.get('top_p')}, "
        f"at most {s.get('max_tokens')} tokens, seed {card.get('seed')}",
        f"- selection: {card['selection']['rule']}"]


def _quality(card: Card) -> list[str]:
    lc = card["label_confidence"]
    acc = card["estimated_accuracy"]
    div = card["diversity"]
    return [
        "",
        f"**{card.rows} rows**; label balance "
        + ", ".join(f"{md(k)}: {_f(v, '.0%')}" for k, v in card["label_balance"].items()) + ".",
        f"Label confidence: mean {_f(lc['mean'])} (min {_f(lc['min'])}, max {_f(lc['max'])}). "
        f"Estimated ceiling accuracy {_f(acc['ceiling'])}, floor {_f(acc['floor'])}.",
        f"Diversity: distinct-1 {_f(div['distinct_1'])}, distinct-2 {_f(div['distinct_2'])}, "
        f"distinct-3 {_f(div['distinct_3'])}.",
        "",
        "| label_confidence | rows |",
        "|---|---|",
        *(f"| {b['from']:.2f}-{b['to']:.2f} | {b['count']} |" for b in lc["histogram"]),
        "",
        "Counts: *sampled* samples drawn; *parsed* those that yielded an example; *unique* after "
        "removing duplicates; *agreeing* those the discriminator labels as intended; *top_k* "
        "the best k of those; *kept* after balancing the labels.",
        "",
    ] + _rebalance(card.get("rebalance"))


def _rebalance(r: Any) -> list[str]:
    """The per-cluster label counts before and after `filter.rebalance: cluster`."""
    if not isinstance(r, dict) or not r.get("per_cluster"):
        return []
    labels = list(r["per_cluster"][0]["before"])
    lines = [f"Rebalanced within {r['clusters']} k-means clusters of the kept rows' "
             f"embeddings: {r['removed']} rows removed.", "",
             "| cluster | " + " | ".join(f"{md(lb)} before | {md(lb)} after" for lb in labels)
             + " |", "|---|" + "---|---|" * len(labels)]
    for c in r["per_cluster"]:
        lines.append(f"| {c['cluster']} | " + " | ".join(
            f"{c['before'].get(lb, 0)} | {c['after'].get(lb, 0)}" for lb in labels) + " |")
    return [*lines, ""]


def _extras(card: Card, statistics: Sequence[str]) -> list[str]:
    lines = ["", f"**{card.rows} rows.**", ""]
    for k, v in card.body.items():
        if k in statistics and isinstance(v, dict):
            lines.append(f"- {k}: " + ", ".join(
                f"{md(a)}: {_f(b) if isinstance(b, float) else md(b)}" for a, b in v.items()))
    lines.append("")
    return lines


def write_build(out: Path, spec: BehaviorSpec, card: Mapping[str, Any],
                records: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]],
                steps: Sequence[str], statistics: Sequence[str], generate_keys: Sequence[str],
                scored: Sequence[dict[str, Any]] | None = None) -> Card:
    """The run folder of a family built in one step (Family.build): spec.json, every sample
    (generated.jsonl), the generation summary (generate.json: the card's `generate_keys`),
    the scored examples when there is a discriminator, the dataset and its card (the
    family's card dict read as a Card first: a malformed one is refused before any write);
    the Card written."""
    typed = Card.from_dict(card, At(f"{spec.family} build"))
    run = RunFolder(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(run.spec, spec.resolved_dict())
    write_jsonl(run.generated, records)
    write_json(run.generate_json, {k: card[k] for k in generate_keys})
    if scored is not None:
        write_jsonl(run.scored, scored)
    write_jsonl(run.dataset, rows)
    write_card(out, typed, steps, statistics)
    return typed


def write_card(out: Path, card: Card, steps: Sequence[str] = FILTER_STEPS,
               statistics: Sequence[str] = ()) -> None:
    """card.json and card.md, for every family (each an atomic write)."""
    run = RunFolder(out)
    write_json(run.card_json, card.to_dict())
    with atomic_open(run.card_md) as fh:
        fh.write(markdown(card, steps, statistics) + usage_markdown(card.usage))


USAGE_HEAD = "## Tokens and estimated cost of building it"


def add_usage(out: Path, rows: Sequence[Mapping[str, Any]]) -> Card:
    """Put what building the dataset took (usage.csv's rows of its stages) into the card
    written before those tokens were known: card.json's `usage`, and card.md's last section.
    Returns the card as written."""
    run = RunFolder(out)
    card = run.card().with_usage(rows)
    text = run.card_md.read_text(encoding="utf-8")
    text = text.split("\n" + USAGE_HEAD, 1)[0]
    write_json(run.card_json, card.to_dict())
    with atomic_open(run.card_md) as fh:
        fh.write(text + usage_markdown(card.usage))
    return card


def usage_markdown(rows: Sequence[Mapping[str, Any]] | None) -> str:
    if not rows:
        return ""

    def money(x: Any) -> str:
        return "unknown price" if x is None else f"${x:.4f}"

    known = [r["cost_usd"] for r in rows]
    total = None if any(c is None for c in known) else sum(known)
    lines = ["", USAGE_HEAD, "",
             "Every call priced as if made now (cached calls included), from mwe's price table.",
             "", "| stage | model | calls | tokens in | tokens out | counted | cost |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['stage']} | {md_cell_code(r['model'])} | {r['calls']} | "
                     f"{r['tokens_in']} | {r['tokens_out']} | {r['counted']} | "
                     f"{money(r['cost_usd'])} |")
    lines += ["", f"Total: {money(total)}.", ""]
    return "\n".join(lines)
