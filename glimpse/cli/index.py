"""``glimpse index``: a gallery of images embedded by an image-text matching bundle, for ``glimpse search``."""

from __future__ import annotations

from pathlib import Path

from glimpse.cli.base import Tool, add_bundle_argument, add_threads_argument, log
from glimpse.errors import GlimpseError


class Index(Tool):
    """embed a gallery of images with an m-DAN bundle, for glimpse search

    Embed every image under IMAGES (recursively) and store the embeddings and file names in --out. Interrupted
    runs resume: run the same command again. A file that is not an image is reported and skipped.
    """

    name = "index"
    shares_threads = True
    examples = (
        'glimpse index mdan-bundle photos/ --out photos.index && glimpse search photos.index "a dog on a beach"',
    )

    def add_arguments(self, i):
        add_bundle_argument(i, "an mdan bundle (glimpse export mdan)")
        i.add_argument("images", help="directory of images")
        i.add_argument("--out", required=True, help="index directory to write (or to resume)")
        i.add_argument("--batch-size", type=int, default=32, help="images per encoder call (default 32)")
        add_threads_argument(i)

    def run(self, args):
        from glimpse.cli.base import open_pipeline
        from glimpse.images import IMAGE_SUFFIXES
        from glimpse.runtime import gallery

        root = Path(args.images)
        if not root.is_dir():
            raise GlimpseError(f"{root}: not a directory of images")
        files = sorted(f for f in root.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        if not files:
            raise GlimpseError(f"{root}: no images in it ({', '.join(sorted(IMAGE_SUFFIXES))})")
        pipe = open_pipeline(args.bundle, "match", threads=args.threads)
        index = gallery.build(pipe, root, files, Path(args.out), args.batch_size, log)
        log(f"{args.out}: {len(index.files)} images, embeddings of {index.embeddings.shape[1]}")
