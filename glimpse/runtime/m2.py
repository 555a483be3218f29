"""M2Pipeline: an m2 bundle, a backend, detection features in, captions out.

    pipe = M2Pipeline("m2-bundle")                       # ONNX Runtime on the CPU
    [cap] = pipe(["391895.npy"], beam_size=5)            # or (n, 2048) arrays, or "detections.hdf5:391895"
    cap.caption, cap.tokens, cap.score

Per batch: each image's regions zero-padded or truncated to R (50), as the public loader does ->
encoder -> init (the cross-attention keys and values, once per image) -> M2's beam search
(glimpse.runtime.m2_search) over the step graph, whose self-attention caches are buffers of max_len
positions written at the step's position: one shape for the whole decode.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from glimpse.bundle import Bundle
from glimpse.errors import BundleError, GlimpseError
from glimpse.runtime import m2_search
from glimpse.runtime.caption import Caption, open_sessions

HDF5_SUFFIXES = (".hdf5", ".h5")


def empty_cache(batch: int, beams: int, config: dict, positions: int) -> dict[str, np.ndarray]:
    """Self-attention caches before the first step, every slot masked: self_keys/values
    (B, K, layers, H, T, d), self_mask (B, K, T). Any T >= the steps to come gives the same results."""
    c = config
    shape = (batch, beams, c["layers"], c["heads"], positions, c["d_model"] // c["heads"])
    return {
        "self_keys": np.zeros(shape, np.float32),
        "self_values": np.zeros(shape, np.float32),
        "self_mask": np.ones((batch, beams, positions), bool),
    }


def load_regions(source) -> np.ndarray:
    """One image's detection features (n, d) float32 from an array, a .npy file, a .npz file (its only
    array, or 'features'), or ``FILE.hdf5:ID`` (the public ``'%d_features' % ID`` dataset)."""
    if not isinstance(source, (str, Path)):
        return _matrix(np.asarray(source, np.float32), "a region array")
    path, _, key = str(source).rpartition(":") if ":" in str(source) else (str(source), "", "")
    if Path(path).suffix in HDF5_SUFFIXES:
        return _matrix(_read_hdf5(Path(path), key), str(source))
    path = Path(source)
    if not path.is_file():
        raise GlimpseError(f"{path}: no such file")
    with path.open("rb") as f:
        return read_regions(f, str(path))


def read_regions(file, name: str) -> np.ndarray:
    """Regions (n, d) float32 from an open .npy or .npz file (its only array, or 'features')."""
    try:
        loaded = np.load(file, allow_pickle=False)  # never unpickles objects
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                names = loaded.files
                if len(names) != 1 and "features" not in names:
                    raise GlimpseError(f"{name}: holds {', '.join(names)}; name the regions 'features'")
                loaded = loaded["features" if "features" in names else names[0]]
        regions = np.asarray(loaded, np.float32)
    except (ValueError, TypeError, OSError, EOFError) as e:
        raise GlimpseError(f"{name}: not a .npy or .npz file of numbers ({e})") from None
    return _matrix(regions, name)


def hdf5_images(path: str | Path) -> list[str]:
    """``FILE.hdf5:ID`` for every ``<ID>_features`` dataset of a file in the public layout."""
    h5py = _h5py()
    with h5py.File(path, "r") as f:
        return [f"{path}:{k.removesuffix('_features')}" for k in sorted(f) if k.endswith("_features")]


def _read_hdf5(path: Path, key: str) -> np.ndarray:
    h5py = _h5py()
    if not path.is_file():
        raise GlimpseError(f"{path}: no such file")
    if not key:
        raise GlimpseError(f"{path}: name the image as {path}:ID (its dataset ID_features)")
    with h5py.File(path, "r") as f:
        if f"{key}_features" not in f:
            raise GlimpseError(f"{path}: no dataset '{key}_features'")
        return f[f"{key}_features"][()]


def _h5py():
    try:
        import h5py
    except ImportError:
        raise GlimpseError("reading HDF5 detections needs h5py (pip install 'glimpse[hdf5]')") from None
    return h5py


def _matrix(x: np.ndarray, name: str) -> np.ndarray:
    if x.ndim != 2 or not np.isfinite(x).all():
        raise GlimpseError(f"{name}: regions must be a finite (n, features) matrix, not shape {x.shape}")
    return x


def pad_regions(x: np.ndarray, regions: int) -> np.ndarray:
    """(n, d) -> (regions, d): the first ``regions`` rows, zero rows after the last (ImageDetectionsField)."""
    out = np.zeros((regions, x.shape[1]), np.float32)
    out[: len(x)] = x[:regions]
    return out


class M2Pipeline:
    def __init__(
        self,
        bundle: str | Path | Bundle,
        backend: str = "onnxruntime",
        device: str = "cpu",
        threads: int | None = None,
        precision: str = "fp32",
        cuda_graphs: bool = True,
    ):
        self.bundle = bundle if isinstance(bundle, Bundle) else Bundle(bundle)
        if self.bundle.family != "m2":
            raise BundleError(f"{self.bundle.path}: a '{self.bundle.family}' bundle, not an m2 captioner")
        self.vocab, self.config = self.bundle.vocab, self.bundle.config
        names = ["encoder", "init", "step"]
        self.sessions = open_sessions(self.bundle, names, backend, device, threads, precision, cuda_graphs)

    def __call__(
        self, features, beam_size=5, max_len=20, nbest=1, collapse_repeats=False, batch_size=8
    ) -> list[Caption]:
        """Caption images given as their detection features (see ``load_regions``). ``collapse_repeats``:
        one word for a run of equal words, as the public test script prints captions."""
        if not 1 <= beam_size <= len(self.vocab):
            raise GlimpseError(
                f"beam size must be between 1 and the vocabulary size {len(self.vocab)}, not {beam_size}"
            )
        if not 1 <= max_len <= self.config["max_len"]:
            raise GlimpseError(f"max length must be between 1 and {self.config['max_len']} (the position table)")
        if not 1 <= nbest <= beam_size:
            raise GlimpseError(f"nbest must be between 1 and the beam size {beam_size}, not {nbest}")
        features = list(features)
        out = []
        for i in range(0, len(features), batch_size):
            chunk = features[i : i + batch_size]
            regions = np.stack([pad_regions(load_regions(f), self.config["regions"]) for f in chunk])
            if regions.shape[2] != self.config["d_in"]:
                raise GlimpseError(
                    f"regions have {regions.shape[2]} features each; the model reads {self.config['d_in']}"
                )
            results = self.decode(regions, beam_size, max_len, nbest)
            for j, (source, r) in enumerate(zip(chunk, results)):
                name = str(source) if isinstance(source, (str, Path)) else f"<regions {i + j}>"
                out.append(self._caption(name, r, collapse_repeats))
        return out

    def decode(self, regions: np.ndarray, beam_size: int, max_len: int, nbest: int = 1):
        """regions (B, R, d_in) float32 -> one m2_search.SearchResult per image."""
        encoded = self.sessions["encoder"].run({"regions": regions})  # levels (B, L, R, D), mask (B, 1, 1, R)
        images = self.sessions["init"].run({"levels": encoded["levels"]}) | {"mask": encoded["mask"]}
        step_graph = self.sessions["step"]

        def step(tokens, t, cache):
            out = step_graph.run({"tokens": tokens, "position": np.array([t]), **images, **cache})
            return out["logprobs"], {n: out[f"{n}_next"] for n in cache}

        cache = empty_cache(len(regions), 1, self.config, max_len)
        special = self.vocab.special
        return m2_search.beam_search(
            step, cache, len(regions), special["start"], special["end"], beam_size, max_len, nbest
        )

    def _caption(self, name: str, r, collapse_repeats: bool) -> Caption:
        def text(tokens):
            words = self.vocab.decode(tokens)
            return [w for w, _ in itertools.groupby(words)] if collapse_repeats else words

        words = text(r.best.tokens)
        nbest = [(" ".join(text(h.tokens)), h.score) for h in r.nbest]
        return Caption(name, " ".join(words), words, r.best.tokens, r.best.score, r.best.finished, None, nbest)
