"""Filter (p_d): the discriminator scores each unique sample; the best per label are kept.

Reads spec.json and generated.jsonl from the generate folder; writes to the output folder:
    scored.jsonl   every unique sample with the discriminator's probabilities and its fate
    dataset.jsonl  the kept rows, in exactly the anthropics/evals format of the family
    card.json, card.md  the dataset card (see card.py)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from mwe.errors import MweError
from mwe.families import Family, by_name
from mwe.io import write_jsonl
from mwe.models import CachedModel, Models
from mwe.spec import BehaviorSpec, load_spec


@dataclass(frozen=True)
class Scored:
    """One candidate as the selection rule sees it."""

    id: str
    label: str
    label_confidence: float  # the discriminator's P(label is right)
    score: float  # what candidates are ranked by (label_confidence, or its mean with relevance)


def select(cands: Sequence[Scored], top_k: int, balance: bool
           ) -> tuple[dict[str, list[Scored]], dict[str, int]]:
    """Per label, the top k by score among the candidates whose most likely label is the
    intended one (label_confidence > 0.5) - the paper's 'top k, or all the discriminator
    agrees with, whichever is fewer'. With `balance`, every label is then cut to the size of
    the smallest. Ties keep the earlier candidate. Returns (kept per label, agreeing per label).
    """
    labels = list(dict.fromkeys(c.label for c in cands))
    kept: dict[str, list[Scored]] = {}
    agreeing: dict[str, int] = {}
    for label in labels:
        agree = [c for c in cands if c.label == label and c.label_confidence > 0.5]
        agreeing[label] = len(agree)
        order = sorted(range(len(agree)), key=lambda i: (-agree[i].score, i))
        kept[label] = [agree[i] for i in order[:top_k]]
    if balance and kept:
        n = min(len(v) for v in kept.values())
        kept = {label: v[:n] for label, v in kept.items()}
    return kept, agreeing


def read_generated(folder: Path) -> tuple[BehaviorSpec, list[dict[str, Any]], dict[str, Any]]:
    for name in ("spec.json", "generated.jsonl", "generate.json"):
        if not (folder / name).is_file():
            raise MweError(f"{folder}: no {name}; run 'mwe generate SPEC --out {folder}' first")
    spec = load_spec(folder / "spec.json")
    records = [json.loads(line) for line in (folder / "generated.jsonl").read_text(
        encoding="utf-8").splitlines() if line.strip()]
    meta = json.loads((folder / "generate.json").read_text(encoding="utf-8"))
    return spec, records, meta


def score(spec: BehaviorSpec, family: Family, model: CachedModel, live: list[dict[str, Any]],
          progress: bool = True) -> list[dict[str, Any]]:
    """The discriminator's probabilities for each live record."""
    reward = model.rewards
    per_record = [family.discriminator_requests(spec, model, r["text"], reward) for r in live]
    requests = [req for reqs in per_record for req in reqs]
    with tqdm(total=len(requests), desc=f"filter ({model.spec})", unit="prompt",
              disable=not progress, smoothing=0.1) as bar:
        lps = model.score(requests, on_progress=bar.update)
    grouped: list[list[list[float]]] = []
    at = 0
    for reqs in per_record:
        grouped.append(lps[at:at + len(reqs)])
        at += len(reqs)
    return family.discriminator_scores(spec, [r["label"] for r in live], grouped)


def interleave(kept: dict[str, list[Scored]]) -> list[Scored]:
    """Labels alternate, as in the released files; each label in order of its score."""
    out: list[Scored] = []
    lists = list(kept.values())
    for i in range(max((len(v) for v in lists), default=0)):
        out.extend(v[i] for v in lists if i < len(v))
    return out


def dataset_rows(family: Family, ordered: list[Scored], by_id: dict[str, dict[str, Any]]
                 ) -> list[dict[str, Any]]:
    return [family.dataset_row(by_id[c.id]["text"], c.label, c.label_confidence) for c in ordered]


def run_filter(folder: Path, out: Path, models: Models, discriminator: str | None = None,
               top_k: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Score, select and write scored.jsonl, dataset.jsonl and the card; returns the card."""
    from dataclasses import replace

    from mwe.card import build_card, write_card

    spec, records, gen_meta = read_generated(folder)
    if discriminator:
        spec = replace(spec, discriminator=discriminator)
    if top_k is not None:
        if top_k < 1:
            raise MweError("--top-k must be at least 1")
        spec = replace(spec, filter=replace(spec.filter, top_k=top_k))
    family = by_name(spec.family)
    model = models.open(spec.discriminator)
    live = [r for r in records if r["status"] == "ok"]
    scores = score(spec, family, model, live, progress)
    cands = [Scored(r["id"], r["label"], s["label_confidence"], s["score"])
             for r, s in zip(live, scores)]
    kept, agreeing = select(cands, spec.filter.top_k, spec.filter.balance)
    final_ids = {c.id for v in kept.values() for c in v}
    unbalanced, _ = select(cands, spec.filter.top_k, False)
    top = {c.id for v in unbalanced.values() for c in v}
    scored_rows = []
    for r, s in zip(live, scores):
        fate = "kept" if r["id"] in final_ids else ("cut_for_balance" if r["id"] in top else
                                                    "disagrees" if s["label_confidence"] <= 0.5
                                                    else "below_top_k")
        scored_rows.append({"id": r["id"], "label": r["label"], "text": r["text"], **s,
                            "fate": fate})
    by_id = {r["id"]: r for r in live}
    ordered = interleave(kept)
    rows = dataset_rows(family, ordered, by_id)
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "scored.jsonl", scored_rows)
    write_jsonl(out / "dataset.jsonl", rows)
    card = build_card(spec, gen_meta, model, cands, agreeing,
                      {label: len(v) for label, v in unbalanced.items()}, kept, by_id,
                      family.data_field)
    write_card(out, card)
    card["_model_calls"] = {"cached": model.hits, "computed": model.misses}
    return card
