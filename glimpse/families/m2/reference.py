"""The public M2 test script's decoding, ``model.beam_search(images, 20, eos, 5, out_size=1)``
(models/beam_search/beam_search.py), restated line for line over ``M2.reference_step``: the reference
glimpse's tokens are checked and timed against. Two departures, both about reproducibility: beam indices
use ``//`` (the upstream ``/`` fails on torch >= 1.5, its issues #39, #60, #82), and the sorts are stable
(upstream ``torch.sort`` leaves the order of equal candidates to the kernel)."""

from __future__ import annotations

import torch

from glimpse.families.m2.model import M2


@torch.no_grad()
def beam_search(model: M2, regions: torch.Tensor, max_len: int, bos: int, eos: int, beam_size: int, out_size: int = 1):
    """regions (B, R, d_in) -> tokens (B, out_size, max_len), their log-probs (B, out_size, max_len) and the
    sequences' summed log-probs (B, out_size), best first. Exactly ``max_len`` steps; a finished beam
    continues with token 0 at an unchanged score."""
    b, k = len(regions), beam_size
    levels, mask_enc = model.encoder(regions)  # (B, L, R, D), (B, 1, 1, R)
    past = [regions.new_zeros(b, 0, model.config.d_model) for _ in model.decoder.layers]
    past_mask = torch.zeros(b, 1, 1, 0, dtype=torch.bool)
    seq_mask, seq_logprob = torch.ones(b, 1, 1), torch.zeros(b, 1, 1)
    words = torch.full((b,), bos)
    outputs: list[torch.Tensor] = []
    log_probs: list[torch.Tensor] = []
    for t in range(max_len):
        cur = 1 if t == 0 else k
        word_logprob, past, past_mask = model.reference_step(words, t, levels, mask_enc, past, past_mask)
        word_logprob = word_logprob.view(b, cur, -1)  # (B, cur, V)
        v = word_logprob.shape[-1]
        candidate = seq_logprob + word_logprob
        if t > 0:
            mask = (words.view(b, cur) != eos).float().unsqueeze(-1)
            seq_mask = seq_mask * mask
            word_logprob = word_logprob * seq_mask.expand_as(word_logprob)
            old_seq_logprob = seq_logprob.expand_as(candidate).contiguous()
            old_seq_logprob[:, :, 1:] = -999
            candidate = seq_mask * candidate + old_seq_logprob * (1 - seq_mask)
        selected_logprob, selected_idx = torch.sort(candidate.view(b, -1), stable=True, dim=-1, descending=True)
        selected_logprob, selected_idx = selected_logprob[:, :k], selected_idx[:, :k]  # (B, K)
        selected_beam = selected_idx // v
        selected_words = selected_idx - selected_beam * v

        rows = (torch.arange(b)[:, None] * cur + selected_beam).view(-1)  # every state follows its beam
        past, past_mask = [p[rows] for p in past], past_mask[rows]
        if t == 0:
            levels, mask_enc = levels.repeat_interleave(k, 0), mask_enc.repeat_interleave(k, 0)

        seq_logprob = selected_logprob.unsqueeze(-1)
        seq_mask = torch.gather(seq_mask, 1, selected_beam.unsqueeze(-1))
        outputs = [torch.gather(o, 1, selected_beam.unsqueeze(-1)) for o in outputs]
        outputs.append(selected_words.unsqueeze(-1))
        this_word_logprob = torch.gather(word_logprob, 1, selected_beam.unsqueeze(-1).expand(b, k, v))
        this_word_logprob = torch.gather(this_word_logprob, 2, selected_words.unsqueeze(-1))
        log_probs = [torch.gather(o, 1, selected_beam.unsqueeze(-1)) for o in log_probs]
        log_probs.append(this_word_logprob)
        words = selected_words.view(-1)

    seq_logprob, order = torch.sort(seq_logprob, stable=True, dim=1, descending=True)
    outputs = torch.gather(torch.cat(outputs, -1), 1, order.expand(b, k, max_len))
    log_probs = torch.gather(torch.cat(log_probs, -1), 1, order.expand(b, k, max_len))
    return outputs[:, :out_size], log_probs[:, :out_size], seq_logprob[:, :out_size, 0]
