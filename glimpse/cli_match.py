"""The image-text matching commands of ``glimpse``: export mdan, index, search, match."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from glimpse.errors import GlimpseError


def cmd_export_mdan(args) -> None:
    import numpy as np

    from glimpse.bundle import check_output_dir
    from glimpse.checkpoints.mdan import import_mdan
    from glimpse.cli import log
    from glimpse.export.mdan import export_mdan
    from glimpse.images import image_files, load_image

    check_output_dir(Path(args.out), args.force)
    log(f"importing {args.checkpoint} and {args.cnn}")
    model, vocab, preprocess = import_mdan(
        args.checkpoint, args.cnn, args.caffe, args.image_size, args.max_sentence_length, args.central_fraction
    )
    c = model.config
    log(f"mdan: {c.backbone} at {c.image_size}, {len(vocab) - 1} words, embeddings of {c.embedding_size}")
    images = None
    if args.images:
        images = np.stack([preprocess(load_image(p)) for p in image_files(args.images)[: args.max_images]])
    source = {"checkpoint": Path(args.checkpoint).name, "cnn": Path(args.cnn).name}
    options = {"images": images, "force": args.force, "tolerance": args.tolerance, "source": source, "log": log}
    out = export_mdan(model, vocab, preprocess, args.out, **options)
    log(f"wrote bundle {out}")


def cmd_index(args) -> None:
    from glimpse import gallery
    from glimpse.cli import log
    from glimpse.images import IMAGE_SUFFIXES
    from glimpse.runtime.match import MatchPipeline

    root = Path(args.images)
    if not root.is_dir():
        raise GlimpseError(f"{root}: not a directory of images")
    files = sorted(f for f in root.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
    if not files:
        raise GlimpseError(f"{root}: no images in it ({', '.join(sorted(IMAGE_SUFFIXES))})")
    pipe = MatchPipeline(args.bundle, threads=args.threads)
    index = gallery.build(pipe, root, files, Path(args.out), args.batch_size, log)
    log(f"{args.out}: {len(index.files)} images, embeddings of {index.embeddings.shape[1]}")


def cmd_search(args) -> None:

    from glimpse import gallery
    from glimpse.images import load_image
    from glimpse.runtime.match import MatchPipeline

    index = gallery.Gallery(args.index, args.backend)
    pipe = MatchPipeline(args.bundle or index.meta["bundle"], threads=args.threads)
    if index.meta["graphs"] != {n: pipe.bundle.graphs[n]["sha256"] for n in index.meta["graphs"]}:
        raise GlimpseError(f"{pipe.bundle.path}: not the model that embedded {args.index}")
    if args.image:  # the reverse: one image against a file of sentences
        if not args.sentences:
            raise GlimpseError("--image needs --sentences FILE, the sentences to rank")
        sentences = [s.strip() for s in Path(args.sentences).read_text().splitlines() if s.strip()]
        if not sentences:
            raise GlimpseError(f"{args.sentences}: no sentences in it")
        query = pipe.embed_images([load_image(args.image)])
        scores, ids = gallery.InnerProductIndex(pipe.embed_texts(sentences), args.backend).search(query, args.top_k)
        hits = [{"sentence": sentences[i], "score": float(s)} for s, i in zip(scores[0], ids[0])]
    else:
        if not args.text:
            raise GlimpseError('give a sentence to search for (glimpse search INDEX "a sentence")')
        scores, ids = index.index.search(pipe.embed_texts([args.text]), args.top_k)
        root = Path(index.meta["root"])
        hits = [{"image": str(root / index.files[i]), "score": float(s)} for s, i in zip(scores[0], ids[0])]
    for rank, hit in enumerate(hits, 1):
        print(
            json.dumps({"rank": rank, **hit})
            if args.json
            else f"{rank:3d}  {hit['score']:10.3f}  {hit.get('image') or hit['sentence']}"
        )


def cmd_match(args) -> None:

    from glimpse.images import load_image
    from glimpse.runtime.match import MatchPipeline

    pipe = MatchPipeline(args.bundle, threads=args.threads)
    [scores] = pipe.scores([load_image(args.image)], args.texts)
    for text, score in sorted(zip(args.texts, scores.tolist()), key=lambda ts: -ts[1]):
        print(
            json.dumps({"image": args.image, "text": text, "score": score}) if args.json else f"{score:10.3f}  {text}"
        )


def add_export(fam) -> None:
    m = fam.add_parser(
        "mdan",
        help="Dual Attention Networks for matching, m-DAN (glimpse's canonical layout)",
        description="Export an m-DAN image-text matching model: encoder.onnx (image -> grid), image_embed.onnx"
        " (grid -> z_v, glimpse maps) and text_embed.onnx (tokens, lengths -> z_u, word weights); the similarity"
        " of an image and a sentence is <z_v, z_u>.",
        epilog="example: glimpse export mdan --checkpoint mdan.pth --cnn resnet152.pth --out mdan-bundle",
    )
    m.add_argument("--checkpoint", required=True, help="{'weights', 'vocab'[, 'config']} (glimpse/checkpoints/mdan.py)")
    m.add_argument("--cnn", required=True, help="the ResNet state dict the image features came from")
    m.add_argument("--caffe", action=argparse.BooleanOptionalAction, default=False, help="a Caffe-ported ResNet")
    m.add_argument("--image-size", type=int, help="center crop size (default: the checkpoint's config, else 448)")
    m.add_argument(
        "--central-fraction", type=float, help="resize to image-size / this first (default: config, else 0.875)"
    )
    m.add_argument("--max-sentence-length", type=int, default=40, help="longer sentences are cut (default 40)")
    m.add_argument("--out", required=True, help="bundle directory to write")
    m.add_argument("--images", nargs="+", metavar="PATH", help="real images to check the graphs on, besides noise")
    m.add_argument("--max-images", type=int, default=8, help="at most this many of --images (default 8)")
    m.add_argument("--tolerance", type=float, default=1e-4, help="largest relative error accepted (default 1e-4)")
    m.add_argument("--force", action="store_true", help="replace --out even if it is not a bundle")
    m.set_defaults(run=cmd_export_mdan)


def add_commands(sub) -> None:
    i = sub.add_parser(
        "index",
        help="embed a gallery of images with an m-DAN bundle, for glimpse search",
        description="Embed every image under IMAGES (recursively) and store the embeddings and file names in"
        " --out. Interrupted runs resume: run the same command again. A file that is not an image is reported"
        " and skipped.",
        epilog="example: glimpse index mdan-bundle photos/ --out photos.index && glimpse search photos.index"
        ' "a dog on a beach"',
    )
    i.add_argument("bundle", help="an mdan bundle (glimpse export mdan)")
    i.add_argument("images", help="directory of images")
    i.add_argument("--out", required=True, help="index directory to write (or to resume)")
    i.add_argument("--batch-size", type=int, default=32, help="images per encoder call (default 32)")
    i.add_argument("--threads", type=int, help="CPU threads (default: the cores this process may use)")
    i.set_defaults(run=cmd_index)

    s = sub.add_parser(
        "search",
        help="search an index with a sentence, or rank a file of sentences for an image",
        description="Text to images: the gallery images most similar to a sentence. Image to text (--image with"
        " --sentences): the sentences of a file (one per line) most similar to an image. Search is exact, by"
        " inner product, with numpy (default) or FAISS's flat index (--backend faiss; pip install"
        " 'glimpse[faiss]'): the same results.",
        epilog='examples: glimpse search photos.index "two red circles" --top-k 5 |'
        " glimpse search photos.index --image query.jpg --sentences captions.txt",
    )
    s.add_argument("index", help="an index directory (glimpse index)")
    s.add_argument("text", nargs="?", help="the sentence to search the gallery for")
    s.add_argument("--top-k", type=int, default=10, help="results to print (default 10)")
    s.add_argument("--image", help="rank --sentences for this image instead")
    s.add_argument("--sentences", help="file of sentences, one per line (with --image)")
    s.add_argument("--bundle", help="the mdan bundle (default: the one the index was built with)")
    s.add_argument("--json", action="store_true", help="one JSON object per result")
    s.add_argument(
        "--backend",
        choices=("numpy", "faiss"),
        default="numpy",
        help="exact search by numpy (default: measured faster on CPU, benchmarks/results/gallery_search.md) or FAISS",
    )
    s.add_argument("--threads", type=int, help="CPU threads (default: the cores this process may use)")
    s.set_defaults(run=cmd_search)

    m = sub.add_parser(
        "match",
        help="similarity scores of an image and sentences with an m-DAN bundle",
        description="Print S = <z_v, z_u> of the image with each sentence, most similar first.",
        epilog='example: glimpse match mdan-bundle photo.jpg "a red circle" "two blue stars"',
    )
    m.add_argument("bundle", help="an mdan bundle")
    m.add_argument("image", help="image file")
    m.add_argument("texts", nargs="+", help="sentences")
    m.add_argument("--json", action="store_true", help="one JSON object per pair")
    m.add_argument("--threads", type=int, help="CPU threads (default: the cores this process may use)")
    m.set_defaults(run=cmd_match)
