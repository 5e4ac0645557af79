"""The `mwe` command: one module per command, each registering its parser and the function
main calls; errors print one line, never a traceback."""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys

from mwe import __version__
from mwe.cli import (
    demo,
    evaluate,
    export,
    generate,
    models,
    report,
    rescore,
    run,
    sweep,
    validate,
)
from mwe.cli import filter as filter_command
from mwe.cli import map as map_command
from mwe.errors import MweError
from mwe.redact import redact
from mwe.store import cache_problem

__all__ = ["build_parser", "main"]

# in the order `mwe --help` lists them
COMMANDS = (evaluate, generate, filter_command, run, sweep, rescore, report, demo, export,
            map_command, validate, models)

EPILOG = """\
examples:
  mwe demo                                         # the whole pipeline on the bundled models
  mwe run examples/specs/deceive-users.yaml --out runs/deceive
  mwe evaluate -m llamacpp:smollm2-135m-instruct -d ../shared/anthropic-evals/persona \\
      --out runs/persona
  mwe report runs/deceive runs/persona --out runs/report.html

Run 'mwe COMMAND --help' for a command's options and examples.
Environment: MWE_CACHE_DIR (cache folder), MWE_THREADS (CPU threads per model),
MWE_SCORE_CHUNK (questions per committed chunk), MWE_MAX_CHARS (longest text field), and
more (MWE_PRICES, MWE_DEVICE, MWE_HTTP_*): every one is in the README's "Environment" table.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mwe",
        description="Model-written evaluations: run behavioral evaluations of language models.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mwe {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        code: int = args.run(args)
        return code
    except MweError as exc:
        return fail(str(exc))
    except sqlite3.Error as exc:  # the cache, after it opened: a full disk, a lock held too long
        return fail(f"cache: {cache_problem(exc)}")
    except OSError as exc:  # an output that could not be written, e.g. a disk that filled up
        where = f"{exc.filename}: " if exc.filename else ""
        return fail(f"{where}{exc.strerror or exc}; nothing half-written was left, and "
                    "finished model calls are cached: run the same command again to resume")
    except KeyboardInterrupt:
        print("mwe: interrupted; run the same command again to resume (finished work is "
              "cached)", file=sys.stderr)
        return 130


def fail(message: str) -> int:
    """The one line every error prints (credentials redacted); exit status 2, as argparse."""
    print(f"mwe: error: {redact(message)}", file=sys.stderr)
    return 2
