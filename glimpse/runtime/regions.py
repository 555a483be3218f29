"""Reading detection regions, what a region-based captioner (m2) reads instead of images: one (n, d)
float32 matrix per image from .npy, .npz or the public HDF5 layout ('%d_features' datasets), zero-padded
or cut to the model's R regions as the public loader does."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from glimpse.errors import GlimpseError

HDF5_SUFFIXES = (".hdf5", ".h5")


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
