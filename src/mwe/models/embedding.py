"""Sentence embeddings (the bundled all-MiniLM-L6-v2) for near-duplicate detection.

Mean pooling over tokens and L2 normalisation, as sentence-transformers configures this
model, computed with transformers alone. Vectors are rounded to 6 decimals before use, so a
fresh run and a cached rerun see the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mwe import threads
from mwe.store import Store, digest

BATCH = 64


def identity(path: Path) -> dict[str, Any]:
    from mwe.paths import file_sha256

    return {"backend": "embedding", "weights_sha256": file_sha256(path / "model.safetensors"),
            "pooling": "mean", "normalize": True, "round": 6}


class CachedEmbedder:
    """Embeds texts, reading and writing the same store as the language models."""

    def __init__(self, store: Store, path: Path | None = None) -> None:
        from mwe.models import bundled

        self.path = path or bundled.embedding_dir()
        self.store = store
        self.model_id = store.register_model(identity(self.path))
        self._model: Any = None
        self._tok: Any = None

    def _load(self) -> None:
        threads.quiet_openmp_spin()  # before torch loads its OpenMP runtime
        import torch
        from transformers import AutoModel, AutoTokenizer

        # MWE_THREADS or the default (this model has no model string to carry ?threads=N)
        threads.set_torch_threads(threads.resolve())
        self._tok = AutoTokenizer.from_pretrained(str(self.path))
        self._model = AutoModel.from_pretrained(str(self.path), dtype=torch.float32).eval()

    def _embed(self, texts: Sequence[str]) -> list[list[float]]:
        import torch

        if self._model is None:
            self._load()
        out: list[list[float]] = []
        for start in range(0, len(texts), BATCH):
            enc = self._tok(list(texts[start : start + BATCH]), padding=True, truncation=True,
                            max_length=256, return_tensors="pt")
            with torch.inference_mode():
                hidden = self._model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
            out.extend([[round(float(x), 6) for x in row] for row in pooled.tolist()])
        return out

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        keys = [digest({"text": t}) for t in texts]
        found = self.store.get_many(self.model_id, "embed", keys)
        todo = sorted({k: i for i, k in enumerate(keys) if k not in found}.values())
        if todo:
            vecs = self._embed([texts[i] for i in todo])
            self.store.put_many(self.model_id, "embed",
                                [(keys[i], {"text": texts[i]}, v) for i, v in zip(todo, vecs)])
            for i, v in zip(todo, vecs):
                found[keys[i]] = v
        return [found[k] for k in keys]
