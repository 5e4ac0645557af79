"""Token sampling shared by the backends that run their own decoding loop.

Each sequence owns a random generator seeded from (seed, prompt, sample index), so a
sample depends on its seed and the model's logits only, not on which other sequences were
decoded in the same batch. Temperature is applied before the nucleus cut, as in
transformers and the OpenAI API.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mwe.models.base import seed_for


def rng_for(seed: int, prompt: str, index: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64([seed_for(seed, prompt), index]))


def sample_token(
    logits: np.ndarray, rng: np.random.Generator, temperature: float, top_p: float
) -> int:
    """One token from `logits` (1-D) after temperature scaling and a top-p (nucleus) cut."""
    if temperature <= 0:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) / temperature
    z -= z.max()
    p = np.exp(z)
    p /= p.sum()
    if top_p < 1.0:
        # The nucleus is every token at least as likely as the one whose cumulative mass
        # crosses top_p. Only a candidate set holding top_p of the mass is sorted, and only
        # its values: the draw walks the kept tokens in id order, so near-ties in
        # probability never reorder them.
        k = min(256, p.size)
        while True:
            top = np.partition(p, p.size - k)[p.size - k :] if k < p.size else p
            if top.sum() >= top_p or k >= p.size:
                break
            k = min(k * 4, p.size)
        desc = np.sort(top)[::-1]
        cut = min(int(np.searchsorted(np.cumsum(desc), top_p)), desc.size - 1)
        keep = np.flatnonzero(p >= desc[cut])
        return int(keep[_draw(p[keep], rng)])
    return _draw(p, rng)


def _draw(weights: np.ndarray, rng: np.random.Generator) -> int:
    cum = np.cumsum(weights)
    return int(min(np.searchsorted(cum, rng.random() * cum[-1], side="right"), weights.size - 1))


def first_stop(text: str, stop: Sequence[str]) -> int:
    """Index where the earliest stop string starts, or -1."""
    hits = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return min(hits) if hits else -1
