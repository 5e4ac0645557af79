"""What the commands' parsers share: typed values argparse checks itself and option groups.
Light on purpose: every command's parser is built for `mwe --help`, so what a command runs
is imported when it runs (see `inputs`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from mwe.behavior_spec import SCORES
from mwe.families import FAMILIES
from mwe.io import claim_outputs
from mwe.models import parse_spec
from mwe.orders import ORDERS
from mwe.prompts import FORMAT_HELP, FORMATS
from mwe.redact import redact

# ---- typed values: a bad one is argparse's usage error, before any work --------------------


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None


def positive_int(text: str) -> int:
    """A count of at least 1 (--limit, --top-k, --per-label, --clusters, --per-dataset)."""
    n = _int(text)
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return n


def between(low: float, high: float) -> Callable[[str], float]:
    """A number from `low` to `high` (--unscored-warning: a share; --temperature)."""
    def check(text: str) -> float:
        try:
            x = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None
        if not low <= x <= high:
            raise argparse.ArgumentTypeError(f"must be between {low:g} and {high:g}")
        return x
    return check


share = between(0.0, 1.0)
temperature = between(0.0, 2.0)


def port(text: str) -> int:
    n = _int(text)
    if not 0 < n < 65536:
        raise argparse.ArgumentTypeError("must be between 1 and 65535")
    return n


# ---- parsers and option groups --------------------------------------------------------------

def command(sub: Any, name: str, *, help: str, epilog: str, description: str | None = None,
            run: Callable[[argparse.Namespace], int] | None = None) -> argparse.ArgumentParser:
    """A (sub)command's parser, its epilog printed as written, `run` what main calls."""
    p: argparse.ArgumentParser = sub.add_parser(
        name, help=help, description=description, epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    if run is not None:
        p.set_defaults(run=run)
    return p


def add_cache(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache", metavar="PATH", help="SQLite cache of model calls "
                   "(default: $MWE_CACHE_DIR/calls.sqlite or the user cache folder)")


def add_inspect_log(p: argparse.ArgumentParser) -> None:
    p.add_argument("--inspect-log", metavar="DIR", help="also write one Inspect log (.eval) per "
                   "model and dataset to DIR (new, empty or an earlier one), for `inspect view "
                   "--log-dir DIR` and inspect_ai.analysis.samples_df (needs mwe[inspect])")


def check_inspect_log(args: argparse.Namespace) -> None:
    """Before any work: Inspect installed and the folder usable."""
    if getattr(args, "inspect_log", None):
        from mwe.inspect_log import needs_inspect

        needs_inspect()
        claim_outputs(args.inspect_log, None, "--inspect-log")


def add_no_progress(p: argparse.ArgumentParser, help: str = "no progress bars") -> None:
    p.add_argument("--no-progress", action="store_true", help=help)


def add_scale(p: argparse.ArgumentParser) -> None:
    p.add_argument("--per-label", type=positive_int, metavar="N", help="samples per label "
                   "(overrides the spec's generate.per_label)")
    add_no_progress(p)


def add_dry_run(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dry-run", action="store_true", help="print the calls, what the cache "
                   "holds, tokens and estimated cost; call nothing, write nothing")


def control_help() -> str:
    """--no-control's help: the control conditions the families score beside a file."""
    said = [f"{f.name}: {f.scorer.control}" for f in FAMILIES if f.scorer.control]
    return ("skip the control conditions scored beside each file (" + "; ".join(said) + ")"
            ).replace("%", "%%")


def add_data(p: argparse.ArgumentParser) -> None:
    """The datasets evaluate and sweep score, and how: --data, --format, --limit, ..."""
    p.add_argument("--data", "-d", action="append", required=True, metavar="PATH",
                   help="a .jsonl file, a folder (searched recursively) or a glob (repeatable)")
    p.add_argument("--format", "-f", default="human-assistant", choices=FORMATS,
                   help="; ".join(f"{k}: {v}" for k, v in FORMAT_HELP.items())
                   + " (default: human-assistant)")
    p.add_argument("--limit", type=positive_int, metavar="N",
                   help="only the first N rows of each file")
    p.add_argument("--no-control", action="store_true", help=control_help())
    p.add_argument("--skip-unreadable", action="store_true",
                   help="go on (with a warning) when a folder under --data cannot be read; "
                   "by default that stops the run")


def add_scoring(p: argparse.ArgumentParser) -> None:
    """How answers are scored: by log-probs (the paper's), or by what the model says."""
    g = p.add_argument_group("scoring")
    g.add_argument("--score", choices=SCORES, default="logprob",
                   help="logprob: the probability of each answer after the question (the "
                   "paper's); sample: each answer's share of short prefilled answers sampled "
                   "from a model without log-probs (anthropic:, which logprob also samples); "
                   "text: the question as a user turn with nothing prefilled, the reply read "
                   "as one answer or unscored with a reason (for chat APIs without log-probs "
                   "and reasoning models); logprob,text or sample,text: both, and how often "
                   "they agree (methods.csv) (default: logprob)")
    g.add_argument("--max-tokens", type=positive_int, default=256, metavar="N",
                   help="--score text: longest reply, in tokens (default: 256)")
    g.add_argument("--samples", type=positive_int, default=1, metavar="K",
                   help="--score text: replies per question; the answers' shares make its "
                   "probabilities (default: 1)")
    g.add_argument("--temperature", type=temperature, default=0.0, metavar="T",
                   help="--score text: sampling temperature (default: 0, greedy)")
    g.add_argument("--judge", metavar="MODEL",
                   help="--score text: a model that reads the replies the rules leave "
                   "no_answer or several_answers (a local model by its log-probs over the "
                   "answer letters and 'unclear'; an API model asked for one letter); its "
                   "decisions are kept in each row (default: rules only)")
    g.add_argument("--unscored-warning", type=share, default=0.10, metavar="SHARE",
                   help="--score text: warn when more than this share of a dataset's replies "
                   "is unscored (default: 0.10)")
    g.add_argument("--orders", choices=ORDERS, default="given",
                   help="given: each question as the file gives it; all: each multiple-choice "
                   "question also in every cyclic order of its options (both orders for A/B), "
                   "summaries adding the share choosing each position, the position bias "
                   "and, for Yes/No questions, %% answering Yes (default: given)")


def shown_models(specs: list[str]) -> list[str]:
    """Model strings as given, validated and with any credentials redacted for display."""
    for spec in specs:
        parse_spec(spec)
    return [redact(s) for s in specs]
