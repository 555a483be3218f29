"""The rules of the GPU path that need no GPU: shape buckets and padding, profile bounds that fail in one
line, the CUDA-graph cache, the engine cache key and device choice. Pure functions lifted out of the
TensorRT and CUDA-graph layers, run here on the CPU; nothing stands in for TensorRT."""

import numpy as np
import pytest
import torch
from search_tables import RandomTree

from glimpse.cli import main
from glimpse.errors import BundleError, GlimpseError
from glimpse.runtime import profiles, tensorrt
from glimpse.runtime.cuda_graphs import GraphCache, pad, unpad
from glimpse.runtime.pipeline import open_sessions
from glimpse.runtime.search import beam_search

# the manifest shapes of sat's unfused step (B images, K beams)
STEP = {
    "inputs": [
        {"name": "features", "shape": ["batch", 196, 512]},
        {"name": "tokens", "shape": ["batch", "beam"]},
        {"name": "h", "shape": ["batch", "beam", 512]},
    ],
    "outputs": [
        {"name": "logprobs", "shape": ["batch", "beam", 100]},
        {"name": "h_next", "shape": ["batch", "beam", 512]},
    ],
}
DIMS = {v["name"]: v["shape"] for v in STEP["inputs"] + STEP["outputs"]}
HIGH = {"batch": 64, "beam": 16}
BOUNDS = {n: (low, high) for n, (low, _, high) in profiles.profile(STEP["inputs"]).items()}  # {input: (min, max)}


def test_buckets_are_powers_of_two_within_the_profile():
    assert [profiles.bucket(n, 64) for n in (1, 2, 3, 5, 8, 9, 33, 64)] == [1, 2, 4, 8, 8, 16, 64, 64]
    assert profiles.bucket(9, 12) == 12  # capped at the profile's max, never below the size
    assert all(n <= profiles.bucket(n, 16) <= 16 for n in range(1, 17))


def test_padding_sizes_follow_the_named_axes():
    shapes = {"features": (5, 196, 512), "tokens": (5, 3), "h": (5, 3, 512)}
    sizes = profiles.axis_sizes(shapes, DIMS)
    assert sizes == {"batch": 5, "beam": 3}
    assert profiles.padded_sizes(sizes, HIGH) == {"batch": 8, "beam": 4}
    assert profiles.padded_sizes({"words": 7, "batch": 3}, HIGH) == {"batch": 4}  # a length axis is never padded


def test_a_graph_with_an_unnamed_output_axis_is_not_padded():
    assert profiles.padded_axes(STEP) == ("batch", "beam")
    derived = {"outputs": [{"name": "flat", "shape": ["batch*beam", 100]}]}
    assert profiles.padded_axes(derived) == ()


def test_shapes_outside_the_profile_fail_in_one_line():
    ok = {"features": (64, 196, 512), "tokens": (64, 16), "h": (64, 16, 512)}
    profiles.check_in_profile("step", ok, DIMS, BOUNDS)
    beam = {"features": (2, 196, 512), "tokens": (2, 17), "h": (2, 17, 512)}
    with pytest.raises(GlimpseError) as e:
        profiles.check_in_profile("step", beam, DIMS, BOUNDS)
    assert (
        str(e.value) == "step: beam 17 is outside the TensorRT engine's profile (1 to 16): choose a smaller beam size"
    )
    batch = {"features": (65, 196, 512), "tokens": (65, 1), "h": (65, 1, 512)}
    with pytest.raises(GlimpseError, match=r"^step: batch 65 is outside .* \(1 to 64\): choose a smaller batch size$"):
        profiles.check_in_profile("step", batch, DIMS, BOUNDS)
    fixed = {"features": (2, 49, 512), "tokens": (2, 1), "h": (2, 1, 512)}
    with pytest.raises(GlimpseError, match=r"^step: size 49 of axis 1 of 'features' is outside .* \(196 to 196\)$"):
        profiles.check_in_profile("step", fixed, DIMS, BOUNDS)
    with pytest.raises(GlimpseError, match="'tokens' has 3 axes, the engine takes 2"):
        profiles.check_in_profile("step", {**ok, "tokens": (1, 1, 1)}, DIMS, BOUNDS)


def test_pad_repeats_the_last_slice_and_unpad_cuts_it_off():
    h = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4)
    padded = pad(h, ["batch", "beam", 4], {"batch": 4, "beam": 4})
    assert padded.shape == (4, 4, 4)
    assert torch.equal(padded[:2, :3], h) and torch.equal(padded[2:, :3], h[1:].expand(2, 3, 4))
    assert torch.equal(padded[:, 3], padded[:, 2])  # real values only: no zero or NaN rows
    assert torch.equal(unpad(padded, ["batch", "beam", 4], {"batch": 2, "beam": 3}), h)
    assert pad(h, ["batch", "beam", 4], {"batch": 2}) is h  # nothing to pad: the same tensor


def test_a_padded_search_finds_what_the_unpadded_one_does_in_a_few_shapes():
    """Beam search over a step that is computed per image and per beam, as every exported step is: run on
    inputs padded to the buckets and cut back, it gives the same captions, while its batch shrinks as
    images finish and its beams as hypotheses end, and it meets a handful of shapes instead of dozens."""
    tree, images, beam = RandomTree(3, end_bias=1.0), 24, 5
    start = {"node": np.arange(images, dtype=np.int64)[:, None] * 37 % 997}  # (B, 1): a different start each
    raw, padded_keys = set(), set()

    def padded_step(tokens, state, rows):
        dims = {"tokens": ["batch", "beam"], "node": ["batch", "beam"], "logprobs": ["batch", "beam", 12]}
        shapes = {"tokens": tokens.shape, "node": state["node"].shape}
        sizes = profiles.axis_sizes(shapes, dims)
        padding = profiles.padded_sizes(sizes, HIGH)
        t, n = (pad(torch.from_numpy(x), dims[k], padding) for k, x in (("tokens", tokens), ("node", state["node"])))
        raw.add(tokens.shape)
        padded_keys.add(tuple(t.shape))
        logprobs, new, _ = tree.step(t.numpy(), {"node": n.numpy()})
        cut = {
            k: unpad(torch.from_numpy(v), dims[k], sizes).numpy()
            for k, v in (("logprobs", logprobs), ("node", new["node"]))
        }
        return cut["logprobs"], {"node": cut["node"]}, None

    want = beam_search(tree.step, start, images, tree.start, tree.end, beam_size=beam)
    got = beam_search(padded_step, start, images, tree.start, tree.end, beam_size=beam)
    assert [(r.best.tokens, r.best.score) for r in got] == [(r.best.tokens, r.best.score) for r in want]
    assert len(raw) > 2 * len(padded_keys)
    assert {k[0] for k in padded_keys} <= {1, 2, 4, 8, 16, 32} and {k[1] for k in padded_keys} <= {1, 2, 4, 8}


def test_graph_cache_captures_a_shape_when_it_comes_back_and_keeps_the_latest():
    released, made = [], []

    def capture(key):
        made.append(key)
        return f"graph {key}"

    cache = GraphCache(size=2, after=2, release=released.append)
    assert cache.get("a", lambda: capture("a")) is None  # first call: uncaptured
    assert cache.get("a", lambda: capture("a")) == "graph a"
    assert cache.get("a", lambda: capture("a")) == "graph a" and made == ["a"]
    for key in ("b", "b", "c", "c"):
        cache.get(key, lambda k=key: capture(k))
    assert len(cache) == 2 and cache.keys() == ["b", "c"] and released == ["graph a"]  # least recently used
    cache.get("b", lambda: capture("b"))  # b used again: c is now the oldest
    cache.get("d", lambda: capture("d"))
    cache.get("d", lambda: capture("d"))
    assert cache.keys() == ["b", "d"] and released == ["graph a", "graph c"]


def test_graph_cache_keeps_nothing_when_capture_fails_and_forgets_one_off_shapes():
    cache = GraphCache(size=2, after=1)

    def fail():
        raise RuntimeError("operation not permitted when stream is capturing")

    with pytest.raises(RuntimeError):
        cache.get("a", fail)
    assert len(cache) == 0
    one_off = GraphCache(size=2, after=2)
    for i in range(100):  # an m2 step's growing cache: each shape once
        assert one_off.get(i, lambda: "graph") is None
    assert len(one_off.seen) <= 4 * 2 + 1 and len(one_off) == 0


def test_engine_cache_key_names_the_gpu_model_and_tensorrt(tmp_path):
    h100 = tensorrt.engine_dir(tmp_path, (9, 0), "NVIDIA H100 80GB HBM3", "11.1.0.106")
    h200 = tensorrt.engine_dir(tmp_path, (9, 0), "NVIDIA H200", "11.1.0.106")
    assert h100 == tmp_path / "engines" / "sm90-nvidia-h100-80gb-hbm3-trt11.1.0.106"
    assert h200.name == "sm90-nvidia-h200-trt11.1.0.106" and h100 != h200  # same SM, another model
    assert tensorrt.engine_dir(tmp_path, (9, 0), "NVIDIA H200", "10.13.3.9") != h200
    assert tensorrt.plan_name("step", "fp16", "ab" * 32) == "step.fp16.abababababababab.plan"


def test_devices_tensorrt_takes():
    assert tensorrt.device_index("cuda") is None and tensorrt.device_index("cuda:1") == 1
    for bad in ("cpu", "cuda:x", "gpu", "mps"):
        with pytest.raises(GlimpseError, match=f"runs on an NVIDIA GPU: --device cuda or cuda:N, not '{bad}'"):
            tensorrt.device_index(bad)


def test_tensorrt_on_the_cpu_is_refused_not_moved_to_cuda():
    with pytest.raises(GlimpseError, match="runs on an NVIDIA GPU.* not 'cpu'"):
        open_sessions(None, ["step"], "tensorrt", "cpu", None)


def test_build_for_the_cpu_says_so_in_one_line(capsys):
    assert main(["build", "no-such-bundle", "--device", "cpu"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line == "glimpse: error: the tensorrt backend runs on an NVIDIA GPU: --device cuda or cuda:N, not 'cpu'"


def test_tensorrt_types_map_to_torch_or_fail_in_one_line():
    names = {"FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT8": "int8", "UINT8": "uint8"}
    assert all(tensorrt.torch_dtype("g", "x", k) == v for k, v in names.items())
    assert all(hasattr(torch, v) for v in tensorrt.TORCH_DTYPES.values())
    with pytest.raises(BundleError, match="^g: tensor 'x' is FP8, which the tensorrt backend cannot bind$"):
        tensorrt.torch_dtype("g", "x", "FP8")


def test_data_dependent_outputs_are_refused():
    assert tensorrt.output_shape("head", "logits", (2, 10)) == (2, 10)
    with pytest.raises(GlimpseError, match=r"^head: output 'boxes' has a data-dependent shape \(2, -1, 4\)"):
        tensorrt.output_shape("head", "boxes", (2, -1, 4))


def test_polygraphy_errors_become_one_line():
    error = RuntimeError("Failed to parse ONNX model.\n  In node 3 (parseGraph):\n    INVALID_NODE")
    assert tensorrt.one_line(error) == "Failed to parse ONNX model. In node 3 (parseGraph): INVALID_NODE"
