"""The demo VQA models: the packaged checkpoints are pytorch-vqa's dicts, import through the CLI with
the image geometry their config records, learned their task, agree across backends and precisions;
the trainer writes that layout."""

import json

import numpy as np
import pytest

from glimpse.bundle import Bundle
from glimpse.cli import main
from glimpse.demo import scenes, vqa
from glimpse.demo.bundles import PACKAGED
from glimpse.demo.train_vqa import FAMILIES, TrainConfig, checkpoint_name, train
from glimpse.families.vqa.checkpoint import import_vqa, tokenize
from glimpse.families.vqa.pipeline import VQAPipeline


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo-vqa")
    return out, vqa.run(out, PACKAGED, count=500, threads=None, log=lambda m: None)


def test_questions_use_the_vocabulary_and_have_one_of_the_answers():
    words, kinds = set(scenes.question_words()), set()
    for split in scenes.SPLITS:
        for s in scenes.scenes(split, 500):
            for q, a in s.questions:
                assert set(tokenize(q)) <= words and a in scenes.ANSWERS
                kinds.add(scenes.question_kind(q))
    assert kinds == set(vqa.KINDS)


def test_packaged_checkpoints_are_pytorch_vqa_dicts(tmp_path):
    from glimpse.export.unpickler import safe_load

    cnn = vqa.cnn_file(PACKAGED, tmp_path)
    for family in FAMILIES:
        ckpt = safe_load(PACKAGED / checkpoint_name(family))
        assert set(ckpt) == {"name", "tracker", "config", "weights", "eval", "vocab"}
        assert all(k.startswith("module.") for k in ckpt["weights"])  # as DataParallel saves them
        assert min(ckpt["vocab"]["question"].values()) == 1 and min(ckpt["vocab"]["answer"].values()) == 0
        model, questions, answers, preprocess = import_vqa(family, PACKAGED / checkpoint_name(family), cnn, caffe=False)
        # the image geometry comes from the checkpoint's config: 128 pixels, no crop
        assert model.config.image_size == 128 and preprocess.size == preprocess.crop == (128, 128)
        assert len(answers) == len(scenes.ANSWERS) and not model.config.caffe


def test_each_family_learned_its_task_and_backends_agree(demo):
    _, figures = demo
    n = figures["questions"]
    assert n > 3500  # every question of 500 test scenes
    for family in FAMILIES:
        f = figures["families"][family]
        # well above answering each kind's most common answer (0.410 overall; count: "zero" 0.29 of count
        # questions); naive, without attention, cannot tell where a shape is (measured 0.711, attention >= 0.94)
        assert f["all"] >= (0.65 if family == "naive" else 0.8), (family, f)
        assert f["identical_to_torch"] == n


def quantized_eval(bundle, report, capsys) -> dict:
    """glimpse quantize (fp16, int8) then glimpse eval on 100 test scenes, through the CLI; -> its JSON.
    Every precision of the bundle also passes the TensorRT parser check."""
    assert main(["quantize", str(bundle), "--precision", "fp16", "int8", "--calibration-size", "32"]) == 0
    assert main(["eval", str(bundle), "--precision", "fp16", "int8", "--scenes", "100", "--json", str(report)]) == 0
    assert "| int8 |" in capsys.readouterr().out
    assert main(["check", str(bundle)]) == 0
    return json.loads(report.read_text())


def test_eval_of_a_vqa_bundle_across_precisions(demo, tmp_path, capsys):
    results = quantized_eval(demo[0] / "san-bundle", tmp_path / "eval.json", capsys)
    f, n = results["precisions"], results["questions"]
    assert f["fp32"]["agree_with_fp32"] == n and f["fp32"]["accuracy change"] == 0
    assert f["fp16"]["agree_with_fp32"] >= 0.99 * n and f["fp16"]["probability_error_max"] < 0.05
    assert abs(f["int8"]["accuracy change"]) <= 0.03


def test_cli_exports_and_answers_a_packaged_checkpoint(demo, tmp_path, capsys):
    out, _ = demo
    bundle = tmp_path / "rdan"
    args = ["export", "rdan", "--checkpoint", str(PACKAGED / checkpoint_name("rdan")), "--cnn", str(out / vqa.CNN)]
    assert main([*args, "--no-caffe", "--out", str(bundle)]) == 0
    scene = scenes.scene("test", 3)
    scene.image(128).save(tmp_path / "scene.png")
    questions = [q for q, _ in scene.questions]
    capsys.readouterr()
    assert main(["vqa", str(bundle), str(tmp_path / "scene.png"), *questions, "--json"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    expected = VQAPipeline(Bundle(out / "rdan-bundle")).ask(scene.image(128), questions)
    assert [p["answer"] for p in printed] == [a.answer for a in expected]


def test_trainer_writes_importable_pytorch_vqa_checkpoints(tmp_path):
    config = TrainConfig(steps=2, batch_size=8, train_scenes=8, val_scenes=4, val_every=2)
    [path] = train(tmp_path, PACKAGED, ("saaa",), config, log=lambda m: None)
    model, _, _, preprocess = import_vqa("saaa", path, vqa.cnn_file(PACKAGED, tmp_path), caffe=False)
    assert model.config.lstm_features == 256 and preprocess.crop == (128, 128)


def test_demo_train_needs_the_captioner_for_vqa_models(tmp_path, capsys):
    assert main(["demo", "train", "--out", str(tmp_path), "--models", "san"]) == 2
    assert "train it first" in capsys.readouterr().err


@pytest.fixture(scope="module")
def matching_demo(tmp_path_factory):
    from glimpse.demo import matching

    out = tmp_path_factory.mktemp("demo-mdan")
    return out, matching.run(out, PACKAGED, count=500, threads=None, log=lambda m: None)


def test_matching_model_retrieves_the_scenes_by_their_captions(matching_demo):
    _, f = matching_demo
    assert f["scenes"] == 500 and f["sentences"] == 2500 and f["torch_agrees"]
    # chance is about 0.002 for R@1 here; a sentence fitting several scenes counts for all of them
    assert f["image-to-text R@1"] >= 0.8 and f["text-to-image R@1"] >= 0.7
    assert f["image-to-text R@10"] >= 0.95 and f["text-to-image R@10"] >= 0.95


def test_eval_of_the_matching_model_across_precisions(matching_demo, tmp_path, capsys):
    f = quantized_eval(matching_demo[0] / "mdan-bundle", tmp_path / "eval.json", capsys)["precisions"]
    assert f["fp32"]["first_result_as_fp32"] == 1 and f["fp32"]["R@1 change"] == 0
    assert f["fp16"]["embedding_error"] < 5e-2 and f["fp16"]["first_result_as_fp32"] >= 0.98
    assert abs(f["int8"]["R@1 change"]) <= 0.05


def test_recall_counts_a_sentence_for_every_image_it_describes():
    from glimpse.demo.matching import recall

    relevant = np.array([[1, 0, 1], [0, 1, 1]], dtype=bool)  # sentence 2 fits both images
    scores = np.array([[0.1, 0.9, 0.5], [0.2, 0.1, 0.8]])
    r = recall(scores, relevant, ks=(1, 2))
    # image 0: first is sentence 1 (wrong), second sentence 2 (right); image 1: sentence 2 (right)
    assert r["image-to-text R@1"] == 0.5 and r["image-to-text R@2"] == 1.0
    # sentence 0 -> image 1 first (wrong); sentence 1 -> image 0 first (wrong); sentence 2 -> image 1 (right)
    assert r["text-to-image R@1"] == pytest.approx(1 / 3) and r["text-to-image R@2"] == 1.0
