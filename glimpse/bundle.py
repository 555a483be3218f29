"""The bundle: a directory any backend can load.

    manifest.json   format, family, model config, preprocessing, special tokens, every graph (file,
                    sha256, inputs/outputs with dtypes and named dynamic axes, error against PyTorch),
                    tool versions
    vocab.json      token strings by id and the special-token ids
    *.onnx          the graphs

A bundle is written into a hidden sibling directory and moved into place only once complete, with
manifest.json written last, so an interrupted export never leaves something that looks like a bundle.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from glimpse.errors import BundleError
from glimpse.preprocess import Preprocess
from glimpse.vocab import Vocab

FORMAT = "glimpse-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def is_bundle(path: Path) -> bool:
    try:
        return json.loads((Path(path) / MANIFEST).read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


class Bundle:
    """A bundle opened for reading. Graph files are checked against their sha256 when first used."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_dir():
            raise BundleError(f"{self.path}: no such bundle directory")
        try:
            self.manifest = json.loads((self.path / MANIFEST).read_text())
        except OSError:
            raise BundleError(f"{self.path}: not a bundle (no {MANIFEST})") from None
        except ValueError as e:
            raise BundleError(f"{self.path / MANIFEST}: not valid JSON ({e})") from None
        if not isinstance(self.manifest, dict) or self.manifest.get("format") != FORMAT:
            raise BundleError(f"{self.path / MANIFEST}: not a glimpse bundle manifest")
        if self.manifest.get("format_version") != FORMAT_VERSION:
            raise BundleError(
                f"{self.path / MANIFEST}: bundle format version {self.manifest.get('format_version')},"
                f" this glimpse reads version {FORMAT_VERSION}; re-export the bundle"
            )
        problem = manifest_problem(self.manifest)
        if problem:
            raise BundleError(f"{self.path / MANIFEST}: {problem} (altered or damaged; re-export the bundle)")
        self._verified: set[Path] = set()

    @property
    def family(self) -> str:
        return self.manifest["family"]

    @property
    def config(self) -> dict:
        return self.manifest["config"]

    @property
    def graphs(self) -> dict:
        return self.manifest["graphs"]

    @property
    def preprocess(self) -> Preprocess | None:
        """None for a model that reads no images (m2 reads detection features)."""
        if not self.manifest["preprocess"]:
            return None
        try:
            return Preprocess.from_dict(self.manifest["preprocess"])
        except (KeyError, TypeError, ValueError) as e:
            raise BundleError(f"{self.path / MANIFEST}: 'preprocess' is not a preprocessing ({e!r})") from None

    @property
    def vocab(self) -> Vocab:
        return Vocab.load(self.path / self.manifest["vocab"])

    def graph_path(self, name: str, precision: str = "fp32") -> Path:
        """The checked path of graph ``name`` at ``precision``; a missing or altered file raises BundleError."""
        if name not in self.graphs:
            raise BundleError(f"{self.path}: the bundle has no '{name}' graph (it has {', '.join(self.graphs)})")
        entry = self.graphs[name]
        if precision != "fp32":
            entry = entry.get("precisions", {}).get(precision)
            if entry is None:
                raise BundleError(
                    f"{self.path}: no {precision} '{name}' graph (make it with: glimpse quantize {self.path}"
                    f" --precision {precision})"
                )
        return self._checked(entry)

    def cpu_graph_path(self, name: str, precision: str = "fp32") -> Path:
        """The checked path of the graph ONNX Runtime's CPU provider runs for ``name`` at ``precision``: int8's CPU
        variant (``precisions.int8.cpu``, which may name the fp32 graph) where glimpse quantize made one, else the
        graph ``graph_path`` gives (bundles quantized before CPU variants existed run their TensorRT int8 graph)."""
        cpu = self.graphs.get(name, {}).get("precisions", {}).get(precision, {}).get("cpu")
        return self._checked(cpu) if cpu else self.graph_path(name, precision)

    def file_path(self, name: str) -> Path:
        """The checked path of a non-graph file entry of the manifest (such as ``weights``)."""
        entry = self.manifest.get("files", {}).get(name)
        if entry is None:
            raise BundleError(f"{self.path}: the bundle has no '{name}' file (re-export it with this glimpse)")
        return self._checked(entry)

    def _checked(self, entry: dict) -> Path:
        path = self.path / entry["file"]
        if path not in self._verified:
            if not path.is_file():
                raise BundleError(f"{path}: graph file missing from the bundle")
            if sha256_of(path) != entry["sha256"]:
                raise BundleError(f"{path}: sha256 does not match the manifest (file altered or corrupted)")
            self._verified.add(path)
        return path


def manifest_problem(m: dict) -> str | None:
    """What is wrong with the shape of a manifest that claims the current format, or None: the keys every
    reader relies on, their types, and file names that stay inside the bundle."""

    def typed(value, types: tuple, where: str):
        if not isinstance(value, types) or isinstance(value, bool) and bool not in types:
            names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise ValueError(f"'{where}' should be {names}, not {type(value).__name__}")
        return value

    def need(container: dict, key, types: tuple, where: str, default=None):
        return typed(container.get(key, default), types, where)

    def file_entry(container: dict, key, where: str) -> dict:
        entry = need(container, key, (dict,), where)
        need(entry, "sha256", (str,), f"{where}.sha256")
        if Path(name := need(entry, "file", (str,), f"{where}.file")).name != name or name in ("", ".", ".."):
            raise ValueError(f"'{where}.file' names '{name}', not a file of the bundle")
        return entry

    try:
        for key in ("family", "vocab"):
            need(m, key, (str,), key)
        need(m, "config", (dict,), "config"), need(m, "special_tokens", (dict,), "special_tokens")
        need(m, "preprocess", (dict, type(None)), "preprocess")
        if Path(m["vocab"]).name != m["vocab"]:
            raise ValueError(f"'vocab' names '{m['vocab']}', not a file of the bundle")
        if not need(m, "graphs", (dict,), "graphs"):
            raise ValueError("no graphs")
        for name in m["graphs"]:
            graph = file_entry(m["graphs"], name, f"graphs.{name}")
            for io in ("inputs", "outputs"):
                for i, value in enumerate(need(graph, io, (list,), f"graphs.{name}.{io}")):
                    where = f"graphs.{name}.{io}[{i}]"
                    need(typed(value, (dict,), where), "name", (str,), f"{where}.name")
                    need(value, "shape", (list,), f"{where}.shape")
            precisions = need(graph, "precisions", (dict,), f"graphs.{name}.precisions", {})
            for precision in precisions:
                entry = file_entry(precisions, precision, f"graphs.{name}.precisions.{precision}")
                if "cpu" in entry:
                    file_entry(entry, "cpu", f"graphs.{name}.precisions.{precision}.cpu")
        files = need(m, "files", (dict,), "files", {})
        for name in files:
            file_entry(files, name, f"files.{name}")
    except ValueError as e:
        return str(e)
    return None


def check_output_dir(out: Path, force: bool) -> None:
    """Refuse to replace anything but an empty directory or a bundle, unless forced."""
    if out.exists() and not force:
        if not out.is_dir():
            raise BundleError(f"{out}: exists and is not a directory (use --force to replace it)")
        if any(out.iterdir()) and not is_bundle(out):
            raise BundleError(f"{out}: exists and is not a bundle; refusing to overwrite (use --force)")


class BundleWriter:
    """Writes a bundle atomically: ``with BundleWriter(out, force) as w: ...; w.commit(manifest)``.

    An existing bundle at ``out`` is replaced; an existing non-empty directory that is not a bundle is
    refused unless ``force``.
    """

    def __init__(self, out: str | Path, force: bool = False):
        self.out = Path(out)
        check_output_dir(self.out, force)
        self.tmp = self.out.parent / f".{self.out.name}.partial-{os.getpid()}"

    def __enter__(self) -> BundleWriter:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir()
        return self

    def __exit__(self, exc_type, exc, tb):
        shutil.rmtree(self.tmp, ignore_errors=True)  # a no-op after commit
        return False

    def file(self, name: str) -> Path:
        return self.tmp / name

    def commit(self, manifest: dict) -> Path:
        (self.tmp / MANIFEST).write_text(
            json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION, **manifest}, indent=1)
        )
        old = self.out.parent / f".{self.out.name}.old-{os.getpid()}"
        if self.out.exists() or self.out.is_symlink():
            os.replace(self.out, old)
        os.replace(self.tmp, self.out)
        if old.is_dir():
            shutil.rmtree(old)
        elif old.exists():
            old.unlink()
        return self.out
