"""The GPU path, where a GPU (and for the engines, TensorRT) is present; skipped elsewhere: the torch
backend on CUDA, eager and CUDA-graph captured, fused or not, and TensorRT engines built from the demo
bundle, each token-identical to ONNX Runtime on the CPU over held-out demo scenes."""

import numpy as np
import pytest

from glimpse import families
from glimpse.demo import scenes
from glimpse.demo.bundles import PACKAGED, sat_bundle
from glimpse.demo.train_sat import IMAGE_SIZE
from glimpse.families.sat.pipeline import CaptionPipeline

torch = pytest.importorskip("torch")
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def trt_missing():
    from glimpse.runtime.tensorrt import unavailable

    return unavailable()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """(bundle, 64 test scenes, their ONNX Runtime CPU captions at beams 1, 3 and 5)."""
    bundle = sat_bundle(PACKAGED, tmp_path_factory.mktemp("gpu") / "sat", log=lambda m: None)
    images = [s.image(IMAGE_SIZE) for s in scenes.scenes("test", 64)]
    cpu = CaptionPipeline(bundle)
    return bundle, images, {b: [c.tokens for c in cpu(images, beam_size=b, batch_size=16)] for b in (1, 3, 5)}


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("cuda_graphs", [False, True])
@pytest.mark.parametrize("fused", [False, True])
def test_torch_cuda_equals_the_cpu(demo, cuda_graphs, fused):
    bundle, images, cpu = demo
    pipe = CaptionPipeline(bundle, backend="torch", device="cuda", cuda_graphs=cuda_graphs)
    for beam, want in cpu.items():
        for batch in (1, 16):
            got = [c.tokens for c in pipe(images, beam_size=beam, batch_size=batch, fused=fused)]
            assert got == want, (beam, batch)


@pytest.mark.gpu
@needs_gpu
def test_fused_search_on_cuda_reads_back_only_widths(demo):
    """The fused step's tokens, parents and scores stay on the device until the search ends."""
    bundle, images, _ = demo
    pipe = CaptionPipeline(bundle, backend="torch", device="cuda")
    session, hosted = pipe.sessions["step_fused"], []
    host = session.host
    session.host = lambda x: hosted.append(tuple(x.shape)) or host(x)
    (result,) = pipe.decode(np.stack([pipe.preprocess(images[0])]), beam_size=5)
    steps = result.steps
    assert hosted[:steps] == [(1,)] * steps  # a (B,) width per step; the table once, at the end


@pytest.mark.trt
@pytest.mark.skipif(bool(trt_missing()), reason=str(trt_missing()))
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_engines_build_and_caption(demo, precision):
    from glimpse.export.precision import quantize
    from glimpse.runtime import tensorrt

    bundle, images, cpu = demo
    if precision != "fp32":
        pixels = np.stack([bundle.preprocess(im) for im in images[:8]])
        bundle = quantize(bundle, precision, pixels, families.recorder(bundle, []), log=lambda m: None)
    plans = tensorrt.build(bundle, precision, log=lambda m: None)
    assert {p.name.split(".")[0] for p in plans} == set(bundle.graphs) and all(p.stat().st_size for p in plans)
    assert (plans[0].parent / "timing.cache").is_file()
    assert tensorrt.build(bundle, precision, log=lambda m: None) == plans  # cached: nothing rebuilt
    pipe = CaptionPipeline(bundle, backend="tensorrt", device="cuda", precision=precision)
    reference = CaptionPipeline(bundle, precision=precision)  # the same graphs on ONNX Runtime, CPU
    for beam in (1, 3, 5):
        got = [c.tokens for c in pipe(images, beam_size=beam, batch_size=16)]
        want = cpu[beam] if precision == "fp32" else [c.tokens for c in reference(images, beam_size=beam)]
        agree = sum(a == b for a, b in zip(got, want))
        # fp32 engines (TF32 off) compute what ONNX Runtime does; fp16 kernels may break a near-tie otherwise
        assert agree == len(images) if precision == "fp32" else agree >= 0.95 * len(images), (beam, agree)


@pytest.mark.skipif(not trt_missing(), reason="TensorRT and a GPU are here")
def test_without_tensorrt_build_and_backend_say_so_in_one_line(small_bundle, capsys):
    from glimpse.cli import main

    assert main(["build", str(small_bundle), "--precision", "fp32"]) == 2
    assert main(["caption", str(small_bundle), "x.jpg", "--backend", "tensorrt", "--device", "cuda"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and all(line == f"glimpse: error: {trt_missing()}" for line in lines)
    assert not (small_bundle / "engines").exists()
