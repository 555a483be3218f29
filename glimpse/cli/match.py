"""``glimpse match``: the similarity of an image with each of some sentences."""

from __future__ import annotations

import json

from glimpse.cli.base import Tool, add_bundle_argument, add_threads_argument


class Match(Tool):
    """similarity scores of an image and sentences with an m-DAN bundle

    Print S = <z_v, z_u> of the image with each sentence, most similar first.
    """

    name = "match"
    shares_threads = True
    examples = ('glimpse match mdan-bundle photo.jpg "a red circle" "two blue stars"',)

    def add_arguments(self, m):
        add_bundle_argument(m, "an mdan bundle")
        m.add_argument("image", help="image file")
        m.add_argument("texts", nargs="+", help="sentences")
        m.add_argument("--json", action="store_true", help="one JSON object per pair")
        add_threads_argument(m)

    def run(self, args):
        from glimpse.cli.base import open_pipeline
        from glimpse.images import load_image

        pipe = open_pipeline(args.bundle, "match", threads=args.threads)
        [scores] = pipe.scores([load_image(args.image)], args.texts)
        for text, score in sorted(zip(args.texts, scores.tolist()), key=lambda ts: -ts[1]):
            if args.json:
                print(json.dumps({"image": args.image, "text": text, "score": score}))
            else:
                print(f"{score:10.3f}  {text}")
