"""The demo: the packaged checkpoint imports as a tutorial checkpoint, learned its task, and the two
backends agree on every held-out scene; the trainer writes the tutorial's layout."""

import pickletools
import zipfile

import pytest

from glimpse.cli import main
from glimpse.demo import run
from glimpse.demo.bundles import PACKAGED
from glimpse.demo.train_sat import CHECKPOINT, IMAGE_SIZE, WORD_MAP, TrainConfig, train
from glimpse.families.sat.checkpoint import import_sat


def pickled_globals(checkpoint) -> set[str]:
    """'module name' of every class a torch.save'd file's pickle refers to."""
    with zipfile.ZipFile(checkpoint) as z:
        data = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    return {arg.replace("\n", " ") for op, arg, _ in pickletools.genops(data) if op.name == "GLOBAL"}


@pytest.fixture(scope="module")
def demo_figures(tmp_path_factory):
    return run.run(tmp_path_factory.mktemp("demo"), count=500, show=2, speed_scenes=0, vqa=False, log=lambda m: None)


def test_packaged_model_learned_its_task(demo_figures):
    # the bar: BLEU-4 >= 0.5 on the 500 held-out test scenes at beam 3
    assert demo_figures["scenes"] == 500 and demo_figures["beam_size"] == 3
    assert demo_figures["BLEU-4"] >= 0.5


def test_backends_give_identical_captions_on_the_test_split(demo_figures):
    assert demo_figures["identical_to_torch"] == 500
    assert demo_figures["identical_fused"] == 500  # the fused step's search, on ONNX Runtime


def test_packaged_checkpoint_is_in_the_tutorials_layout():
    ckpt = PACKAGED / CHECKPOINT
    assert {"models Encoder", "models DecoderWithAttention", "models Attention"} <= pickled_globals(ckpt)
    model, vocab, preprocess = import_sat(ckpt, PACKAGED / WORD_MAP, image_size=IMAGE_SIZE)
    assert model.config.backbone == "resnet10" and model.config.encoded_size == 4
    assert preprocess.size == (IMAGE_SIZE, IMAGE_SIZE)


def test_demo_command_prints_captions_scores_and_speed(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--scenes", "12", "--show", "3", "--speed-scenes", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("scenes/test-") == 3 and (tmp_path / "scenes" / "test-0002.png").is_file()
    assert "BLEU-4" in out and "CIDEr" in out and "12/12 captions identical" in out
    assert "caption.py" in out and "ms/image" in out
    assert "VQA on 12 test scenes" in out and all(f"\n{f} " in out for f in ("saaa", "san", "rdan"))
    # a second run reuses the bundle
    assert main(["demo", "--out", str(tmp_path), "--scenes", "2", "--speed-scenes", "0", "--no-vqa"]) == 0
    assert "using the bundle exported before" in capsys.readouterr().err


def test_demo_without_a_checkpoint_says_how_to_make_one(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "o"), "--checkpoints", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "glimpse demo train" in err


def test_trainer_writes_an_importable_tutorial_checkpoint(tmp_path):
    config = TrainConfig(steps=2, batch_size=4, val_every=2, val_scenes=4)
    ckpt = train(tmp_path, config, log=lambda m: None)
    assert {"models Encoder", "models DecoderWithAttention"} <= pickled_globals(ckpt)
    model, vocab, _ = import_sat(ckpt, tmp_path / WORD_MAP, image_size=IMAGE_SIZE)
    assert model.config.vocab_size == len(vocab)
