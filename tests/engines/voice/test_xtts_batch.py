"""The batched XTTS decoder against coqui-tts's own `generate`, on a tiny random GPT.

The GPT is coqui-tts's XTTS `GPT` class (2 layers, 64 wide) with its attention weights scaled
up so that the text steers the codes: rows then stop at different steps, which is what the
per-row stop handling must get right. Greedy decoding must give coqui-tts's codes exactly, at
any batch size and padding; sampling with a batch of one must draw the same codes from the
same seed.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from transformers import LogitsProcessorList
from transformers.generation.logits_process import (
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from engines.voice.xtts_batch import GptDecoder, Sampling
from engines.voice.xtts_model import coqui

pytestmark = pytest.mark.env("xtts")

GREEDY = Sampling(greedy=True)
SAMPLED = Sampling(temperature=0.75, top_k=10, top_p=0.85, repetition_penalty=5.0)
LENGTHS = (5, 12, 3, 20)  # text tokens per row: every row is padded differently


def tiny_gpt(device: str = "cpu") -> Any:
    """coqui-tts's XTTS GPT, tiny and random, with text that matters to the codes."""
    coqui()  # imports coqui-tts the way the engine does
    from TTS.tts.layers.xtts.gpt import GPT

    torch.manual_seed(1)
    gpt = GPT(
        layers=2,
        model_dim=64,
        heads=4,
        start_text_token=1,
        stop_text_token=0,
        max_text_tokens=60,
        max_mel_tokens=80,
        max_prompt_tokens=70,
        number_text_tokens=50,
        num_audio_tokens=40,
        start_audio_token=38,
        stop_audio_token=39,
        use_perceiver_resampler=True,
    )
    gpt.init_gpt_for_inference(kv_cache=True)
    with torch.no_grad():  # GPT-2's 0.02 init lets the start code drown out the text
        gpt.text_embedding.weight.mul_(30)
        for block in gpt.gpt.h:
            block.attn.c_attn.weight.mul_(10)
            block.attn.c_proj.weight.mul_(10)
    return gpt.eval().to(device)


@pytest.fixture(scope="module")
def gpt() -> Any:
    """One tiny GPT for the module."""
    return tiny_gpt()


@pytest.fixture(scope="module")
def inputs() -> tuple[torch.Tensor, list[torch.Tensor]]:
    """A voice latent and texts of different lengths."""
    generator = torch.Generator().manual_seed(7)
    cond = torch.randn(1, 32, 64, generator=generator)
    texts = [torch.randint(2, 50, (n,), generator=generator) for n in LENGTHS]
    return cond, texts


def reference(gpt: Any, cond: torch.Tensor, text: torch.Tensor, budget: int, **kw: Any) -> Any:
    """coqui-tts's codes for one text (its `generate`, as the engine's reference path calls it)."""
    with torch.inference_mode():
        codes = gpt.generate(cond, text[None].int(), max_new_tokens=budget, **kw)
    return codes[0]


def reference_latents(gpt: Any, cond: torch.Tensor, text: torch.Tensor, codes: Any) -> Any:
    """coqui-tts's vocoder input for those codes: its second GPT pass."""
    wav_lengths = torch.tensor([codes.shape[-1] * gpt.code_stride_len])
    with torch.inference_mode():
        latents = gpt(
            text[None].int(),
            torch.tensor([text.shape[-1]]),
            codes[None],
            wav_lengths,
            cond_latents=cond,
            return_attentions=False,
            return_latent=True,
        )
    return latents[0]


def test_greedy_batch_gives_coqui_codes_and_latents_row_by_row(
    gpt: Any, inputs: tuple[torch.Tensor, list[torch.Tensor]]
) -> None:
    """Four rows, four paddings, own budgets: each row's codes are coqui-tts's, stop included."""
    cond, texts = inputs
    budgets = [30, 24, 30, 18]
    run = GptDecoder(gpt, torch.device("cpu")).start(cond, texts, budgets, GREEDY).finish()
    expected = [
        reference(gpt, cond, text, budget, **GREEDY.generate_kwargs())
        for text, budget in zip(texts, budgets, strict=True)
    ]
    lengths = [len(codes) for codes in expected]
    assert len(set(lengths)) > 1  # rows stop at different steps, so per-row stops are tested
    assert any(codes[-1] == gpt.stop_audio_token for codes in expected)
    for row, codes in enumerate(expected):
        assert run.row_codes(row).tolist() == codes.tolist()
        latents = reference_latents(gpt, cond, texts[row], codes)
        torch.testing.assert_close(run.row_latents(row), latents, atol=1e-4, rtol=1e-4)


def test_batch_of_one_samples_coqui_codes_from_the_same_seed(
    gpt: Any, inputs: tuple[torch.Tensor, list[torch.Tensor]]
) -> None:
    """Same processors in the same order and one multinomial draw a step: same random codes."""
    cond, texts = inputs
    decoder = GptDecoder(gpt, torch.device("cpu"))
    for seed, text in enumerate(texts):
        torch.manual_seed(seed)
        expected = reference(gpt, cond, text, 30, **SAMPLED.generate_kwargs())
        torch.manual_seed(seed)
        run = decoder.start(cond, [text], [30], SAMPLED).finish()
        assert run.row_codes(0).tolist() == expected.tolist()


def test_sampling_filters_as_transformers_does() -> None:
    """Repetition penalty, temperature, top-k and top-p give transformers' scores exactly."""
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(4, 40, generator=generator) * 1.5
    history = torch.randint(0, 40, (4, 6), generator=generator)
    seen = torch.zeros(4, 40, dtype=torch.bool).scatter_(1, history, True)
    penalty = RepetitionPenaltyLogitsProcessor(penalty=5.0)
    warpers = [TemperatureLogitsWarper(0.75), TopKLogitsWarper(10), TopPLogitsWarper(0.85)]
    # transformers types its inputs as the legacy LongTensor and FloatTensor classes.
    ids: Any = history
    raw: Any = logits.clone()
    expected = LogitsProcessorList([penalty, *warpers])(ids, raw)
    scores = SAMPLED.scores(logits, seen)
    torch.testing.assert_close(scores, expected)
    kept = torch.isfinite(scores).sum(dim=1)
    assert int(kept.min()) > 1 and int(kept.max()) < 10  # top-p cut inside top-k: both act
    draws = torch.stack([SAMPLED.pick(logits, seen) for _ in range(200)], dim=1)
    assert torch.isfinite(scores.gather(1, draws)).all()  # never a filtered code
    greedy = GREEDY.pick(logits, seen)
    raw = logits.clone()
    assert greedy.tolist() == penalty(ids, raw).argmax(dim=-1).tolist()


def test_advancing_in_steps_equals_one_run_and_reused_buffers_forget(
    gpt: Any, inputs: tuple[torch.Tensor, list[torch.Tensor]]
) -> None:
    """Streaming's small advances give the same codes; reused buffers leak nothing."""
    cond, texts = inputs
    decoder = GptDecoder(gpt, torch.device("cpu"))
    whole = decoder.start(cond, texts[:2], [30, 30], GREEDY).finish()
    first = [whole.row_codes(row).tolist() for row in range(2)]
    other = decoder.start(cond, texts[2:], [30, 30], GREEDY).finish()  # same shape: same buffers
    assert other.state is whole.state
    again = decoder.start(cond, texts[:2], [30, 30], GREEDY)
    rounds = 0
    while not again.advance(3):
        assert again.steps == 3 * (rounds + 1)
        rounds += 1
    assert rounds >= 3
    assert [again.row_codes(row).tolist() for row in range(2)] == first
    with pytest.raises(RuntimeError, match="took over"):
        whole.advance(1)  # its buffers now hold `again`


def test_bad_requests_are_refused(
    gpt: Any, inputs: tuple[torch.Tensor, list[torch.Tensor]]
) -> None:
    """No rows, or a budget of zero, is a caller's bug: refused before any work."""
    cond, texts = inputs
    decoder = GptDecoder(gpt, torch.device("cpu"))
    with pytest.raises(ValueError, match="positive code budget"):
        decoder.start(cond, [], [], GREEDY)
    with pytest.raises(ValueError, match="positive code budget"):
        decoder.start(cond, texts[:1], [0], GREEDY)


@pytest.mark.gpu
def test_cuda_graph_replay_matches_plain_steps_on_the_gpu(
    inputs: tuple[torch.Tensor, list[torch.Tensor]],
) -> None:
    """The captured step gives the codes and latents of the plain step, on CUDA."""
    gpt = tiny_gpt("cuda")
    cond, texts = inputs
    cond = cond.cuda()
    texts = [text.cuda() for text in texts]
    plain = GptDecoder(gpt, torch.device("cuda"), graphs=False)
    graphed = GptDecoder(gpt, torch.device("cuda"), graphs=True)
    eager = plain.start(cond, texts, [30] * len(texts), GREEDY).finish()
    replayed = graphed.start(cond, texts, [30] * len(texts), GREEDY).finish()
    assert graphed.graphs and replayed.state.graph is not None
    for row in range(len(texts)):
        assert replayed.row_codes(row).tolist() == eager.row_codes(row).tolist()
        torch.testing.assert_close(replayed.row_latents(row), eager.row_latents(row))
