"""VQA families (saaa, san, rdan, naive): pytorch-vqa-style checkpoints imported, exported, checked against
the reference modules, answered through the pipeline and the CLI; bad input refused on one line."""

import json

import numpy as np
import pytest
import torch
import vqa_checkpoints
from hypothesis import strategies as st

from glimpse.cli import main
from glimpse.families.vqa.naive import NaiveConfig, NaiveVQA
from glimpse.families.vqa.pipeline import VQAPipeline
from glimpse.families.vqa.rdan import RDAN, RDANConfig
from glimpse.families.vqa.saaa import SAAA, SAAAConfig
from glimpse.families.vqa.san import SAN, SANConfig
from glimpse.images import load_image
from glimpse.nn.cnn import Trunk, feature_side

SMALL = {"backbone": "resnet18", "image_size": 96, "vision_features": 512, "tokens": 31, "answers": 12}
FAMILIES = {
    "saaa": lambda **k: SAAA(SAAAConfig(**{**SMALL, "caffe": False, "lstm_features": 64, "mid_features": 32, **k})),
    "san": lambda **k: SAN(SANConfig(**{**SMALL, "features": 64, "attention_features": 32, **k})),
    "rdan": lambda **k: RDAN(RDANConfig(**{**SMALL, "features": 64, **k})),
    "naive": lambda **k: NaiveVQA(
        NaiveConfig(**{**SMALL, "lstm_features": 64, "fused_features": 48, "classifier_features": 32, **k})
    ),
}


@pytest.fixture(scope="module", params=list(FAMILIES))
def small(request, tmp_path_factory):
    """(family, reference model, bundle path) of a small model of each family."""
    family, out = request.param, tmp_path_factory.mktemp(request.param)
    model = FAMILIES[family]().eval()
    checkpoint, cnn = vqa_checkpoints.write(out, model, family, n_words=30)
    args = ["export", family, "--checkpoint", str(checkpoint), "--cnn", str(cnn), "--out", str(out / "bundle")]
    assert main([*args, "--image-size", "96", "--no-caffe"]) == 0
    return family, model, out / "bundle"


QUESTIONS = ["what colour is the bus?", "how many?", "is the bus word3 word4 word5 word6 word7 word8 word9?", "what?"]


def test_cli_answers_with_probabilities(small, photo, capsys):
    _, _, bundle = small
    capsys.readouterr()
    assert main(["vqa", str(bundle), str(photo), *QUESTIONS[:2], "--json", "--top-k", "3"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [a["question"] for a in lines] == QUESTIONS[:2]
    for a in lines:
        p = [x["probability"] for x in a["answers"]]
        assert len(p) == 3 and p == sorted(p, reverse=True) and 0 < sum(p) <= 1 + 1e-6
        assert a["answer"] == a["answers"][0]["answer"]


def test_batched_mixed_lengths_equal_one_by_one(small, photo):
    _, _, bundle = small
    pipe = VQAPipeline(bundle)
    noise = (np.random.default_rng(0).random((120, 90, 3)) * 255).astype(np.uint8)
    pairs = [(im, q) for im in (str(photo), noise) for q in QUESTIONS]
    together = pipe(pairs, top_k=12)
    for (image, question), a in zip(pairs, together):
        [alone] = pipe([(image, question)], top_k=12)
        assert [x[0] for x in alone.answers] == [x[0] for x in a.answers]
        np.testing.assert_allclose([x[1] for x in alone.answers], [x[1] for x in a.answers], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(alone.glimpses, a.glimpses, rtol=1e-5, atol=1e-7)


def test_pipeline_matches_the_reference_module(small, photo):
    """Image file to answer: glimpse's preprocessing and tokenisation, ONNX Runtime graphs, against the
    reference module on the same pixels and tokens (pytorch-vqa's Net.forward for saaa)."""
    family, model, bundle = small
    pipe = VQAPipeline(bundle)
    answers = pipe.ask(str(photo), QUESTIONS, top_k=12)
    torch_answers = VQAPipeline(bundle, backend="torch").ask(str(photo), QUESTIONS, top_k=12)
    pixels = torch.from_numpy(pipe.preprocess(__import__("glimpse.images").images.load_image(photo)))[None]
    with torch.no_grad():
        grid = model.cnn(pixels)
        for q, a, t in zip(QUESTIONS, answers, torch_answers):
            ids = torch.tensor([pipe.read(q).ids])
            probs = torch.softmax(model.reference(grid, ids, torch.tensor([ids.shape[1]])), -1)[0].numpy()
            got = dict(a.answers)
            want = {pipe.answers.itos[i]: float(p) for i, p in enumerate(probs)}
            assert a.answer == max(want, key=want.get)
            np.testing.assert_allclose([got[k] for k in want], list(want.values()), rtol=1e-4, atol=1e-6)
            assert t.answer == a.answer and np.allclose([p for _, p in t.answers], [p for _, p in a.answers], atol=1e-5)


def test_fp16_int8_graphs_pass_the_tensorrt_check(small, capsys):
    _, _, bundle = small
    assert main(["quantize", str(bundle), "--precision", "fp16", "int8", "--calibration-size", "8"]) == 0
    assert main(["check", str(bundle)]) == 0
    assert "9 of 9 graphs pass" in capsys.readouterr().out
    assert VQAPipeline(bundle, precision="int8").ask(np.zeros((64, 64, 3), np.uint8), ["how many?"])[0].answers


def test_unknown_words_are_answered_and_flagged(small, photo, capsys):
    _, _, bundle = small
    assert main(["vqa", str(bundle), str(photo), "zebra giraffe?", "what colour is the zebra?", "--json"]) == 0
    none_known, some = (json.loads(x) for x in capsys.readouterr().out.splitlines())
    assert none_known["unknown_words"] == ["zebra", "giraffe"] and none_known["answer"]
    assert some["unknown_words"] == ["zebra"]
    assert main(["vqa", str(bundle), str(photo), "zebra giraffe?"]) == 0
    assert "no word of it is known" in capsys.readouterr().out


def test_too_long_questions_are_cut_with_a_warning(small, photo, capsys):
    _, _, bundle = small
    long = " ".join(["what"] * 40) + "?"
    assert main(["vqa", str(bundle), str(photo), long, "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["truncated_to"] == 23 and "reads at most 23" in err


@pytest.mark.parametrize("question", ["", "   ?  ", "?"])
def test_empty_questions_are_refused_on_one_line(small, photo, capsys, question):
    _, _, bundle = small
    assert main(["vqa", str(bundle), str(photo), question]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "empty question" in err


def test_non_images_are_refused_on_one_line(small, tmp_path, capsys):
    _, _, bundle = small
    fake = tmp_path / "notes.jpg"
    fake.write_text("not an image")
    assert main(["vqa", str(bundle), str(fake), "how many?"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_wrong_checkpoints_are_refused_on_one_line(small_checkpoint, tmp_path, capsys):
    model = FAMILIES["san"]().eval()
    checkpoint, cnn = vqa_checkpoints.write(tmp_path, model, "san", n_words=30)
    cases = [
        ["saaa", "--checkpoint", str(checkpoint), "--cnn", str(cnn)],  # a san checkpoint as saaa
        ["san", "--checkpoint", str(small_checkpoint[0]), "--cnn", str(cnn)],  # a captioner
        ["san", "--checkpoint", str(checkpoint), "--cnn", str(checkpoint)],  # a VQA checkpoint as the CNN
    ]
    for args in cases:
        assert main(["export", *args, "--out", str(tmp_path / "b")]) == 2
        err = capsys.readouterr().err  # a progress line, then the error on one line
        assert err.splitlines()[-1].startswith("glimpse: error:") and "Traceback" not in err, err
    assert not (tmp_path / "b").exists()


def test_caffe_resnet_strides_where_the_port_does():
    caffe, tv = Trunk("resnet152", caffe=True), Trunk("resnet152")
    for stage in ("layer2", "layer3", "layer4"):
        first = getattr(caffe, stage)[0]
        assert first.conv1.stride == (2, 2) and first.conv2.stride == (1, 1)
        assert getattr(tv, stage)[0].conv2.stride == (2, 2)
    assert caffe.maxpool.ceil_mode and caffe.maxpool.padding == 0
    assert caffe.state_dict().keys() == tv.state_dict().keys()
    x = torch.randn(1, 3, 97, 97)  # a size where the two max-pools round differently
    assert caffe.eval()(x).shape[-1] == feature_side(97, caffe=True) == 3
    assert tv.eval()(x).shape[-1] == feature_side(97) == 4


QUESTION_TEXT = st.one_of(
    st.text(max_size=40),  # any unicode: control characters, combining marks, other scripts, emoji
    st.text(alphabet=" \t\n\r\x00\x0b\x0c\u00a0\u2028\u3000?", max_size=12),  # only spaces, controls and '?'
    st.text(min_size=300, max_size=3000),  # far over the model's word limit
    st.lists(st.sampled_from(["what", "colour", "is", "the", "bus", "?", "WHAT", "Bus?"]), max_size=40).map(" ".join),
)


@pytest.mark.filterwarnings("ignore:question .* has .* words")  # the truncation warning
def test_any_question_is_answered_or_refused_on_one_line(small, photo):
    """Any text as a question: answered as it is answered in a batch with another question (so padding and
    lengths hold), its words within the model's limit, top answers from the answer vocabulary with
    probabilities in order; or, with no word in it, one GlimpseError."""
    from hypothesis import HealthCheck, given, settings

    from glimpse.errors import GlimpseError
    from glimpse.families.vqa.checkpoint import tokenize

    _, _, bundle = small
    pipe = VQAPipeline(bundle)
    grid = pipe.sessions["encoder"].run({"image": pipe.preprocess(load_image(photo))[None]})["grid"]
    known = set(pipe.answers.itos)

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(QUESTION_TEXT)
    def check(question):
        try:
            alone = pipe.read(question)
        except GlimpseError as e:
            assert not tokenize(question) and "\n" not in str(e)
            return
        assert 1 <= len(alone.words) <= pipe.max_words and alone.truncated == (len(tokenize(question)) > pipe.max_words)
        other = pipe.read("what colour is the bus?")
        logits, _ = pipe.answer_batch(grid, [alone.ids])
        batched, _ = pipe.answer_batch(np.repeat(grid, 2, axis=0), [other.ids, alone.ids])
        np.testing.assert_allclose(batched[1], logits[0], rtol=1e-4, atol=1e-5)
        [answer] = pipe.ask(str(photo), [question], top_k=3)
        probs = [p for _, p in answer.answers]
        assert {a for a, _ in answer.answers} <= known and probs == sorted(probs, reverse=True)

    check()
