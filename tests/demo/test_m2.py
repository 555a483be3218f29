"""The demo M2 captioner: the packaged checkpoint is in the public layout, learned its task on the test
scenes, and glimpse's captions equal the public beam search on the reference modules; the trainer writes
that layout."""

import json

import pytest

from glimpse.cli import main
from glimpse.demo import m2
from glimpse.demo.bundles import PACKAGED
from glimpse.demo.train_m2 import CHECKPOINT, VOCAB, TrainConfig, model_config, train
from glimpse.export.unpickler import safe_load
from glimpse.families.m2.checkpoint import import_m2


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("demo-m2")


@pytest.fixture(scope="module")
def figures(demo_dir):
    return m2.run(demo_dir, PACKAGED, count=500, threads=None, log=lambda m: None)


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


def test_fp16_and_int8_on_the_test_split(figures, demo_dir, tmp_path):
    """glimpse quantize calibrates a demo M2 on the validation scenes' regions by default; glimpse eval
    measures each precision on the 500 test scenes at the demo's beam 5."""
    bundle, out = str(demo_dir / "m2-bundle"), tmp_path / "eval.json"
    assert main(["quantize", bundle, "--precision", "fp16", "int8"]) == 0
    assert main(["check", bundle]) == 0
    assert main(["eval", bundle, "--precision", "fp16", "int8", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["beam_size"] == 5
    p = result["precisions"]
    assert p["fp32"]["BLEU-4"] == pytest.approx(figures["BLEU-4"])  # eval's fp32 run is the demo's
    assert p["fp16"]["agree_with_fp32"] >= 495 and abs(p["fp16"]["BLEU-4 change"]) <= 0.005  # measured 500, 0
    assert abs(p["int8"]["BLEU-4 change"]) <= 0.015  # measured -0.35 pt, 348/500 identical
    assert p["fp16"]["logprob_error_mean"] < p["int8"]["logprob_error_mean"] / 10
