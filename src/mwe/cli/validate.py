"""mwe validate serve|export|import|stats: human validation of a dataset's labels."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mwe.cli import args as a
from mwe.errors import MweError
from mwe.io import check_output_dir, check_output_file

EPILOG = """\
examples:
  # three colleagues rate the demo's dataset on this machine (all rows up to 100 a dataset)
  mwe validate serve runs/demo/dataset.jsonl --raters alice,bob,carol --out runs/validation
  # ... each opens the link printed for them; then:
  mwe validate stats --study runs/validation --out runs/validation/stats
  mwe report runs/demo runs/validation/stats --out runs/report.html

  # a crowd platform instead: items out, answers in
  mwe validate export runs/demo/dataset.jsonl --out items.csv
  mwe validate import answers.csv --study runs/validation
  mwe validate stats --answers answers.csv --data runs/demo/dataset.jsonl --out runs/val-stats

  # people check the extractor: which answer does each reply give (30 a dataset)?
  mwe validate serve --replies runs/released-text --per-dataset 30 --out runs/val-replies
  mwe validate stats --study runs/val-replies --out runs/val-replies/stats

Raters answer the paper's three questions per item: is it a good question for testing the
behavior (1-5), what is the correct answer, and is that unclear or ambiguous (yes/no). Every
answer is saved at once in DIR/validation.sqlite; restart the same command to resume.
Answer CSV columns: dataset, item (the row's line), rater, relevance, answer, ambiguous.
"""


def register(sub: Any) -> None:
    val = a.command(
        sub, "validate", run=no_step,
        help="human validation: a rating app, answer files, agreement statistics",
        description="Check a dataset's labels with people, as the paper's crowdworker study "
        "did: sample items, collect ratings (app or crowd platform), compute agreement.",
        epilog=EPILOG)
    steps = val.add_subparsers(dest="validate_command", metavar="STEP")

    vs = a.command(steps, "serve", run=serve, epilog=EPILOG,
                   help="the rating app for a study (creates it from DATASETs)")
    vs.add_argument("data", nargs="*", metavar="DATASET", help="files, folders or globs to "
                    "rate (not needed to reopen a study)")
    vs.add_argument("--out", "-o", required=True, metavar="DIR", help="the study folder "
                    "(validation.sqlite: items, raters, every answer)")
    vs.add_argument("--raters", metavar="NAMES|N", help="alice,bob,carol or a count "
                    "(default 3 for a new study); names new to a study are added")
    vs.add_argument("--host", default="127.0.0.1", help="address to listen on (default "
                    "127.0.0.1: this machine only)")
    vs.add_argument("--port", type=a.port, default=8765, help="port (default 8765)")
    vs.add_argument("--replies", metavar="RUN", help="rate a text-scored run's replies "
                    "instead (which answer each gives): the extractor against people")
    add_sampling(vs)
    ve = a.command(steps, "export", run=export, epilog=EPILOG,
                   help="the sampled items as a CSV for a crowd platform")
    ve.add_argument("data", nargs="+", metavar="DATASET")
    ve.add_argument("--out", "-o", required=True, metavar="FILE.csv")
    add_sampling(ve)
    vi = a.command(steps, "import", run=import_, epilog=EPILOG,
                   help="answers from a crowd platform into a study")
    vi.add_argument("answers", metavar="FILE.csv")
    vi.add_argument("--study", required=True, metavar="DIR", help="the study folder")
    vt = a.command(steps, "stats", run=stats, epilog=EPILOG,
                   help="agreement statistics: relevance, label correctness, kappa, ambiguity")
    vt.add_argument("--study", metavar="DIR", help="a study folder (the app's answers)")
    vt.add_argument("--answers", metavar="FILE.csv", help="an answer CSV instead of a study")
    vt.add_argument("--data", action="append", default=[], metavar="DATASET",
                    help="the datasets an answer CSV rates (repeatable)")
    vt.add_argument("--out", "-o", required=True, metavar="DIR",
                    help="folder for validation.json, validation.csv, answers.csv")


def add_sampling(p: argparse.ArgumentParser) -> None:
    p.add_argument("--per-dataset", type=a.positive_int, default=100, metavar="N",
                   help="rate every row of a dataset with at most N rows, else N drawn with "
                   "the seed (default 100, as the paper)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--description", metavar="TEXT", help="the behavior, shown with every "
                   "item (default: the dataset card's description, else the file's name)")


def no_step(args: argparse.Namespace) -> int:
    raise MweError("mwe validate needs a step: serve, export, import or stats "
                   "(see mwe validate --help)")


def serve(args: argparse.Namespace) -> int:
    from mwe.validate import commands as v  # imported here, not above: keeps `mwe --help` fast

    names = v.rater_names(args.raters) if args.raters else None
    study = v.open_to_serve(Path(args.out), args.data, args.replies, args.per_dataset,
                            args.seed, args.description)
    if names or not study.raters():
        study.add_raters(names or v.rater_names("3"))

    def ready(links: list[tuple[str, str]]) -> None:
        n = len(study.items())
        print(f"study: {study.path} ({n} items)")
        print("private links (one per rater; each sees and changes only their own answers):")
        for name, url in links:
            print(f"  {name}: {url}")
        print("Ctrl-C stops the server; every answer is already saved.", flush=True)

    v.serve(study, args.host, args.port, ready)
    return 0


def export(args: argparse.Namespace) -> int:
    from mwe.validate import commands as v  # imported here, not above: keeps `mwe --help` fast

    out = Path(args.out)
    check_output_file(out)
    items = v.export_items(out, args.data, args.per_dataset, args.seed, args.description)
    print(f"items: {out} ({len(items)} items)")
    return 0


def import_(args: argparse.Namespace) -> int:
    from mwe.validate import commands as v  # imported here, not above: keeps `mwe --help` fast

    study = v.open_study(Path(args.study), [])
    n = v.import_answers(Path(args.answers), study)
    print(f"imported {n} answers into {study.path}")
    return 0


def stats(args: argparse.Namespace) -> int:
    from mwe.validate import commands as v  # imported here, not above: keeps `mwe --help` fast

    out = Path(args.out)
    check_output_dir(out)
    if bool(args.study) == bool(args.answers):
        raise MweError("give either --study DIR or --answers FILE.csv (with --data)")
    if args.study:
        study = v.open_study(Path(args.study), [])
        source = str(Path(args.study) / "validation.sqlite")
        if study.is_replies():
            print_reply_stats(v.write_reply_stats(out, study, source))
            print(f"\nstats: {out / 'validation.json'} ({out / 'confusion.csv'})")
            return 0
        infos, ratings = v.study_ratings(study)
    else:
        if not args.data:
            raise MweError("--answers needs --data: the datasets the answers rate")
        infos, ratings = v.file_ratings(Path(args.answers), args.data)
        source = str(args.answers)
    results = v.write_stats(out, infos, ratings, source)
    print_stats(results)
    print(f"\nstats: {out / 'validation.json'} ({out / 'validation.csv'})")
    return 0


def f(x: Any, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def print_stats(results: list[dict[str, Any]]) -> None:
    """Agreement per dataset and family, then the paper's figures to compare with."""
    from mwe.cli.table import print_table
    from mwe.validate.stats import PAPER

    head = ["scope", "name", "items", "raters", "relevance", "label ok", "2+ agree", "kappa",
            "0 ambiguous"]
    print_table(head, [
        [r["scope"], r["dataset"] or r["family"], str(r["n_items"]), str(r["n_raters"]),
         f"{f(r['relevance_mean'], '.2f')} ± {f(r['relevance_sd'], '.2f')}",
         f(r["label_correct"], ".1%"), f(r["agree_2of3"], ".1%"),
         f(r["fleiss_kappa"] if r.get("kappa_method") == "fleiss"
           else r.get("krippendorff_alpha"), ".3f"),
         f(r["ambiguous_none_share"], ".1%")] for r in results])
    p = PAPER
    print(f"paper (Perez et al. 2022): relevance {p['relevance_mean']} ± {p['relevance_sd']}, "
          f"2+ of 3 agree {p['agree_2of3']:.1%}, Fleiss kappa {p['fleiss_kappa']}, "
          f"0 of 3 ambiguous {p['ambiguous_none_share']:.1%}")


def print_reply_stats(results: list[dict[str, Any]]) -> None:
    """Each reader against the raters' majority, then the confusion table over all items."""
    from mwe.cli.table import print_table
    from mwe.validate.reply_stats import confusion_table

    head = ["scope", "reader", "items", "raters", "raters kappa", "agree", "Cohen kappa [95% CI]",
            "people unclear", "of those unscored"]
    print_table(head, [
        [r["dataset"] or r["scope"], r["reader"], str(r["n_items"]), str(r["n_raters"]),
         f(r["raters_kappa"], ".3f"), f(r["agreement"], ".1%"),
         f"{f(r['cohen_kappa'], '.3f')} [{f(r['kappa_ci_low'], '.3f')}, "
         f"{f(r['kappa_ci_high'], '.3f')}]", str(r["human_unclear"]),
         f(r["unclear_unscored_share"], ".1%")] for r in results])
    for r in (r for r in results if r["scope"] == "all"):
        print(f"\npeople's majority (rows) against the {r['reader']} (columns), all items:")
        print_table(*confusion_table(r["confusion"]))
