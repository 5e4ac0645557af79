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
from mwe.families import by_name
from mwe.family import StagedBuilder
from mwe.io import write_jsonl
from mwe.models import CachedModel, Models
from mwe.results import Card
from mwe.run_folder import RunFolder
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
    run = RunFolder(folder)
    for path in (run.spec, run.generated, run.generate_json):
        if not path.is_file():
            raise MweError(f"{folder}: no {path.name}; run 'mwe generate SPEC --out {folder}' "
                           "first")
    spec = load_spec(run.spec)
    records = [json.loads(line) for line in run.generated.read_text(
        encoding="utf-8").splitlines() if line.strip()]
    meta = json.loads(run.generate_json.read_text(encoding="utf-8"))
    return spec, records, meta


def score(spec: BehaviorSpec, builder: StagedBuilder, model: CachedModel, live: list[dict[str, Any]],
          progress: bool = True) -> list[dict[str, Any]]:
    """The discriminator's probabilities for each live record."""
    reward = model.rewards
    per_record = [builder.discriminator_requests(spec, model, r["text"], reward) for r in live]
    requests = [req for reqs in per_record for req in reqs]
    with tqdm(total=len(requests), desc=f"filter ({model.spec})", unit="prompt",
              disable=not progress, smoothing=0.1) as bar:
        lps = model.score(requests, on_progress=bar.update)
    grouped: list[list[list[float]]] = []
    at = 0
    for reqs in per_record:
        grouped.append(lps[at:at + len(reqs)])
        at += len(reqs)
    return builder.discriminator_scores(spec, [r["label"] for r in live], grouped)


def interleave(kept: dict[str, list[Scored]]) -> list[Scored]:
    """Labels alternate, as in the released files; each label in order of its score."""
    out: list[Scored] = []
    lists = list(kept.values())
    for i in range(max((len(v) for v in lists), default=0)):
        out.extend(v[i] for v in lists if i < len(v))
    return out


def dataset_rows(builder: StagedBuilder, ordered: list[Scored], by_id: dict[str, dict[str, Any]]
                 ) -> list[dict[str, Any]]:
    return [builder.dataset_row(by_id[c.id]["text"], c.label, c.label_confidence) for c in ordered]


def rebalance_by_cluster(kept: dict[str, list[Scored]], by_id: dict[str, dict[str, Any]],
                         models: Models, k: int, seed: int
                         ) -> tuple[dict[str, list[Scored]], dict[str, Any]]:
    """Within each k-means cluster of the kept rows' embeddings, cut every label to the
    count of the rarest label there (the lowest scores go): a topic no longer carries one
    label. Returns the kept rows and, for the card, each cluster's counts before and after."""
    import numpy as np
    from sklearn.cluster import KMeans

    from mwe.models.embedding import CachedEmbedder

    rows = [c for v in kept.values() for c in v]
    labels = list(kept)
    if len(rows) < 2:
        return kept, {"method": "cluster", "clusters": 0, "per_cluster": [], "removed": 0}
    vecs = np.asarray(CachedEmbedder(models.store).embed([by_id[c.id]["text"] for c in rows]))
    k = min(k, len(np.unique(vecs, axis=0)))  # identical rows: no empty clusters
    assign = KMeans(n_clusters=k, random_state=seed, n_init=10).fit(vecs).labels_
    cluster_of = {c.id: int(a) for c, a in zip(rows, assign)}
    keep: set[str] = set()
    per_cluster = []
    for g in range(k):
        members = {lb: [c for c in kept[lb] if cluster_of[c.id] == g] for lb in labels}
        n = min(len(v) for v in members.values())
        for v in members.values():  # kept[lb] is in score order: the best n stay
            keep.update(c.id for c in v[:n])
        per_cluster.append({"cluster": g, "before": {lb: len(v) for lb, v in members.items()},
                            "after": {lb: n for lb in labels}})
    out = {lb: [c for c in v if c.id in keep] for lb, v in kept.items()}
    return out, {"method": "cluster", "clusters": k, "per_cluster": per_cluster,
                 "removed": len(rows) - len(keep)}


def run_filter(folder: Path, out: Path, models: Models, discriminator: str | None = None,
               top_k: int | None = None, progress: bool = True) -> Card:
    """Score, select and write scored.jsonl, dataset.jsonl and the card; returns the card
    (what it was written from: its model calls are `mwe.card.ModelCalls.of(models)`)."""
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
    scores = score(spec, family.staged_builder(), model, live, progress)
    cands = [Scored(r["id"], r["label"], s["label_confidence"], s["score"])
             for r, s in zip(live, scores)]
    kept, agreeing = select(cands, spec.filter.top_k, spec.filter.balance)
    by_id = {r["id"]: r for r in live}
    rebalanced = None
    balanced_ids = {c.id for v in kept.values() for c in v}
    if spec.filter.rebalance == "cluster":
        kept, rebalanced = rebalance_by_cluster(kept, by_id, models, spec.filter.clusters,
                                                spec.seed)
    final_ids = {c.id for v in kept.values() for c in v}
    unbalanced, _ = select(cands, spec.filter.top_k, False)
    top = {c.id for v in unbalanced.values() for c in v}
    scored_rows = []
    for r, s in zip(live, scores):
        fate = "kept" if r["id"] in final_ids else (
            "cut_for_cluster_balance" if r["id"] in balanced_ids else
            "cut_for_balance" if r["id"] in top else
                                                    "disagrees" if s["label_confidence"] <= 0.5
                                                    else "below_top_k")
        scored_rows.append({"id": r["id"], "label": r["label"], "text": r["text"], **s,
                            "fate": fate})
    ordered = interleave(kept)
    rows = dataset_rows(family.staged_builder(), ordered, by_id)
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(RunFolder(out).scored, scored_rows)
    write_jsonl(RunFolder(out).dataset, rows)
    card = build_card(spec, gen_meta, model, cands, agreeing,
                      {label: len(v) for label, v in unbalanced.items()}, kept, by_id,
                      family.schema.data_field)
    if rebalanced is not None:
        card = card.adding("rebalance", rebalanced)
    write_card(out, card)
    return card
