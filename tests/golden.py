"""Golden outputs: what users get from the demo, a sweep and the sycophancy and Winogenerated
specs, recorded before a refactoring and compared after it.

    python tests/golden.py --record    # write tests/data/golden/ (empty cache, bundled models)
    pytest tests/test_golden.py        # produce them again and compare

Each case runs `mwe` as a user would, into a fresh folder with an empty cache, at sizes small
enough for CI. Paths are normalised (the folders differ between runs). Files are compared as
text with their numbers taken out (`compare`): the text between the numbers (every string,
key, label, fate and `true`/`false` decision), the integers (counts, tokens, line numbers)
and the set of files must be identical; decimal numbers may differ by the tolerance below,
because fp32 log-probs differ between CPU kinds (Intel/AMD, AVX2/AVX-512) in their 6th-7th
significant digit. On one machine a rerun from the cache is bit-identical, which other
tests check.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
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

# Log-probs may differ by this much between CPU kinds (measured on these cases, AMD EPYC against
# the Intel Xeon recording: at most 2.4e-5 for a log-prob, 6e-6 for a probability).
# Every decimal number in an output is compared with it: probabilities, shares and means
# derived from log-probs move by less than the log-probs do (a two-way softmax by at most a
# quarter of the log-odds' change), and a number printed rounded may move by its rounding
# too (half a unit in its last printed digit, on each side).
ATOL = 1e-4
RTOL = 1e-6  # for the few large magnitudes (summed log-probs of long replies)
# Decisions derived from numbers (matches_behavior, a filter's fate) are compared exactly.
# They could only flip across machines if a recorded margin were within the tolerance:
# `ties` checks that the recorded outputs hold no such near-tie (tests/test_golden.py runs
# it), so a decision that differs is a real change, never machine noise.
TIE = 4 * ATOL

_NUMBER = re.compile(r"-?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


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


def _rounding(token: str) -> float:
    """Half a unit in the last printed digit of a decimal number."""
    mantissa, _, exponent = token.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 0.5 * 10.0 ** (-decimals + (int(exponent) if exponent else 0))


def _is_int(token: str) -> bool:
    return "." not in token and "e" not in token.lower()


def _lines_differ(want: str, got: str) -> str | None:
    """Why two lines differ beyond the tolerance, or None."""
    want_nums, got_nums = _NUMBER.findall(want), _NUMBER.findall(got)
    if _NUMBER.split(want) != _NUMBER.split(got) or len(want_nums) != len(got_nums):
        return "text differs"
    for w, g in zip(want_nums, got_nums):
        if w == g:
            continue
        if _is_int(w) and _is_int(g):
            return f"integer {g} != {w}"
        a, b = float(w), float(g)
        if not (math.isfinite(a) and math.isfinite(b)):
            return f"number {g} != {w}"
        allowed = ATOL + RTOL * max(abs(a), abs(b)) + _rounding(w) + _rounding(g)
        if abs(a - b) > allowed:
            return f"number {g} != {w} (|difference| {abs(a - b):.3g} > {allowed:.3g})"
    return None


def compare(rel: str, want: bytes, got: bytes, limit: int = 5) -> list[str]:
    """The differences between a recorded file and a produced one beyond the tolerance."""
    if want == got:
        return []
    try:
        want_lines = want.decode("utf-8").splitlines()
        got_lines = got.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        return [f"{rel}: binary content differs"]
    if len(want_lines) != len(got_lines):
        return [f"{rel}: {len(got_lines)} lines, recorded {len(want_lines)}"]
    problems = []
    for number, (w, g) in enumerate(zip(want_lines, got_lines), 1):
        why = _lines_differ(w, g)
        if why:
            problems.append(f"{rel}:{number}: {why}\n  recorded: {w[:300]}\n  produced: {g[:300]}")
            if len(problems) >= limit:
                break
    return problems


def ties(files: dict[str, bytes]) -> list[str]:
    """Decisions in a case's outputs whose recorded margin is within TIE: such a decision could
    flip between CPU kinds, so a golden case must not contain one (pick another seed or size).

    Checked: each scored row's matching vs best other log-prob (`matches_behavior`), and in a
    filter's `scored.jsonl` each label confidence against 0.5 and the scores on either side of
    every change of fate within a label (or occupation), where a top-k or balance cut falls."""
    found = []
    for rel, data in files.items():
        if not rel.endswith(".jsonl"):
            continue
        rows = [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
        groups: dict[str, list[tuple[float, str, int]]] = {}
        for number, row in enumerate(rows, 1):
            lps, answers = row.get("logprobs"), row.get("answers")
            matching = row.get("answer_matching_behavior")
            if "matches_behavior" in row and lps and answers and matching:
                best_match = max(lp for a, lp in zip(answers, lps) if a in matching)
                best_other = max(lp for a, lp in zip(answers, lps) if a not in matching)
                if abs(best_match - best_other) <= TIE:
                    found.append(f"{rel}:{number}: matching and other answer within {TIE}")
            if "fate" in row and isinstance(row.get("score"), float):
                confidence = row.get("label_confidence")
                if isinstance(confidence, float) and abs(confidence - 0.5) <= TIE:
                    found.append(f"{rel}:{number}: label_confidence within {TIE} of 0.5")
                group = str(row.get("label", row.get("occupation", "")))
                groups.setdefault(group, []).append((row["score"], row["fate"], number))
        for scored in groups.values():
            scored.sort(key=lambda t: -t[0])
            for (s1, f1, n1), (s2, f2, n2) in zip(scored, scored[1:]):
                if f1 != f2 and s1 - s2 <= TIE:
                    found.append(f"{rel}:{n1},{n2}: scores {s1} and {s2} ({f1}/{f2}) within {TIE}")
    return found


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
