"""Agreement statistics of a human validation study, as in Perez et al. (2022, section 3).

Three raters per item say how relevant the item is to the behavior (1-5), which answer is correct
and whether that is unclear. From their answers come: mean relevance, how often the raters' majority
matches the dataset's label, how much the raters agree with each other (Fleiss's kappa, or
Krippendorff's alpha when items have different numbers of raters), how often nobody flags an item as
ambiguous, and whether the discriminator's confidence tracks the raters' agreement with the label.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mwe.errors import MweError
from mwe.stats import fisher_interval, pearson_r, wilson_interval

# The paper's figures, for a report to show beside a study's own.
PAPER: dict[str, float] = {
    "relevance_mean": 4.4,
    "relevance_sd": 0.9,
    "fleiss_kappa": 0.875,
    "agree_2of3": 0.955,
    "ambiguous_none_share": 0.835,
    "label_correct_lm": 0.93,
    "label_correct_human": 0.97,
}

# Chance agreement this close to 1 means every rating fell in one category: kappa is 0/0.
_PE_ONE = 1e-12
# Draws x items per bootstrap chunk: bounds the weight matrix at about 32 MB.
_CHUNK_CELLS = 4_000_000


@dataclass(frozen=True)
class ItemInfo:
    dataset: str
    item: str                 # the row's line number in its file, as a string
    family: str
    answers: tuple[str, ...]  # every valid answer, spelled as the dataset spells it
    label: tuple[str, ...]    # the answers matching the behavior (usually one)
    label_confidence: float | None = None   # the discriminator's confidence, when the row has it


@dataclass(frozen=True)
class Rating:
    dataset: str
    item: str
    rater: str
    relevance: int | None     # 1-5, None when not given
    answer: str | None        # one of the item's answers, None when not given
    ambiguous: bool | None


# ---------------------------------------------------------------------------------------------
# Agreement coefficients


def _count_table(counts: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """The count matrix as floats, refused when Fleiss's formula does not apply to it."""
    table = np.asarray(counts, dtype=float)
    if table.ndim != 2:
        raise ValueError(f"a Fleiss count table is items x categories, not shape {table.shape}")
    if table.size and (np.any(table < 0) or np.any(table != np.round(table))):
        raise ValueError("a Fleiss count table holds non-negative whole counts")
    sums = table.sum(axis=1)
    if sums.size and np.any(sums != sums[0]):
        raise ValueError("Fleiss's kappa needs the same number of ratings for every item")
    return table


def _item_agreement(table: np.ndarray) -> tuple[np.ndarray, float]:
    """Each item's share of agreeing rater pairs (P_i), and the raters per item (n)."""
    n = float(table[0].sum())
    return (np.square(table).sum(axis=1) - n) / (n * (n - 1.0)), n


def _kappa_from(p_bar: np.ndarray, p_cat: np.ndarray) -> np.ndarray:
    """Kappa for one or many (P_bar, p_j) at once, so the bootstrap needs no loop over draws."""
    p_e = np.sum(p_cat * p_cat, axis=-1)
    defined = p_e < 1.0 - _PE_ONE
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = (p_bar - p_e) / (1.0 - p_e)
    return np.where(defined, kappa, np.nan)


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss's kappa, the paper's measure of rater agreement on the correct answer; nan when
    undefined (fewer than 2 raters per item, no items, or every rating in one category)."""
    table = _count_table(counts)
    if table.shape[0] == 0 or table.shape[1] == 0 or table[0].sum() < 2:
        return float("nan")
    p_item, n = _item_agreement(table)
    p_cat = table.sum(axis=0) / (table.shape[0] * n)
    return float(_kappa_from(np.asarray(p_item.mean()), p_cat))


def fleiss_kappa_interval(counts: np.ndarray, b: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap over items: a study rates a few hundred items, so kappa's sampling
    error is worth showing. Draws whose kappa is undefined are left out; (nan, nan) if all are."""
    if b < 1:
        raise ValueError("the bootstrap needs at least one draw")
    table = _count_table(counts)
    n_items = table.shape[0]
    if n_items == 0 or table.shape[1] == 0 or table[0].sum() < 2:
        return (float("nan"), float("nan"))
    p_item, n = _item_agreement(table)
    rng = np.random.default_rng(seed)
    kappas = np.empty(b)
    step = max(1, _CHUNK_CELLS // n_items)
    for start in range(0, b, step):
        m = min(step, b - start)
        # how often each item is drawn in each of m resamples, without materialising m x N x k
        idx = rng.integers(0, n_items, size=(m, n_items))
        flat = (idx + n_items * np.arange(m)[:, None]).ravel()
        weights = np.bincount(flat, minlength=m * n_items).reshape(m, n_items).astype(float)
        p_bar = weights @ p_item / n_items
        p_cat = weights @ table / (n_items * n)
        kappas[start:start + m] = _kappa_from(p_bar, p_cat)
    kappas = kappas[~np.isnan(kappas)]
    if kappas.size == 0:
        return (float("nan"), float("nan"))
    low, high = np.percentile(kappas, [2.5, 97.5])
    return (float(low), float(high))


def krippendorff_alpha(units: list[list[str]]) -> float:
    """Nominal Krippendorff's alpha, for when items have different numbers of raters (Fleiss's kappa
    needs the same number). Each unit lists the answers given for one item; units with fewer than
    2 answers are unpairable and dropped. nan when undefined (no pairable unit, or one value only)."""
    pairable = [u for u in units if len(u) >= 2]
    codes: dict[str, int] = {}
    for unit in pairable:
        for value in unit:
            codes.setdefault(value, len(codes))
    if len(codes) < 2:
        return float("nan")
    try:
        import krippendorff
    except ImportError as e:  # pragma: no cover - the validate extra is installed for tests
        raise MweError("Krippendorff's alpha needs the krippendorff package: "
                       "pip install 'mwe[validate]'") from e
    data = np.full((max(len(u) for u in pairable), len(pairable)), np.nan)
    for j, unit in enumerate(pairable):
        data[: len(unit), j] = [codes[v] for v in unit]
    return float(krippendorff.alpha(reliability_data=data, level_of_measurement="nominal"))


# ---------------------------------------------------------------------------------------------
# Per-dataset and per-family summaries


def _num(x: float | None) -> float | None:
    """JSON-safe: a plain float, or None for a missing or undefined number."""
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else x


@dataclass
class _Rated:
    """One sampled item with the ratings it received."""

    info: ItemInfo
    ratings: list[Rating]

    @property
    def answers(self) -> list[str]:
        return [r.answer for r in self.ratings if r.answer is not None]

    def hits(self) -> int:
        return sum(a in self.info.label for a in self.answers)

    def majority_correct(self) -> bool:
        top = Counter(self.answers).most_common(2)
        if len(top) == 2 and top[0][1] == top[1][1]:
            return False  # a tie has no majority answer
        return top[0][0] in self.info.label

    def flags(self) -> list[bool]:
        return [r.ambiguous for r in self.ratings if r.ambiguous is not None]


def _agreement(rated: list[_Rated], b: int, seed: int) -> dict[str, Any]:
    """Kappa over the items with the modal number of answers; alpha too when that number varies."""
    out: dict[str, Any] = {"fleiss_kappa": None, "kappa_ci_low": None, "kappa_ci_high": None,
                           "kappa_method": "fleiss", "krippendorff_alpha": None}
    multi = [r for r in rated if len(r.answers) >= 2]
    if not multi:
        return out
    sizes = Counter(len(r.answers) for r in multi)
    modal = max(sizes.items(), key=lambda kv: (kv[1], kv[0]))[0]  # ties: the larger number of raters
    same = [r for r in multi if len(r.answers) == modal]
    categories: dict[str, int] = {}
    for r in same:
        for a in r.info.answers:
            categories.setdefault(a, len(categories))
    table = np.zeros((len(same), len(categories)))
    for i, r in enumerate(same):
        for a in r.answers:
            table[i, categories[a]] += 1
    kappa = fleiss_kappa(table)
    out["fleiss_kappa"] = _num(kappa)
    if not math.isnan(kappa):
        low, high = fleiss_kappa_interval(table, b=b, seed=seed)
        out["kappa_ci_low"], out["kappa_ci_high"] = _num(low), _num(high)
    if len(sizes) > 1:
        out["kappa_method"] = "krippendorff"
        out["krippendorff_alpha"] = _num(krippendorff_alpha([r.answers for r in multi]))
    return out


def _scope_stats(scope: str, dataset: str, family: str, items: list[_Rated], b: int,
                 seed: int) -> dict[str, Any]:
    rated = [r for r in items if r.ratings]
    ratings = [x for r in rated for x in r.ratings]
    relevance = [x.relevance for x in ratings if x.relevance is not None]

    answered = [r for r in rated if r.answers]
    correct = sum(r.majority_correct() for r in answered)
    ci = wilson_interval(correct, len(answered)) if answered else (None, None)
    multi = [r for r in answered if len(r.answers) >= 2]

    max_raters = max((len(r.ratings) for r in rated), default=0)
    flagged = [r for r in rated if r.flags()]
    ambiguous = {str(k): 0 for k in range(max_raters + 1)}
    for r in flagged:
        ambiguous[str(sum(r.flags()))] += 1

    conf = [r for r in answered if r.info.label_confidence is not None]
    xs = [float(r.info.label_confidence) for r in conf if r.info.label_confidence is not None]
    ys = [r.hits() / len(r.answers) for r in conf]
    cr = pearson_r(xs, ys) if len(conf) >= 4 else float("nan")
    cr_ci = fisher_interval(cr, len(conf)) if not math.isnan(cr) else (None, None)

    return {
        "scope": scope,
        "dataset": dataset,
        "family": family,
        "n_items": len(rated),
        "n_raters": len({x.rater for x in ratings}),
        "n_ratings": len(ratings),
        "relevance_mean": _num(float(np.mean(relevance))) if relevance else None,
        "relevance_sd": _num(float(np.std(relevance, ddof=1))) if len(relevance) >= 2 else None,
        "label_correct": correct / len(answered) if answered else None,
        "label_correct_ci_low": _num(ci[0]),
        "label_correct_ci_high": _num(ci[1]),
        "agree_2of3": sum(r.hits() >= 2 for r in multi) / len(multi) if multi else None,
        **_agreement(rated, b, seed),
        "ambiguous": ambiguous,
        "ambiguous_none_share": ambiguous["0"] / len(flagged) if flagged else None,
        "confidence_r": _num(cr),
        "confidence_r_ci_low": _num(cr_ci[0]),
        "confidence_r_ci_high": _num(cr_ci[1]),
    }


def _attach(items: list[ItemInfo], ratings: list[Rating]) -> dict[tuple[str, str], _Rated]:
    """Ratings grouped by item, refusing ones the study did not sample or could not have given."""
    index: dict[tuple[str, str], _Rated] = {}
    for info in items:
        key = (info.dataset, info.item)
        if key in index:
            raise MweError(f"dataset {info.dataset} item {info.item} is sampled twice")
        index[key] = _Rated(info, [])
    for x in ratings:
        found = index.get((x.dataset, x.item))
        if found is None:
            raise MweError(f"answers for dataset {x.dataset} item {x.item}, "
                           "which is not among the sampled items")
        where = f"dataset {x.dataset} item {x.item}, rater {x.rater}"
        if any(y.rater == x.rater for y in found.ratings):
            raise MweError(f"{where}: this rater rated the item twice")
        if x.answer is not None and x.answer not in found.info.answers:
            allowed = ", ".join(repr(a) for a in found.info.answers)
            raise MweError(f"{where}: answer {x.answer!r} is not among the item's answers ({allowed})")
        if x.relevance is not None and (isinstance(x.relevance, bool) or x.relevance not in range(1, 6)):
            raise MweError(f"{where}: relevance {x.relevance!r} is not 1-5")
        found.ratings.append(x)
    return index


def dataset_stats(items: list[ItemInfo], ratings: list[Rating], b: int = 2000,
                  seed: int = 0) -> list[dict[str, Any]]:
    """The paper's validation figures per dataset, then per family (its datasets pooled), as
    JSON-safe dicts: numbers are plain ints and floats, None where a figure is undefined."""
    index = _attach(items, ratings)
    by_dataset: dict[str, list[_Rated]] = {}
    family_of: dict[str, str] = {}
    for info in items:
        if family_of.setdefault(info.dataset, info.family) != info.family:
            raise MweError(f"dataset {info.dataset} is listed under two families: "
                           f"{family_of[info.dataset]} and {info.family}")
        by_dataset.setdefault(info.dataset, []).append(index[(info.dataset, info.item)])
    rows = [_scope_stats("dataset", name, family_of[name], rated, b, seed)
            for name, rated in by_dataset.items()]
    by_family: dict[str, list[_Rated]] = {}
    for name, rated in by_dataset.items():
        by_family.setdefault(family_of[name], []).extend(rated)
    rows += [_scope_stats("family", "", family, rated, b, seed) for family, rated in by_family.items()]
    return rows
