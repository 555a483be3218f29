"""Load pickled checkpoints without running code from them.

Public checkpoints pickle whole objects: the SAT tutorial saves its ``models.Encoder`` and
``models.DecoderWithAttention`` modules and an Adam optimizer; M2 saves numpy RNG states. Plain
``pickle`` would import and call whatever globals the file names. Here every global goes through an
allow-list:

* tensors, storages and plain containers resolve to the real (data-only) constructors;
* module and optimizer classes resolve to ``Inert`` stand-ins that only record the state the pickle
  sets on them, so no ``__init__``/``__setstate__`` of a real class runs; the caller reads weights out of
  the recorded ``_parameters``/``_buffers``/``_modules`` (``state_dict_of``);
* anything else (``os.system``, ``builtins.eval``, ...) raises ``UnsafePickleError`` before it is called.

torch.load keeps doing what it does well (zip and legacy formats, storages, map_location) with this
module as its ``pickle_module``.
"""

from __future__ import annotations

import _compat_pickle
import collections
import pickle
import types
from pathlib import Path

from glimpse.errors import CheckpointError, UnsafePickleError

# Real constructors that only rebuild data.
_DATA_GLOBALS = {
    ("collections", "OrderedDict"),
    ("collections", "defaultdict"),
    ("collections", "Counter"),
    *(
        ("builtins", t)
        for t in (
            "dict",
            "list",
            "tuple",
            "set",
            "frozenset",
            "int",
            "float",
            "complex",
            "bool",
            "str",
            "bytes",
            "bytearray",
            "slice",
            "object",
        )
    ),
    ("copyreg", "_reconstructor"),
    ("_codecs", "encode"),  # protocol 2 rebuilds bytes as encode(str, 'latin1') (numpy RNG states in M2's saves)
    ("torch._utils", "_rebuild_tensor"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch", "Size"),
    ("torch", "device"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}

# Modules whose classes are replaced by inert stand-ins (never instantiated for real).
_INERT_PREFIXES = (
    "models.",  # the SAT tutorial's own module: Encoder, DecoderWithAttention, Attention
    "torch.nn.modules.",
    "torch.nn.backends.",  # PyTorch 0.4 pickled modules name their THNN backend
    "torch.nn.parameter.",
    "torchvision.models.",
    "torch.optim.",
)
# Modules named whole: the SAT tutorial's models.py, M2's data/vocab.py (vocab.pkl: Vocab, _default_unk_index).
_INERT_MODULES = ("models", "data.vocab")
# Classes named one by one: yunjey's build_vocab.py Vocabulary (vocab.pkl names __main__ when pickled as a script).
_INERT_CLASSES = {("__main__", "Vocabulary"), ("build_vocab", "Vocabulary")}


class Inert:
    """Stand-in for a pickled object of an allow-listed class: records state, runs nothing."""

    qualname = "?"

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj.__dict__["_args"] = args
        return obj

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2:  # (dict, slots) form
            state = {**(state[0] or {}), **(state[1] or {})}
        self.__dict__.update(state if isinstance(state, dict) else {"_state": state})

    def __call__(self, *args, **kwargs):
        return None

    def __repr__(self):
        return f"<inert {self.qualname}>"


_inert_classes: dict[str, type] = {}


def _inert_class(module: str, name: str) -> type:
    qualname = f"{module}.{name}"
    if qualname not in _inert_classes:
        _inert_classes[qualname] = type(name, (Inert,), {"qualname": qualname, "__module__": module})
    return _inert_classes[qualname]


def _torch_dtype(module: str, name: str):
    import torch

    value = getattr(torch, name, None)
    return value if module == "torch" and isinstance(value, torch.dtype) else None


class Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        # Protocol-2 pickles (torch.save's default) name Python 2 modules such as __builtin__.
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) in _DATA_GLOBALS:
            return super().find_class(module, name)
        if (dtype := _torch_dtype(module, name)) is not None:
            return dtype
        if module.startswith(_INERT_PREFIXES) or module in _INERT_MODULES or (module, name) in _INERT_CLASSES:
            return _inert_class(module, name)
        raise UnsafePickleError(f"refers to {module}.{name}, which is not on the allow-list; nothing was run")


def load(file, **kwargs):
    return Unpickler(file, **kwargs).load()


# torch.load(pickle_module=...) needs an object with Unpickler and load.
pickle_module = types.SimpleNamespace(Unpickler=Unpickler, load=load, __name__=__name__)


def safe_load(path: str | Path):
    """torch.load through the allow-list; errors name the file."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=pickle_module)
    except UnsafePickleError as e:
        raise UnsafePickleError(f"{path}: {e}") from None
    except Exception as e:  # torch raises many kinds for a file that is not a checkpoint
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({reason})") from None


def safe_unpickle(path: str | Path, what: str = "pickle"):
    """A plain pickle (pickle.dump's, not torch.save's) through the allow-list; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        with path.open("rb") as f:
            return load(f)
    except UnsafePickleError as e:
        raise UnsafePickleError(f"{path}: {e}") from None
    except Exception as e:
        raise CheckpointError(f"{path}: not a pickled {what} ({type(e).__name__}: {e})") from None


def load_weights(module, state: dict, what: str, layout: str) -> None:
    """``module.load_state_dict(state)``, every key accounted for, or a one-line CheckpointError that starts
    with ``what`` (the file and which weights) and names the ``layout`` expected."""
    try:
        missing, unexpected = module.load_state_dict(state, strict=False)
    except RuntimeError as e:  # a shape mismatch: torch's last line names the tensor and both shapes
        raise CheckpointError(f"{what}: {str(e).splitlines()[-1].strip()}") from None
    if missing or unexpected:
        raise CheckpointError(
            f"{what} do not fit the {layout} layout (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )


def state_dict_of(obj) -> collections.OrderedDict:
    """The state_dict of a recorded module tree (an ``Inert`` nn.Module), or ``obj`` if already one."""
    if isinstance(obj, dict):
        return collections.OrderedDict(obj)
    out = collections.OrderedDict()

    def walk(module, prefix):
        state = module.__dict__
        for key in ("_parameters", "_buffers"):
            for name, value in (state.get(key) or {}).items():
                if value is not None and name not in (state.get("_non_persistent_buffers_set") or ()):
                    out[prefix + name] = value
        for name, child in (state.get("_modules") or {}).items():
            if child is not None:
                walk(child, f"{prefix}{name}.")

    if not isinstance(obj, Inert) or "_modules" not in obj.__dict__:
        raise CheckpointError(f"expected a module or a state dict, found {type(obj).__name__}")
    walk(obj, "")
    return out
