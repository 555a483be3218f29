"""Image preprocessing as each public implementation does it, in numpy and Pillow only.

The spec lives in the bundle's manifest, so a bundle preprocesses exactly as its family's reference
did at training time. For ``sat`` (the tutorial's caption.py): RGB, Pillow bilinear resize to 256x256
with no crop and no aspect keeping, /255, ImageNet mean and std.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FILTERS = {"bilinear": Image.BILINEAR, "lanczos": Image.LANCZOS}


@dataclass(frozen=True)
class Preprocess:
    size: tuple[int, int] = (256, 256)  # (height, width) of the resize
    resize: str = "exact"  # "exact": to size; "shorter": shorter side to size[0], aspect kept
    crop: tuple[int, int] | None = None  # center crop (height, width) after the resize
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"  # Pillow's filter of the resize: bilinear, or lanczos (nic's sample.py)

    def to_dict(self) -> dict:
        return {**asdict(self), "scale": 1 / 255}

    @classmethod
    def from_dict(cls, d: dict) -> Preprocess:
        crop = d.get("crop")
        size, mean, std = tuple(d["size"]), tuple(d["mean"]), tuple(d["std"])
        return cls(size, d["resize"], tuple(crop) if crop else None, mean, std, d.get("interpolation", "bilinear"))

    @property
    def output_size(self) -> tuple[int, int]:
        return self.crop or self.size

    def __call__(self, image: Image.Image) -> np.ndarray:
        """An RGB PIL image -> float32 (3, H, W), normalised."""
        # The public code's arithmetic, (x / 255 - mean) / std in float32, done in place a channel at a time:
        # broadcasting a (3,) mean over (H, W, 3) runs numpy's inner loop three elements at a time (4x slower).
        x = np.asarray(self.resized(image)).transpose(2, 0, 1).astype(np.float32, order="C")  # (3, H, W)
        x /= 255.0
        for channel, mean, std in zip(x, self.mean, self.std):
            channel -= np.float32(mean)
            channel /= np.float32(std)
        return x

    def resized(self, image: Image.Image) -> Image.Image:
        """The resize and the crop."""
        resample = FILTERS[self.interpolation]
        if self.resize == "exact":
            image = image.resize(self.size[::-1], resample)
        else:
            w, h = image.size  # the long side is truncated, as torchvision's Resize(int) does
            n = self.size[0]
            image = image.resize((n, int(n * h / w)) if w <= h else (int(n * w / h), n), resample)
        if self.crop:
            w, h = image.size
            ch, cw = self.crop
            top, left = int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0))
            image = image.crop((left, top, left + cw, top + ch))
        return image
