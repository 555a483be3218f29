"""The export check's error metric: float32 noise accepted, export mistakes refused.

Each mistake is put into the graphs a real `glimpse export saaa` writes while the check still compares them
with the right modules: the export refuses in one line that gives the figures and names --tolerance, and
writes nothing. (Deep noise accepted at the default: the saaa case of tests/families/test_full_size.py,
ResNet-152 at 448 with BatchNorm statistics of a photograph.)"""

import copy

import numpy as np
import pytest
import torch
import vqa_checkpoints

from glimpse.cli import main
from glimpse.export.compare import TOLERANCE, error, errors
from glimpse.families.vqa import export as vqa_export
from glimpse.families.vqa.saaa import SAAA, SAAAConfig


def test_noise_is_small_and_mistakes_are_large():
    """Hand-made outputs: relative noise of 1e-5 on values of any size (zeros included) is far below the
    tolerance; one element moved by the output's spread, or a NaN, is above it."""
    rng = np.random.default_rng(0)
    want = np.maximum(rng.normal(0.5, 1.0, (4, 2048, 14, 14)), 0)  # a ReLU feature map, a third zeros
    noisy = want * (1 + 1e-5 * rng.standard_normal(want.shape)) + 1e-6 * rng.standard_normal(want.shape)
    assert error(errors({"x": noisy}, {"x": want})["x"]) < TOLERANCE / 10
    one_off = want.copy()
    one_off[0, 7, 3, 3] += want.std()
    row = errors({"x": one_off}, {"x": want})["x"]
    assert row["rel_l2"] < TOLERANCE < error(row)  # the L2 figure alone would miss it; the element figure does not
    logprobs = np.log(rng.dirichlet(np.ones(9490), 5))  # near -9, spread ~1: measured against the spread
    assert error(errors({"x": logprobs + 0.05}, {"x": logprobs})["x"]) > TOLERANCE
    assert np.isnan(error(errors({"x": np.full(3, np.nan)}, {"x": np.ones(3)})["x"]))


def transposed_conv(model):
    """A square convolution's weight with its in and out channels swapped (OIHW read as IOHW)."""
    conv = model.cnn.layer3[1].conv1
    conv.weight.data = conv.weight.data.transpose(0, 1).contiguous()


def batch_statistics(model):
    """BatchNorm normalising with each batch's own statistics instead of its running ones."""
    for m in model.cnn.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean = m.running_var = None


def swapped_gates(model):
    """The question LSTM's forget and output gates in each other's place (PyTorch orders i f g o, ONNX i o f c)."""
    lstm = model.net.text.lstm
    for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
        i, f, g, o = getattr(lstm, name).data.chunk(4)
        getattr(lstm, name).data = torch.cat([i, o, g, f])


@pytest.mark.parametrize("mistake", [transposed_conv, batch_statistics, swapped_gates])
def test_export_mistakes_are_refused(mistake, monkeypatch, tmp_path, capsys):
    config = SAAAConfig(backbone="resnet18", caffe=False, image_size=96, vision_features=512, tokens=31, answers=12)
    model = SAAA(config).eval()
    checkpoint, cnn = vqa_checkpoints.write(tmp_path, model, "saaa", n_words=30)
    cut = vqa_export.cut

    def mistaken_cut(model):
        wrong = copy.deepcopy(model)
        mistake(wrong)
        return cut(wrong)

    monkeypatch.setattr(vqa_export, "cut", mistaken_cut)
    out = tmp_path / "bundle"
    args = ["export", "saaa", "--checkpoint", str(checkpoint), "--cnn", str(cnn), "--out", str(out)]
    assert main([*args, "--image-size", "96", "--no-caffe"]) != 0
    message = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress lines
    assert "differs from the PyTorch reference" in message and "above --tolerance 1e-02" in message, message
    figure = float(message.split("reference by ")[1].split()[0])
    assert figure > 10 * TOLERANCE, message  # far from the boundary, not just above it
    assert not out.exists()
