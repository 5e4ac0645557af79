"""Golden outputs: what users get from the demo, a sweep and the sycophancy and Winogenerated
specs, recorded before a refactoring and compared after it.

    python tests/golden.py --record    # write tests/data/golden/ (empty cache, bundled models)
    pytest tests/test_golden.py        # produce them again and compare

Each case runs `mwe` as a user would, into a fresh folder with an empty cache, at sizes small
enough for CI. Paths are the only thing normalised (the folders differ between runs); every
other byte must match.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "tests" / "data" / "golden"
PERSONA = REPO / "examples" / "data" / "persona"
SMALL = REPO / "tests" / "data" / "specs"  # example specs cut down to CI size

# name -> mwe arguments; OUT is the case's output folder
CASES: dict[str, list[str]] = {
    "demo": ["demo", "--per-label", "24", "--out", "OUT"],
    "sweep": ["sweep", "--series", str(REPO / "examples" / "series" / "bundled.yaml"),
              "--data", str(PERSONA / "agreeableness.jsonl"),
              "--data", str(PERSONA / "desire-for-self-improvement.jsonl"),
              "--limit", "60", "--out", "OUT"],
    "sycophancy": ["run", str(SMALL / "sycophancy-2.yaml"), "--out", "OUT"],
    "winogenerated": ["run", str(SMALL / "winogenerated-6.yaml"), "--out", "OUT"],
}
# binary outputs whose bytes depend on the plotting library's version, not on mwe
SKIP_SUFFIXES = (".png",)


def produce(name: str, work: Path) -> dict[str, bytes]:
    """Run one case with an empty cache; its files with paths normalised."""
    out = work / name
    cache = work / f"{name}.sqlite"
    args = [str(out) if a == "OUT" else a for a in CASES[name]]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    res = subprocess.run([sys.executable, "-m", "mwe.cli", *args, "--cache", str(cache),
                          "--no-progress"], capture_output=True, text=True, env=env, cwd=REPO,
                         timeout=1800)
    if res.returncode != 0:
        raise RuntimeError(f"mwe {' '.join(args)} failed:\n{res.stderr[-3000:]}")
    files: dict[str, bytes] = {}
    for path in sorted(out.rglob("*")):
        if path.is_file() and not path.name.endswith(SKIP_SUFFIXES):
            data = path.read_bytes()
            data = data.replace(str(out).encode(), b"<OUT>").replace(str(REPO).encode(), b"<REPO>")
            files[str(path.relative_to(out))] = data
    return files


def record(names: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="mwe-golden-") as tmp:
        for name in names:
            files = produce(name, Path(tmp))
            target = GOLDEN / name
            shutil.rmtree(target, ignore_errors=True)
            for rel, data in files.items():
                (target / rel).parent.mkdir(parents=True, exist_ok=True)
                (target / rel).write_bytes(data)
            print(f"{name}: {len(files)} files -> {target}")


def expected(name: str) -> dict[str, bytes]:
    root = GOLDEN / name
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--record", action="store_true", help="write tests/data/golden/")
    parser.add_argument("cases", nargs="*", default=list(CASES), help="cases (default: all)")
    ns = parser.parse_args()
    if not ns.record:
        parser.error("nothing to do: pass --record")
    record(ns.cases)
