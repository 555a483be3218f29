"""Write Show and Tell checkpoints as yunjey/pytorch-tutorial's image_captioning does: train.py's two state
dicts (encoder-E-S.ckpt, decoder-E-S.ckpt) and build_vocab.py's pickled Vocabulary."""

import pickle
import sys
import types
from pathlib import Path

import torch

from glimpse.families.nic.model import DecoderRNN, EncoderCNN
from glimpse.families.sat.model import settle_batchnorm

SPECIALS = ("<pad>", "<start>", "<end>", "<unk>")  # build_vocab.py adds them first, in this order
END = 2


class Vocabulary:
    """build_vocab.py's class, attribute for attribute."""

    def __init__(self):
        self.word2idx, self.idx2word, self.idx = {}, {}, 0

    def add_word(self, word):
        if word not in self.word2idx:
            self.word2idx[word] = self.idx
            self.idx2word[self.idx] = word
            self.idx += 1


def vocabulary(n_words: int) -> Vocabulary:
    vocab = Vocabulary()
    for word in (*SPECIALS, *(f"w{i}" for i in range(n_words - len(SPECIALS)))):
        vocab.add_word(word)
    return vocab


def pickle_vocab(vocab: Vocabulary, path: Path, module: str = "__main__") -> Path:
    """pickle.dump as build_vocab.py run as a script does (its class is __main__.Vocabulary), or as a module
    that imported build_vocab does (``module="build_vocab"``)."""
    home = sys.modules.get(module) or types.ModuleType(module)
    shadowed, saved = sys.modules.get(module), (Vocabulary.__module__, getattr(home, "Vocabulary", None))
    sys.modules[module], home.Vocabulary, Vocabulary.__module__ = home, Vocabulary, module
    try:
        with open(path, "wb") as f:
            pickle.dump(vocab, f)
    finally:
        Vocabulary.__module__ = saved[0]
        if saved[1] is None:
            del home.Vocabulary
        else:
            home.Vocabulary = saved[1]
        if shadowed is None:
            del sys.modules[module]
    return path


def write_checkpoint(
    out: Path, backbone="resnet18", embed=32, hidden=48, layers=1, n_words=40, end_bias=0.0, seed=0, image_size=224
):
    """-> (encoder path, decoder path, vocab path, (encoder, decoder) in eval mode). ``end_bias`` is added to
    the <end> logit so that captions end early (random weights rarely pick <end>)."""
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    encoder, decoder = EncoderCNN(embed, backbone), DecoderRNN(embed, hidden, n_words, layers)
    settle_batchnorm(encoder, image_size=image_size)
    with torch.no_grad():
        encoder.bn.running_mean.normal_(0, 0.1)
        encoder.bn.running_var.uniform_(0.5, 2.0)
        decoder.linear.bias[END] += end_bias
    paths = out / "encoder-5-3000.ckpt", out / "decoder-5-3000.ckpt", out / "vocab.pkl"
    torch.save(encoder.state_dict(), paths[0])
    torch.save(decoder.state_dict(), paths[1])
    pickle_vocab(vocabulary(n_words), paths[2])
    return (*paths, (encoder.eval(), decoder.eval()))
