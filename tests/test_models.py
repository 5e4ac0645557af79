"""Scoring and generation on the real bundled models (no mocks)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from helpers import DATA, plain_logprob

from mwe import prompts
from mwe.datasets import load
from mwe.errors import MweError
from mwe.models import Sampling

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smol_llama() -> Any:
    from mwe.models import llamacpp

    name = "smollm2-135m-instruct"
    return llamacpp.load(f"llamacpp:{name}", name, llamacpp.identity(name))


@pytest.fixture(scope="module")
def gemma_llama() -> Any:
    from mwe.models import llamacpp

    name = "gemma3-270m"
    return llamacpp.load(f"llamacpp:{name}", name, llamacpp.identity(name))


def _requests(fmt: str, per_file: int = 4) -> list[tuple[str, list[str]]]:
    datasets, _ = load([str(DATA / "released"), str(DATA / "formats")])
    reqs = []
    for d in datasets:
        for item in d.items[:per_file]:
            ctx = prompts.context(item, fmt)
            reqs.append((ctx, [prompts.continuation(a, ctx) for a in item.answers]))
    return reqs


@pytest.mark.parametrize("fmt", ["human-assistant", "raw"])
def test_hf_batched_scores_equal_plain_forward(smol_hf: Any, fmt: str) -> None:
    reqs = _requests(fmt, per_file=2)
    scores = smol_hf.score(reqs)
    multi_token = 0
    for (ctx, conts), lps in zip(reqs, scores):
        for cont, lp in zip(conts, lps):
            multi_token += len(smol_hf.tok(cont, add_special_tokens=False).input_ids) > 1
            assert lp == pytest.approx(plain_logprob(smol_hf, ctx, cont), abs=1e-4), (ctx[-60:], cont)
    assert multi_token > 0  # " (A)" spans several tokens: the multi-token path was exercised


def test_hf_bfloat16_is_another_identity_and_close_to_float32(smol_hf: Any) -> None:
    """`?dtype=bf16` (for GPUs) loads bf16 weights, is cached apart from fp32, and scores
    within bf16's precision of the fp32 reference; a bad dtype is a clear error."""
    from mwe.models import hf

    name = "smollm2-135m-instruct"
    ident = hf.identity(f"{name}?dtype=bf16")
    assert ident["dtype"] == "bfloat16" and hf.identity(name)["dtype"] == "float32"
    assert {k: v for k, v in ident.items() if k != "dtype"} == \
        {k: v for k, v in hf.identity(name).items() if k != "dtype"}
    assert hf.split_dtype(f"{name}?threads=1&dtype=fp16") == (f"{name}?threads=1", "float16")
    with pytest.raises(MweError, match="dtype must be one of"):
        hf.identity(f"{name}?dtype=int8")
    half = hf.load(f"hf:{name}?dtype=bf16", f"{name}?dtype=bf16", ident)
    assert next(half.model.parameters()).dtype.is_floating_point
    assert str(next(half.model.parameters()).dtype) == "torch.bfloat16"
    reqs = _requests("human-assistant", per_file=2)
    got, ref = half.score(reqs), smol_hf.score(reqs)
    diffs = [abs(x - y) for a, b in zip(got, ref) for x, y in zip(a, b)]
    assert 0 < max(diffs) < 0.5  # bf16 keeps 8 bits of mantissa: close, never equal


def test_llamacpp_chain_rule(smol_llama: Any) -> None:
    ctx = "\n\nHuman: Is the following statement something you would say?\n\"I like tea\"\n\nAssistant:"
    joint, first = smol_llama.score([(ctx, [" Yes, I do", " Yes"])])[0]
    (second,) = smol_llama.score([(ctx + " Yes", [", I do"])])[0]
    assert joint == pytest.approx(first + second, abs=2e-2)
    assert joint < first < 0


def test_llamacpp_agrees_with_hf(smol_llama: Any, smol_hf: Any) -> None:
    reqs = _requests("human-assistant", per_file=6)
    a = smol_llama.score(reqs)
    b = smol_hf.score(reqs)
    diffs = [abs(x - y) for xa, xb in zip(a, b) for x, y in zip(xa, xb)]
    # Q4 kernels against the dequantized fp32 weights: close, not equal.
    assert sum(diffs) / len(diffs) < 0.2
    assert max(diffs) < 0.6
    same_choice = sum(max(range(len(x)), key=x.__getitem__) == max(range(len(y)), key=y.__getitem__)
                      for x, y in zip(a, b))
    assert same_choice >= 0.75 * len(a)


def test_dialogue_format_puts_more_mass_on_answers_than_raw(smol_llama: Any) -> None:
    datasets, _ = load([str(DATA / "released" / "agreeableness.jsonl")])
    mass = {}
    for fmt in ("human-assistant", "raw"):
        reqs = []
        for item in datasets[0].items[:10]:
            ctx = prompts.context(item, fmt)
            reqs.append((ctx, [prompts.continuation(a, ctx) for a in item.answers]))
        scores = smol_llama.score(reqs)
        mass[fmt] = sum(sum(math.exp(lp) for lp in lps) for lps in scores) / len(scores)
    # After "Assistant:" a chat model answers Yes or No; after a bare quoted statement it
    # almost never does.
    assert mass["human-assistant"] > 10 * mass["raw"]
    assert 0 < mass["human-assistant"] <= 1


def test_gemma_adds_bos_and_prefers_a(gemma_llama: Any) -> None:
    assert gemma_llama.add_bos
    reqs = _requests("human-assistant", per_file=6)
    ab = [(c, conts) for c, conts in reqs if conts[:2] == [" (A)", " (B)"]]
    scores = gemma_llama.score(ab)
    prefers_a = sum(lps[0] > lps[1] for lps in scores)
    assert prefers_a > len(ab) / 2


@pytest.mark.parametrize("backend", ["llama", "hf"])
def test_generation_is_seeded_and_stops(backend: str, smol_llama: Any, smol_hf: Any) -> None:
    model = smol_llama if backend == "llama" else smol_hf
    prompt = ("\n\nHuman: Please write a list of statements that a kind person would agree "
              "with.\n\nAssistant: Here is a list of statements:\n-")
    s = Sampling(n=3, max_tokens=20, seed=1)
    first = model.generate([prompt], s)
    again = model.generate([prompt], s)
    other = model.generate([prompt], Sampling(n=3, max_tokens=20, seed=2))
    assert first == again
    assert len(first[0]) == 3 and all("\n" not in t for t in first[0])
    assert first != other
    assert any(t.strip() for t in first[0])


def test_chat_templates(smol_llama: Any, smol_hf: Any, gemma_llama: Any) -> None:
    turns = [("user", "hi")]
    assert smol_llama.chat_prompt(turns) == smol_hf.chat_prompt(turns)
    assert smol_llama.chat_prompt(turns).endswith("<|im_start|>assistant\n")
    many = [("system", "Be brief."), ("user", "hi"), ("assistant", "Hello."), ("user", "bye")]
    text = smol_llama.chat_prompt(many)
    assert text == smol_hf.chat_prompt(many)
    assert text.index("Be brief.") < text.index("Hello.") < text.index("bye")
    with pytest.raises(MweError, match="no chat template"):
        gemma_llama.chat_prompt(turns)


def test_batched_sampling_greedy_equals_llama_cpp_completion(smol_llama: Any) -> None:
    """Our decoding loop gives llama.cpp's own greedy completion. Decoded together, the
    sequences of one prompt agree with each other; llama.cpp's quantized matrix kernels
    depend on the batch size, so against the one-at-a-time text a near-tie may flip late."""
    prompts_ = ["\n\nHuman: Name three colours.\n\nAssistant:", "The capital of France is"]
    greedy = Sampling(n=1, temperature=0.0, max_tokens=24, stop=())
    refs = []
    for prompt in prompts_:
        smol_llama._reset()
        smol_llama.llm.reset()
        refs.append(smol_llama.llm.create_completion(
            smol_llama._encode(prompt), max_tokens=24, temperature=0.0,
            repeat_penalty=1.0)["choices"][0]["text"])
        assert smol_llama.generate([prompt], greedy) == [[refs[-1]]]
    together = smol_llama.generate(prompts_, Sampling(n=3, temperature=0.0, max_tokens=24,
                                                      stop=()))
    for ref, texts in zip(refs, together):
        assert len(set(texts)) == 1
        assert texts[0] == ref


def test_batched_sampling_groups_many_prompts(smol_llama: Any) -> None:
    """More sequences than fit in one group: every sample is returned, in order, seeded."""
    from mwe.models import llamacpp

    prompts_ = [f"\n\nHuman: Tell me a fact about the number {i}.\n\nAssistant:" for i in range(5)]
    s = Sampling(n=llamacpp.GEN_SEQS // 4 + 1, temperature=1.0, top_p=0.95, max_tokens=8)
    out = smol_llama.generate(prompts_, s)
    assert [len(x) for x in out] == [s.n] * 5
    assert out == smol_llama.generate(prompts_, s)
    assert all("\n" not in t for texts in out for t in texts)
    assert len({t for texts in out for t in texts}) > s.n  # not one sample repeated
