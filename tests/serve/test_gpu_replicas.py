"""What each replica of glimpse serve asks Ray for: a CPU, and with --device cuda a GPU or a share of one,
so that Ray places it on a GPU node and two replicas share a GPU only when asked to. No Ray is started."""

import pytest

from glimpse.cli import main
from glimpse.errors import GlimpseError

pytest.importorskip("fastapi")
from glimpse.serve.app import replica_options  # noqa: E402  (FastAPI: the serve extra)


def test_replicas_on_the_cpu_ask_for_no_gpu():
    assert replica_options("cpu", None) == {"num_cpus": 1, "num_gpus": 0.0}


def test_replicas_on_cuda_ask_for_a_gpu_or_a_share_of_one():
    assert replica_options("cuda", None) == {"num_cpus": 1, "num_gpus": 1.0}
    assert replica_options("cuda", 0.5)["num_gpus"] == 0.5
    assert replica_options("cuda:0", 0.25)["num_gpus"] == 0.25


@pytest.mark.parametrize(
    "device, gpus, message",
    [
        ("cpu", 0.5, "asks Ray for GPUs, but the device is cpu"),
        ("cuda", 0, "must be above 0 and at most 1"),
        ("cuda", 2, "must be above 0 and at most 1 (a replica runs on one GPU), not 2"),
        ("cuda:1", 1, "a replica sees only the GPU Ray gives it, as cuda: serve with --device cuda, not cuda:1"),
    ],
)
def test_gpu_options_that_cannot_work_are_refused_in_one_line(device, gpus, message):
    with pytest.raises(GlimpseError, match=message.replace("(", r"\(").replace(")", r"\)")):
        replica_options(device, gpus)


def test_serve_refuses_a_gpu_share_on_the_cpu_before_starting_ray(capsys):
    assert main(["serve", "sat-bundle", "--gpus-per-replica", "0.5"]) == 2  # refused before the bundle is read
    line = capsys.readouterr().err.splitlines()[-1]  # after the "serving ..." line
    assert line == "glimpse: error: --gpus-per-replica 0.5 asks Ray for GPUs, but the device is cpu (--device cuda)"


def test_serve_refuses_a_batch_the_tensorrt_engines_cannot_take(capsys):
    argv = ["serve", "sat-bundle", "--backend", "tensorrt", "--device", "cuda", "--max-batch-size", "65"]
    assert main(argv) == 2
    assert "--max-batch-size 65 is over the TensorRT engines' batch of 64" in capsys.readouterr().err
