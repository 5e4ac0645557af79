"""Sycophancy construction: first-person biographies that imply a view, put before the
questions of a bank (Perez et al. 2022, section 4). No discriminator: the paper filters none.

A *unit* is what one biography prompt is about: a political affiliation (politics banks), or
one (question, choice) pair (NLP and philosophy banks). Each unit draws `generate.per_label`
samples; the first `filter.top_k` good, unique biographies of each are kept, cut to the same
number for every unit so that every choice is the user's view equally often.

Writes spec.json, generated.jsonl, generate.json, dataset.jsonl, card.json and card.md.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from mwe import __version__
from mwe.dedup import normalize
from mwe.families import sycophancy as syc
from mwe.io import write_json, write_jsonl
from mwe.models import CachedModel, open_model
from mwe.models.base import Sampling
from mwe.pipeline.card import distinct_n, write_generic_card
from mwe.pipeline.generate import prompt_text
from mwe.spec import BehaviorSpec
from mwe.store import Store


@dataclass(frozen=True)
class Unit:
    id: str  # affiliation, or "question-id:letter"
    question: syc.BankQuestion | None
    choice: int | None
    affiliation: str | None
    attribute: str


def units(bank: syc.Bank) -> list[Unit]:
    if bank.style == "politics":
        return [Unit(a, None, None, a, syc.attribute(bank, None, None, a))
                for a in bank.affiliations()]
    out = []
    for q in bank.questions:
        for i, (x, c) in enumerate(zip(syc.letters(len(q.choices)), q.choices)):
            out.append(Unit(f"{q.id}:{x}", q, i, c.affiliation,
                            syc.attribute(bank, q, c, None)))
    return out


def unit_seed(seed: int, unit: str, chunk: int) -> int:
    h = hashlib.sha256(f"mwe-bio\x00{seed}\x00{unit}\x00{chunk}".encode()).digest()
    return int.from_bytes(h[:4], "little") % (2**31)


def sample(spec: BehaviorSpec, model: CachedModel, us: list[Unit], progress: bool
           ) -> tuple[list[dict[str, Any]], dict[str, str]]:
    g = spec.generate
    prompts = {u.id: prompt_text(model, g.prompt, syc.BIO_PROMPT.format(attribute=u.attribute),
                                 syc.REPLY_START) for u in us}
    records: list[dict[str, Any]] = []
    with tqdm(total=g.per_label * len(us), desc=f"biographies ({spec.generator})",
              unit="sample", disable=not progress, smoothing=0.1) as bar:
        for u in us:
            n_done = 0
            for j in range(0, g.per_label, g.batch):
                n = min(g.batch, g.per_label - j)
                s = Sampling(n=n, temperature=g.temperature, top_p=g.top_p,
                             max_tokens=g.max_tokens, stop=syc.STOP,
                             seed=unit_seed(spec.seed, u.id, j // g.batch))
                for text in model.generate([prompts[u.id]], s)[0]:
                    records.append({"id": f"{u.id}-{n_done:04d}", "unit": u.id,
                                    "sample": text})
                    n_done += 1
                bar.update(n)
    return records, prompts


def parse_and_dedup(records: list[dict[str, Any]]) -> None:
    seen: dict[str, str] = {}
    for r in records:
        text, why = syc.clean_biography(r["sample"])
        r["text"], r["status"], r["duplicate_of"] = text, why, None
        if why == "ok":
            key = normalize(text)
            if key in seen:
                r["status"], r["duplicate_of"] = "duplicate", seen[key]
            else:
                seen[key] = r["id"]


def select(records: list[dict[str, Any]], us: list[Unit], top_k: int
           ) -> tuple[dict[str, list[dict[str, Any]]], int]:
    """The first good biographies of each unit, the same number for all: min(k, fewest)."""
    ok: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if r["status"] == "ok":
            ok[r["unit"]].append(r)
    b = min([top_k, *(len(ok[u.id]) for u in us)])
    return {u.id: ok[u.id][:b] for u in us}, b


def dataset(bank: syc.Bank, us: list[Unit], kept: dict[str, list[dict[str, Any]]], b: int
            ) -> list[dict[str, Any]]:
    """Rows question by question, the user's view cycling through the choices."""
    rows = []
    if bank.style == "politics":
        for q in bank.questions:
            for i in range(b):
                for u in us:
                    pick = [k for k, c in enumerate(q.choices) if c.affiliation == u.affiliation]
                    if pick:
                        rows.append(syc.sycophancy_row(kept[u.id][i]["text"], bank, q, pick[0],
                                                       u.affiliation))
        return rows
    by_q: dict[str, list[Unit]] = defaultdict(list)
    for u in us:
        assert u.question is not None
        by_q[u.question.id].append(u)
    for q in bank.questions:
        for i in range(b):
            for u in by_q[q.id]:
                assert u.choice is not None
                rows.append(syc.sycophancy_row(kept[u.id][i]["text"], bank, q, u.choice, None))
    return rows


def build(spec: BehaviorSpec, out: Path, store: Store, progress: bool = True) -> dict[str, Any]:
    """Generate biographies, keep a balanced set, write the dataset and its card."""
    path = spec.data_path()
    assert path is not None
    bank = syc.load_bank(path)
    us = units(bank)
    model = open_model(spec.generator, store)
    records, prompts = sample(spec, model, us, progress)
    parse_and_dedup(records)
    kept, b = select(records, us, spec.filter.top_k)
    rows = dataset(bank, us, kept, b)
    g = spec.generate
    group = (lambda u: u.affiliation) if bank.style == "politics" else \
        (lambda u: syc.letters(26)[u.choice])
    by_unit: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_unit[r["unit"]].append(r)
    counts: dict[str, dict[str, int]] = {}
    for u in us:
        c = counts.setdefault(str(group(u)), {"units": 0, "sampled": 0, "parsed": 0,
                                              "unique": 0, "kept": 0})
        rs = by_unit[u.id]
        c["units"] += 1
        c["sampled"] += len(rs)
        c["parsed"] += sum(r["status"] != "too_short" for r in rs)
        c["unique"] += sum(r["status"] == "ok" for r in rs)
        c["kept"] += len(kept[u.id])
    matching: dict[str, int] = defaultdict(int)
    for row in rows:
        matching[row["answer_matching_behavior"].strip()] += 1
    first = us[0]
    card: dict[str, Any] = {
        "name": spec.name, "family": "sycophancy", "description": spec.description,
        "mwe_version": __version__,
        "bank": {"name": bank.name, "style": bank.style, "path": str(path),
                 "questions": len(bank.questions)},
        "generator": {"spec": spec.generator, "identity": model.identity()},
        "prompts": {"prompt_style": g.prompt,
                    "generation": {f"example ({first.id})": prompts[first.id]},
                    "evaluation_suffix": syc.assistant_prefix(
                        "political" if bank.style == "politics" else "")},
        "sampling": {"temperature": g.temperature, "top_p": g.top_p, "max_tokens": g.max_tokens,
                     "stop": list(syc.STOP), "per_unit": g.per_label, "seed": spec.seed},
        "seed": spec.seed,
        "selection": {"rule": "per unit (an affiliation, or a question and choice): the first "
                              "biographies that parse and are not duplicates, the same number "
                              "for every unit", "top_k": spec.filter.top_k,
                      "biographies_per_unit": b},
        "units": len(us),
        "counts": counts,
        "rows": len(rows),
        "user_view_balance": dict(sorted(matching.items())),
        "diversity": {f"distinct_{n}": distinct_n([r["text"] for v in kept.values()
                                                   for r in v], n) for n in (1, 2, 3)},
        "drops": {s: sum(r["status"] == s for r in records)
                  for s in ("too_short", "duplicate")},
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "spec.json", spec.resolved_dict())
    write_jsonl(out / "generated.jsonl", records)
    write_json(out / "generate.json", {k: card[k] for k in ("generator", "prompts", "sampling",
                                                            "counts", "drops")})
    write_jsonl(out / "dataset.jsonl", rows)
    write_generic_card(out, card, ["units", "sampled", "parsed", "unique", "kept"])
    card["_model_calls"] = {"cached": model.hits, "computed": model.misses}
    return card
