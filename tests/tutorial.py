"""Write Show-Attend-Tell checkpoints the way the tutorial's train.py does."""

import importlib
import json
import sys
from pathlib import Path

import torch

from glimpse.families.sat.model import settle_batchnorm

FIXTURES = Path(__file__).parent / "fixtures" / "tutorial"


def tutorial_models():
    """The fixture module importable as ``models``, as pickles of tutorial checkpoints require."""
    if str(FIXTURES) not in sys.path:
        sys.path.insert(0, str(FIXTURES))
    return importlib.import_module("models")


def word_map(n_words: int) -> dict:
    """A word map built as create_input_files builds it: words 1..N, then <unk>, <start>, <end>; <pad> 0."""
    wm = {f"w{i}": i + 1 for i in range(n_words)}
    for tok in ("<unk>", "<start>", "<end>"):
        wm[tok] = len(wm) + 1
    wm["<pad>"] = 0
    return wm


def write_checkpoint(out_dir: Path, backbone="resnet101", n_words=50, dims=(512, 512, 512), seed=0):
    """-> (checkpoint path, word map path), saved as utils.save_checkpoint saves them."""
    models = tutorial_models()
    torch.manual_seed(seed)
    wm = word_map(n_words)
    encoder = models.Encoder(backbone=backbone)
    settle_batchnorm(encoder)
    encoder_dim = encoder.resnet[-1][-1].conv1.in_channels if backbone in ("resnet18", "resnet34") else 2048
    attention_dim, embed_dim, decoder_dim = dims
    decoder = models.DecoderWithAttention(attention_dim, embed_dim, decoder_dim, len(wm), encoder_dim)
    state = {
        "epoch": 3,
        "epochs_since_improvement": 0,
        "bleu-4": 0.2,
        "encoder": encoder,
        "decoder": decoder,
        "encoder_optimizer": None,
        "decoder_optimizer": torch.optim.Adam(decoder.parameters(), lr=4e-4),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt = out_dir / "BEST_checkpoint_coco_5_cap_per_img_5_min_word_freq.pth.tar"
    torch.save(state, ckpt)
    wm_path = out_dir / "WORDMAP_coco_5_cap_per_img_5_min_word_freq.json"
    wm_path.write_text(json.dumps(wm))
    return ckpt, wm_path


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser(
        description="Write a checkpoint and word map the way the SAT tutorial's train.py does"
        " (random weights, trained-like BatchNorm statistics)."
    )
    p.add_argument("out", type=Path, help="directory to write into")
    p.add_argument("--backbone", default="resnet101")
    p.add_argument("--words", type=int, default=9486, help="words besides the 4 specials (tutorial COCO: 9486)")
    a = p.parse_args()
    for f in write_checkpoint(a.out, backbone=a.backbone, n_words=a.words):
        print(f)
