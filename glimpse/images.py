"""Reading images: any file Pillow decodes, as 8-bit RGB, with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from glimpse.errors import ImageError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def load_image(path) -> Image.Image:
    """An image file (a path, or a binary file object, named in errors by its ``name``) -> 8-bit RGB
    (grey replicated, alpha dropped), decoded fully so that a truncated file fails here rather than later."""
    source = path if hasattr(path, "read") else Path(path)
    path = getattr(path, "name", path)
    try:
        with Image.open(source) as im:
            im.load()
            # Turn camera photos upright as their viewers show them (the tutorial's scipy imread ignored
            # the EXIF orientation tag and fed such photos sideways).
            return to_rgb(ImageOps.exif_transpose(im))
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except Image.DecompressionBombError as e:
        raise ImageError(f"{path}: refused, too many pixels ({e})") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{path}: not a readable image ({e})") from None


def to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16/32-bit grey: scale to 8 bits, not clip
        import numpy as np

        a = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255.0
        im = Image.fromarray((a * (255.0 / hi)).round().clip(0, 255).astype("uint8"), "L")
    return im.convert("RGB")


def image_files(paths) -> list[Path]:
    """Files named, and image files inside the directories named (sorted), in order."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        else:
            out.append(p)
    return out


def as_image(image) -> Image.Image:
    """A path, PIL image or HxW(x3|4) uint8 array -> 8-bit RGB."""
    if isinstance(image, (str, Path)):
        return load_image(image)
    if isinstance(image, Image.Image):
        return to_rgb(image)
    array = np.asarray(image)
    if array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4)):
        return to_rgb(Image.fromarray(array.astype(np.uint8)))
    raise ImageError(f"an image array must be HxW or HxWx3 uint8, not shape {array.shape}")


def image_name(image, index: int) -> str:
    """How results name an input: its path, else its place in the call."""
    return str(image) if isinstance(image, (str, Path)) else f"<image {index}>"
