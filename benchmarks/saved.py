"""What every benchmark program shares: its results saved as benchmarks/results/<name>.json and .md, and the
generated scenes it sends as PNG uploads."""

from __future__ import annotations

import io
import json
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def save(name: str, result: dict, lines: list[str], note: str) -> None:
    """``result`` as results/<name>.json; the table ``lines`` and a ``note`` (how it was run) as results/<name>.md."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + f"\n\n{note}\n")


def scene_pngs(n: int, side: int = 128) -> list[bytes]:
    """The first ``n`` generated test scenes, PNG-encoded at ``side`` pixels: what load programs upload."""
    from glimpse.demo import scenes

    pngs = []
    for s in scenes.scenes("test", n):
        buf = io.BytesIO()
        s.image(side).save(buf, format="PNG")
        pngs.append(buf.getvalue())
    return pngs
