"""The tables the commands print, through one helper: columns padded to the widest cell and
joined by two spaces (plain text, so results can be diffed and pasted as they are)."""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

from mwe.cost import default_prices
from mwe.families import FAMILIES

if TYPE_CHECKING:
    from mwe.results import Card, PlanRow, SummaryRow


def fmt(x: Any, spec: str = ".1f") -> str:
    """A number as `spec` formats it; '-' for none or NaN."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return format(x, spec)


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]], *, rule: bool = True,
                widths: Sequence[int] | None = None, right: Collection[int] = ()) -> None:
    """Header, a rule of dashes and the rows; each column as wide as its widest cell (or as
    `widths` says), left-aligned but for the columns in `right`."""
    if widths is None:
        widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    lines = [header, *([["-" * w for w in widths]] if rule else []), *rows]
    for line in lines:
        print("  ".join(c.rjust(w) if i in right else c.ljust(w)
                        for i, (c, w) in enumerate(zip(line, widths))))


def print_summaries(summaries: Sequence[SummaryRow]) -> None:
    """Results: one line per model and dataset (% matching, or r where a family correlates)."""
    header = ["model", "dataset", "n", "% matching [95% CI]", "P(match)", "valid mass", "r [95% CI]"]
    # the families' own measures (Family.measures), where the results have them
    measures = list(dict.fromkeys(m for f in FAMILIES for m in f.scorer.measures
                                  if any(s.get(m) is not None for s in summaries)))
    header += [f"{m} [95% CI]" for m in measures]
    # scored by replies: both denominators, and why replies went unscored
    text = any(s.get("n_scored") is not None for s in summaries)
    if text:
        header += ["scored", "% matching of all [95% CI]", "unscored"]
    # --orders all: the position most chosen and its share above chance; Yes/No: % Yes
    bias = any(s.get("position_bias") is not None for s in summaries)
    yes = any(s.get("pct_yes") is not None for s in summaries)
    header += ["position bias"] * bias + ["% yes"] * yes
    lines = []
    for s in summaries:
        if "pearson_r" in s:  # a correlation, not a rate of matching answers
            match = "-"
            pm = "-"
            r = f"{fmt(s['pearson_r'], '.2f')} [{fmt(s['r_ci_low'], '.2f')}, " \
                f"{fmt(s['r_ci_high'], '.2f')}]"
        else:
            match = f"{fmt(s['pct_matching'])} [{fmt(s['ci_low'])}, {fmt(s['ci_high'])}]"
            pm = fmt(s["mean_p_matching"], ".3f")
            r = "-"
        extra = [f"{fmt(s[m], '+.1f')} [{fmt(s.get(m + '_ci_low'), '+.1f')}, "
                 f"{fmt(s.get(m + '_ci_high'), '+.1f')}]" if s.get(m) is not None else "-"
                 for m in measures]
        if text:
            if s.get("n_scored") is None:
                extra += ["-", "-", "-"]
            else:
                why = ", ".join(f"{k} {v}" for k, v in (s.get("unscored") or {}).items())
                extra += [str(s["n_scored"]), f"{fmt(s['pct_matching_all'])} "
                          f"[{fmt(s['all_ci_low'])}, {fmt(s['all_ci_high'])}]", why or "-"]
        if bias:
            top = s.get("most_chosen_position")
            extra.append("-" if top is None else
                         f"({top}) {fmt((s.get('chosen_position') or {}).get(top), '.0%')} "
                         f"({fmt(s.get('position_bias'), '+.2f')})")
        if yes:
            extra.append(fmt(s.get("pct_yes")))
        lines.append([s.model, s.dataset, str(s.n), match, pm,
                      fmt(s.mean_valid_mass, ".3f"), r, *extra])
    print_table(header, lines)


def print_counts(card: Card) -> None:
    """A dataset card's counts: one line per step, one column per label."""
    counts = card.counts
    labels = list(counts)
    right = range(1, len(labels) + 1)
    if not card.filtered:  # a family built without the label filter
        steps = list(counts[labels[0]]) if labels else []
        width = max((len(s) for s in steps), default=4)
        print_table(["step", *map(str, labels)],
                    [[s, *(str(counts[lb].get(s, "")) for lb in labels)] for s in steps],
                    rule=False, widths=[width, *[12] * len(labels)], right=right)
        print(f"{card.rows} rows")
        return
    steps = ["sampled", "parsed", "unique", "agreeing", "top_k", "kept"]
    print_table(["step", *labels],
                [[s, *(str(counts[lb][s]) for lb in labels)] for s in steps],
                rule=False, widths=[max(len(s) for s in steps), *[12] * len(labels)], right=right)
    lc = card["label_confidence"]["mean"]
    print(f"{card.rows} rows; mean label_confidence {fmt(lc, '.3f')} "
          f"(estimated ceiling {fmt(lc, '.3f')}, floor "
          f"{fmt(None if lc is None else 1 - lc, '.3f')})")


def print_plan(rows: Sequence[PlanRow], notes: Sequence[str]) -> None:
    """--dry-run: calls, what the cache holds, tokens and cost of the rest; nothing is run."""
    prices = default_prices()
    head = ["stage", "model", "calls", "cached", "to run", "tokens in", "tokens out", "cost"]
    lines = []
    total: float | None = 0.0
    for r in rows:
        cost = prices.cost(r.spec, r.tokens_in, r.tokens_out)
        total = None if cost is None or total is None else total + cost
        lines.append([r.stage, r.model, str(r.calls), str(r.cached), str(r.to_run),
                      f"~{r.tokens_in:,}", f"<={r.tokens_out:,}" if r.tokens_out else "0",
                      "unknown price" if cost is None else f"${cost:.4f}"])
    print_table(head, lines)
    print(f"estimated cost of the calls not cached: "
          f"{'unknown (a model has no price)' if total is None else f'${total:.4f}'} "
          f"(prices: {prices.source}; tokens ~ characters / 4, outputs at most max_tokens)")
    for n in notes:
        print(n)
    print("dry run: no model was called and nothing was written")


def print_methods(table: Sequence[dict[str, Any]]) -> None:
    """Log-probs against replies: how often the two methods give the same answer."""
    print("\nlog-probs vs replies (items both scored; same answer):")
    print_table(["model", "dataset", "n", "both scored", "% same [95% CI]", "text unscored"],
                [[r["model"], r["dataset"], str(r["n"]), str(r["n_both_scored"]),
                  f"{fmt(r['pct_same'])} [{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]",
                  str(r["n_text_unscored"])] for r in table])
