"""The GPU path, where a GPU (and for the engines, TensorRT) is present; skipped elsewhere.

Each backend is compared with ONNX Runtime on the CPU over 64 held-out demo scenes, with tolerances:
most captions token for token the same, and the scores of those within a relative tolerance. Nothing
documents bit equality across devices and kernels, and a near-tie may flip under another rounding. One
pipeline meets every case in turn (batch sizes that change, remainder chunks, beams above the fused
step's 5, the unfused step), so graphs captured for one shape are replayed after other shapes ran."""

import threading

import numpy as np
import pytest

from glimpse import families
from glimpse.cli import main
from glimpse.demo import scenes
from glimpse.demo.bundles import PACKAGED, sat_bundle
from glimpse.demo.train_sat import IMAGE_SIZE
from glimpse.errors import GlimpseError
from glimpse.families.sat.pipeline import CaptionPipeline
from glimpse.runtime.cuda_graphs import MAX_GRAPHS, GraphCache

torch = pytest.importorskip("torch")
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
# (beam, batch size) in the order one pipeline meets them: 64 images at batch 24 end on a chunk of 16,
# at 5 on 4, at 7 on 1; beams 8 and 16 run the unfused step (the fused one has K = 5)
CASES = [(5, 16), (3, 24), (1, 16), (5, 5), (8, 12), (16, 7), (5, 16)]


def trt_missing():
    from glimpse.runtime.tensorrt import unavailable

    return unavailable()


needs_trt = pytest.mark.skipif(bool(trt_missing()), reason=str(trt_missing()))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """(bundle, 64 test scenes, {beam: their ONNX Runtime CPU captions})."""
    bundle = sat_bundle(PACKAGED, tmp_path_factory.mktemp("gpu") / "sat", log=lambda m: None)
    images = [s.image(IMAGE_SIZE) for s in scenes.scenes("test", 64)]
    cpu = CaptionPipeline(bundle)
    return bundle, images, {b: cpu(images, beam_size=b, batch_size=16) for b in sorted({b for b, _ in CASES})}


def assert_agree(got, want, min_tokens: float = 0.95, score_rtol: float = 1e-3, what=""):
    """At least ``min_tokens`` of the captions token for token ``want``'s, and those within ``score_rtol``."""
    same = [(g, w) for g, w in zip(got, want, strict=True) if g.tokens == w.tokens]
    assert len(same) >= min_tokens * len(want), (what, len(same), len(want))
    worst = max(abs(g.score - w.score) / max(1.0, abs(w.score)) for g, w in same)
    assert worst <= score_rtol, (what, worst)


def run_cases(pipe, images, want: dict, fused, **tolerance):
    """Every (beam, batch size) of CASES, in order, on one pipeline, against ``want`` {beam: captions}."""
    for beam, batch in CASES:
        got = pipe(images, beam_size=beam, batch_size=batch, fused=fused)
        assert_agree(got, want[beam], what=(beam, batch, fused), **tolerance)


def assert_bucketed(session):
    """Every captured step shape has power-of-two rows and beams, and the cache is bounded."""
    assert 0 < len(session.graphs) <= MAX_GRAPHS
    for shapes in session.graphs.keys():
        for shape in shapes:
            torch_key = len(shape) == 2 and isinstance(shape[1], torch.dtype)  # torch's keys hold (shape, dtype)
            dims = shape[0] if torch_key else shape
            assert dims[0] & (dims[0] - 1) == 0, shapes


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("cuda_graphs", [False, True])
@pytest.mark.parametrize("fused", [False, None])
def test_torch_cuda_agrees_with_the_cpu(demo, cuda_graphs, fused):
    bundle, images, cpu = demo
    pipe = CaptionPipeline(bundle, backend="torch", device="cuda", cuda_graphs=cuda_graphs)
    run_cases(pipe, images, cpu, fused)
    if cuda_graphs:
        assert_bucketed(pipe.sessions["step" if fused is False else "step_fused"])


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


@pytest.fixture(scope="module")
def engines(demo):
    """{precision: bundle with its engines built}."""
    from glimpse.export.precision import quantize
    from glimpse.runtime import tensorrt

    bundle, images, _ = demo
    pixels = np.stack([bundle.preprocess(im) for im in images[:8]])
    fp16 = quantize(bundle, "fp16", pixels, families.recorder(bundle, []), log=lambda m: None)
    built = {"fp32": bundle, "fp16": fp16}
    for precision, b in built.items():
        plans = tensorrt.build(b, precision, log=lambda m: None)
        assert {p.name.split(".")[0] for p in plans} == set(b.graphs) and all(p.stat().st_size for p in plans)
        assert tensorrt.build(b, precision, log=lambda m: None) == plans  # cached: nothing rebuilt
    return built


@pytest.mark.trt
@needs_trt
def test_engine_cache_is_keyed_by_gpu_model_and_built_lean(engines):
    import tensorrt as trt

    from glimpse.runtime import tensorrt

    bundle = engines["fp32"]
    plan = tensorrt.engine_path(bundle, "step", "fp32")
    major, minor = torch.cuda.get_device_capability()
    name = torch.cuda.get_device_name().lower().replace(" ", "-")
    assert plan.parent.name.startswith(f"sm{major}{minor}-{name}") and (plan.parent / "timing.cache").is_file()
    session = CaptionPipeline(bundle, backend="tensorrt", device="cuda").sessions["step"]
    assert session.engine.profiling_verbosity == trt.ProfilingVerbosity.LAYER_NAMES_ONLY


@pytest.mark.trt
@needs_trt
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("fused", [False, None])
def test_tensorrt_engines_agree_with_the_cpu(demo, engines, precision, fused):
    bundle, images, cpu = demo
    bundle = engines[precision]
    if precision == "fp32":
        want, tolerance = cpu, {}
    else:  # the same fp16 graphs on ONNX Runtime; fp16 kernels round otherwise, so looser
        reference = CaptionPipeline(bundle, precision=precision)
        want = {b: reference(images, beam_size=b, batch_size=16) for b in cpu}
        tolerance = {"min_tokens": 0.9, "score_rtol": 2e-2}
    pipe = CaptionPipeline(bundle, backend="tensorrt", device="cuda", precision=precision)
    run_cases(pipe, images, want, fused, **tolerance)
    assert_bucketed(pipe.sessions["step" if fused is False else "step_fused"])


def step_feeds(pipe, images, rows: int, beam: int, seed: int) -> dict:
    """The unfused step's inputs for ``rows`` scenes at ``beam`` beams (numpy, from the pipeline's own
    encoder and init), with random previous words."""
    pixels = np.stack([pipe.preprocess(im) for im in images[:rows]])
    features = pipe.sessions["encoder"].run({"image": pixels})["features"]
    init = pipe.sessions["init"].run({"features": features})
    tokens = np.random.default_rng(seed).integers(0, len(pipe.vocab), (rows, beam))
    h, c = (np.repeat(init[n][:, None], beam, axis=1) for n in ("h", "c"))
    return {"features": features, "att_proj": init["att_proj"], "tokens": tokens, "h": h, "c": c}


@pytest.mark.trt
@needs_trt
def test_a_captured_shape_replays_right_after_other_shapes_ran(demo, engines):
    """TensorRT's rule: one execution context per captured graph. Shape A, captured, then B (and a shape
    that runs uncaptured), then A again: A's replay still gives ONNX Runtime's numbers."""
    bundle, images, _ = demo
    pipe = CaptionPipeline(bundle, backend="tensorrt", device="cuda")
    cpu = CaptionPipeline(bundle).sessions["step"]
    session = pipe.sessions["step"]
    a, b, c = step_feeds(pipe, images, 8, 5, 0), step_feeds(pipe, images, 3, 2, 1), step_feeds(pipe, images, 11, 7, 2)
    want = {k: cpu.run(f) for k, f in (("a", a), ("b", b))}
    for name, feeds in (("a", a), ("a", a), ("b", b), ("b", b), ("c", c), ("a", a), ("b", b), ("a", a)):
        got = session.run(feeds)
        if name in want:
            for out, w in want[name].items():
                np.testing.assert_allclose(got[out], w, rtol=1e-3, atol=1e-4 * np.abs(w).max(), err_msg=out)
    assert len(session.graphs) == 2  # a (8 x 8) and b (4 x 2) captured; c, seen once, ran uncaptured


@pytest.mark.trt
@needs_trt
def test_a_bounded_cache_evicts_and_still_captions_right(demo, engines):
    bundle, images, cpu = demo
    pipe = CaptionPipeline(bundle, backend="tensorrt", device="cuda")
    step = pipe.sessions["step"]
    step.graphs = GraphCache(size=3, release=lambda call: step.stream.synchronize())
    for beam, batch in CASES:
        assert_agree(pipe(images, beam_size=beam, batch_size=batch, fused=False), cpu[beam], what=(beam, batch))
        assert len(step.graphs) <= 3


@pytest.mark.trt
@needs_trt
def test_capture_in_one_thread_lets_other_threads_allocate(demo, engines):
    """Captures are thread-local, as trtexec's: a capture does not fail another thread's cudaMalloc, as a
    global one would (a served replica runs each model's batches in threads of its own)."""
    cudart = pytest.importorskip("cuda.bindings.runtime")
    bundle, images, cpu = demo
    pipe = CaptionPipeline(bundle, backend="tensorrt", device="cuda")
    stop, pointers, errors = threading.Event(), [], []

    def allocate():  # raw cudaMalloc calls, beside the captures of the main thread
        while not stop.is_set() and len(pointers) < 20_000:
            err, pointer = cudart.cudaMalloc(1 << 16)
            (pointers if err == cudart.cudaError_t.cudaSuccess else errors).append(pointer if not err else err)

    other = threading.Thread(target=allocate)
    other.start()
    try:
        got = pipe(images, beam_size=3, batch_size=24, fused=False)
    finally:
        stop.set()
        other.join()
        for pointer in pointers:
            cudart.cudaFree(pointer)
    assert not errors and pointers and len(pipe.sessions["step"].graphs) > 0
    assert_agree(got, cpu[3])


@pytest.mark.trt
@needs_trt
def test_a_beam_or_batch_outside_the_profile_fails_in_one_line(demo, engines, capsys, tmp_path):
    bundle, images, _ = demo
    pipe = CaptionPipeline(bundle, backend="tensorrt", device="cuda")
    with pytest.raises(GlimpseError, match="beam 17 is outside the TensorRT engine's profile"):
        pipe(images[:2], beam_size=17, fused=False)
    with pytest.raises(GlimpseError, match="batch 65 is outside the TensorRT engine's profile"):
        pipe(images[:1] * 65, batch_size=65)
    image = tmp_path / "scene.png"
    images[0].save(image)
    argv = ["caption", str(bundle.path), str(image), "--backend", "tensorrt", "--device", "cuda", "--beam-size", "17"]
    assert main(argv) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("glimpse: error: step: beam 17 is outside the TensorRT engine's profile (1 to 16)")


@pytest.mark.trt
@needs_trt
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="one CUDA device")
def test_engines_run_on_the_device_asked_for_not_the_current_one(demo, engines):
    bundle, images, cpu = demo
    from glimpse.runtime import tensorrt

    tensorrt.build(bundle, "fp32", log=lambda m: None, device="cuda:1")
    torch.cuda.set_device(0)
    pipe = CaptionPipeline(bundle, backend="tensorrt", device="cuda:1")
    assert pipe.sessions["step"].device == "cuda:1"
    assert_agree(pipe(images, beam_size=3, batch_size=16, fused=False), cpu[3])


@pytest.mark.trt
@needs_trt
def test_a_data_dependent_output_is_refused_in_one_line(tmp_path):
    import onnx
    from onnx import TensorProto, helper
    from polygraphy.backend.trt import EngineBytesFromNetwork, NetworkFromOnnxPath

    from glimpse.runtime.tensorrt import TensorRTSession

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.INT64, [2, "n"])
    graph = helper.make_graph([helper.make_node("NonZero", ["x"], ["y"])], "nonzero", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "nonzero.onnx")
    plan = tmp_path / "nonzero.plan"
    plan.write_bytes(bytes(EngineBytesFromNetwork(NetworkFromOnnxPath(str(tmp_path / "nonzero.onnx")))()))
    manifest = {"inputs": [{"name": "x", "shape": [1, 4]}], "outputs": [{"name": "y", "shape": [2, "n"]}]}
    session = TensorRTSession(plan, manifest, "nonzero", "cuda")
    with pytest.raises(GlimpseError, match="^nonzero: output 'y' has a data-dependent shape"):
        session.run({"x": np.ones((1, 4), np.float32)})


@pytest.mark.trt
@needs_trt
def test_a_graph_tensorrt_cannot_parse_fails_in_one_line(demo, tmp_path, capsys):
    import json
    import shutil

    from glimpse.bundle import sha256_of

    bundle, _, _ = demo
    broken = tmp_path / "broken"
    shutil.copytree(bundle.path, broken, ignore=shutil.ignore_patterns("engines"))
    manifest = json.loads((broken / "manifest.json").read_text())
    encoder = broken / manifest["graphs"]["encoder"]["file"]
    encoder.write_bytes(b"not an onnx graph")
    manifest["graphs"]["encoder"]["sha256"] = sha256_of(encoder)
    (broken / "manifest.json").write_text(json.dumps(manifest))
    assert main(["build", str(broken)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"glimpse: error: {encoder}: TensorRT could not build an engine (")


@pytest.mark.skipif(not trt_missing(), reason="TensorRT and a GPU are here")
def test_without_tensorrt_build_and_backend_say_so_in_one_line(small_bundle, capsys):
    assert main(["build", str(small_bundle), "--precision", "fp32"]) == 2
    assert main(["caption", str(small_bundle), "x.jpg", "--backend", "tensorrt", "--device", "cuda"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and all(line == f"glimpse: error: {trt_missing()}" for line in lines)
    assert not (small_bundle / "engines").exists()
