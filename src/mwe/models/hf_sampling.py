"""Batched sampling for the transformers backend, with the sampler the llama.cpp backend uses.

transformers' `generate` evaluates a prompt once per returned sequence, keeps finished
sequences in the batch and samples with its own torch-seeded processors. Here a group of
sequences is decoded together instead:
- each distinct prompt is run once (left-padded to the group's longest) and its keys/values
  are copied to every sample of it;
- every step runs one token for all unfinished sequences; finished ones leave the batch
  (a few at a time, see COMPACT_SHARE);
- tokens are drawn by mwe.models.sampler with a generator per (seed, prompt, sample index),
  so a sample depends on its seed and the logits only, not on the other sequences of the
  batch, and hf and llamacpp share one sampling logic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mwe.errors import MweError
from mwe.models.base import Sampling, cut_at_stop
from mwe.models.sampler import first_stop, rng_for, sample_token

MAX_SEQS = 64  # sequences decoded together
KV_BYTES = 1536 * 2**20  # keys/values of a group's padded (prompt + new) token positions
PREFILL_TOKENS = 4_096  # padded prompt tokens per prefill forward pass
# Dropping finished rows copies the whole cache, so they ride along (their output ignored)
# until this share of the batch has finished.
COMPACT_SHARE = 0.25


def generate(
    model: Any,
    tok: Any,
    prompts: Sequence[str],
    encoded: Sequence[list[int]],
    sampling: Sampling,
    max_seqs: int = MAX_SEQS,
    max_cells: int | None = None,
) -> list[list[str]]:
    """`sampling.n` samples for each prompt; `encoded` holds the prompts' token ids.

    Prompts are grouped by length, so the left padding of a group stays short. A group holds
    up to `max_seqs` sequences and `max_cells` cache positions (by default KV_BYTES' worth).
    """
    if max_cells is None:
        max_cells = max(1, KV_BYTES // kv_bytes_per_token(model))
    if any(not ids for ids in encoded):
        raise MweError("hf: a prompt without tokens cannot be continued")
    out: list[list[str]] = [[""] * sampling.n for _ in prompts]
    order = sorted(range(len(prompts)), key=lambda p: len(encoded[p]))
    group: list[tuple[int, int]] = []
    width = 0  # longest prompt of the group (prompts arrive shortest first)
    for p in order:
        for k in range(sampling.n):
            longest = max(width, len(encoded[p]))
            if group and (len(group) == max_seqs
                          or (len(group) + 1) * (longest + sampling.max_tokens) > max_cells):
                _sample_group(model, tok, group, prompts, encoded, sampling, out)
                group, longest = [], len(encoded[p])
            group.append((p, k))
            width = longest
    if group:
        _sample_group(model, tok, group, prompts, encoded, sampling, out)
    return out


def kv_bytes_per_token(model: Any) -> int:
    """Keys and values of one token in every layer, from the config."""
    config = model.config.get_text_config()
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return int(2 * config.num_hidden_layers * kv_heads * head_dim * model.dtype.itemsize)


def eos_ids(model: Any, tok: Any) -> set[int]:
    """Tokens that end a sample: the generation config's (often several) and the tokenizer's."""
    ids: set[int] = set()
    for value in (getattr(model.generation_config, "eos_token_id", None), tok.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif value is not None:
            ids.update(int(v) for v in value)
    return ids


def _sample_group(
    model: Any,
    tok: Any,
    group: list[tuple[int, int]],
    prompts: Sequence[str],
    encoded: Sequence[list[int]],
    sampling: Sampling,
    out: list[list[str]],
) -> None:
    import torch

    device = model.device
    eos = eos_ids(model, tok)
    with torch.inference_mode():
        cache, logits_t, attn = _prefill(model, tok, group, encoded, sampling.max_tokens)
        rngs = [rng_for(sampling.seed, prompts[p], k) for p, k in group]
        generated: list[list[int]] = [[] for _ in group]
        rows: list[int] = list(range(len(group)))  # the sequence in each row of the batch
        live = set(rows)
        while True:
            logits = logits_t.float().cpu().numpy()
            for row, seq in enumerate(rows):
                if seq not in live:
                    continue
                token = sample_token(logits[row], rngs[seq], sampling.temperature, sampling.top_p)
                done = token in eos
                if not done:
                    generated[seq].append(token)
                    done = len(generated[seq]) >= sampling.max_tokens
                    if not done and sampling.stop:  # decoded only to look for a stop string
                        text = tok.decode(generated[seq], skip_special_tokens=True)
                        done = first_stop(text, sampling.stop) >= 0
                if done:
                    live.discard(seq)
            if not live:
                break
            if len(rows) - len(live) >= max(1, COMPACT_SHARE * len(rows)):
                keep = [row for row, seq in enumerate(rows) if seq in live]
                index = torch.tensor(keep, device=device)
                cache.reorder_cache(index)
                attn = attn[index]
                rows = [rows[row] for row in keep]
            # a finished row still in the batch repeats its last token; its output is ignored
            last = [generated[s][-1] if generated[s] else 0 for s in rows]
            pos = [len(encoded[group[s][0]]) + max(len(generated[s]), 1) - 1 for s in rows]
            attn = torch.cat([attn, attn.new_ones((len(rows), 1))], dim=1)
            res = model(
                input_ids=torch.tensor(last, device=device)[:, None],
                position_ids=torch.tensor(pos, device=device)[:, None],
                attention_mask=attn, past_key_values=cache, use_cache=True,
            )
            logits_t = res.logits[:, -1]
    for seq, (p, k) in enumerate(group):
        out[p][k] = cut_at_stop(tok.decode(generated[seq], skip_special_tokens=True), sampling.stop)


def _new_cache(model: Any, length: int) -> Any:
    """A cache preallocated for `length` positions: a growing one copies itself at every step."""
    from transformers import StaticCache

    try:
        return StaticCache(config=model.config, max_cache_len=length)
    except (KeyError, ValueError, TypeError):  # a layer type without a static version
        from transformers import DynamicCache

        return DynamicCache(config=model.config)


def _prefill(
    model: Any, tok: Any, group: list[tuple[int, int]], encoded: Sequence[list[int]],
    max_tokens: int,
) -> tuple[Any, Any, Any]:
    """Run each distinct prompt of the group once; (cache, next-token logits, 2-D attention
    mask), with one row per sequence.

    The prompts' tokens are aligned on the right, behind padding the mask hides, so that all
    rows decode at the same cache position. Without sliding-window layers the prefix common
    to the prompts is run once, with the padding after it: a window counts cache cells, so
    it would be cut short by padding in the middle of a row.
    """
    import torch

    device = model.device
    distinct = list(dict.fromkeys(p for p, _ in group))
    seqs = [encoded[p] for p in distinct]
    length = max(len(s) for s in seqs) + max_tokens
    caches: list[Any] = [_new_cache(model, length)]
    shared = 0
    if len(seqs) > 1 and not any(getattr(x, "is_sliding", False) for x in caches[0].layers):
        limit = min(len(s) for s in seqs) - 1  # every row keeps a token to read logits from
        while shared < limit and all(s[shared] == seqs[0][shared] for s in seqs):
            shared += 1
    width = max(len(s) for s in seqs) - shared
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), shared + width), dtype=torch.long)
    mask[:, :shared] = 1
    for r, s in enumerate(seqs):
        ids[r, width - len(s) + shared:] = torch.tensor(s[shared:])
        mask[r, shared + width - len(s) + shared:] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    per_call = max(1, PREFILL_TOKENS // (shared + width))
    logits: list[Any] = []
    for start in range(0, len(seqs), per_call):
        part = slice(start, start + per_call)
        rows = len(seqs[part])
        if start:
            caches.append(_new_cache(model, length))
        cache = caches[-1]
        if shared:
            model(input_ids=torch.tensor([seqs[0][:shared]], device=device),
                  past_key_values=cache, use_cache=True, logits_to_keep=1)
            cache.reorder_cache(torch.zeros(rows, dtype=torch.long, device=device))
        res = model(
            input_ids=ids[part].to(device), attention_mask=mask[part].to(device),
            position_ids=positions[part, shared:].to(device), past_key_values=cache,
            use_cache=True, logits_to_keep=1,
        )
        logits.append(res.logits[:, -1])
    cache = caches[0]
    if len(caches) > 1:  # same layout everywhere: stack the rows layer by layer
        for i, layer in enumerate(cache.layers):
            layer.keys = torch.cat([c.layers[i].keys for c in caches])
            layer.values = torch.cat([c.layers[i].values for c in caches])
    row_of = {p: r for r, p in enumerate(distinct)}
    index = torch.tensor([row_of[p] for p, _ in group], device=device)
    if len(group) > len(distinct):
        cache.reorder_cache(index)
    return cache, torch.cat(logits)[index], mask.to(device)[index]
