"""``glimpse demo train``: the demo's trainers, in the order they run. The captioner (sat) comes first: the
other models read its frozen CNN. A family joins the demo with a trainer here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from glimpse import families
from glimpse.errors import GlimpseError

MODELS = ("sat", *families.names("vqa"), "mdan", "m2", "nic")  # what glimpse demo train can train


def train(out: Path, models: list[str], overrides: dict, log: Callable[[str], None] = print) -> None:
    """Train ``models`` (of ``MODELS``) into ``out``; ``overrides``: steps, batch_size, val_every, seed."""
    from glimpse.demo import train_m2, train_mdan, train_nic, train_sat, train_vqa

    if "sat" not in models and not (out / train_sat.CHECKPOINT).is_file():
        raise GlimpseError(f"{out}: the other models read the captioner's CNN; train it first (--models sat ...)")
    if "sat" in models:
        train_sat.train(out, replace(train_sat.TrainConfig(), **overrides), log=log)
    vqa = tuple(m for m in models if m in families.names("vqa"))
    if vqa:
        train_vqa.train(out, out, vqa, replace(train_vqa.TrainConfig(), **overrides), log=log)
    if "mdan" in models:
        train_mdan.train(out, out, replace(train_mdan.TrainConfig(), **overrides), log=log)
    if "m2" in models:
        train_m2.train(out, out, replace(train_m2.TrainConfig(), **overrides), log=log)
    if "nic" in models:
        train_nic.train(out, out, replace(train_nic.TrainConfig(), **overrides), log=log)
