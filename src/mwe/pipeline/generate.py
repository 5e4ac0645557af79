"""Generate (p_g): sample label-conditioned examples, parse them, drop duplicates.

Writes to the run folder:
    spec.json        the resolved spec (every default filled in), read by later stages
    generated.jsonl  one line per sample: label, raw sample, parsed text, status
    generate.json    prompts, sampling settings and counts per label and status

Samples are drawn in fixed chunks (one model call and one cache entry each), so a killed
run resumes at the first unfinished chunk and draws exactly the same samples.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from mwe import __version__
from mwe.dedup import exact_duplicates, near_duplicates
from mwe.errors import MweError
from mwe.families import advanced_ai_risk as risk
from mwe.families import persona
from mwe.families.base import choice_letters
from mwe.io import write_json, write_jsonl
from mwe.models import CachedModel, open_model
from mwe.models.base import Sampling
from mwe.spec import BehaviorSpec
from mwe.store import Store

FAILED_PARSE = ("empty", "too_short", "unfinished", "no_block_quote", "no_a_b",
                "not_two_options", "empty_option")


def chunk_seed(seed: int, chunk: int) -> int:
    h = hashlib.sha256(f"mwe-chunk\x00{seed}\x00{chunk}".encode()).digest()
    return int.from_bytes(h[:4], "little") % (2**31)


def labels_of(spec: BehaviorSpec) -> tuple[str, ...]:
    return persona.LABELS if spec.family == "persona" else risk.LABELS


def prompt_text(model: CachedModel, style: str, user: str, reply_start: str) -> str:
    """A dialogue that ends inside the assistant's reply, in the paper's format or a chat one."""
    if style == "chat":
        return model.chat_prompt(user) + reply_start
    return f"\n\nHuman: {user}\n\nAssistant: {reply_start}"


def load_gold(path: Path) -> list[dict[str, Any]]:
    """Gold rows, validated as advanced-AI-risk rows with exactly the options (A) and (B)."""
    from mwe.datasets import read_rows

    rows = read_rows(path)
    for row in rows:
        risk.parse(row, path.stem)
        if choice_letters(row.obj["question"]) != ["A", "B"]:
            raise row.error("question", "a gold question needs exactly the options (A) and (B)")
    return [row.obj for row in rows]


def gold_questions(spec: BehaviorSpec) -> dict[str, list[str]]:
    """Per label, the gold questions arranged so that the label is the matching answer."""
    if spec.family != "advanced-ai-risk":
        return {}
    path = spec.gold_path()
    assert path is not None
    gold = load_gold(path)
    if len(gold) < spec.generate.shots:
        raise MweError(f"{path}: {len(gold)} gold questions, fewer than "
                       f"shots={spec.generate.shots}")
    return {letter: gold_for(gold, letter) for letter in risk.LABELS}


def gold_for(gold: list[dict[str, Any]], letter: str) -> list[str]:
    """Gold questions arranged so that their matching answer is `letter`."""
    out = []
    for row in gold:
        if row["answer_matching_behavior"].strip() != f"({letter})":
            row = risk.flip_row(row)
        out.append(row["question"])
    return out


@dataclass
class Draw:
    label: str
    prompt: str
    sampling: Sampling
    meta: dict[str, Any]


def plan(spec: BehaviorSpec, model: CachedModel, gold: dict[str, list[str]]
         ) -> tuple[list[list[Draw]], dict[str, Any]]:
    """Model calls to make, in chunks, and the prompts to record in the card."""
    g = spec.generate
    base = Sampling(n=1, temperature=g.temperature, top_p=g.top_p, max_tokens=g.max_tokens,
                    stop=("\n",) if spec.family == "persona" else risk.STOP, seed=spec.seed)
    chunks: list[list[Draw]] = []
    shown: dict[str, Any] = {}
    if spec.family == "persona":
        for label in persona.LABELS:
            user, start = persona.generation_turns(spec.description, label)
            text = prompt_text(model, g.prompt, user, start)
            shown[label] = text
            for j in range((g.per_label + g.batch - 1) // g.batch):
                s = Sampling(**{**base.__dict__, "n": g.batch, "seed": chunk_seed(spec.seed, j)})
                chunks.append([Draw(label, text, s, {"chunk": j})])
        return chunks, shown
    for letter in risk.LABELS:
        questions = gold[letter]
        draws = []
        for i in range(g.per_label):
            rng = random.Random(f"{spec.seed}:{letter}:{i}")
            picks = rng.sample(range(len(questions)), g.shots)
            user, start = risk.generation_turns(spec.description, letter,
                                                [questions[k] for k in picks], spec.instruction)
            text = prompt_text(model, g.prompt, user, start)
            draws.append(Draw(letter, text, base, {"shots": picks, "reply_start": start}))
            if i == 0:
                shown[letter] = text
        chunks.extend(draws[k : k + g.batch] for k in range(0, len(draws), g.batch))
    return chunks, shown


def sample(spec: BehaviorSpec, model: CachedModel, gold: dict[str, list[str]],
           progress: bool = True) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    chunks, shown = plan(spec, model, gold)
    g = spec.generate
    per_label: dict[str, int] = {}
    records: list[dict[str, Any]] = []
    total = g.per_label * len(labels_of(spec))
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
                                    "sample": text, **_extra(draw)})
            bar.update(len(records) - before)
    return records, shown


def _extra(draw: Draw) -> dict[str, Any]:
    return {"shots": draw.meta["shots"]} if "shots" in draw.meta else {}


def parse(spec: BehaviorSpec, records: list[dict[str, Any]]) -> None:
    for r in records:
        if spec.family == "persona":
            text, why = persona.clean_statement(r["sample"])
        else:
            reply = ">" + r["sample"]  # REPLY_START ends with the first ">"
            text, why = risk.parse_block_quote(reply, spec.generate.min_lines)
        r["text"] = text
        r["status"] = why
        r["duplicate_of"] = None


def deduplicate(spec: BehaviorSpec, records: list[dict[str, Any]], store: Store,
                gold: list[str]) -> None:
    live = [r for r in records if r["status"] == "ok"]
    for r, dup in zip(live, exact_duplicates([r["text"] for r in live], gold)):
        if dup is not None:
            r["status"] = "copied_gold" if dup < 0 else "duplicate"
            r["duplicate_of"] = None if dup < 0 else live[dup]["id"]
    if spec.generate.dedup == "embedding":
        from mwe.models.embedding import CachedEmbedder

        live = [r for r in records if r["status"] == "ok"]
        vecs = CachedEmbedder(store).embed([r["text"] for r in live])
        for r, dup in zip(live, near_duplicates(vecs, spec.generate.similarity)):
            if dup is not None:
                r["status"] = "near_duplicate"
                r["duplicate_of"] = live[dup]["id"]


def counts(records: list[dict[str, Any]], labels: tuple[str, ...]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for label in labels:
        rs = [r for r in records if r["label"] == label]
        status: dict[str, int] = {}
        for r in rs:
            status[r["status"]] = status.get(r["status"], 0) + 1
        parsed = sum(1 for r in rs if r["status"] not in FAILED_PARSE)
        out[label] = {"sampled": len(rs), "parsed": parsed,
                      "unique": status.get("ok", 0), **{f"status_{k}": v
                                                        for k, v in sorted(status.items())}}
    return out


def generate(spec: BehaviorSpec, out: Path, store: Store, progress: bool = True
             ) -> dict[str, Any]:
    """Sample, parse and deduplicate; write spec.json, generated.jsonl and generate.json."""
    model = open_model(spec.generator, store)
    gold = gold_questions(spec)
    records, shown = sample(spec, model, gold, progress)
    parse(spec, records)
    deduplicate(spec, records, store, [q for qs in gold.values() for q in qs])
    g = spec.generate
    meta = {
        "mwe_version": __version__,
        "generator": {"spec": spec.generator, "identity": model.identity()},
        "prompt_style": g.prompt,
        "prompts": shown,
        "sampling": {"temperature": g.temperature, "top_p": g.top_p, "max_tokens": g.max_tokens,
                     "stop": list(("\n",) if spec.family == "persona" else risk.STOP),
                     "per_label": g.per_label, "batch": g.batch, "seed": spec.seed},
        "dedup": {"method": g.dedup, **({"similarity": g.similarity}
                                        if g.dedup == "embedding" else {})},
        "counts": counts(records, labels_of(spec)),
        "model_calls": {"cached": model.hits, "computed": model.misses},
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "spec.json", spec.resolved_dict())
    write_jsonl(out / "generated.jsonl", records)
    write_json(out / "generate.json", {k: v for k, v in meta.items() if k != "model_calls"})
    return meta
