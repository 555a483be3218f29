"""Checkpoints are loaded through an allow-list: a pickle naming anything else is refused unrun."""

import pickle

import pytest
import torch

from glimpse.errors import CheckpointError, UnsafePickleError
from glimpse.export.unpickler import safe_load, state_dict_of


class Payload:
    """Unpickling this runs a shell command with plain pickle."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_plain_pickle_would_run_the_payload(tmp_path):
    """The payload is real: plain pickle runs it (so the refusal below means something)."""
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()


@pytest.mark.parametrize("container", ["torch.save", "raw pickle"])
def test_malicious_checkpoint_is_refused_without_running(tmp_path, container):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth.tar"
    state = {"encoder": Payload(marker), "decoder": {}}
    if container == "torch.save":
        torch.save(state, path)
    else:
        path.write_bytes(pickle.dumps(state))
    with pytest.raises(UnsafePickleError, match=r"evil\.pth\.tar: refers to (posix|os)\.system"):
        safe_load(path)
    assert not marker.exists()


def test_builtins_eval_is_refused(tmp_path):
    path = tmp_path / "eval.pkl"
    # GLOBAL builtins.eval, then REDUCE with ("1+1",)
    path.write_bytes(b"cbuiltins\neval\n(S'1+1'\ntR.")
    with pytest.raises(UnsafePickleError, match="builtins.eval"):
        safe_load(path)


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello, this is not a checkpoint\n")
    with pytest.raises(CheckpointError, match="notes.txt: not a PyTorch checkpoint"):
        safe_load(path)
    with pytest.raises(CheckpointError, match="no such file"):
        safe_load(tmp_path / "missing.pth")


def test_whole_pickled_modules_become_state_dicts(tmp_path):
    """A pickled nn.Module is recorded inertly; its weights come out as a state dict."""
    module = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    path = tmp_path / "m.pt"
    torch.save({"model": module, "optim": torch.optim.Adam(module.parameters())}, path)
    loaded = safe_load(path)
    sd = state_dict_of(loaded["model"])
    assert list(sd) == list(module.state_dict())
    for k, v in module.state_dict().items():
        assert torch.equal(sd[k], v)
