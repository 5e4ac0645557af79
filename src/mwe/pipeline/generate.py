"""Generate (p_g): sample label-conditioned examples, parse them, drop duplicates.

Writes to the run folder:
    spec.json        the resolved spec (every default filled in), read by later stages
    generated.jsonl  one line per sample: label, raw sample, parsed text, status
    generate.json    prompts, sampling settings and counts per label and status

Samples are drawn in fixed chunks (one model call and one cache entry each), so a killed
run resumes at the first unfinished chunk and draws exactly the same samples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tqdm import tqdm

from mwe import __version__
from mwe.dedup import exact_duplicates, near_duplicates
from mwe.families import by_name
from mwe.family import StagedBuilder
from mwe.io import write_json, write_jsonl
from mwe.models import CachedModel, Models
from mwe.plan import sampling_row
from mwe.results import PlanRow
from mwe.run_folder import RunFolder
from mwe.spec import BehaviorSpec


def plan(spec: BehaviorSpec, builder: StagedBuilder, model: CachedModel) -> PlanRow:
    """Generation's calls before any is made: exact (every draw is known in advance)."""
    chunks, _ = builder.draws(spec, model, builder.prepare(spec))
    return sampling_row("generate", model,
                        [([d.prompt for d in chunk], chunk[0].sampling) for chunk in chunks])


def sample(spec: BehaviorSpec, builder: StagedBuilder, model: CachedModel,
           material: dict[str, list[str]], progress: bool = True
           ) -> tuple[list[dict[str, Any]], dict[str, str]]:
    chunks, shown = builder.draws(spec, model, material)
    g = spec.generate
    per_label: dict[str, int] = {}
    records: list[dict[str, Any]] = []
    total = g.per_label * len(builder.labels)
    with tqdm(total=total, desc=f"generate ({spec.generator})", unit="sample",
              disable=not progress, smoothing=0.1) as bar:
        for chunk in chunks:
            outs = model.generate([d.prompt for d in chunk], chunk[0].sampling)
            before = len(records)
            for draw, texts in zip(chunk, outs):
                for text in texts:
                    n = per_label.get(draw.label, 0)
                    if n >= g.per_label:
                        continue
                    per_label[draw.label] = n + 1
                    records.append({"id": f"{draw.label}-{n:05d}", "label": draw.label,
                                    "sample": text, **draw.record})
            bar.update(len(records) - before)
    return records, shown


def parse(spec: BehaviorSpec, builder: StagedBuilder, records: list[dict[str, Any]]) -> set[str]:
    """Each sample's example and status; returns the statuses that mean 'did not parse'."""
    failed: set[str] = set()
    for r in records:
        text, why = builder.parse_sample(spec, r["sample"])
        r["text"] = text
        r["status"] = why
        r["duplicate_of"] = None
        if why != "ok":
            failed.add(why)
    return failed


def deduplicate(spec: BehaviorSpec, records: list[dict[str, Any]], models: Models,
                gold: list[str]) -> None:
    live = [r for r in records if r["status"] == "ok"]
    for r, dup in zip(live, exact_duplicates([r["text"] for r in live], gold)):
        if dup is not None:
            r["status"] = "copied_gold" if dup < 0 else "duplicate"
            r["duplicate_of"] = None if dup < 0 else live[dup]["id"]
    if spec.generate.dedup == "embedding":
        from mwe.models.embedding import CachedEmbedder

        live = [r for r in records if r["status"] == "ok"]
        vecs = CachedEmbedder(models.store).embed([r["text"] for r in live])
        for r, dup in zip(live, near_duplicates(vecs, spec.generate.similarity)):
            if dup is not None:
                r["status"] = "near_duplicate"
                r["duplicate_of"] = live[dup]["id"]


def counts(records: list[dict[str, Any]], labels: tuple[str, ...], failed: set[str]
           ) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for label in labels:
        rs = [r for r in records if r["label"] == label]
        status: dict[str, int] = {}
        for r in rs:
            status[r["status"]] = status.get(r["status"], 0) + 1
        parsed = sum(1 for r in rs if r["status"] not in failed)
        out[label] = {"sampled": len(rs), "parsed": parsed,
                      "unique": status.get("ok", 0), **{f"status_{k}": v
                                                        for k, v in sorted(status.items())}}
    return out


def generate(spec: BehaviorSpec, out: Path, models: Models, progress: bool = True
             ) -> dict[str, Any]:
    """Sample, parse and deduplicate; write spec.json, generated.jsonl and generate.json."""
    builder = by_name(spec.family).staged_builder()
    model = models.open(spec.generator)
    material = builder.prepare(spec)
    records, shown = sample(spec, builder, model, material, progress)
    failed = parse(spec, builder, records)
    deduplicate(spec, records, models, [q for qs in material.values() for q in qs])
    g = spec.generate
    meta = {
        "mwe_version": __version__,
        "generator": {"spec": spec.generator, "identity": model.identity()},
        "prompt_style": g.prompt,
        "prompts": shown,
        "sampling": {"temperature": g.temperature, "top_p": g.top_p, "max_tokens": g.max_tokens,
                     "stop": list(builder.stop),
                     "per_label": g.per_label, "batch": g.batch, "seed": spec.seed},
        "dedup": {"method": g.dedup, **({"similarity": g.similarity}
                                        if g.dedup == "embedding" else {})},
        "counts": counts(records, builder.labels, failed),
    }
    run = RunFolder(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(run.spec, spec.resolved_dict())
    write_jsonl(run.generated, records)
    write_json(run.generate_json, meta)
    return meta
