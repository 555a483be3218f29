"""The demo Show and Tell captioner: the packaged files are in yunjey's layout, it learned its task on the
test scenes, and greedy tokens equal sample.py's on the reference modules; the trainer writes that layout."""

import pytest
import torch

from glimpse.demo import nic
from glimpse.demo.bundles import PACKAGED
from glimpse.demo.train_nic import DECODER, HEAD, VOCAB, TrainConfig, captioner_resnet, encoder_file, train
from glimpse.families.nic.checkpoint import import_nic


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    return nic.run(tmp_path_factory.mktemp("demo-nic"), PACKAGED, count=200, beam=3, threads=None, log=lambda m: None)


def test_packaged_files_are_in_the_tutorials_layout(tmp_path):
    assert set(torch.load(PACKAGED / HEAD)) == {f"linear.{p}" for p in ("weight", "bias")} | {
        f"bn.{p}" for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    }
    assert {"embed.weight", "lstm.weight_ih_l0", "linear.weight"} <= set(torch.load(PACKAGED / DECODER))
    assert b"build_vocab" in (PACKAGED / VOCAB).read_bytes()  # build_vocab.Vocabulary, as a script that imported it
    model, words, _ = import_nic(encoder_file(PACKAGED, tmp_path), PACKAGED / DECODER, PACKAGED / VOCAB)
    assert words.itos[:4] == ["<pad>", "<start>", "<end>", "<unk>"] and model.config.backbone == "resnet10"


def test_learned_its_task_and_greedy_is_sample(figures):
    assert figures["BLEU-4"] > 0.65 and figures["CIDEr"] > 3.5  # measured on 500 scenes: 0.740, 4.058
    assert figures["identical_to_reference"] == 200


def test_trainer_writes_importable_files(tmp_path):
    train(tmp_path, PACKAGED, TrainConfig(steps=2, batch_size=4, train_scenes=100, val_scenes=8, val_every=2))
    encoder = tmp_path / "encoder.ckpt"  # the captioner's ResNet joined to the head just trained
    torch.save(captioner_resnet(PACKAGED) | torch.load(tmp_path / HEAD), encoder)
    model, words, _ = import_nic(encoder, tmp_path / DECODER, tmp_path / VOCAB)
    assert model.config.vocab_size == len(words)
