"""``glimpse search``: a gallery index searched with a sentence, or a file of sentences ranked for an image."""

from __future__ import annotations

import json
from pathlib import Path

from glimpse.cli.base import Tool, add_threads_argument
from glimpse.errors import GlimpseError


class Search(Tool):
    """search an index with a sentence, or rank a file of sentences for an image

    Text to images: the gallery images most similar to a sentence. Image to text (--image with --sentences): the
    sentences of a file (one per line) most similar to an image. Search is exact, by inner product, with numpy
    (default) or FAISS's flat index (--backend faiss; pip install 'glimpse[faiss]'): the same results.
    """

    name = "search"
    shares_threads = True
    examples = (
        'glimpse search photos.index "two red circles" --top-k 5',
        "glimpse search photos.index --image query.jpg --sentences captions.txt",
    )

    def add_arguments(self, s):
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
            help="exact search by numpy (default: measured faster on CPU, benchmarks/results/gallery_search.md) or"
            " FAISS",
        )
        add_threads_argument(s)

    def run(self, args):
        from glimpse.cli.base import open_pipeline
        from glimpse.images import load_image
        from glimpse.runtime import gallery

        index = gallery.Gallery(args.index, args.backend)
        pipe = open_pipeline(args.bundle or index.meta["bundle"], "match", threads=args.threads)
        if index.meta["graphs"] != {n: pipe.bundle.graphs[n]["sha256"] for n in index.meta["graphs"]}:
            raise GlimpseError(f"{pipe.bundle.path}: not the model that embedded {args.index}")
        if args.image:  # the reverse: one image against a file of sentences
            if not args.sentences:
                raise GlimpseError("--image needs --sentences FILE, the sentences to rank")
            sentences = [s.strip() for s in Path(args.sentences).read_text().splitlines() if s.strip()]
            if not sentences:
                raise GlimpseError(f"{args.sentences}: no sentences in it")
            query = pipe.embed_images([load_image(args.image)])
            texts = gallery.InnerProductIndex(pipe.embed_texts(sentences), args.backend)
            scores, ids = texts.search(query, args.top_k)
            hits = [{"sentence": sentences[i], "score": float(s)} for s, i in zip(scores[0], ids[0])]
        else:
            if not args.text:
                raise GlimpseError('give a sentence to search for (glimpse search INDEX "a sentence")')
            scores, ids = index.index.search(pipe.embed_texts([args.text]), args.top_k)
            root = Path(index.meta["root"])
            hits = [{"image": str(root / index.files[i]), "score": float(s)} for s, i in zip(scores[0], ids[0])]
        for rank, hit in enumerate(hits, 1):
            if args.json:
                print(json.dumps({"rank": rank, **hit}))
            else:
                print(f"{rank:3d}  {hit['score']:10.3f}  {hit.get('image') or hit['sentence']}")
