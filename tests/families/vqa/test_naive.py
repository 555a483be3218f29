"""The naive VQA family: its checkpoint layout key by key, its arithmetic restated by hand, its graphs
against the module, the CLI on a random checkpoint, and bad checkpoints refused on one line. (The
pipeline, batching, quantization and question handling run for it in test_family.py.)"""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import vqa_checkpoints

from glimpse.cli import main
from glimpse.export.unpickler import safe_load
from glimpse.families.vqa.naive import NaiveConfig, NaiveVQA
from glimpse.families.vqa.pipeline import VQAPipeline
from glimpse.families.vqa.san import SAN, SANConfig

SMALL = {"backbone": "resnet18", "image_size": 96, "vision_features": 512, "tokens": 31, "answers": 12}
SIZES = {"embedding_features": 40, "lstm_features": 64, "fused_features": 48, "classifier_features": 32}


def small_model() -> NaiveVQA:
    return NaiveVQA(NaiveConfig(**SMALL, **SIZES)).eval()


# T 31, E 40, Q 64, C 512, F 48, M 32, A 12: the docstring's layout, written out by hand
LAYOUT = {
    "text.embedding.weight": (31, 40),
    "text.lstm.weight_ih_l0": (256, 40),
    "text.lstm.weight_hh_l0": (256, 64),
    "text.lstm.bias_ih_l0": (256,),
    "text.lstm.bias_hh_l0": (256,),
    "v_lin.weight": (48, 512),
    "v_lin.bias": (48,),
    "q_lin.weight": (48, 64),
    "q_lin.bias": (48,),
    "classifier.lin1.weight": (32, 48),
    "classifier.lin1.bias": (32,),
    "classifier.lin2.weight": (12, 32),
    "classifier.lin2.bias": (12,),
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(model, checkpoint, cnn, bundle) of a random small naive model exported through the CLI."""
    out = tmp_path_factory.mktemp("naive")
    model = small_model()
    checkpoint, cnn = vqa_checkpoints.write(out, model, "naive", n_words=30)
    args = ["export", "naive", "--checkpoint", str(checkpoint), "--cnn", str(cnn), "--out", str(out / "bundle")]
    assert main([*args, "--image-size", "96", "--no-caffe"]) == 0
    return model, checkpoint, cnn, out / "bundle"


def test_checkpoint_holds_exactly_the_documented_layout(exported):
    _, checkpoint, _, _ = exported
    saved = safe_load(checkpoint)
    assert {"name", "tracker", "config", "weights", "eval", "vocab"} <= set(saved)
    weights = {k.removeprefix("module."): tuple(v.shape) for k, v in saved["weights"].items()}
    assert all(k.startswith("module.") for k in saved["weights"])
    assert weights == LAYOUT


@torch.no_grad()
def test_the_model_is_the_formula():
    """Each question read alone by a plain LSTM (no padding: the final cell state is the last step's),
    the grid mean-pooled and L2-normalised, tanh'd projections multiplied, then lin1, ReLU, lin2."""
    torch.manual_seed(3)
    model = small_model()
    for p in model.parameters():  # away from zero-centred init, so every term matters
        p.add_(torch.randn_like(p) * 0.1)
    grid = torch.rand(3, 512, 3, 3) * 5
    tokens = torch.tensor([[4, 9, 2, 7, 30], [1, 5, 0, 0, 0], [11, 0, 0, 0, 0]])
    lengths = torch.tensor([5, 2, 1])
    w = dict(model.state_dict())
    lstm = torch.nn.LSTM(40, 64, batch_first=True)
    lstm.load_state_dict({k.removeprefix("text.lstm."): v for k, v in w.items() if k.startswith("text.lstm.")})
    want = []
    for i in range(3):
        words = torch.tanh(F.embedding(tokens[i : i + 1, : lengths[i]], w["text.embedding.weight"]))
        _, (_, c) = lstm(words)
        v = grid[i].mean(dim=(1, 2))
        v = v / (v.norm() + 1e-8)
        f = torch.tanh(F.linear(v, w["v_lin.weight"], w["v_lin.bias"]))
        f = f * torch.tanh(F.linear(c[0, 0], w["q_lin.weight"], w["q_lin.bias"]))
        hidden = F.relu(F.linear(f, w["classifier.lin1.weight"], w["classifier.lin1.bias"]))
        want.append(F.linear(hidden, w["classifier.lin2.weight"], w["classifier.lin2.bias"]))
    logits, glimpses = model.answer(grid, tokens, lengths)
    torch.testing.assert_close(logits, torch.stack(want), rtol=1e-5, atol=1e-6)
    assert glimpses.shape == (3, 1, 3, 3)
    torch.testing.assert_close(glimpses, torch.full((3, 1, 3, 3), 1 / 9))


def test_graphs_match_the_module(exported, photo):
    """The errors the export measured are in the manifest; the head and question graphs on ONNX
    Runtime equal the module on questions of mixed lengths (relative tolerance)."""
    model, _, _, bundle = exported
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["family"] == "naive" and set(manifest["graphs"]) == {"encoder", "question", "head"}
    for graph in manifest["graphs"].values():
        assert all(e["max_rel"] <= 1e-4 for e in graph["max_error"].values()), graph["max_error"]
    pipe = VQAPipeline(bundle)
    tokens = np.array([[3, 8, 1, 20, 6, 2], [5, 0, 0, 0, 0, 0], [7, 7, 9, 0, 0, 0]], np.int64)
    lengths = np.array([6, 1, 3], np.int64)
    grid = (np.random.default_rng(0).random((3, 512, 3, 3)) * 50).astype(np.float32)
    q = pipe.sessions["question"].run({"tokens": tokens, "lengths": lengths})["question"]
    got = pipe.sessions["head"].run({"grid": grid, "question": q})
    with torch.no_grad():
        want_q = model.question(torch.from_numpy(tokens), torch.from_numpy(lengths))
        logits, glimpses = model.head(torch.from_numpy(grid), want_q)
    np.testing.assert_allclose(q, want_q.numpy(), rtol=1e-4, atol=1e-4 * float(np.abs(q).max()))
    scale = float(logits.abs().max())
    np.testing.assert_allclose(got["logits"], logits.numpy(), rtol=1e-4, atol=1e-4 * scale)
    np.testing.assert_allclose(got["glimpses"], glimpses.numpy(), rtol=1e-6)


def test_cli_answers_and_plots_the_uniform_map(exported, photo, tmp_path, capsys):
    _, _, _, bundle = exported
    capsys.readouterr()
    plot = tmp_path / "glimpses.png"
    args = ["vqa", str(bundle), str(photo), "what colour is the bus?", "how many?", "--json", "--top-k", "2"]
    assert main([*args, "--attention-plot", str(plot)]) == 0
    answers = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [a["question"] for a in answers] == ["what colour is the bus?", "how many?"]
    assert all(len(a["answers"]) == 2 and a["answer"].startswith("ans") for a in answers)
    assert plot.stat().st_size > 0
    [a] = VQAPipeline(bundle).ask(str(photo), ["how many?"])
    np.testing.assert_allclose(a.glimpses, np.full((1, 3, 3), 1 / 9), rtol=1e-6)


def test_bad_checkpoints_are_refused_on_one_line(exported, tmp_path, capsys):
    model, checkpoint, cnn, _ = exported
    saved = safe_load(checkpoint)
    missing = tmp_path / "missing.pth"  # q_lin.bias dropped
    torch.save({**saved, "weights": {k: v for k, v in saved["weights"].items() if k != "module.q_lin.bias"}}, missing)
    answers = tmp_path / "answers.pth"  # the vocab has one answer fewer than lin2's rows
    vocab = {**saved["vocab"], "answer": {f"ans{i}": i for i in range(11)}}
    torch.save({**saved, "vocab": vocab}, answers)
    no_vocab = tmp_path / "no-vocab.pth"
    torch.save({"weights": saved["weights"]}, no_vocab)
    san_model = SAN(SANConfig(**SMALL, features=64, attention_features=32)).eval()
    san = vqa_checkpoints.write(tmp_path / "san", san_model, "san", n_words=30)[0]
    cases = {
        missing: "q_lin.bias",
        answers: "11 answers",
        no_vocab: "not a pytorch-vqa checkpoint",
        san: "not a naive checkpoint",
    }
    for path, message in cases.items():
        args = ["export", "naive", "--checkpoint", str(path), "--cnn", str(cnn), "--out", str(tmp_path / "b")]
        assert main(args) == 2
        err = capsys.readouterr().err
        last = err.splitlines()[-1]
        assert last.startswith("glimpse: error:") and str(path) in last and message in last, err
        assert "Traceback" not in err
    args = ["export", "saaa", "--checkpoint", str(checkpoint), "--cnn", str(cnn), "--out", str(tmp_path / "b")]
    assert main([*args, "--no-caffe"]) == 2  # a naive checkpoint is no saaa one
    assert "not a saaa checkpoint" in capsys.readouterr().err.splitlines()[-1]
    assert not (tmp_path / "b").exists()
