"""``glimpse caption``: images through a captioner that reads images, or detection features through one
that reads regions."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from glimpse.cli.base import Tool, add_bundle_argument, add_runtime_arguments, log
from glimpse.errors import GlimpseError


class Caption(Tool):
    """caption images with a sat bundle, or detection features with an m2 bundle

    Caption images with a Show-Attend-Tell bundle, or detection features with a Meshed-Memory Transformer
    bundle, each with its public beam search. sat's is the tutorial's (caption.py): cumulative log-probs,
    finished hypotheses leave the beam, at most 51 steps. m2's is the repository's: a fixed width where finished
    beams carry on unchanged, 20 steps. Both pick the best by raw summed log-prob and are batched over images
    with identical results.
    """

    name = "caption"
    shares_threads = True
    examples = (
        "glimpse caption sat-bundle photo.jpg",
        "glimpse caption sat-bundle photos/ --json --batch-size 16",
        "glimpse caption sat-bundle photo.jpg --attention-plot att.png",
        "glimpse caption m2-bundle --features 391895.npy coco_detections.hdf5:522418",
    )

    def add_arguments(self, c):
        add_bundle_argument(c, "bundle directory (glimpse export sat|m2 ...)")
        c.add_argument("images", nargs="*", metavar="IMAGE_OR_DIR", help="image files, or directories of them (sat)")
        c.add_argument(
            "--features",
            nargs="+",
            metavar="FILE",
            help="m2: each image's detection features (n, 2048): .npy, .npz, FILE.hdf5:ID (the public 'ID_features'"
            " layout), or a whole .hdf5 file; zero-padded or cut to 50 regions as the public loader does",
        )
        c.add_argument("--beam-size", "-b", type=int, default=5, help="beam width (default 5; 1 is greedy)")
        c.add_argument(
            "--max-length",
            "--max-steps",
            dest="max_length",
            type=int,
            default=None,
            help="most tokens to generate (default: 51 for sat, the tutorial's; 20 for m2, its test script's)",
        )
        c.add_argument(
            "--collapse-repeats",
            action="store_true",
            help="m2: print a run of the same word once, as the public test script scores captions",
        )
        c.add_argument(
            "--length-penalty",
            type=float,
            default=0.0,
            help="rank by score / length**P (default 0: raw sum, as the tutorial)",
        )
        c.add_argument("--nbest", type=int, default=1, help="also list the N best finished captions")
        c.add_argument("--sample", action="store_true", help="sample instead of beam search")
        c.add_argument("--temperature", type=float, default=1.0, help="with --sample (default 1)")
        c.add_argument("--top-k", type=int, default=0, help="with --sample: keep the K likeliest tokens (0: all)")
        c.add_argument("--top-p", type=float, default=1.0, help="with --sample: nucleus probability (default 1)")
        c.add_argument("--seed", type=int, default=None, help="with --sample: random seed")
        add_runtime_arguments(c, cuda_graphs=True)
        c.add_argument(
            "--fused",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="search over the fused step (beam selection inside the graph; the same captions). Default: at beam"
            " size K (the bundle's --fused-beam, 5), and on a GPU at any beam size up to K",
        )
        c.add_argument("--batch-size", type=int, default=8, help="images decoded together (default 8)")
        c.add_argument(
            "--json",
            action="store_true",
            help="one JSON object per image: image, caption, words, tokens (with <start>/<end> ids), score",
        )
        c.add_argument("--attention-plot", metavar="OUT.png", help="write each word's attention map over the image")

    def run(self, args):
        from glimpse import families
        from glimpse.bundle import Bundle

        bundle = Bundle(args.bundle)
        if families.get(bundle.family).reads == "regions":
            return caption_regions(bundle, args)
        return caption_images(bundle, args)


def open_captioner(bundle, args):
    from glimpse.cli.base import open_pipeline

    options = {"backend": args.backend, "device": args.device, "threads": args.threads}
    return open_pipeline(bundle, "caption", precision=args.precision, cuda_graphs=args.cuda_graphs, **options)


def caption_images(bundle, args) -> None:
    from tqdm import tqdm

    from glimpse.images import image_files, load_image

    if args.features or args.collapse_repeats:
        raise GlimpseError(
            f"--features and --collapse-repeats are for m2 bundles; a {bundle.family} bundle reads images"
        )
    pipe = open_captioner(bundle, args)
    if args.fused and not getattr(pipe, "fused_beam", 0):
        raise GlimpseError(f"{bundle.path}: this bundle has no fused step (--fused)")
    if not args.images:
        raise GlimpseError("give the images to caption (files or directories)")
    files = image_files(args.images)
    if not files:
        raise GlimpseError("no images found in " + " ".join(args.images))
    sampling = None
    if args.sample:
        sampling = {"temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p, "seed": args.seed}
    options = {"beam_size": args.beam_size, "max_length": args.max_length or None, "nbest": args.nbest}
    options |= {"length_penalty": args.length_penalty, "sampling": sampling}
    if args.fused is not None:
        options["fused"] = args.fused
    failed = 0
    bar = tqdm(total=len(files), unit="image", disable=None, file=sys.stderr, leave=False)
    for i in range(0, len(files), args.batch_size):
        batch = []
        for f in files[i : i + args.batch_size]:
            try:
                batch.append((f, load_image(f)))
            except GlimpseError as e:  # one bad image is reported; the others are still captioned
                failed += 1
                log(f"glimpse: error: {e}")
        if batch:
            caps = pipe([im for _, im in batch], batch_size=args.batch_size, **options)
            for (f, im), cap in zip(batch, caps):
                cap.image = str(f)
                print_caption(cap, args.json)
                if args.attention_plot and cap.alphas is not None:
                    from glimpse.plot import attention_plot

                    out = Path(args.attention_plot)
                    if len(files) > 1:
                        out = out.with_name(f"{out.stem}-{Path(f).stem}{out.suffix}")
                    attention_plot(im, cap.words + ["<end>"] * cap.finished, cap.alphas, out)
        bar.update(len(files[i : i + args.batch_size]))
    bar.close()
    if failed:
        raise GlimpseError(f"{failed} of {len(files)} images could not be read (reported above)")


def print_caption(cap, as_json: bool) -> None:
    if as_json:
        print(json.dumps(cap.to_json()), flush=True)
        return
    print(f"{cap.image}\t{cap.caption}", flush=True)
    for c, s in cap.nbest[1:]:
        print(f"{cap.image}\t  {s:9.4f}  {c}")


def caption_regions(bundle, args) -> None:
    """A captioner that reads detection features: --features, not images."""
    from tqdm import tqdm

    from glimpse.cli.regions import expand_features

    if args.images or not args.features:
        raise GlimpseError("an m2 bundle reads detection features, not images: give them with --features FILE...")
    if args.sample or args.length_penalty or args.attention_plot:
        raise GlimpseError(
            "M2's search ranks by raw summed log-prob; --sample, --length-penalty, --attention-plot are sat's"
        )
    pipe = open_captioner(bundle, args)
    sources = expand_features(args.features)
    options = {"beam_size": args.beam_size, "max_length": args.max_length or None, "nbest": args.nbest}
    for i in tqdm(range(0, len(sources), args.batch_size), unit="batch", disable=None, file=sys.stderr, leave=False):
        chunk = sources[i : i + args.batch_size]
        for cap in pipe(chunk, collapse_repeats=args.collapse_repeats, batch_size=args.batch_size, **options):
            print_caption(cap, args.json)
