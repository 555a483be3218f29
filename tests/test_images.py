"""Image decoding on any bytes: an 8-bit RGB image or one ImageError naming the file, nothing else."""

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from glimpse.errors import ImageError
from glimpse.images import load_image

FORMATS = ["PNG", "JPEG", "GIF", "WEBP", "TIFF", "BMP", "PPM"]


def encoded(fmt: str, side: int, mode: str, seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    if fmt in ("JPEG", "PPM") and mode not in ("RGB", "L"):  # modes these formats cannot store
        image = image.convert("RGB")
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


@st.composite
def image_bytes(draw):
    """A real image file of any format, whole, cut short, or with bytes overwritten; or any bytes at all."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=2048))
    fmt = draw(st.sampled_from(FORMATS))
    mode = draw(st.sampled_from(["RGB", "L", "RGBA", "P", "1"]))
    data = bytearray(encoded(fmt, draw(st.integers(1, 24)), mode, draw(st.integers(0, 9))))
    damage = draw(st.sampled_from(["none", "cut", "overwrite"]))
    if damage == "cut":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif damage == "overwrite":
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow's own notes on the damaged files it reads
@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(image_bytes())
def test_any_bytes_decode_to_rgb_or_an_image_error(data):
    upload = io.BytesIO(data)
    upload.name = "upload.bin"
    try:
        image = load_image(upload)
    except ImageError as e:
        assert str(e).startswith("upload.bin: ") and "\n" not in str(e)
        return
    assert image.mode == "RGB" and image.width > 0 and image.height > 0
    assert np.asarray(image).shape == (image.height, image.width, 3)


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_decodes_whole(fmt):
    """The strategy's undamaged files are readable, so the property above is not passing on errors alone."""
    upload = io.BytesIO(encoded(fmt, 16, "RGB", 0))
    upload.name = f"x.{fmt.lower()}"
    assert load_image(upload).size == (16, 16)
