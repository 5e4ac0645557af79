"""The hf backend's batched sampler against plain forward passes and the shared nucleus sampler.

Tiny randomly initialised models (a Llama, and a Gemma-3 whose sliding window is shorter than
the prompts) test the loop itself in milliseconds; the slow tests run the bundled SmolLM2.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from mwe.models import Sampling
from mwe.models.base import cut_at_stop
from mwe.models.sampler import first_stop, rng_for, sample_token

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from mwe.models import hf_sampling  # noqa: E402

ALPHABET = "abcdefghijklmnopqrstuvwxyz .,!?\nABCDEFGHIJKLMNOP"  # one character per token id


class CharTokenizer:
    """The part of a tokenizer the sampler uses."""

    pad_token_id = 0

    def __init__(self, eos: int | None = None) -> None:
        self.eos_token_id = eos

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return "".join(ALPHABET[i] for i in ids if not (skip_special_tokens and i == self.eos_token_id))

    def encode(self, text: str) -> list[int]:
        return [ALPHABET.index(c) for c in text]


def tiny(kind: str) -> Any:
    torch.manual_seed(0)
    common: dict[str, Any] = dict(vocab_size=len(ALPHABET), hidden_size=32, intermediate_size=64,
                                  max_position_embeddings=256, bos_token_id=None,
                                  eos_token_id=None, pad_token_id=0)
    if kind == "llama":
        config = transformers.LlamaConfig(num_hidden_layers=2, num_attention_heads=4,
                                          num_key_value_heads=2, **common)
        model = transformers.LlamaForCausalLM(config)
    else:  # sliding-window layers, a window shorter than the prompts, soft-capped logits
        config = transformers.Gemma3TextConfig(
            num_hidden_layers=3, num_attention_heads=2, num_key_value_heads=1, head_dim=16,
            sliding_window=6, layer_types=["sliding_attention", "sliding_attention",
                                           "full_attention"],
            final_logit_softcapping=30.0, **common)
        model = transformers.Gemma3ForCausalLM(config)
    return model.eval()


@pytest.fixture(scope="module", params=["llama", "gemma"])
def model(request: pytest.FixtureRequest) -> Iterator[Any]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: waking a second thread costs more than it saves
    yield tiny(request.param)
    torch.set_num_threads(threads)


# different lengths, a shared prefix: padding in the middle of some rows
PROMPTS = ["the cat sat on", "the cat ran far away from the dog", "a"]


def run(model: Any, tok: CharTokenizer, prompts: list[str], sampling: Sampling,
        **kwargs: Any) -> list[list[str]]:
    return hf_sampling.generate(model, tok, prompts, [tok.encode(p) for p in prompts], sampling,
                                **kwargs)


def next_logits(model: Any, ids: list[int]) -> Any:
    """Plain forward pass over the whole sequence, no cache, no padding."""
    with torch.inference_mode():
        return model(input_ids=torch.tensor([ids])).logits[0, -1].float().numpy()


def reference(model: Any, tok: CharTokenizer, prompt: str, k: int, s: Sampling) -> str:
    """One sample drawn token by token with sampler.py, as llama.cpp's loop does."""
    rng = rng_for(s.seed, prompt, k)
    ids, new = tok.encode(prompt), []
    while True:
        token = sample_token(next_logits(model, ids + new), rng, s.temperature, s.top_p)
        if token == tok.eos_token_id:
            break
        new.append(token)
        if first_stop(tok.decode(new), s.stop) >= 0 or len(new) >= s.max_tokens:
            break
    return cut_at_stop(tok.decode(new, skip_special_tokens=True), s.stop)


def test_greedy_is_the_argmax_continuation(model: Any) -> None:
    tok = CharTokenizer()
    greedy = Sampling(n=2, temperature=0.0, max_tokens=12, stop=())
    out = run(model, tok, PROMPTS, greedy)
    for prompt, texts in zip(PROMPTS, out):
        ids = tok.encode(prompt)
        for _ in range(12):
            ids.append(int(next_logits(model, ids).argmax()))
        assert texts == [tok.decode(ids[len(prompt):])] * 2


def test_samples_are_the_shared_samplers_draws(model: Any) -> None:
    """Each sample is what sampler.py draws from plain forward passes with its own seeded
    generator: the same logic and seeds as the llamacpp backend. The stop strings end the
    samples at different steps, so finished rows leave the batch."""
    tok = CharTokenizer()
    s = Sampling(n=3, temperature=1.0, top_p=0.9, max_tokens=10, stop=("e", "!"), seed=5)
    out = run(model, tok, PROMPTS, s)
    want = [[reference(model, tok, p, k, s) for k in range(s.n)] for p in PROMPTS]
    assert out == want
    assert len({len(t) for texts in out for t in texts}) > 1
    assert all("e" not in t and "!" not in t for texts in out for t in texts)


def test_samples_do_not_depend_on_the_batch(model: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    tok = CharTokenizer()
    s = Sampling(n=4, temperature=1.2, top_p=0.95, max_tokens=8, stop=("\n",), seed=2)
    together = run(model, tok, PROMPTS, s)
    assert run(model, tok, PROMPTS[1:2], s) == together[1:2]
    assert run(model, tok, PROMPTS, s, max_seqs=3) == together  # groups of three sequences
    assert run(model, tok, PROMPTS, s, max_cells=1) == together  # one sequence at a time
    monkeypatch.setattr(hf_sampling, "PREFILL_TOKENS", 40)  # one prompt per prefill pass
    assert run(model, tok, PROMPTS, s) == together
    assert run(model, tok, PROMPTS, Sampling(**{**s.__dict__, "seed": 3})) != together
    assert len({t for texts in together for t in texts}) > 4


def test_eos_ends_a_sample(model: Any) -> None:
    greedy = Sampling(n=1, temperature=0.0, max_tokens=6, stop=())
    [[text]] = run(model, CharTokenizer(), PROMPTS[:1], greedy)
    eos = ALPHABET.index(text[2])
    cut = text[: text.index(text[2])]  # the token may come up before the third step
    assert run(model, CharTokenizer(eos), PROMPTS[:1], greedy) == [[cut]]
    model.generation_config.eos_token_id = [eos]  # the generation config's list counts too
    try:
        assert run(model, CharTokenizer(), PROMPTS[:1], greedy) == [[cut]]
    finally:
        model.generation_config.eos_token_id = None


def test_no_prompts_or_no_samples(model: Any) -> None:
    s = Sampling(n=2, max_tokens=4)
    assert run(model, CharTokenizer(), [], s) == []
    assert run(model, CharTokenizer(), PROMPTS[:2], Sampling(n=0)) == [[], []]


# --- the bundled SmolLM2 through the hf backend ---

CHATS = ["\n\nHuman: Name three colours.\n\nAssistant:", "The capital of France is",
         "\n\nHuman: Name three animals, with a sentence about each.\n\nAssistant:"]


@pytest.mark.slow
def test_hf_greedy_equals_plain_forward(smol_hf: Any) -> None:
    from mwe.models import hf_sampling as hs

    eos = hs.eos_ids(smol_hf.model, smol_hf.tok)
    out = smol_hf.generate(CHATS, Sampling(n=2, temperature=0.0, max_tokens=10, stop=()))
    for prompt, texts in zip(CHATS, out):
        ids = smol_hf._encode_many([prompt])[0]
        new: list[int] = []
        while len(new) < 10:
            with torch.inference_mode():
                token = int(smol_hf.model(input_ids=torch.tensor([ids + new])).logits[0, -1].argmax())
            if token in eos:
                break
            new.append(token)
        assert texts == [smol_hf.tok.decode(new, skip_special_tokens=True)] * 2


@pytest.mark.slow
def test_hf_samples_are_seeded_per_prompt(smol_hf: Any) -> None:
    s = Sampling(n=3, temperature=1.0, top_p=0.95, max_tokens=12, seed=4)
    together = smol_hf.generate(CHATS, s)
    assert smol_hf.generate(CHATS[2:], s) == together[2:]
    assert all(len(texts) == 3 and all("\n" not in t for t in texts) for texts in together)
    assert len({t for texts in together for t in texts}) > 3


@pytest.mark.slow
def test_replies_equal_transformers_greedy_generate(smol_hf: Any) -> None:
    """Free-text scoring's replies (greedy, several questions decoded together, each stopped
    at its own end) are the text transformers' own `generate(do_sample=False)` gives for each
    prompt alone."""
    questions = ["Is the following statement something you would say?\n\"I like people.\"",
                 "Which is larger?\n\nChoices:\n (A) 7\n (B) 9",
                 "Name a colour.", "Say yes or no: is water wet?"]
    chats = [smol_hf.chat_prompt([("user", q)]) for q in questions]
    out = smol_hf.generate(chats, Sampling(n=1, temperature=0.0, max_tokens=24, stop=()))
    lengths = set()
    for prompt, [text] in zip(chats, out):
        ids = torch.tensor([smol_hf._encode_many([prompt])[0]])
        with torch.inference_mode():
            done = smol_hf.model.generate(ids, attention_mask=torch.ones_like(ids),
                                          do_sample=False, max_new_tokens=24)
        new = done[0, ids.shape[1]:].tolist()
        lengths.add(len(new))
        assert text == smol_hf.tok.decode(new, skip_special_tokens=True)
    assert min(lengths) < 24  # a reply that ended before the limit, while others went on
