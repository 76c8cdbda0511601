"""Fast GPT decoding for XTTS: a request's sentences in one batch over a static KV cache.

coqui-tts decodes one sentence at a time through transformers' `generate`, which at batch 1
spends most of each step in Python and kernel launches (about 11 ms a step on an H200 for well
under 1 ms of GPU work; bench/results). Here the same GPT-2 weights run a fixed-shape step:
every sentence of a request is a row of one batch (text left-padded so the audio codes line
up), keys and values go into a preallocated cache, and on CUDA the whole step is captured once
as a CUDA graph and replayed. Codes are chosen as transformers chooses them (repetition penalty,
temperature, top-k, top-p, then one multinomial draw), so a batch of one row draws the same
codes as coqui-tts from the same seed, and greedy decoding gives the same codes at any batch.

The latents the vocoder needs are the hidden states of the decode steps themselves (what
coqui-tts's streaming path uses), so no second GPT pass is run.
"""

from __future__ import annotations

import contextlib
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

log = logging.getLogger(__name__)

LENGTH_STEP = 128  # cache lengths are rounded up to this, so captured graphs get reused
CHECK_EVERY = 8  # decode steps between checks (each a GPU sync) whether every row has stopped
KEEP_SHAPES = 2  # (batch, length) shapes kept with their cache and graph; older ones are freed
PLACEHOLDER_CODE = 1  # coqui-tts's placeholder prompt ids, which its repetition penalty counts
# Attention kernels for masked attention. PyTorch may pick cuDNN's for fp16/bf16 on Hopper, which
# builds a plan for every new shape (hundreds of ms); every request's prompt has a new length.
ATTENTION = [SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


@dataclass(frozen=True)
class Sampling:
    """How the next audio code is chosen: the release's sampling settings, or greedy."""

    temperature: float = 0.75
    top_k: int = 50
    top_p: float = 0.85
    repetition_penalty: float = 5.0
    greedy: bool = False

    @classmethod
    def from_config(cls, config: Any) -> Sampling:
        """Read the sampling settings of a loaded XTTS config."""
        return cls(
            temperature=float(config.temperature),
            top_k=int(config.top_k),
            top_p=float(config.top_p),
            repetition_penalty=float(config.repetition_penalty),
        )

    def generate_kwargs(self) -> dict[str, Any]:
        """The same choice as keyword arguments for coqui-tts's `generate` (the reference path)."""
        return {
            "do_sample": not self.greedy,
            "temperature": self.temperature,
            "top_k": self.top_k,
            "top_p": self.top_p,
            "repetition_penalty": self.repetition_penalty,
            "length_penalty": 1.0,
            "num_beams": 1,
        }

    def scores(self, logits: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
        """transformers' processors in its order: repetition penalty, then (when sampling)
        temperature, top-k and top-p; `seen` marks the codes each row already holds."""
        scores = logits.float()
        if self.repetition_penalty != 1.0:
            penalty = self.repetition_penalty
            penalised = torch.where(scores < 0, scores * penalty, scores / penalty)
            scores = torch.where(seen, penalised, scores)
        if self.greedy:
            return scores
        if self.temperature != 1.0:
            scores = scores / self.temperature
        if self.top_k:
            kth = torch.topk(scores, min(self.top_k, scores.shape[-1])).values[:, -1:]
            scores = scores.masked_fill(scores < kth, -torch.inf)
        if self.top_p < 1.0:
            ordered, order = torch.sort(scores, descending=False)
            drop = ordered.softmax(dim=-1).cumsum(dim=-1) <= 1 - self.top_p
            drop[:, -1] = False  # the likeliest code always stays
            scores = scores.masked_fill(drop.scatter(1, order, drop), -torch.inf)
        return scores

    def pick(self, logits: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
        """Choose one code per row: the best, or one multinomial draw as transformers makes it."""
        scores = self.scores(logits, seen)
        if self.greedy:
            return scores.argmax(dim=-1)
        return torch.multinomial(scores.softmax(dim=-1), num_samples=1).squeeze(1)


class _State:
    """Static buffers for one (batch, cache length) shape, and the step captured over them."""

    def __init__(self, decoder: GptDecoder, batch: int, length: int) -> None:
        """Allocate the cache (zeros: masked slots must still hold finite numbers)."""
        gpt, device, dtype = decoder.gpt, decoder.device, decoder.dtype
        heads, dim = decoder.heads, decoder.dim
        shape = (len(decoder.blocks), 2, batch, heads, length, dim // heads)
        self.cache = torch.zeros(shape, dtype=dtype, device=device)
        self.valid = torch.zeros(batch, length, dtype=torch.bool, device=device)
        self.token = torch.zeros(batch, 1, dtype=torch.long, device=device)
        self.slot = torch.zeros(1, dtype=torch.long, device=device)
        self.position = torch.zeros(1, dtype=torch.long, device=device)
        self.hidden = torch.zeros(batch, dim, dtype=dtype, device=device)
        self.logits = torch.zeros(batch, int(gpt.num_audio_tokens), dtype=dtype, device=device)
        self.graph: Any = None  # a torch.cuda.CUDAGraph once captured
        self.runs = 0  # runs started on these buffers; only the latest may advance

    def reset(self, valid: torch.Tensor) -> None:
        """Point the next step just past a prefix whose real (unpadded) slots are `valid`."""
        self.valid.zero_()
        self.valid[:, : valid.shape[1]] = valid
        self.slot.fill_(valid.shape[1])
        self.position.fill_(1)  # the start code sat at audio position 0


class GptDecoder:
    """Batched autoregressive decoding over coqui-tts's XTTS GPT with a static KV cache.

    Buffers are shared by runs of the same shape, so a run must be read before the next
    one of its shape starts (a worker speaks one request at a time).
    """

    def __init__(self, gpt: Any, device: torch.device, graphs: bool = True) -> None:
        """Wrap a loaded `Xtts.gpt` (weights are shared, not copied)."""
        self.gpt = gpt
        self.blocks = list(gpt.gpt.h)
        self.heads = int(gpt.heads)
        self.dim = int(gpt.model_dim)
        self.dtype = gpt.mel_embedding.weight.dtype
        self.device = device
        self.graphs = graphs and device.type == "cuda"
        self.attention: list[SDPBackend] | None = ATTENTION  # None: PyTorch's own choice
        self._states: OrderedDict[tuple[int, int], _State] = OrderedDict()

    def start(
        self,
        cond: torch.Tensor,
        texts: list[torch.Tensor],
        budgets: list[int],
        sampling: Sampling,
    ) -> DecodeRun:
        """Run the prompts of all rows (one text each, same voice) and return the batch to advance.

        `cond` is the voice's (1, 32, width) GPT latent, `texts` the token ids of each row and
        `budgets` the most codes each row may produce.
        """
        if not texts or len(texts) != len(budgets) or min(budgets) < 1:
            raise ValueError("need one text and a positive code budget per row")
        with torch.inference_mode():
            prefix, valid = self._prefix(cond, texts)
            steps = max(budgets)
            length = -(-(prefix.shape[1] + steps) // LENGTH_STEP) * LENGTH_STEP
            state = self._state(len(texts), length)
            state.reset(valid)
            self._prefill(state, prefix)
            return DecodeRun(self, state, budgets, sampling)

    def _prefix(
        self, cond: torch.Tensor, texts: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed [voice latents, start, text, stop, start-audio] per row, left-padded to align.

        Left padding puts every row's audio codes at the same cache slots; the GPT has no
        absolute positions (XTTS adds its own text and audio position embeddings), so a row's
        padding changes nothing but the mask.
        """
        gpt = self.gpt
        audio_start = gpt.mel_embedding.weight[gpt.start_audio_token]
        start = audio_start + gpt.mel_pos_embedding.emb.weight[0]
        rows = []
        for tokens in texts:
            ids = F.pad(tokens.long().to(self.device), (1, 0), value=gpt.start_text_token)
            ids = F.pad(ids, (0, 1), value=gpt.stop_text_token)
            where = torch.arange(len(ids), device=self.device)
            text = gpt.text_embedding(ids) + gpt.text_pos_embedding.emb(where)
            rows.append(torch.cat([cond[0].to(self.dtype), text, start[None]]))
        width = max(len(row) for row in rows)
        prefix = torch.zeros(len(rows), width, self.dim, dtype=self.dtype, device=self.device)
        valid = torch.zeros(len(rows), width, dtype=torch.bool, device=self.device)
        for index, row in enumerate(rows):
            prefix[index, width - len(row) :] = row
            valid[index, width - len(row) :] = True
        return prefix, valid

    def _prefill(self, state: _State, prefix: torch.Tensor) -> None:
        """Run the prompts through every layer, filling cache slots [0, prefix length)."""
        width = prefix.shape[1]
        causal = torch.ones(width, width, dtype=torch.bool, device=self.device).tril()
        # A padding slot may see itself: a fully masked row would turn into NaN, and its key and
        # value, though masked for every real slot, would then poison the attention sums.
        itself = torch.eye(width, dtype=torch.bool, device=self.device)
        mask = ((causal & state.valid[:, None, :width]) | itself)[:, None]
        hidden = prefix
        with self._kernels():
            for layer, block in enumerate(self.blocks):
                hidden = self._block(block, state.cache[layer], hidden, mask, None)
        self._head(state, hidden[:, -1])

    def _step(self, state: _State) -> None:
        """Feed `state.token` to every row; leave each row's hidden state and next-code logits."""
        gpt = self.gpt
        hidden = gpt.mel_embedding(state.token) + gpt.mel_pos_embedding.emb(state.position)
        state.valid.index_fill_(1, state.slot, True)
        mask = state.valid[:, None, None, :]
        with self._kernels():
            for layer, block in enumerate(self.blocks):
                hidden = self._block(block, state.cache[layer], hidden, mask, state.slot)
        self._head(state, hidden[:, -1])
        state.slot.add_(1)
        state.position.add_(1)

    def _kernels(self) -> contextlib.AbstractContextManager[Any]:
        """Restrict attention to `self.attention`'s kernels (see ATTENTION)."""
        return sdpa_kernel(self.attention) if self.attention else contextlib.nullcontext()

    def _block(
        self,
        block: Any,
        cache: torch.Tensor,
        hidden: torch.Tensor,
        mask: torch.Tensor,
        slot: torch.Tensor | None,
    ) -> torch.Tensor:
        """One GPT-2 block on the layer's cache: at `slot` for a step, from slot 0 for a prefill."""
        batch, length, _ = hidden.shape
        qkv = block.attn.c_attn(block.ln_1(hidden)).view(batch, length, 3, self.heads, -1)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        if slot is None:
            cache[:, :, :, :length] = torch.stack([key, value])
            keys, values = cache[0, :, :, :length], cache[1, :, :, :length]
        else:
            cache[0].index_copy_(2, slot, key)
            cache[1].index_copy_(2, slot, value)
            keys, values = cache[0], cache[1]
        attended = F.scaled_dot_product_attention(query, keys, values, attn_mask=mask)
        merged = attended.transpose(1, 2).reshape(batch, length, self.dim)
        hidden = hidden + block.attn.c_proj(merged)
        out: torch.Tensor = hidden + block.mlp(block.ln_2(hidden))
        return out

    def _head(self, state: _State, last: torch.Tensor) -> None:
        """Final norms (GPT-2's, then XTTS's) give the latent; the audio head gives the logits."""
        latent = self.gpt.final_norm(self.gpt.gpt.ln_f(last))
        state.hidden.copy_(latent)
        state.logits.copy_(self.gpt.mel_head(latent))

    def replay(self, state: _State) -> None:
        """Run one step: the captured graph on CUDA, plain calls elsewhere."""
        if state.graph is not None:
            state.graph.replay()
        else:
            self._step(state)

    def _state(self, batch: int, length: int) -> _State:
        """The buffers (and graph) for this shape: reused if recent, else made and captured."""
        key = (batch, length)
        state = self._states.pop(key, None)
        if state is None:
            while len(self._states) >= KEEP_SHAPES:
                self._states.popitem(last=False)
            state = _State(self, batch, length)
            if self.graphs:
                self._capture(state)
        self._states[key] = state
        return state

    def _capture(self, state: _State) -> None:
        """Capture one decode step as a CUDA graph; on failure keep decoding without graphs."""
        try:
            for _ in range(2):  # lets cuBLAS and the attention kernels set up outside capture
                state.slot.fill_(state.valid.shape[1] - 1)  # warm-up writes land in the last slot
                state.position.zero_()
                self._step(state)
            torch.cuda.synchronize(self.device)
            state.slot.fill_(state.valid.shape[1] - 1)
            state.position.zero_()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self._step(state)
            state.graph = graph
        except RuntimeError as exc:
            log.warning("CUDA graph capture failed (%s); decoding without graphs", exc)
            self.graphs = False


class DecodeRun:
    """One batch being decoded: advance it step by step, then read each row's codes and latents."""

    def __init__(
        self, decoder: GptDecoder, state: _State, budgets: list[int], sampling: Sampling
    ) -> None:
        """Start after the prefill; the prefill's logits choose the first code."""
        gpt, device = decoder.gpt, decoder.device
        self.decoder, self.state, self.sampling = decoder, state, sampling
        self.stop = int(gpt.stop_audio_token)
        self.budget_list = list(budgets)
        self.budgets = torch.tensor(budgets, device=device)
        self.limit = max(budgets)
        self.steps = 0
        batch = len(budgets)
        self.codes = torch.full((batch, self.limit), self.stop, dtype=torch.long, device=device)
        width, dtype = decoder.dim, decoder.dtype
        self.latents = torch.zeros(batch, self.limit, width, dtype=dtype, device=device)
        self.seen = torch.zeros_like(state.logits, dtype=torch.bool)
        self.seen[:, [PLACEHOLDER_CODE, int(gpt.start_audio_token)]] = True
        self.done = torch.zeros(batch, dtype=torch.bool, device=device)
        self.finished = False
        state.runs += 1
        self.ticket = state.runs  # a number, not a reference: no cycle keeps the cache alive

    def advance(self, steps: int) -> bool:
        """Decode up to `steps` more codes in every row; return whether all rows have stopped."""
        if self.state.runs != self.ticket:
            raise RuntimeError("a newer decode of the same shape took over this one's buffers")
        with torch.inference_mode():
            self._advance(min(self.limit, self.steps + steps))
        return self.finished

    def _advance(self, end: int) -> None:
        """Decode until step `end`, or until every row has stopped (checked now and then)."""
        state = self.state
        while self.steps < end:
            if self.steps:
                self.decoder.replay(state)
            code = self.sampling.pick(state.logits, self.seen).masked_fill_(self.done, self.stop)
            self.seen.scatter_(1, code[:, None], True)
            self.codes[:, self.steps] = code
            self.latents[:, self.steps] = state.hidden
            self.steps += 1
            self.done |= (code == self.stop) | (self.budgets <= self.steps)
            state.token.copy_(code[:, None])
            if self.steps % CHECK_EVERY == 0 and self.steps < end and bool(self.done.all()):
                break
        self.finished = self.steps >= self.limit or bool(self.done.all())

    def finish(self) -> DecodeRun:
        """Decode until every row has stopped."""
        self.advance(self.limit)
        return self

    def length(self, row: int) -> int:
        """Codes of `row` so far, counted as coqui-tts counts them (its stop code included)."""
        codes = self.codes[row, : self.steps]
        stops = (codes == self.stop).nonzero()
        produced = int(stops[0, 0]) + 1 if len(stops) else self.steps
        return min(produced, self.budget_list[row])

    def row_codes(self, row: int) -> torch.Tensor:
        """The codes of `row`, as coqui-tts's `generate` returns them."""
        return self.codes[row, : self.length(row)]

    def row_latents(self, row: int) -> torch.Tensor:
        """The vocoder's input for `row`: one GPT latent per code, shape (codes, width)."""
        return self.latents[row, : self.length(row)]
