"""Importing Show-Attend-Tell checkpoints in every supported form, and refusing bad ones."""

import json

import pytest
import torch
import torchvision

from glimpse.errors import CheckpointError
from glimpse.families.sat.checkpoint import import_sat, load_word_map
from glimpse.families.sat.model import infer_backbone


def test_tutorial_checkpoint_imports(small_checkpoint):
    model, vocab, preprocess = import_sat(*small_checkpoint)
    c = model.config
    assert (c.backbone, c.encoder_dim, c.vocab_size, c.encoded_size) == ("resnet18", 512, 44, 14)
    assert vocab.special == {"pad": 0, "unk": 41, "start": 42, "end": 43}
    assert preprocess.size == (256, 256) and preprocess.crop is None


def test_weights_are_the_checkpoints(small_checkpoint):
    """Every tensor of the pickled tutorial modules arrives unchanged."""
    import tutorial

    tutorial.tutorial_models()
    saved = torch.load(small_checkpoint[0], weights_only=False)  # trusted: the test wrote it
    model, _, _ = import_sat(*small_checkpoint)
    for part in ("encoder", "decoder"):
        want = saved[part].state_dict()
        got = getattr(model, part).state_dict()
        assert set(want) == set(got)
        assert all(torch.equal(want[k], got[k]) for k in want)


@pytest.mark.parametrize("form", ["nested", "flat", "dataparallel"])
def test_state_dict_forms(small_checkpoint, tmp_path, form):
    model, _, _ = import_sat(*small_checkpoint)
    enc, dec = model.encoder.state_dict(), model.decoder.state_dict()
    if form == "nested":
        ckpt = {"encoder": enc, "decoder": dec}
    else:
        prefix = "module." if form == "dataparallel" else ""
        ckpt = {f"{prefix}{p}.{k}": v for p, sd in (("encoder", enc), ("decoder", dec)) for k, v in sd.items()}
    path = tmp_path / "sd.pth"
    torch.save(ckpt, path)
    again, _, _ = import_sat(path, small_checkpoint[1])
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("depth", [50, 101, 152])
def test_backbone_depth_is_read_from_weights(depth):
    resnet = getattr(torchvision.models, f"resnet{depth}")(weights=None)
    children = list(resnet.children())[:-2]
    keys = {f"resnet.{k}": v for k, v in torch.nn.Sequential(*children).state_dict().items()}
    assert infer_backbone(keys) == f"resnet{depth}"


def test_word_map_without_start(tmp_path):
    path = tmp_path / "wm.json"
    path.write_text(json.dumps({"<pad>": 0, "a": 1, "<end>": 2}))
    with pytest.raises(CheckpointError, match=r"wm.json: the word map has no <start> token"):
        load_word_map(path)


def test_word_map_not_json(tmp_path):
    path = tmp_path / "wm.json"
    path.write_text("{not json")
    with pytest.raises(CheckpointError, match="wm.json: not a JSON word map"):
        load_word_map(path)


def test_vocabulary_size_disagrees_with_fc(small_checkpoint, tmp_path):
    wm = json.loads(small_checkpoint[1].read_text())
    wm["extra"] = len(wm)
    path = tmp_path / "WORDMAP_other.json"
    path.write_text(json.dumps(wm))
    with pytest.raises(CheckpointError, match=r"has 45 words but the checkpoint's fc predicts 44"):
        import_sat(small_checkpoint[0], path)


def test_not_a_sat_checkpoint(tmp_path, small_checkpoint):
    path = tmp_path / "other.pth"
    torch.save({"encoder": {"x": torch.zeros(1)}, "decoder": {"y": torch.zeros(1)}}, path)
    with pytest.raises(CheckpointError, match="other.pth: not a Show-Attend-Tell checkpoint"):
        import_sat(path, small_checkpoint[1])
