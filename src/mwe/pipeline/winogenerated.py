"""Winogenerated construction (Perez et al. 2022, section 6): sentences about an occupation
and another person with one pronoun blank that refers to the occupation.

    generate  per occupation, `generate.per_label` samples of "write 10 sentences"
    parse     numbered lines; a sentence without "_" but with exactly one gendered pronoun
              has that pronoun turned into the blank; string filters: exactly one "_", no
              gendered pronoun, names the occupation, at least 6 words, a finished sentence;
              exact duplicates dropped
    case      which pronoun set fits the blank (he/she/they, him/her/them, his/her/their,
              himself/herself/themselves): the discriminator's most likely neutral filling
    filter    the discriminator's P(the blank refers to the occupation) and P(grammatical),
              averaged; the top `filter.top_k` per occupation are kept (paper: 10)

Writes spec.json, generated.jsonl, generate.json, scored.jsonl, dataset.jsonl (the released
winogenerated_examples.jsonl format), card.json and card.md.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path
from typing import Any

from tqdm import tqdm

from mwe import __version__
from mwe.dedup import normalize
from mwe.families import winogenerated as wg
from mwe.io import write_json, write_jsonl
from mwe.models import CachedModel, open_model
from mwe.models.base import Sampling
from mwe.pipeline.card import write_generic_card
from mwe.pipeline.filter import calibration_shift, choice_request, sigmoid
from mwe.pipeline.generate import prompt_text
from mwe.spec import BehaviorSpec
from mwe.store import Store

STRING_DROPS = ("not_one_placeholder", "about_the_task", "other_pronoun", "gendered_title",
                "no_occupation", "too_short", "too_long", "unfinished", "duplicate")


def occ_seed(seed: int, occupation: str, chunk: int) -> int:
    h = hashlib.sha256(f"mwe-wino\x00{seed}\x00{occupation}\x00{chunk}".encode()).digest()
    return int.from_bytes(h[:4], "little") % (2**31)


def sample(spec: BehaviorSpec, model: CachedModel, occs: list[wg.Occupation], progress: bool
           ) -> tuple[list[dict[str, Any]], str]:
    g = spec.generate
    records: list[dict[str, Any]] = []
    first = ""
    with tqdm(total=g.per_label * len(occs), desc=f"sentences ({spec.generator})",
              unit="sample", disable=not progress, smoothing=0.1) as bar:
        # one model call per chunk of occupations: batched backends decode them together
        per_call = max(1, g.batch // max(1, g.per_label))
        for start in range(0, len(occs), per_call):
            group = occs[start:start + per_call]
            prompts = [prompt_text(model, g.prompt, wg.GENERATION_PROMPT.format(
                occupation=o.occupation, other=o.other_person), wg.REPLY_START) for o in group]
            first = first or prompts[0]
            s = Sampling(n=g.per_label, temperature=g.temperature, top_p=g.top_p,
                         max_tokens=g.max_tokens, stop=wg.STOP,
                         seed=occ_seed(spec.seed, group[0].occupation, start))
            for o, texts in zip(group, model.generate(prompts, s)):
                for j, text in enumerate(texts):
                    records.append({"id": f"{o.occupation}-{j:03d}", "occupation": o.occupation,
                                    "sample": text})
            bar.update(g.per_label * len(group))
    return records, first


def sentences(records: list[dict[str, Any]], occs: dict[str, wg.Occupation]
              ) -> list[dict[str, Any]]:
    out = []
    seen: set[tuple[str, str]] = set()
    for r in records:
        for k, text in enumerate(wg.split_sentences(r["sample"])):
            occ = r["occupation"]
            blank = "written"
            if wg.PLACEHOLDER not in text:
                substituted = wg.blank_pronoun(text)
                if substituted is not None:
                    text, blank = substituted, "pronoun"
            status = wg.check_sentence(text, occ)
            if status == "ok":
                key = (occ, normalize(text))
                status = "duplicate" if key in seen else "ok"
                seen.add(key)
            out.append({"id": f"{r['id']}-{k}", "occupation": occ,
                        "other_person": occs[occ].other_person, "sentence": text,
                        "blank": blank, "status": status})
    return out


def score(spec: BehaviorSpec, model: CachedModel, live: list[dict[str, Any]], progress: bool
          ) -> None:
    """Adds case, p_referent, p_grammatical and score to each live sentence."""
    fmt = spec.filter.format
    cases = list(wg.CASES)
    requests: list[tuple[str, list[str]]] = []
    for r in live:
        # the case: which neutral pronoun reads best in the blank, scored as plain text
        requests.append(("Sentence:", [" " + wg.fill(r["sentence"], w) for w in cases]))
        requests.append(choice_request(
            model, fmt, wg.REFERENT_PROMPT.format(sentence=r["sentence"]), wg.REFERENT_START,
            [f" {r['occupation']}.", f" {r['other_person']}."]))
    with tqdm(total=len(requests), desc=f"filter ({model.spec})", unit="prompt",
              disable=not progress, smoothing=0.1) as bar:
        lps = model.score(requests, on_progress=bar.update)
    for i, r in enumerate(live):
        case_lps = lps[2 * i]
        r["case"] = cases[max(range(len(cases)), key=lambda k: case_lps[k])]
    grammar = [choice_request(model, fmt, wg.GRAMMAR_PROMPT.format(
        sentence=wg.fill(r["sentence"], r["case"])), wg.GRAMMAR_START, list(wg.GRAMMAR_ANSWERS))
        for r in live]
    with tqdm(total=len(grammar), desc=f"grammar ({model.spec})", unit="prompt",
              disable=not progress, smoothing=0.1) as bar:
        glps = model.score(grammar, on_progress=bar.update)
    ref_odds = [lps[2 * i + 1][0] - lps[2 * i + 1][1] for i in range(len(live))]
    gram_odds = [g[0] - g[1] for g in glps]
    ref_shift = calibration_shift(ref_odds, spec.filter.calibration)
    gram_shift = calibration_shift(gram_odds, spec.filter.calibration)
    for r, ro, go in zip(live, ref_odds, gram_odds):
        r["p_referent"] = sigmoid(ro - ref_shift)
        r["p_grammatical"] = sigmoid(go - gram_shift)
        r["score"] = (r["p_referent"] + r["p_grammatical"]) / 2


def build(spec: BehaviorSpec, out: Path, store: Store, progress: bool = True) -> dict[str, Any]:
    path = spec.data_path()
    assert path is not None
    occs = wg.load_occupations(path)
    by_name = {o.occupation: o for o in occs}
    gen = open_model(spec.generator, store)
    records, shown = sample(spec, gen, occs, progress)
    sents = sentences(records, by_name)
    live = [s for s in sents if s["status"] == "ok"]
    disc = open_model(spec.discriminator, store)
    score(spec, disc, live, progress)
    per_occ: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for s in live:
        per_occ[s["occupation"]].append(s)
    rows: list[dict[str, Any]] = []
    kept_ids: set[str] = set()
    for o in occs:
        best = sorted(range(len(per_occ[o.occupation])),
                      key=lambda i: (-per_occ[o.occupation][i]["score"], i))[:spec.filter.top_k]
        for i in best:
            s = per_occ[o.occupation][i]
            kept_ids.add(s["id"])
            rows.append(wg.dataset_row(len(rows), o, s["sentence"], s["case"]))
    for s in live:
        s["fate"] = "kept" if s["id"] in kept_ids else "below_top_k"
    g = spec.generate
    status: dict[str, int] = defaultdict(int)
    for s in sents:
        status[s["status"]] += 1
    kept_scores = [s["score"] for s in live if s["id"] in kept_ids]
    n_kept = [sum(1 for s in per_occ[o.occupation] if s["id"] in kept_ids) for o in occs]
    cases: dict[str, int] = defaultdict(int)
    for row in rows:
        cases["/".join(row["pronoun_options"])] += 1
    card: dict[str, Any] = {
        "name": spec.name, "family": "winogenerated", "description": spec.description,
        "mwe_version": __version__,
        "occupations": {"path": str(path), "count": len(occs)},
        "generator": {"spec": spec.generator, "identity": gen.identity()},
        "discriminator": {"spec": spec.discriminator, "identity": disc.identity(),
                          "format": spec.filter.format},
        "prompts": {"prompt_style": g.prompt, "generation": {"example": shown},
                    "referent": wg.REFERENT_PROMPT, "grammar": wg.GRAMMAR_PROMPT},
        "sampling": {"temperature": g.temperature, "top_p": g.top_p, "max_tokens": g.max_tokens,
                     "stop": list(wg.STOP), "per_occupation": g.per_label, "seed": spec.seed},
        "seed": spec.seed,
        "selection": {"rule": "per occupation: the top k sentences by the mean of P(the blank "
                              "refers to the occupation) and P(grammatical)",
                      "top_k": spec.filter.top_k, "calibration": spec.filter.calibration},
        "counts": {"all": {"samples": len(records), "sentences": len(sents),
                           **{f"status_{k}": status.get(k, 0) for k in STRING_DROPS},
                           "passed": len(live), "kept": len(rows)}},
        "blanks": {"written_by_the_generator": sum(1 for x in live if x["blank"] == "written"),
                   "from_its_one_pronoun": sum(1 for x in live if x["blank"] == "pronoun")},
        "rows": len(rows),
        "per_occupation": {"min_kept": min(n_kept, default=0),
                           "max_kept": max(n_kept, default=0),
                           "with_none": sum(1 for n in n_kept if n == 0)},
        "scores": {"mean_kept": _mean(kept_scores),
                   "mean_p_referent": _mean([s["p_referent"] for s in live
                                             if s["id"] in kept_ids]),
                   "mean_p_grammatical": _mean([s["p_grammatical"] for s in live
                                                if s["id"] in kept_ids])},
        "pronoun_sets": dict(sorted(cases.items())),
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "spec.json", spec.resolved_dict())
    write_jsonl(out / "generated.jsonl", records)
    write_json(out / "generate.json", {k: card[k] for k in ("generator", "prompts", "sampling")})
    write_jsonl(out / "scored.jsonl", sents)
    write_jsonl(out / "dataset.jsonl", rows)
    write_generic_card(out, card, list(card["counts"]["all"]))
    card["_model_calls"] = {"cached": gen.hits + disc.hits, "computed": gen.misses + disc.misses}
    return card


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None
