"""The tutorial's caption.py, caption_image_beam_search: the reference glimpse is checked and timed
against. Restated line for line over a generic step function, with the two upstream crashes fixed the
way issue trackers fixed them (// for beam indices) and, where nothing finished, returning None instead
of raising on max() of an empty list."""

import time

import torch

from glimpse.families.sat.model import ShowAttendTell, reference_step


@torch.no_grad()
def caption_image_beam_search(
    model: ShowAttendTell,
    image: torch.Tensor,
    beam_size: int,
    start: int,
    end: int,
    timings: dict | None = None,
    step_fn=reference_step,
):
    """One preprocessed image (3, H, W) end to end as caption.py runs it: the encoder, the features
    copied once per beam, and every step on the copies (attention projection included), in eager
    PyTorch on the image's device. -> (tokens, score) or None. ``timings``, a dict, receives the
    seconds of the encoder, init and decode phases and the number of decode steps. ``step_fn``:
    ``reference_step`` or the same compiled (glimpse bench's reference-compiled)."""
    clock = Clock(image.device)
    encoder_out = model.encoder(image.unsqueeze(0)).flatten(1, 2)  # (1, P, E)
    t_encoder = clock()
    h, c = model.decoder.init_hidden_state(encoder_out)  # (1, D)
    t_init = clock()
    steps = 0

    def step(prev_words, hc):
        nonlocal steps
        steps += 1
        k = len(prev_words)
        logprobs, h, c, _ = step_fn(model.decoder, encoder_out.expand(k, -1, -1), prev_words, *hc.unbind(1))
        return logprobs, torch.stack([h, c], 1)

    result = beam_search(step, torch.stack([h, c], 1), beam_size, start, end, model.config.vocab_size)
    if timings is not None:
        timings.update(encoder=t_encoder, init=t_init, decode=clock(), steps=steps)
    return result


class Clock:
    """Seconds since the previous call (or creation), with the device's queued work finished first."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.last = self._now()

    def _now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def __call__(self) -> float:
        now = self._now()
        elapsed, self.last = now - self.last, now
        return elapsed


def beam_search(step_fn, state, k, start, end, vocab_size):
    """step_fn(prev_words (s,), state (s, ...)) -> (log-probs (s, V), state). Returns (seq, score)
    with seq = [<start>, ..., <end>], or None if no hypothesis finished."""
    device = state.device
    k_prev_words = torch.full((k, 1), start, dtype=torch.int64, device=device)
    seqs = k_prev_words
    top_k_scores = torch.zeros(k, 1, device=device)
    complete_seqs, complete_seqs_scores = [], []
    state = state.expand(k, *state.shape[1:])
    step = 1
    while True:
        scores, state = step_fn(k_prev_words.squeeze(1), state)
        scores = top_k_scores.expand_as(scores) + scores
        if step == 1:
            top_k_scores, top_k_words = scores[0].topk(k, 0, True, True)
        else:
            top_k_scores, top_k_words = scores.view(-1).topk(k, 0, True, True)
        prev_word_inds = top_k_words // vocab_size
        next_word_inds = top_k_words % vocab_size
        seqs = torch.cat([seqs[prev_word_inds], next_word_inds.unsqueeze(1)], dim=1)
        incomplete_inds = [ind for ind, next_word in enumerate(next_word_inds) if next_word != end]
        complete_inds = list(set(range(len(next_word_inds))) - set(incomplete_inds))
        if len(complete_inds) > 0:
            complete_seqs.extend(seqs[complete_inds].tolist())
            complete_seqs_scores.extend(top_k_scores[complete_inds])
        k -= len(complete_inds)
        if k == 0:
            break
        seqs = seqs[incomplete_inds]
        state = state[prev_word_inds[incomplete_inds]]
        top_k_scores = top_k_scores[incomplete_inds].unsqueeze(1)
        k_prev_words = next_word_inds[incomplete_inds].unsqueeze(1)
        if step > 50:
            break
        step += 1
    if not complete_seqs_scores:
        return None
    i = complete_seqs_scores.index(max(complete_seqs_scores))
    return complete_seqs[i], float(complete_seqs_scores[i])
