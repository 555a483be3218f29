"""The pipeline of a bundle's family: CaptionPipeline (sat), M2Pipeline (m2), VQAPipeline (saaa, san,
rdan) or MatchPipeline (mdan)."""

from __future__ import annotations

from glimpse.bundle import Bundle


def open_pipeline(bundle: Bundle, **options):
    """``options``: backend, device, threads, precision, as each pipeline takes them."""
    if bundle.family == "sat":
        from glimpse.runtime.caption import CaptionPipeline

        return CaptionPipeline(bundle, **options)
    if bundle.family == "m2":
        from glimpse.runtime.m2 import M2Pipeline

        return M2Pipeline(bundle, **options)
    if bundle.family == "mdan":
        from glimpse.runtime.match import MatchPipeline

        return MatchPipeline(bundle, **options)
    from glimpse.runtime.vqa import VQAPipeline

    return VQAPipeline(bundle, **options)
