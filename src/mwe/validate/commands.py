"""What `mwe validate serve|export|import|stats` do, over a study folder or answer files."""

from __future__ import annotations

import errno
import re
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mwe import __version__
from mwe.errors import MweError
from mwe.io import write_csv, write_json
from mwe.validate import stats
from mwe.validate.answers import read_answers, write_answers, write_items
from mwe.validate.sample import PER_DATASET, StudyItem, all_items, sample_items
from mwe.validate.study import Study

RATER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
STATS_COLUMNS = ["scope", "dataset", "family", "n_items", "n_raters", "n_ratings",
                 "relevance_mean", "relevance_sd", "label_correct", "label_correct_ci_low",
                 "label_correct_ci_high", "agree_2of3", "kappa_method", "fleiss_kappa",
                 "kappa_ci_low", "kappa_ci_high", "krippendorff_alpha", "ambiguous_none_share",
                 "confidence_r", "confidence_r_ci_low", "confidence_r_ci_high"]


REPLY_COLUMNS = ["scope", "dataset", "reader", "n_items", "n_raters", "n_ratings", "ties",
                 "raters_kappa", "raters_kappa_ci_low", "raters_kappa_ci_high", "agreement",
                 "agreement_ci_low", "agreement_ci_high", "cohen_kappa", "kappa_ci_low",
                 "kappa_ci_high", "human_unclear", "unclear_unscored_share", "reader_unscored",
                 "unscored_unclear_share"]
CONFUSION_COLUMNS = ["scope", "dataset", "reader", "people", "reader_answer", "n"]


def rater_names(spec: str) -> list[str]:
    """--raters alice,bob,carol, or a count (rater-1, rater-2, ...)."""
    spec = spec.strip()
    if spec.isdigit():
        if not 1 <= int(spec) <= 1000:
            raise MweError("--raters: a count from 1 to 1000, or names separated by commas")
        return [f"rater-{i}" for i in range(1, int(spec) + 1)]
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise MweError("--raters: give names separated by commas (alice,bob,carol) or a count")
    for n in names:
        if not RATER_NAME.match(n):
            raise MweError(f"--raters: '{n}' is not a usable name (letters, digits, '.', '_', "
                           "'-', '@'; at most 64)")
        if names.count(n) > 1:
            raise MweError(f"--raters: '{n}' is named twice")
    return names


def open_study(folder: Path, data: list[str], per_dataset: int = PER_DATASET, seed: int = 0,
               description: str | None = None) -> Study:
    """The study in `folder`, created from a sample of `data` when it has none yet."""
    if data:
        items = sample_items(data, per_dataset, seed, description)
        settings = {"datasets": sorted({it.path for it in items}), "per_dataset": per_dataset,
                    "seed": seed, "description": description}
        study = Study(folder, create=True)
        study.setup(items, settings)
        return study
    return Study(folder)


def open_reply_study(folder: Path, run: str, per_dataset: int = PER_DATASET,
                     seed: int = 0) -> Study:
    """A study of a text-scored run's replies in `folder`, created when it has none yet."""
    from mwe.validate.replies import reply_items, settings_of

    items = reply_items(run, per_dataset, seed)
    study = Study(folder, create=True)
    study.setup(items, settings_of(run, per_dataset, seed))
    return study


def open_to_serve(folder: Path, data: list[str], replies: str | None, per_dataset: int,
                  seed: int, description: str | None) -> Study:
    """`serve`'s study: of DATASETs' labels, of a run's replies, or the one in `folder`."""
    if replies and data:
        raise MweError("give DATASETs or --replies RUN, not both")
    if replies:
        return open_reply_study(folder, replies, per_dataset, seed)
    return open_study(folder, data, per_dataset, seed, description)


def links(study: Study, host: str, port: int) -> list[tuple[str, str]]:
    """Each rater's link; a rater whose token this folder no longer knows (tokens.json
    deleted or edited) gets a new one, and the old link stops working."""
    lost = [r.name for r in study.raters() if r.token is None]
    if lost:
        study.new_links(lost)
        print(f"mwe: note: {study.tokens_path} had no token for {', '.join(lost)}: new links "
              "made (their old links no longer work)", file=sys.stderr)
    shown = "127.0.0.1" if host in ("127.0.0.1", "localhost") else host
    shown = f"[{shown}]" if ":" in shown else shown
    return [(r.name, f"http://{shown}:{port}/rate/{r.token}") for r in study.raters()]


def listen(host: str, port: int) -> socket.socket:
    """The server's socket, bound before anything is printed: a port in use or an address
    that is not this machine's is an error, not links that lead nowhere."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise MweError(f"--host {host}: not an address of this machine ({exc})") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        hint = " (in use? try --port)" if exc.errno == errno.EADDRINUSE else " (check --host)"
        raise MweError(f"cannot listen on {host}:{port}: {exc.strerror}{hint}") from None
    sock.setblocking(False)
    return sock


def serve(study: Study, host: str, port: int,
          on_ready: Callable[[list[tuple[str, str]]], None] | None = None) -> None:
    """Run the rating app until interrupted (every answer is already on disk)."""
    import uvicorn

    from mwe.validate.app import create_app

    sock = listen(host, port)
    config = uvicorn.Config(create_app(study), host=host, port=port, log_level="warning",
                            access_log=False)
    server = uvicorn.Server(config)
    try:
        if on_ready is not None:
            on_ready(links(study, host, port))
        server.run(sockets=[sock])
    finally:
        sock.close()
    if not server.started:
        raise MweError(f"the rating app did not start on {host}:{port}")


def export_items(out: Path, data: list[str], per_dataset: int, seed: int,
                 description: str | None) -> list[StudyItem]:
    items = sample_items(data, per_dataset, seed, description)
    write_items(out, items)
    return items


def import_answers(path: Path, study: Study) -> int:
    """Answers from a crowd platform into the study (a rater new to it is added)."""
    items = study.items()
    index = {(it.dataset, str(it.line)): k for k, it in enumerate(items)}
    ratings = read_answers(path, {key: items[k] for key, k in index.items()})
    study.add_raters(list(dict.fromkeys(r.rater for r in ratings)))
    for r in ratings:
        study.save(r.rater, index[(r.dataset, r.item)], r.relevance, r.answer, r.ambiguous,
                   source=f"import:{path.name}")
    return len(ratings)


def study_ratings(study: Study) -> tuple[list[stats.ItemInfo], list[stats.Rating]]:
    return [it.info() for it in study.items()], study.ratings()


def file_ratings(answers: Path, data: list[str]) -> tuple[list[stats.ItemInfo],
                                                           list[stats.Rating]]:
    """An answer CSV against the datasets it names (every row may be named)."""
    everything = all_items(data)
    ratings = read_answers(answers, everything)
    used = {(r.dataset, r.item) for r in ratings}
    return [it.info() for key, it in everything.items() if key in used], ratings


def write_stats(out: Path, items: list[stats.ItemInfo], ratings: list[stats.Rating],
                source: str) -> list[dict[str, Any]]:
    """validation.json (every statistic, the paper's figures beside them), validation.csv
    (one row per dataset and per family) and answers.csv (the answers they come from)."""
    if not ratings:
        raise MweError(f"{source}: no answers yet")
    results = stats.dataset_stats(items, ratings)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "validation.json", {"mwe_version": __version__, "source": source,
                                         "paper": stats.PAPER, "results": results})
    write_csv(out / "validation.csv", results, STATS_COLUMNS)
    write_answers(out / "answers.csv", ratings)
    return results


def write_reply_stats(out: Path, study: Study, source: str) -> list[dict[str, Any]]:
    """A reply study's statistics: validation.json (results empty: no label was rated;
    `replies` holds each reader against the raters), validation.csv (one row per scope and
    reader), confusion.csv, and answers.csv."""
    from mwe.validate.reply_stats import reply_stats

    ratings = study.ratings()
    if not any(r.answer is not None for r in ratings):
        raise MweError(f"{source}: no answers yet")
    results = reply_stats(study.items(), ratings)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "validation.json", {"mwe_version": __version__, "source": source,
                                         "study": "replies", "results": [],
                                         "replies": results})
    write_csv(out / "validation.csv", results, REPLY_COLUMNS)
    write_csv(out / "confusion.csv", [
        {"scope": r["scope"], "dataset": r["dataset"], "reader": r["reader"], "people": human,
         "reader_answer": got, "n": n}
        for r in results for human, row in r["confusion"].items() for got, n in row.items()],
        CONFUSION_COLUMNS)
    write_answers(out / "answers.csv", ratings)
    return results
