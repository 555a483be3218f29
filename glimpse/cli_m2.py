"""The Meshed-Memory Transformer's commands: ``glimpse export m2`` and ``glimpse caption M2_BUNDLE --features``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from glimpse.errors import GlimpseError


def cmd_export_m2(args) -> None:
    from glimpse.bundle import check_output_dir
    from glimpse.checkpoints.m2 import import_m2
    from glimpse.cli import log
    from glimpse.export.m2 import export_m2

    check_output_dir(Path(args.out), args.force)
    log(f"importing {args.checkpoint} and {args.vocab}")
    model, vocab = import_m2(args.checkpoint, args.vocab, args.heads, args.regions)
    c = model.config
    log(f"m2: {c.layers} layers, width {c.d_model}, {c.heads} heads, {c.memory} memory slots, {c.vocab_size} words")
    source = {"checkpoint": Path(args.checkpoint).name, "vocab": Path(args.vocab).name}
    out = export_m2(model, vocab, args.out, force=args.force, tolerance=args.tolerance, source=source, log=log)
    log(f"wrote bundle {out}")


def add_export(families) -> None:
    m = families.add_parser(
        "m2",
        help="Meshed-Memory Transformer (aimagelab/meshed-memory-transformer)",
        description="Export an M2 captioner: encoder.onnx (detection regions -> the encoder's three levels and"
        " mask), init.onnx (levels -> each decoder layer's cross-attention keys and values, once per image) and"
        " step.onnx (one token for K beams per image over fixed-size self-attention caches and a position), each"
        " checked against the public stateful decoding.",
        epilog="example: glimpse export m2 --checkpoint meshed_memory_transformer.pth --vocab vocab.pkl"
        " --out m2-bundle",
    )
    m.add_argument(
        "--checkpoint",
        required=True,
        help="meshed_memory_transformer.pth or a train.py save ({'state_dict', RNG states, ...}; loaded through an"
        " allow-list: no code from it runs)",
    )
    m.add_argument(
        "--vocab",
        required=True,
        help="the repository's vocab.pkl (only its itos list is read), or a JSON list of words",
    )
    m.add_argument("--heads", type=int, default=8, help="attention heads (default 8, the public model's)")
    m.add_argument(
        "--regions",
        type=int,
        default=50,
        help="detections per image: fewer are zero-padded, more cut (default 50, the public max_detections)",
    )
    m.add_argument("--out", required=True, help="bundle directory to write")
    m.add_argument("--tolerance", type=float, default=1e-4, help="largest relative error accepted (default 1e-4)")
    m.add_argument("--force", action="store_true", help="replace --out even if it is not a bundle")
    m.set_defaults(run=cmd_export_m2)


def expand_features(sources: list[str]) -> list[str]:
    """Files as given; an HDF5 file without ``:ID`` stands for every image in it."""
    from glimpse.runtime.m2 import HDF5_SUFFIXES, hdf5_images

    out = []
    for source in sources:
        whole_file = Path(source).suffix in HDF5_SUFFIXES and Path(source).is_file()
        out += hdf5_images(source) if whole_file else [source]
    return out


def caption(args) -> None:
    """``glimpse caption`` on an m2 bundle: --features, not images."""
    from tqdm import tqdm

    from glimpse.runtime.m2 import M2Pipeline

    if args.images or not args.features:
        raise GlimpseError("an m2 bundle reads detection features, not images: give them with --features FILE...")
    if args.sample or args.length_penalty or args.attention_plot:
        raise GlimpseError(
            "M2's search ranks by raw summed log-prob; --sample, --length-penalty, --attention-plot are sat's"
        )
    pipe = M2Pipeline(args.bundle, args.backend, args.device, args.threads, args.precision, args.cuda_graphs)
    sources = expand_features(args.features)
    options = {"beam_size": args.beam_size, "max_len": args.max_steps or 20, "nbest": args.nbest}
    for i in tqdm(range(0, len(sources), args.batch_size), unit="batch", disable=None, file=sys.stderr, leave=False):
        chunk = sources[i : i + args.batch_size]
        for cap in pipe(chunk, collapse_repeats=args.collapse_repeats, batch_size=args.batch_size, **options):
            if args.json:
                print(json.dumps(cap.to_json()), flush=True)
            else:
                print(f"{cap.image}\t{cap.caption}", flush=True)
                for c, s in cap.nbest[1:]:
                    print(f"{cap.image}\t  {s:9.4f}  {c}")


def calibration_regions(bundle, sources: list[str] | None, size: int):
    """(N, R, d_in) regions for ``glimpse quantize``: the files given, or for an m2 of the demo scenes,
    their validation scenes' grid cells."""
    import numpy as np

    from glimpse.cli import log
    from glimpse.runtime.m2 import load_regions, pad_regions

    c = bundle.config
    if sources:
        files = expand_features(sources)[:size]
        regions = np.stack([pad_regions(load_regions(f), c["regions"]) for f in files])
    else:
        from glimpse.demo import scenes
        from glimpse.demo.m2 import scene_regions
        from glimpse.evaluate import check_demo_model

        words = {w for s in scenes.scenes("val", 8) for caption in s.captions for w in caption.split()}
        try:
            check_demo_model(bundle, words, bundle.vocab.itos)
        except GlimpseError:
            raise GlimpseError(
                f"{bundle.path}: give detection features to calibrate on: --calibration-features"
            ) from None
        log(f"calibrating on {size} generated validation scenes (--calibration-features for yours)")
        regions = np.stack([pad_regions(r, c["regions"]) for r in scene_regions("val", size)[0]])
    if regions.shape[2] != c["d_in"]:
        raise GlimpseError(f"calibration regions have {regions.shape[2]} features each; the model reads {c['d_in']}")
    return regions
