"""The demo M2 captioner: the packaged checkpoint is in the public layout, learned its task on the test
scenes, and glimpse's captions equal the public beam search on the reference modules; the trainer writes
that layout."""

import pytest

from glimpse.checkpoints.m2 import import_m2
from glimpse.checkpoints.unpickler import safe_load
from glimpse.demo import m2
from glimpse.demo.run import PACKAGED
from glimpse.demo.train_m2 import CHECKPOINT, VOCAB, TrainConfig, model_config, train


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    return m2.run(tmp_path_factory.mktemp("demo-m2"), PACKAGED, count=500, threads=None, log=lambda m: None)


def test_packaged_checkpoint_is_in_the_public_layout():
    ckpt = safe_load(PACKAGED / CHECKPOINT)
    assert {"state_dict", "epoch"} <= set(ckpt)
    assert "decoder.layers.0.self_att.running_keys" in ckpt["state_dict"]


def test_learned_its_task_and_equals_the_public_search(figures):
    assert figures["BLEU-4"] > 0.95 and figures["CIDEr"] > 5.0  # measured 0.992, 5.346
    assert figures["identical_to_reference"] == 500


def test_trainer_writes_an_importable_checkpoint(tmp_path):
    train(tmp_path, PACKAGED, TrainConfig(steps=2, batch_size=4, train_scenes=100, val_scenes=8, val_every=2))
    model, words = import_m2(tmp_path / CHECKPOINT, tmp_path / VOCAB, regions=model_config().regions)
    assert model.config == model_config() and words.special == {"unk": 0, "pad": 1, "start": 2, "end": 3}
