"""caption.py's caption_image_beam_search, restated line for line over a generic step function,
with the two upstream crashes fixed the way issue trackers fixed them (// for beam indices) and,
where nothing finished, returning None instead of raising on max() of an empty list."""

import torch


def tutorial_beam_search(step_fn, state, k, start, end, vocab_size):
    """step_fn(prev_words (s,), state (s, ...)) -> (log-probs (s, V), state). Returns (seq, score)
    with seq = [<start>, ..., <end>], or None if no hypothesis finished."""
    k_prev_words = torch.LongTensor([[start]] * k)
    seqs = k_prev_words
    top_k_scores = torch.zeros(k, 1, dtype=torch.float64)
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
