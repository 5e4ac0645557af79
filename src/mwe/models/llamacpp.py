"""llama.cpp backend (GGUF files): fast CPU inference for bundled and user models.

Scoring drives llama.cpp's batch API directly: rows are visited in token order so each one
reuses the KV cache of the longest prefix it shares with the previous row, and the output
layer is computed only at the positions whose next token is read.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mwe import threads
from mwe.errors import MweError
from mwe.models.base import (
    Job,
    Prompt,
    Sampling,
    ScoreRequest,
    build_jobs,
    cut_at_stop,
    require_modules,
    text_of,
)
from mwe.models.sampler import first_stop, rng_for, sample_token

N_CTX = 4096
GEN_CTX = 8192  # cells of the sampling context, shared by the sequences of a group
GEN_SEQS = 64  # sequences sampled together


GGUF_MAGIC = b"GGUF"
GGUF_HEADER = 24  # magic, version (u32), tensor count (u64), metadata count (u64)


def gguf_for(name: str) -> Path:
    """The GGUF file `name` stands for, checked to start like one (llama.cpp's own errors
    are a bare "Failed to load model" after a C-level log line)."""
    from mwe.models import bundled

    name, _ = threads.split_name("llamacpp", name)
    if name in bundled.BUNDLED:
        return bundled.gguf_path(name)
    path = Path(os.path.expanduser(name))
    if not path.is_file():
        raise MweError(f"llamacpp: '{name}' is neither a bundled model nor a GGUF file")
    problem = gguf_problem(path)
    if problem:
        raise MweError(f"model 'llamacpp:{name}': {problem}")
    return path


def gguf_problem(path: Path) -> str | None:
    """Why the file at `path` is no GGUF model, from its first 24 bytes; None if it starts
    like one."""
    try:
        with path.open("rb") as f:
            head = f.read(GGUF_HEADER)
    except OSError as exc:
        return f"cannot read the file: {exc.strerror or exc}"
    if not head:
        return "an empty file, not a GGUF model"
    if not head.startswith(GGUF_MAGIC):
        return f"not a GGUF file (starts with {head[:8]!r}, not {GGUF_MAGIC!r})"
    if len(head) < GGUF_HEADER:
        return f"truncated GGUF file ({len(head)} bytes)"
    return None


def check(name: str) -> None:
    """Before a command's first call: llama.cpp is installed, and the name is an installed
    bundled model or a file that starts like a GGUF (its header only is read)."""
    from mwe.models import bundled

    require_modules("llamacpp", ["llama_cpp"])
    name, _ = threads.split_name("llamacpp", name)
    if name in bundled.BUNDLED:
        bundled.check(name)
        return
    path = Path(os.path.expanduser(name))
    if path.is_dir():
        raise MweError(f"{path} is a folder, not a GGUF file")
    if not path.exists():
        raise MweError(f"no file {path}, and not a bundled model "
                       f"({', '.join(bundled.names())})")
    problem = gguf_problem(path)
    if problem:
        raise MweError(problem)


OUTPUT = "logprobs"  # score() returns log-probabilities


def identity(name: str) -> dict[str, Any]:
    """What determines the outputs: the weights and llama.cpp's version. Not the thread
    count (`?threads=N`, MWE_THREADS): it leaves the log-probs bit for bit the same."""
    from mwe.paths import file_sha256

    threads.from_env()  # a bad MWE_THREADS fails now, not after the cache was searched
    path = gguf_for(name)
    ident: dict[str, Any] = {"backend": "llamacpp", "weights_sha256": file_sha256(path)}
    try:
        from importlib.metadata import version

        ident["llama_cpp_python"] = version("llama-cpp-python")
    except Exception:
        pass
    return ident


class _LoadErrors:
    """Collects llama.cpp's error log lines while a model loads, for a one-line reason.

    llama-cpp-python raises a bare ValueError("Failed to load model from file") and, with
    verbose=False, discards the log line that says why (e.g. "tensor ... data is not within
    the file bounds"). The library's own log callback is put back on exit.
    """

    ERROR, CONT = 4, 5  # ggml_log_level

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._callback: Any = None

    def __enter__(self) -> _LoadErrors:
        try:
            import ctypes

            import llama_cpp

            def record(level: int, text: bytes, _: Any) -> None:
                if level == self.ERROR or (level == self.CONT and self.lines):
                    self.lines.append(text.decode("utf-8", "replace"))

            self._callback = llama_cpp.llama_log_callback(record)  # kept alive while set
            llama_cpp.llama_log_set(self._callback, ctypes.c_void_p(0))
        except Exception:  # a llama-cpp-python without these hooks: a generic reason
            self._callback = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._callback is None:
            return
        try:
            import ctypes

            import llama_cpp
            from llama_cpp import _logger

            llama_cpp.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))
        except Exception:
            pass

    def reason(self) -> str:
        for line in "".join(self.lines).splitlines():
            # "llama_model_load: error loading model: tensor ..." -> "tensor ..."
            text = re.sub(r"^(?:\w+: )+(?:error loading model: )?", "", line.strip())
            if text:
                return text
        return "llama.cpp could not load it"


def load(spec: str, name: str, ident: dict[str, Any]) -> LlamaCppModel:
    _, option = threads.split_name("llamacpp", name)
    return LlamaCppModel(spec, gguf_for(name), ident, threads.resolve(option))


class LlamaCppModel:
    def __init__(self, spec: str, path: Path, ident: dict[str, Any],
                 n_threads: int | None = None) -> None:
        threads.quiet_openmp_spin()  # before libgomp is loaded with llama.cpp
        try:
            from llama_cpp import Llama
            from llama_cpp._internals import LlamaBatch
        except ImportError:
            raise MweError("llamacpp backend needs llama-cpp-python (run 'make setup')") from None
        self.spec = spec
        self._identity = ident
        self.n_threads = n_threads or threads.resolve()
        with _LoadErrors() as errors:
            try:
                self.llm = Llama(model_path=str(path), n_ctx=N_CTX, n_batch=512, n_ubatch=512,
                                 n_threads=self.n_threads, n_threads_batch=self.n_threads,
                                 logits_all=False, verbose=False)
            except ValueError:  # llama-cpp-python's "Failed to load model from file: PATH"
                raise MweError(f"model '{spec}': truncated or unreadable GGUF file: "
                               f"{errors.reason()}") from None
        self.n_vocab = self.llm.n_vocab()
        self.n_batch = 512
        self._batch = LlamaBatch(n_tokens=self.n_batch, embd=0, n_seq_max=1, verbose=False)
        self.add_bos = bool(self.llm._model.add_bos_token())
        self.bos = int(self.llm.token_bos())
        self._bos_text = self.llm.detokenize([self.bos], special=True).decode("utf-8", "replace")
        self._kv: list[int] = []  # tokens whose keys/values sit in the cache, in order
        self._gen: Any = None  # a second context with room for parallel sequences
        self._gen_batch: Any = None
        self._is_eog: Any = None

    def identity(self) -> dict[str, Any]:
        return self._identity

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(self.llm.tokenize(t.encode("utf-8"), add_bos=False, special=True))
                for t in texts]

    def _encode(self, text: str) -> list[int]:
        add_bos = self.add_bos and not (self._bos_text and text.startswith(self._bos_text))
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True))

    def _jobs(self, requests: Sequence[ScoreRequest]) -> list[Job]:
        bos = self.bos if self.add_bos else None
        return build_jobs(requests, lambda texts: [self._encode(t) for t in texts], bos, self.bos)

    def score(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        out = [[0.0] * len(conts) for _, conts in requests]
        jobs = sorted(self._jobs(requests), key=lambda j: j.tokens)
        self._reset()  # a fresh cache per call keeps results independent of earlier calls
        for job in jobs:
            if len(job.tokens) > N_CTX:
                raise MweError(f"{self.spec}: a prompt of {len(job.tokens)} tokens exceeds "
                               f"the context of {N_CTX}")
            logits = self._run(job.tokens, sorted({pos for pos, _, _, _ in job.reads}))
            for pos, target, r, c in job.reads:
                row = logits[pos].astype(np.float64)
                top = row.max()
                out[r][c] += float(row[target] - top - np.log(np.exp(row - top).sum()))
        return out

    def _reset(self) -> None:
        self.llm._ctx.kv_cache_seq_rm(-1, 0, -1)
        self._kv = []

    def _run(self, tokens: list[int], reads: list[int]) -> dict[int, np.ndarray]:
        """Evaluate `tokens`, reusing the cached prefix; logits at the `reads` positions."""
        common = 0
        limit = min(len(self._kv), len(tokens), reads[0] if reads else len(tokens))
        while common < limit and self._kv[common] == tokens[common]:
            common += 1
        self.llm._ctx.kv_cache_seq_rm(0, common, -1)
        self._kv = self._kv[:common]
        wanted = set(reads)
        found: dict[int, np.ndarray] = {}
        b = self._batch.batch
        for start in range(common, len(tokens), self.n_batch):
            chunk = tokens[start : start + self.n_batch]
            b.n_tokens = len(chunk)
            for i, tok in enumerate(chunk):
                b.token[i] = tok
                b.pos[i] = start + i
                b.seq_id[i][0] = 0
                b.n_seq_id[i] = 1
                b.logits[i] = (start + i) in wanted
            self.llm._ctx.decode(self._batch)
            for i in range(len(chunk)):
                if (start + i) in wanted:
                    ptr = self.llm._ctx.get_logits_ith(i)
                    found[start + i] = np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()
            self._kv.extend(chunk)
        return found

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling) -> list[list[str]]:
        """Sample every (prompt, index) pair, up to GEN_SEQS sequences decoded together.

        A prompt's tokens are decoded once and its keys/values shared by all its samples;
        each step then runs one token for every unfinished sequence in a single batch.
        """
        texts = [text_of(p, self.spec) for p in prompts]
        tasks = [(p, k) for p in range(len(texts)) for k in range(sampling.n)]
        encoded = [self._encode(p) for p in texts]
        for toks in encoded:
            if len(toks) + sampling.max_tokens > GEN_CTX:
                raise MweError(f"{self.spec}: a prompt of {len(toks)} tokens plus "
                               f"{sampling.max_tokens} new ones exceeds the context of {GEN_CTX}")
        out: list[list[str]] = [[""] * sampling.n for _ in prompts]
        group: list[tuple[int, int]] = []
        cells = 0  # KV cells the group needs: each prompt once, max_tokens per sequence
        for p, k in tasks:
            if group and (len(group) == GEN_SEQS or cells + sampling.max_tokens
                          + (len(encoded[p]) if k == 0 else 0) > GEN_CTX):
                self._sample_group(group, texts, encoded, sampling, out)
                group, cells = [], 0
            if not group or group[-1][0] != p:
                cells += len(encoded[p])  # a prompt's first sequence in this group
            group.append((p, k))
            cells += sampling.max_tokens
        if group:
            self._sample_group(group, texts, encoded, sampling, out)
        return out

    def _gen_context(self) -> Any:
        if self._gen is None:
            import llama_cpp
            from llama_cpp._internals import LlamaBatch, LlamaContext

            # the scoring context's settings (threads, attention kernels), more room
            params = type(self.llm.context_params).from_buffer_copy(self.llm.context_params)
            params.n_ctx = GEN_CTX
            params.n_seq_max = GEN_SEQS
            params.kv_unified = True
            self._gen = LlamaContext(model=self.llm._model, params=params, verbose=False)
            self._gen_batch = LlamaBatch(n_tokens=self.n_batch, embd=0, n_seq_max=1,
                                         verbose=False)
            vocab = llama_cpp.llama_model_get_vocab(self.llm._model.model)
            self._is_eog = lambda tok: bool(llama_cpp.llama_vocab_is_eog(vocab, tok))
        return self._gen

    def _decode(self, ctx: Any, items: list[tuple[int, int, int, bool]]) -> list[int]:
        """Decode (token, position, sequence, want logits) items; batch indices of the logits."""
        b = self._gen_batch.batch
        rows: list[int] = []
        for start in range(0, len(items), self.n_batch):
            chunk = items[start : start + self.n_batch]
            b.n_tokens = len(chunk)
            for i, (tok, pos, seq, want) in enumerate(chunk):
                b.token[i], b.pos[i], b.seq_id[i][0], b.n_seq_id[i] = tok, pos, seq, 1
                b.logits[i] = want
            ctx.decode(self._gen_batch)
            rows.extend(i for i, it in enumerate(chunk) if it[3])
        return rows

    def _logits(self, ctx: Any, i: int) -> np.ndarray:
        return np.ctypeslib.as_array(ctx.get_logits_ith(i), shape=(self.n_vocab,))

    def _sample_group(self, group: list[tuple[int, int]], prompts: Sequence[str],
                      encoded: list[list[int]], sampling: Sampling,
                      out: list[list[str]]) -> None:
        ctx = self._gen_context()
        ctx.kv_cache_clear()
        first_seq: dict[int, int] = {}
        for seq, (p, _) in enumerate(group):
            first_seq.setdefault(p, seq)
        start_logits: dict[int, np.ndarray] = {}
        for p, seq in first_seq.items():
            toks = encoded[p]
            items = [(t, i, seq, i == len(toks) - 1) for i, t in enumerate(toks)]
            self._decode(ctx, items)  # one prompt per decode: its last logits are row -1
            start_logits[p] = self._logits(ctx, -1).copy()
        for seq, (p, _) in enumerate(group):
            if first_seq[p] != seq:
                ctx.kv_cache_seq_cp(first_seq[p], seq, -1, -1)
        rngs = [rng_for(sampling.seed, prompts[p], k) for p, k in group]
        generated: list[list[int]] = [[] for _ in group]
        active = list(range(len(group)))
        logits = {seq: start_logits[group[seq][0]] for seq in active}
        while active:
            still: list[int] = []
            for seq in active:
                tok = sample_token(logits[seq], rngs[seq], sampling.temperature, sampling.top_p)
                done = self._is_eog(tok)
                if not done:
                    generated[seq].append(tok)
                    done = len(generated[seq]) >= sampling.max_tokens
                    if not done and sampling.stop:  # detokenized only to look for a stop
                        done = first_stop(self._text(generated[seq]), sampling.stop) >= 0
                if done:
                    ctx.kv_cache_seq_rm(seq, -1, -1)
                else:
                    still.append(seq)
            active = still
            if not active:
                break
            items = [(generated[s][-1], len(encoded[group[s][0]]) + len(generated[s]) - 1, s, True)
                     for s in active]
            rows = self._decode(ctx, items)
            logits = {s: self._logits(ctx, r) for s, r in zip(active, rows)}
        for seq, (p, k) in enumerate(group):
            out[p][k] = cut_at_stop(self._text(generated[seq]), sampling.stop)

    def _text(self, tokens: list[int]) -> str:
        return self.llm.detokenize(tokens).decode("utf-8", "replace")

    def chat_prompt(self, messages: Sequence[tuple[str, str]]) -> str:
        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise MweError(f"{self.spec} has no chat template; use --format human-assistant or raw")
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)

        def raise_exception(message: str) -> None:
            raise MweError(f"{self.spec}: chat template error: {message}")

        text: str = env.from_string(template).render(
            messages=[{"role": r, "content": c} for r, c in messages],
            add_generation_prompt=True,
            bos_token=self._bos_text, eos_token=self.llm.detokenize(
                [self.llm.token_eos()], special=True).decode("utf-8", "replace"),
            raise_exception=raise_exception,
        )
        return text
