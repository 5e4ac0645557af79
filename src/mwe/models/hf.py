"""transformers backend: any causal LM from a local folder or a hub id, or a bundled model.

Scoring is built for throughput on evaluation sets where every prompt shares a template:
- the token prefix common to a batch of prompts is run once and its KV cache reused;
- the output layer is applied only at the positions whose next token is scored;
- rows are sorted by length and batched under a token budget, padded on the right
  (causal attention never lets a real token see the padding after it).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mwe import settings, threads
from mwe.errors import MweError
from mwe.models.base import (
    Job,
    Prompt,
    Sampling,
    ScoreRequest,
    build_jobs,
    require_modules,
    text_of,
)


@dataclass
class _Row:
    """Tokens of one or more prefix trees laid out in a row, in depth-first order.

    Depth-first order makes each token's subtree the contiguous range [i, ends[i]), so
    "j is an ancestor of i (or i itself)" is j <= i < ends[j]: the attention mask is two
    comparisons over the row instead of a list of ancestors per token.
    """

    tokens: list[int] = field(default_factory=list)
    depths: list[int] = field(default_factory=list)  # position after the common prefix
    ends: list[int] = field(default_factory=list)  # end (exclusive) of each token's subtree
    # (index in row, target token id, request index, continuation index)
    reads: list[tuple[int, int, int, int]] = field(default_factory=list)
    _path: list[int] = field(default_factory=list)

    def add(self, job: Job, suffix: list[int], shared: int, p: int) -> None:
        """Append `suffix`, whose first `shared` tokens are already on the current path."""
        path = self._path[:shared]
        for depth in range(shared, len(suffix)):
            self.tokens.append(suffix[depth])
            self.depths.append(depth)
            self.ends.append(0)
            path.append(len(self.tokens) - 1)
        end = len(self.tokens)
        for i in path:
            self.ends[i] = end
        self._path = path
        for pos, target, r, c in job.reads:
            self.reads.append((path[pos - p], target, r, c))

    def merge(self, other: _Row) -> None:
        base = len(self.tokens)
        self.tokens.extend(other.tokens)
        self.depths.extend(other.depths)
        self.ends.extend(base + e for e in other.ends)
        self.reads.extend((base + i, t, r, c) for i, t, r, c in other.reads)


class HFModel:
    def __init__(
        self,
        spec: str,
        path: str,
        identity: dict[str, Any],
        batch_tokens: int = 1024,
        max_batch: int = 128,
        row_tokens: int = 128,
        n_threads: int | None = None,
        dtype: str = "float32",
    ) -> None:
        threads.quiet_openmp_spin()  # before torch loads its OpenMP runtime
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        threads.set_torch_threads(n_threads or threads.resolve())
        self.spec = spec
        self._identity = identity
        self.batch_tokens = batch_tokens
        self.max_batch = max_batch
        self.row_tokens = row_tokens
        self.torch = torch
        offline = not Path(path).exists()
        try:
            self.tok = AutoTokenizer.from_pretrained(path, local_files_only=offline)
            self.model = AutoModelForCausalLM.from_pretrained(
                path, dtype=getattr(torch, dtype), local_files_only=offline
            )
        except OSError as exc:
            raise MweError(f"hf: cannot load model '{path}': {exc}") from None
        self.device = device_for(identity)
        self.model.to(self.device)  # type: ignore[arg-type]
        self.model.eval()
        self.decoder = self.model.base_model
        self.head = self.model.get_output_embeddings()
        self.softcap = getattr(self.model.config, "final_logit_softcapping", None)
        # Follow the tokenizer's own default about a leading BOS token (Gemma adds one,
        # SmolLM2 does not), as lm-evaluation-harness does for these models.
        with_special = self.tok("a").input_ids
        plain = self.tok("a", add_special_tokens=False).input_ids
        self.bos_id: int | None = None
        if len(with_special) > len(plain) and with_special[1:] == plain:
            self.bos_id = with_special[0]
        fallback = self.tok.bos_token_id if self.tok.bos_token_id is not None else None
        self.prefix_token = self.bos_id if self.bos_id is not None else fallback
        if self.prefix_token is None:
            self.prefix_token = self.tok.eos_token_id
        self._prefix_kv: dict[tuple[int, ...], Any] = {}
        # sdpa takes the boolean block-diagonal masks used for packing
        self.model.config._attn_implementation = "sdpa"

    def identity(self) -> dict[str, Any]:
        return self._identity

    # ---- tokenization -------------------------------------------------------------------
    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(ids) for ids in self.tok(list(texts), add_special_tokens=False)["input_ids"]]

    def _encode_many(self, texts: list[str]) -> list[list[int]]:
        ids: list[list[int]] = self.tok(texts, add_special_tokens=False)["input_ids"]
        bos_text = self.tok.bos_token
        out = []
        for text, t in zip(texts, ids):
            if self.bos_id is not None and not (bos_text and text.startswith(bos_text)):
                t = [self.bos_id, *t]
            out.append(list(t))
        return out

    def _jobs(self, requests: Sequence[ScoreRequest]) -> list[Job]:
        return build_jobs(requests, self._encode_many, self.bos_id, self.prefix_token)

    # ---- scoring ------------------------------------------------------------------------
    def score(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        torch = self.torch
        out = [[0.0] * len(conts) for _, conts in requests]
        jobs = self._jobs(requests)
        if not jobs:
            return out
        prefix = self._common_prefix([j.tokens for j in jobs])
        # a read position must be a token of the row, not of the cached prefix (all requests
        # can share the whole context, e.g. one question asked for several rows)
        first_read = min(pos for j in jobs for pos, _, _, _ in j.reads)
        prefix = prefix[:first_read]
        rows = self._pack(jobs, len(prefix))
        width = max(len(row.tokens) for row in rows)
        per_call = max(1, min(self.max_batch, self.batch_tokens // width))
        with torch.inference_mode():
            kv = self._prefix_cache(prefix) if prefix else None
            for start in range(0, len(rows), per_call):
                self._run_packed(rows[start : start + per_call], prefix, kv, out)
        return out

    @staticmethod
    def _common_prefix(seqs: list[list[int]]) -> list[int]:
        first = seqs[0]
        n = min(len(s) for s in seqs) - 1  # every row keeps at least one token to run
        k = 0
        while k < n and all(s[k] == first[k] for s in seqs):
            k += 1
        return first[:k]

    def _pack(self, jobs: list[Job], p: int) -> list[_Row]:
        """Lay the sequences out as prefix trees packed into rows, computing each shared token once.

        Jobs are sorted by their tokens, so each shares the longest possible prefix with the
        one before it; only the tokens after that shared part are added. A run of jobs whose
        tree stays under `row_tokens` tokens forms a unit; units are packed first-fit into
        rows. A token attends to the common prefix (KV cache) and to its ancestors in its
        tree, so every sequence sees exactly its own tokens, as in a plain forward pass.
        Against padded batches this skipped 20-40% of the work on the released statement files.
        """
        order = sorted(jobs, key=lambda j: j.tokens)
        units: list[_Row] = []
        prev: list[int] | None = None
        for job in order:
            suffix = job.tokens[p:]
            shared = 0
            if prev is not None:
                limit = min(len(prev), len(suffix))
                while shared < limit and prev[shared] == suffix[shared]:
                    shared += 1
            unit = units[-1] if units else None
            if unit is None or len(unit.tokens) + len(suffix) - shared > self.row_tokens:
                unit = _Row()
                units.append(unit)
                shared = 0
            unit.add(job, suffix, shared, p)
            prev = suffix
        cap = max(self.row_tokens, max(len(u.tokens) for u in units))
        rows: list[_Row] = []
        for unit in sorted(units, key=lambda u: -len(u.tokens)):
            for row in rows:
                if len(row.tokens) + len(unit.tokens) <= cap:
                    row.merge(unit)
                    break
            else:
                rows.append(unit)
        return rows

    def _prefix_cache(self, prefix: list[int]) -> Any:
        key = tuple(prefix)
        if key not in self._prefix_kv:
            torch = self.torch
            ids = torch.tensor([prefix], device=self.device)
            res = self.decoder(input_ids=ids, use_cache=True)
            if len(self._prefix_kv) >= 8:
                self._prefix_kv.pop(next(iter(self._prefix_kv)))
            self._prefix_kv[key] = res.past_key_values
        return self._prefix_kv[key]

    def _run_packed(
        self, rows: list[_Row], prefix: list[int], kv: Any, out: list[list[float]]
    ) -> None:
        torch = self.torch
        p = len(prefix)
        width = max(len(row.tokens) for row in rows)
        pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else 0
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        positions = torch.full((len(rows), width), p, dtype=torch.long)
        ends = torch.zeros((len(rows), width), dtype=torch.long)  # padding: seen by none
        for r, row in enumerate(rows):
            n = len(row.tokens)
            ids[r, :n] = torch.tensor(row.tokens)
            positions[r, :n] = torch.tensor(row.depths) + p
            ends[r, :n] = torch.tensor(row.ends)
        # Every position sees the shared prefix (padding too, so that no attention row is
        # empty); a tree token sees its ancestors and itself (j <= i < ends[j]). Additive,
        # in the model's dtype: sdpa turns a boolean mask into exactly this at every layer.
        at = torch.arange(width)
        tree = (at.view(1, 1, -1) <= at.view(1, -1, 1)) & (at.view(1, -1, 1) < ends.unsqueeze(1))
        mask = torch.zeros((len(rows), 1, width, p + width), dtype=self.model.dtype)
        mask[:, 0, :, p:].masked_fill_(~tree, float("-inf"))
        kwargs: dict[str, Any] = {}
        if kv is not None:
            cache = copy.deepcopy(kv)
            cache.batch_repeat_interleave(len(rows))
            kwargs["past_key_values"] = cache
        dev = self.device
        hidden = self.decoder(
            input_ids=ids.to(dev), position_ids=positions.to(dev), attention_mask=mask.to(dev),
            use_cache=kv is not None, **kwargs,
        ).last_hidden_state
        # Output layer only where a next token is read; the targets are gathered in torch
        # (one transfer, no tensor indexing per read).
        where: dict[tuple[int, int], int] = {}
        slots: list[int] = []
        targets: list[int] = []
        for r, row in enumerate(rows):
            for i, target, _, _ in row.reads:
                slots.append(where.setdefault((r, i), len(where)))
                targets.append(target)
        idx_r = torch.tensor([k[0] for k in where], device=dev)
        idx_c = torch.tensor([k[1] for k in where], device=dev)
        logits = self.head(hidden[idx_r, idx_c]).float()
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        logprobs = torch.log_softmax(logits, dim=-1)
        picked = logprobs[torch.tensor(slots, device=dev), torch.tensor(targets, device=dev)]
        reads = (read for row in rows for read in row.reads)
        for (_, _, ri, ci), value in zip(reads, picked.tolist()):
            out[ri][ci] += value

    # ---- generation and chat ------------------------------------------------------------
    def generate(self, prompts: Sequence[Prompt], sampling: Sampling) -> list[list[str]]:
        """Each prompt runs once and its samples decode together, drawn by the sampler the
        llamacpp backend uses: several times faster than transformers' `generate`."""
        from mwe.models import hf_sampling

        texts = [text_of(p, self.spec) for p in prompts]
        encoded = self._encode_many(texts) if texts else []
        return hf_sampling.generate(self.model, self.tok, texts, encoded, sampling)

    def chat_prompt(self, messages: Sequence[tuple[str, str]]) -> str:
        if not getattr(self.tok, "chat_template", None):
            raise MweError(
                f"{self.spec} has no chat template; use --format human-assistant or raw"
            )
        text = self.tok.apply_chat_template(
            [{"role": r, "content": c} for r, c in messages], tokenize=False,
            add_generation_prompt=True,
        )
        return str(text)


def device_for(ident: dict[str, Any]) -> str:
    return "cpu" if ident.get("device", "cpu") == "cpu" else "cuda"


OUTPUT = "logprobs"  # score() returns log-probabilities


def identity(name: str) -> dict[str, Any]:
    """What determines this model's outputs, computed without loading it.

    The device is part of it: GPU kernels give slightly different log-probs. A CUDA GPU is
    used when torch sees one, unless MWE_DEVICE=cpu. The CPU thread count (`?threads=N`,
    MWE_THREADS) is not, although it moves torch's fp32 log-probs in the last bits (up to
    ~1e-5 between 1 and 2 threads), as the batch a row is scored in already does: a cached
    answer is reused whatever thread count computed it (see mwe.threads).
    """
    name, dtype = split_dtype(name)
    name, _ = threads.split_name("hf", name)
    threads.from_env()  # a bad MWE_THREADS fails now, not after the cache was searched
    threads.quiet_openmp_spin()  # before torch loads its OpenMP runtime
    import torch

    from mwe.models import bundled
    from mwe.paths import file_sha256

    wanted = settings.current().device
    device = "cuda" if wanted != "cpu" and torch.cuda.is_available() else "cpu"
    if wanted == "cuda" and device != "cuda":
        raise MweError("MWE_DEVICE=cuda, but torch sees no CUDA GPU")
    base: dict[str, Any] = {"backend": "hf", "dtype": dtype}
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # keep fp32 log-probs fp32
        base["device"] = f"cuda:{torch.cuda.get_device_name(0)}"
    if name in bundled.BUNDLED:
        return {**base, "bundled": name, "weights_sha256": file_sha256(bundled.gguf_path(name)),
                "conversion": "gguf-dequantized-fp32"}
    return {**base, **weights_identity(name, "hf")}


def weights_identity(name: str, backend: str) -> dict[str, Any]:
    """A transformers folder's fingerprint, or a hub id and its local revision."""
    from mwe.paths import dir_fingerprint

    path = Path(os.path.expanduser(name))
    if path.exists():
        if not (path / "config.json").exists():
            raise MweError(f"{backend}: '{name}' is a folder without config.json")
        return {"weights": dir_fingerprint(path)}
    return {"hub_id": name, "revision": Path(hub_snapshot(name)).name}


def check(name: str) -> None:
    """Before a command's first call: torch and transformers are installed, and the name is an
    installed bundled model, a folder with a config.json or a hub id in the local cache.
    Imports neither, reads no weights, downloads nothing."""
    from mwe.models import bundled

    name, _ = split_dtype(name)
    name, _ = threads.split_name("hf", name)
    require_modules("hf", ["torch", "transformers"])
    if name in bundled.BUNDLED:
        bundled.check(name)
        return
    check_weights(name, f"a bundled model ({', '.join(bundled.names())}), ")


def check_weights(name: str, bundled: str = "") -> None:
    """A transformers folder with its config, or a hub id whose config is in the local
    Hugging Face cache (HF_HUB_CACHE; looked up, never fetched)."""
    path = Path(os.path.expanduser(name))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise MweError(f"the folder {path} has no config.json (not a transformers model)")
        return
    if path.exists():
        hint = " (a GGUF file: use llamacpp:PATH)" if path.suffix == ".gguf" else ""
        raise MweError(f"{path} is a file, not a transformers model folder{hint}")
    if not in_hub_cache(name):
        raise MweError(f"not {bundled}a folder, nor a hub id in the local Hugging Face cache "
                       "(mwe never downloads weights; fetch them first)")


def in_hub_cache(repo_id: str) -> bool:
    """Whether the hub id's config.json is in the local cache (false for a malformed id)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # not a valid repo id (HFValidationError), or no huggingface_hub
        return False
    return isinstance(found, str)


def hub_snapshot(name: str) -> str:
    try:
        from huggingface_hub import snapshot_download

        return str(snapshot_download(name, local_files_only=True))
    except Exception:
        raise MweError(
            f"hf: '{name}' is neither a bundled model, a folder, nor a hub id in the local "
            "Hugging Face cache (mwe never downloads weights; fetch them first)"
        ) from None


def load(spec: str, name: str, ident: dict[str, Any]) -> HFModel:
    from mwe.models import bundled

    name, dtype = split_dtype(name)
    name, option = threads.split_name("hf", name)

    if name in bundled.BUNDLED:
        path = str(bundled.hf_dir(name))
    elif Path(os.path.expanduser(name)).exists():
        path = os.path.expanduser(name)
    else:
        path = hub_snapshot(name)
    return HFModel(spec, path, ident, n_threads=threads.resolve(option), dtype=dtype)


DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
          "float16": "float16", "fp16": "float16"}


def split_dtype(name: str) -> tuple[str, str]:
    """`name` without its `?dtype=` option (float32, the default, bfloat16 or float16: for
    GPUs; the output layer's log-softmax stays in float32), and the dtype.

    The dtype is part of the identity: bf16 log-probs differ from fp32 ones by ~1e-2, so
    they are cached apart."""
    if "?" not in name or Path(os.path.expanduser(name)).exists():
        return name, "float32"
    base, _, query = name.rpartition("?")
    kept, dtype = [], "float32"
    for part in query.split("&"):
        key, _, value = part.partition("=")
        if key != "dtype":
            kept.append(part)
        elif value not in DTYPES:
            raise MweError(f"model 'hf:{name}': dtype must be one of float32, bfloat16, float16 "
                           f"(or fp32, bf16, fp16), got '{value}'")
        else:
            dtype = DTYPES[value]
    return (f"{base}?{'&'.join(kept)}" if kept else base), dtype
