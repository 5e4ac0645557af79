"""Duplicate removal for generated examples: exact after normalisation, or by embedding."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

_NON_WORD = re.compile(r"[^\w]+")


def normalize(text: str) -> str:
    """Case, punctuation and spacing removed: 'I  like cats!' and 'i like cats' are one text."""
    return _NON_WORD.sub(" ", text.casefold()).replace("_", " ").strip()


def exact_duplicates(texts: Sequence[str], seen: Sequence[str] = ()) -> list[int | None]:
    """For each text, the index of the earlier text it duplicates (-1: one of `seen`), or None."""
    first: dict[str, int] = {normalize(t): -1 for t in seen}
    out: list[int | None] = []
    for i, t in enumerate(texts):
        key = normalize(t)
        if key in first:
            out.append(first[key])
        else:
            first[key] = i
            out.append(None)
    return out


def near_duplicates(vectors: Sequence[Sequence[float]], threshold: float) -> list[int | None]:
    """Greedy in order: a text whose cosine with an earlier kept text is >= threshold is a
    near-duplicate of the most similar such text. Vectors must be unit length."""
    out: list[int | None] = []
    if not len(vectors):
        return out
    mat = np.asarray(vectors, dtype=np.float64)
    kept: list[int] = []
    for i in range(len(mat)):
        if kept:
            sims = mat[kept] @ mat[i]
            j = int(np.argmax(sims))
            if sims[j] >= threshold:
                out.append(kept[j])
                continue
        kept.append(i)
        out.append(None)
    return out
