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


# ------------------------------------------------------------------------------ property-based: any pickle

TRAPS = [  # callables a hostile pickle would reach for; glimpse_trap.* record that they ran
    ("glimpse_trap", "call"),
    ("glimpse_trap", "Build"),
    ("os", "system"),
    ("posix", "system"),
    ("builtins", "eval"),
    ("builtins", "exec"),
    ("builtins", "getattr"),
    ("builtins", "__import__"),
    ("subprocess", "Popen"),
    ("torch", "load"),
    ("numpy", "load"),
]
ALLOWED = [("builtins", "dict"), ("collections", "OrderedDict"), ("copyreg", "_reconstructor"), ("models", "Encoder")]


@pytest.fixture(scope="module")
def trap():
    """A module whose every use from a pickle is recorded: nothing may ever land in ``trap.ran``."""
    import sys
    import types

    module = types.ModuleType("glimpse_trap")
    module.ran = []
    module.call = lambda *args: module.ran.append(args)

    class Build:
        def __init__(self, *args):
            module.ran.append(args)

        def __setstate__(self, state):
            module.ran.append(state)

    module.Build = Build
    sys.modules["glimpse_trap"] = module
    yield module
    del sys.modules["glimpse_trap"]


def _global(module, name):
    return b"c" + f"{module}\n{name}\n".encode()


def opcodes():
    """Strategy: pickle programs made of data opcodes and the opcodes that import and call, ending in STOP."""
    from hypothesis import strategies as st

    text = st.text(max_size=8).map(lambda s: s.encode("utf-8", "surrogatepass")[:255])
    data = st.one_of(
        st.sampled_from([b"N", b"\x88", b"\x89", b"}", b"]", b")", b"(", b"t", b"l", b"d", b"e", b"u", b"s", b"a"]),
        st.sampled_from([b"0", b"2", b"\x94", b"\x85", b"\x86", b"\x87"]),  # POP DUP MEMOIZE TUPLE1..3
        st.integers(0, 255).map(lambda n: b"K" + bytes([n])),  # BININT1
        st.integers(0, 3).map(lambda n: b"h" + bytes([n])),  # BINGET
        text.map(lambda b: b"\x8c" + bytes([len(b)]) + b),  # SHORT_BINUNICODE
    )
    imports = st.sampled_from(TRAPS + ALLOWED).map(lambda g: _global(*g))
    calls = st.sampled_from([b"R", b"b", b"\x81", b"\x93", b"o"])  # REDUCE BUILD NEWOBJ STACK_GLOBAL OBJ
    # a call with arguments, whole, so that hostile ones are common and not left to chance
    invoke = st.tuples(imports, text).map(lambda t: t[0] + b"(\x8c" + bytes([len(t[1])]) + t[1] + b"tR")
    program = st.lists(st.one_of(data, imports, calls, invoke), max_size=30)
    return st.tuples(st.sampled_from([2, 4]), program).map(lambda t: b"\x80" + bytes([t[0]]) + b"".join(t[1]) + b".")


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("pickles")


def _data_only(value) -> bool:
    """A result holds only data (containers, numbers, strings, tensors, inert stand-ins) and, not called,
    the allow-listed constructors themselves."""
    import io

    import numpy as np

    from glimpse.export.unpickler import Inert, Unpickler

    if isinstance(value, (list, tuple, set, frozenset)):
        return all(_data_only(v) for v in value)
    if isinstance(value, dict):
        return all(_data_only(k) and _data_only(v) for k, v in value.items())
    if isinstance(value, type) or callable(value) and not isinstance(value, Inert):
        Unpickler(io.BytesIO()).find_class(value.__module__, value.__name__)  # raises unless allow-listed
        return True
    data = (bool, int, float, complex, str, bytes, bytearray, slice, Inert, torch.Tensor, torch.dtype, torch.device)
    return value is None or isinstance(value, (*data, np.ndarray, np.generic)) or type(value) is object


def assert_data_or_error(load, path, content: bytes, trap) -> None:
    """``load(path)`` of ``content``: plain data or a GlimpseError, and the trap never ran."""
    from glimpse.errors import GlimpseError

    path.write_bytes(content)
    try:
        assert _data_only(load(path))
    except GlimpseError:
        pass
    assert trap.ran == []


def test_any_pickle_program_is_data_or_a_glimpse_error(trap, scratch):
    """Random pickle programs (imports of os.system, eval, __import__... and of a trap that records any call,
    called with arguments, built, instantiated) through both entry points: each either gives plain data or a
    GlimpseError, and nothing named by the pickle ever runs."""
    from hypothesis import HealthCheck, given, settings

    from glimpse.export.unpickler import safe_unpickle

    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(opcodes())
    def check(program):
        assert_data_or_error(safe_unpickle, scratch / "vocab.pkl", program, trap)

    check()


def test_any_checkpoint_bytes_are_data_or_a_glimpse_error(trap, scratch):
    """torch.load's own path: torch.save's zip layout whose data.pkl is a random pickle program, and random
    bytes with or without the zip magic: a GlimpseError or plain data, never another exception, nothing run."""
    import io
    import zipfile

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from glimpse.export.unpickler import safe_load

    def with_data_pkl(program: bytes) -> bytes:
        """torch.save's zip layout (data.pkl, version, byteorder) around ``program``."""
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as z:
            z.writestr("archive/data.pkl", program)
            z.writestr("archive/version", "3\n")
            z.writestr("archive/byteorder", "little")
        return out.getvalue()

    files = st.one_of(
        opcodes().map(with_data_pkl), st.binary(max_size=512), st.binary(max_size=512).map(lambda b: b"PK\x03\x04" + b)
    )

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(files)
    def check(content):
        assert_data_or_error(safe_load, scratch / "model.pth", content, trap)

    check()
