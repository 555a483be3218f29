"""The torch backend: the reference modules' inference cut behind the Session interface, CPU or CUDA.

It runs exactly the modules the ONNX graphs were exported from, with the weights the bundle keeps in
weights.pt (a plain state dict, loaded with ``weights_only=True``).
"""

from __future__ import annotations

import numpy as np

from glimpse.bundle import Bundle
from glimpse.errors import BackendUnavailable, BundleError
from glimpse.runtime.session import Session


class TorchSession(Session):
    def __init__(self, module, inputs: list[str], outputs: list[str], device: str = "cpu"):
        import torch

        self.torch = torch
        self.module = module.to(device).eval()
        self.input_names, self.output_names, self.device = inputs, outputs, device

    def run(self, inputs):
        torch = self.torch
        with torch.inference_mode():
            args = [torch.from_numpy(np.ascontiguousarray(inputs[n])).to(self.device) for n in self.input_names]
            out = self.module(*args)
        out = out if isinstance(out, tuple) else (out,)
        return {n: t.cpu().numpy() for n, t in zip(self.output_names, out)}


def build_model(family: str, config: dict):
    """A family's reference module, untrained, from a bundle's config."""
    from glimpse.models import mdan, rdan, saaa, san, sat

    models = {
        "sat": (sat.SATConfig, sat.ShowAttendTell),
        "saaa": (saaa.SAAAConfig, saaa.SAAA),
        "san": (san.SANConfig, san.SAN),
        "rdan": (rdan.RDANConfig, rdan.RDAN),
        "mdan": (mdan.MDANConfig, mdan.MDAN),
    }
    if family not in models:
        raise BundleError(f"the torch backend does not run family '{family}' yet")
    config_class, model_class = models[family]
    return model_class(config_class(**config))


def torch_sessions(bundle: Bundle, names: list[str], device: str = "cpu", threads: int | None = None) -> dict:
    try:
        import torch
    except ImportError:
        raise BackendUnavailable("the torch backend needs torch (pip install 'glimpse[export]')") from None
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BackendUnavailable(f"device {device}: torch sees no CUDA device here")
    if threads:
        torch.set_num_threads(threads)
    model = build_model(bundle.family, bundle.config)
    state = torch.load(bundle.file_path("weights"), map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    model.eval()
    graphs = model.graphs()
    return {
        n: TorchSession(
            graphs[n],
            [v["name"] for v in bundle.graphs[n]["inputs"]],
            [v["name"] for v in bundle.graphs[n]["outputs"]],
            device,
        )
        for n in names
    }
