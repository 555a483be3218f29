"""Seeded scenes of coloured shapes, with the captions, questions and sentences that describe them.

A scene is a pure function of (split, index): the same scene, image and texts on every machine, so
train, val and test never share a scene and a demo run is reproducible. One to four shapes (five kinds,
six colours, two sizes) are placed without overlap on a noisy, striped, checkered or shaded
background. Shapes are placed so that the words describing them are never ambiguous: two shapes are
clearly above/below or left/right of each other, and three or four are clearly ordered left to right.

Text is lower-case words separated by spaces; "," and ":" are words of their own (``pretty`` joins
them back for display).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from PIL import Image, ImageDraw

KINDS = ("circle", "square", "triangle", "star", "diamond")
COLOURS = {
    "red": (215, 35, 35),
    "green": (35, 165, 55),
    "blue": (40, 75, 225),
    "yellow": (240, 215, 30),
    "purple": (140, 50, 185),
    "orange": (250, 135, 25),
}
SIZES = {"small": (0.075, 0.095), "large": (0.14, 0.18)}  # radius range, as a fraction of the side
BACKGROUNDS = ("noisy", "striped", "checkered", "shaded")
NUMBERS = ("zero", "one", "two", "three", "four")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Shape:
    kind: str
    colour: str
    size: str
    x: float  # centre, as a fraction of the side (0 = left, 1 = right)
    y: float  # 0 = top
    r: float  # radius, as a fraction of the side

    @property
    def words(self) -> str:
        """With its article: "a small orange circle"."""
        return f"a {self.size} {self.colour} {self.kind}"

    @property
    def short(self) -> str:
        """Without the size: "an orange circle"."""
        return f"{article(self.colour)} {self.colour} {self.kind}"


@dataclass(frozen=True)
class Scene:
    split: str
    index: int
    shapes: tuple[Shape, ...]  # left to right
    background: str
    seed: int  # of the pixels: background texture, colour jitter, noise

    def image(self, size: int = 128) -> Image.Image:
        return render(self, size)

    @cached_property
    def captions(self) -> list[str]:
        """Five reference captions, as a COCO image has."""
        s, bg = self.shapes, f"on a {self.background} background"
        if len(s) == 1:
            a = s[0]
            return [a.words, a.short, f"there is {a.words}", f"one {a.size} {a.colour} {a.kind}", f"{a.words} {bg}"]
        if len(s) == 2:
            a, b, rel, inverse = _relation(*s)
            return [
                f"{a.words} {rel} {b.words}",
                f"{b.words} {inverse} {a.words}",
                f"{a.short} {rel} {b.short}",
                f"{a.words} and {b.words}",
                f"two shapes : {a.words} and {b.words}",
            ]
        n = NUMBERS[len(s)]
        full, short = _listing([t.words for t in s]), _listing([t.short for t in s])
        return [f"{n} shapes : {full}", full, short, f"{n} shapes : {short}", f"{n} shapes {bg}"]

    @cached_property
    def questions(self) -> list[tuple[str, str]]:
        """(question, one-word answer) pairs: count, colour, shape, size, existence and position."""
        s, rng = self.shapes, random.Random(f"questions:{self.split}:{self.index}")
        qa = [("how many shapes are there ?", NUMBERS[len(s)])]
        colour = rng.choice(list(COLOURS))
        qa.append((f"how many {colour} shapes are there ?", NUMBERS[sum(t.colour == colour for t in s)]))
        for t in s:
            if sum(u.kind == t.kind for u in s) == 1:
                qa.append((f"what colour is the {t.kind} ?", t.colour))
                qa.append((f"what size is the {t.kind} ?", t.size))
            if sum(u.colour == t.colour for u in s) == 1:
                qa.append((f"what shape is the {t.colour} object ?", t.kind))
        kind, colour = rng.choice(KINDS), rng.choice(list(COLOURS))
        present = any(t.kind == kind and t.colour == colour for t in s)
        qa.append((f"is there {article(colour)} {colour} {kind} ?", "yes" if present else "no"))
        if len(s) == 2 and s[0].kind != s[1].kind:
            a, b, rel, _ = _relation(*s)
            if rng.random() < 0.5:
                qa.append((f"is the {a.kind} {rel} the {b.kind} ?", "yes"))
            else:
                qa.append((f"is the {b.kind} {rel} the {a.kind} ?", "no"))
        return qa

    @property
    def sentences(self) -> list[str]:
        """Sentences that match the image, for image-text matching: its captions."""
        return self.captions


def _relation(a: Shape, b: Shape) -> tuple[Shape, Shape, str, str]:
    """(first, second, relation, inverse): the first is above, or left of, the second."""
    if abs(a.y - b.y) > abs(a.x - b.x):
        a, b = sorted((a, b), key=lambda t: t.y)
        return a, b, "above", "below"
    a, b = sorted((a, b), key=lambda t: t.x)
    return a, b, "to the left of", "to the right of"


def caption_words() -> list[str]:
    """Every word a caption may use, in a fixed order (the demo word map's)."""
    glue = ["a", "an", "there", "is", "one", "shapes", "and", ",", ":", "above", "below"]
    return [
        *glue,
        "to",
        "the",
        "left",
        "right",
        "of",
        "on",
        "background",
        *SIZES,
        *COLOURS,
        *KINDS,
        *NUMBERS[2:],
        *BACKGROUNDS,
    ]


def question_words() -> list[str]:
    """Every word a question may use (its '?' dropped, as VQA tokenisers drop it), in a fixed order."""
    glue = ["how", "many", "shapes", "are", "there", "what", "colour", "size", "shape", "object", "is", "the"]
    return [*glue, "a", "an", "above", "below", "to", "left", "right", "of", *COLOURS, *KINDS]


ANSWERS = (*NUMBERS, *COLOURS, *SIZES, *KINDS, "yes", "no")  # every answer a question may have


def question_kind(question: str) -> str:
    """What a question asks: count, colour, size, shape, exists or position."""
    words = question.split()
    if words[0] == "how":
        return "count"
    if words[0] == "what":
        return words[1]
    return "exists" if words[1] == "there" else "position"


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _listing(items: list[str]) -> str:
    """["a b", "a c", "a d"] -> "a b , a c and a d"."""
    return " , ".join(items[:-1]) + " and " + items[-1]


def pretty(text: str) -> str:
    return text.replace(" ,", ",").replace(" :", ":")


def scene(split: str, index: int) -> Scene:
    """The scene ``index`` of ``split``; deterministic across machines and Python versions."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    rng = random.Random(f"{split}:{index}")  # str seeds hash with SHA-512: stable everywhere
    n = rng.randint(1, 4)
    while True:
        shapes = [_random_shape(rng) for _ in range(n)]
        if _unambiguous(shapes):
            break
    shapes.sort(key=lambda t: t.x)
    return Scene(split, index, tuple(shapes), rng.choice(BACKGROUNDS), rng.getrandbits(32))


def scenes(split: str, count: int, start: int = 0) -> list[Scene]:
    return [scene(split, i) for i in range(start, start + count)]


def calibration_texts(task: str, count: int = 8) -> list[str]:
    """What a model of ``task`` reads besides images while it is calibrated: the questions (vqa) or
    captions (match) of ``count`` validation scenes; nothing for a captioner."""
    val = scenes("val", count)
    if task == "vqa":
        return [q for s in val for q, _ in s.questions]
    return [c for s in val for c in s.captions] if task == "match" else []


def _random_shape(rng: random.Random) -> Shape:
    size = rng.choice(list(SIZES))
    r = rng.uniform(*SIZES[size])
    margin = r + 0.03
    return Shape(
        rng.choice(KINDS),
        rng.choice(list(COLOURS)),
        size,
        rng.uniform(margin, 1 - margin),
        rng.uniform(margin, 1 - margin),
        r,
    )


def _unambiguous(shapes: list[Shape]) -> bool:
    """No overlaps; two shapes clearly vertical or horizontal; three or more clearly left to right."""
    for i, a in enumerate(shapes):
        for b in shapes[i + 1 :]:
            if np.hypot(a.x - b.x, a.y - b.y) < a.r + b.r + 0.04:
                return False
    if len(shapes) == 2:
        dx, dy = abs(shapes[0].x - shapes[1].x), abs(shapes[0].y - shapes[1].y)
        return max(dx, dy) > 1.5 * min(dx, dy)
    xs = sorted(t.x for t in shapes)
    return all(b - a > 0.1 for a, b in zip(xs, xs[1:]))


# --------------------------------------------------------------------------- pixels


def render(scene: Scene, size: int = 128) -> Image.Image:
    """The scene as an RGB image of size x size. Shapes are drawn at 4x and downsampled (smooth edges)
    onto a background made at 1x (cheap), then noise covers everything."""
    rng = np.random.default_rng(scene.seed)
    background = Image.fromarray(_background(scene.background, size, rng)).convert("RGBA")
    layer = Image.new("RGBA", (4 * size, 4 * size))
    draw = ImageDraw.Draw(layer)
    for t in scene.shapes:
        rgb = np.clip(np.asarray(COLOURS[t.colour]) + rng.integers(-20, 21, 3), 0, 255)
        _draw(draw, t, 4 * size, (*(int(v) for v in rgb), 255))
    image = Image.alpha_composite(background, layer.resize((size, size), Image.BOX)).convert("RGB")
    pixels = np.asarray(image, dtype=np.float32) + rng.normal(0, 6, (size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _background(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, n, 3) uint8, greyish (low saturation) so that no background reads as a shape colour."""
    base = rng.uniform(80, 200)
    tint = rng.uniform(-12, 12, 3)
    yy, xx = np.mgrid[0:n, 0:n] / n
    if kind == "noisy":
        blocks = rng.normal(0, 18, (-(-n // 2), -(-n // 2)))  # 2x2-pixel blotches
        grey = base + blocks.repeat(2, 0).repeat(2, 1)[:n, :n]
    elif kind == "striped":
        period, angle = rng.uniform(0.05, 0.15), rng.uniform(0, np.pi)
        grey = base + 25 * np.sign(np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period))
    elif kind == "checkered":
        cells = rng.integers(4, 10)
        grey = base + 22 * (((xx * cells).astype(int) + (yy * cells).astype(int)) % 2 * 2 - 1)
    else:  # shaded: a linear gradient in a random direction
        angle = rng.uniform(0, 2 * np.pi)
        grey = base + 60 * ((xx - 0.5) * np.cos(angle) + (yy - 0.5) * np.sin(angle))
    rgb = grey[..., None] + tint
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _draw(draw: ImageDraw.ImageDraw, t: Shape, n: int, rgba: tuple[int, ...]) -> None:
    cx, cy, r = t.x * n, t.y * n, t.r * n
    if t.kind == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=rgba)
    elif t.kind == "square":
        h = 0.85 * r  # about the circle's area
        draw.rectangle((cx - h, cy - h, cx + h, cy + h), fill=rgba)
    elif t.kind == "diamond":
        draw.polygon([(cx, cy - r), (cx + 0.75 * r, cy), (cx, cy + r), (cx - 0.75 * r, cy)], fill=rgba)
    else:  # triangle (3 points) or star (5 points, alternating with inner corners)
        points = 3 if t.kind == "triangle" else 10
        radii = [r] * 3 if t.kind == "triangle" else [r, 0.45 * r] * 5
        angles = -np.pi / 2 + 2 * np.pi * np.arange(points) / points
        draw.polygon([(cx + q * np.cos(a), cy + q * np.sin(a)) for q, a in zip(radii, angles)], fill=rgba)
