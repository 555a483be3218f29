"""A vocabulary: token strings by id, and the ids of the special tokens a family uses."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from glimpse.errors import BundleError


@dataclass
class Vocab:
    itos: list[str]
    special: dict[str, int] = field(default_factory=dict)  # role -> id: start, end, pad, unk

    def __post_init__(self):
        self.stoi = {s: i for i, s in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def decode(self, ids, skip=("start", "end", "pad")) -> list[str]:
        """Words of a token sequence, without the special tokens named in ``skip``."""
        drop = {self.special[r] for r in skip if r in self.special}
        return [self.itos[i] for i in ids if i not in drop]

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"itos": self.itos, "special": self.special}, ensure_ascii=False))

    @classmethod
    def load(cls, path: Path) -> Vocab:
        try:
            data = json.loads(Path(path).read_text())
            return cls(list(data["itos"]), {k: int(v) for k, v in data["special"].items()})
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise BundleError(f"{path}: not a glimpse vocabulary ({e})") from None
