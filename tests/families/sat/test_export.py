"""The sat bundle: written atomically, described fully, and every graph equal to the tutorial's
arithmetic on ONNX Runtime."""

import json
import re

import numpy as np
import pytest
import torch

from glimpse.bundle import Bundle
from glimpse.cli import main
from glimpse.errors import BundleError, ExportError
from glimpse.families.sat.checkpoint import import_sat
from glimpse.families.sat.export import export_sat
from glimpse.families.sat.model import GRAPH_IO
from glimpse.runtime.session import OnnxRuntimeSession


def test_manifest_describes_the_bundle(small_bundle):
    b = Bundle(small_bundle)
    m = b.manifest
    assert b.family == "sat" and m["format_version"] == 1
    assert set(b.graphs) == {"encoder", "init", "step", "step_fused"}
    fused = {v["name"]: v["shape"] for v in b.graphs["step_fused"]["inputs"] + b.graphs["step_fused"]["outputs"]}
    assert fused["tokens"] == fused["parents"] == fused["next_scores"] == ["batch", 5]  # K fixed for TopK
    assert fused["width"] == fused["next_width"] == ["batch"] and fused["h_next"] == ["batch", 5, 512]
    step = b.graphs["step"]
    shapes = {v["name"]: v["shape"] for v in step["inputs"] + step["outputs"]}
    assert shapes["tokens"] == ["batch", "beam"] and shapes["h"] == ["batch", "beam", 512]
    assert shapes["logprobs"] == ["batch", "beam", 44] and shapes["alpha"] == ["batch", "beam", 196]
    assert {v["name"]: v["dtype"] for v in step["inputs"]}["tokens"] == "int64"
    for g in b.graphs.values():
        assert b.graph_path(g["file"].removesuffix(".onnx")).is_file()
        assert max(e["max_rel"] for e in g["max_error"].values()) < 1e-4
    assert m["special_tokens"]["start"] == 42 and len(b.vocab) == 44
    assert {"torch", "onnx", "onnxruntime", "opset", "glimpse"} <= set(m["tools"])


def test_graphs_run_with_other_batch_and_beam_sizes(small_bundle):
    b = Bundle(small_bundle)
    enc = OnnxRuntimeSession(b.graph_path("encoder"))
    init = OnnxRuntimeSession(b.graph_path("init"))
    step = OnnxRuntimeSession(b.graph_path("step"))
    features = enc.run({"image": np.random.default_rng(0).standard_normal((3, 3, 256, 256), np.float32)})["features"]
    out = init.run({"features": features})
    for k in (1, 5):
        r = step.run(
            {
                "features": features,
                "att_proj": out["att_proj"],
                "tokens": np.zeros((3, k), np.int64),
                "h": np.repeat(out["h"][:, None], k, 1),
                "c": np.repeat(out["c"][:, None], k, 1),
            }
        )
        assert r["logprobs"].shape == (3, k, 44)
        np.testing.assert_allclose(np.exp(r["logprobs"]).sum(-1), 1, rtol=1e-5)


def test_tampered_graph_is_detected(small_bundle, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(small_bundle, copy)
    with open(copy / "init.onnx", "r+b") as f:
        f.seek(-8, 2)
        f.write(b"\x00" * 8)
    with pytest.raises(BundleError, match=r"init.onnx: sha256 does not match"):
        Bundle(copy).graph_path("init")
    (copy / "step.onnx").unlink()
    with pytest.raises(BundleError, match=r"step.onnx: graph file missing"):
        Bundle(copy).graph_path("step")


def export_argv(checkpoint, out):
    return ["export", "sat", "--checkpoint", str(checkpoint[0]), "--word-map", str(checkpoint[1]), "--out", str(out)]


def test_refuses_to_overwrite_a_directory_that_is_not_a_bundle(small_checkpoint, tmp_path, capsys):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    assert main(export_argv(small_checkpoint, out)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "precious: exists and is not a bundle" in err
    assert (out / "thesis.tex").read_text() == "years of work"


def test_cli_export_and_inspect(small_checkpoint, tmp_path, capsys, photo):
    out = tmp_path / "bundle"
    argv = export_argv(small_checkpoint, out) + ["--images", str(photo)]
    assert main(argv) == 0
    assert "checked  step.onnx" in capsys.readouterr().err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["check"]["images"] == 3  # two noise images and the photograph
    assert manifest["source"]["checkpoint"].startswith("BEST_checkpoint")
    assert main(argv) == 0  # an existing bundle is replaced
    assert main(["inspect", str(out)]) == 0
    text = capsys.readouterr().out
    assert re.search(r"\n  in   tokens +int64 +\[batch, beam\]\n", text)
    assert re.search(r"\nstep  step\.onnx .* fp32  error \d\.\de-\d\d\n", text)


def test_failed_check_leaves_nothing(small_checkpoint, tmp_path):
    model, vocab, preprocess = import_sat(*small_checkpoint)
    out = tmp_path / "b"
    with pytest.raises(ExportError, match="differs from the PyTorch reference"):
        export_sat(model, vocab, preprocess, out, tolerance=1e-12, log=lambda m: None)
    assert not out.exists() and list(tmp_path.iterdir()) == []


@torch.no_grad()
def test_fused_check_catches_wrong_bookkeeping():
    """check_fused holds a fused step to the reference; one that finishes beams on the wrong word fails."""
    from glimpse.families.sat.export import check_fused
    from glimpse.families.sat.model import DecoderWithAttention, FusedStepGraph, StepGraph
    from glimpse.runtime.torch_backend import TorchSession

    torch.manual_seed(0)
    decoder = DecoderWithAttention(16, 8, 16, 30, encoder_dim=12).eval()
    n, k, p = 3, 4, 5
    feeds = {
        "features": torch.rand(n, p, 12),
        "tokens": torch.randint(0, 30, (n, k)),
        "h": torch.randn(n, k, 16),
        "c": torch.randn(n, k, 16),
    }
    feeds["att_proj"] = decoder.attention.encoder_att(feeds["features"])
    logprobs, h, c, alpha = StepGraph(decoder)(**feeds)
    want = {"logprobs": logprobs, "h_next": h, "c_next": c, "alpha": alpha}
    feeds = {name: x.numpy() for name, x in feeds.items()}

    def fused(end):
        return TorchSession(FusedStepGraph(decoder, end), *GRAPH_IO["step_fused"])

    chosen = int(
        fused(0).run({**feeds, "scores": np.zeros((n, k), np.float32), "width": np.full(n, k)})["next_tokens"][0, 0]
    )
    right = check_fused(fused(chosen), feeds, want, end=chosen)
    assert max(e["max_rel"] for e in right.values()) < 1e-6
    wrong = check_fused(fused((chosen + 1) % 30), feeds, want, end=chosen)
    assert wrong["bookkeeping"]["max_abs"] > 0
