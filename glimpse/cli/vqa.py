"""``glimpse vqa``: questions about one image, answered by a VQA bundle."""

from __future__ import annotations

import json

from glimpse.cli.base import Tool, add_bundle_argument, add_runtime_arguments, log


class VQA(Tool):
    """answer questions about an image with a VQA bundle

    Answer questions about one image with a VQA bundle (saaa, san, rdan, naive): the top-k answers with their
    probabilities. The image is encoded once for all the questions. Words the model does not know are read as
    unknown and named; a question longer than the model's limit is cut, with a warning.
    """

    name = "vqa"
    shares_threads = True
    examples = (
        'glimpse vqa vqa-bundle photo.jpg "what colour is the bus?" "how many people are there?"',
        'glimpse vqa vqa-bundle photo.jpg "is it raining?" --json --attention-plot glimpses.png',
    )

    def add_arguments(self, q):
        add_bundle_argument(q, "bundle directory (glimpse export saaa|san|rdan|naive ...)")
        q.add_argument("image", help="image file")
        q.add_argument("questions", nargs="+", metavar="QUESTION", help="one or more questions")
        q.add_argument("--top-k", type=int, default=5, help="answers to list per question (default 5)")
        q.add_argument("--json", action="store_true", help="one JSON object per question")
        q.add_argument("--attention-plot", metavar="PNG", help="save the first question's glimpse maps over the image")
        add_runtime_arguments(q, backends=("onnxruntime", "torch"), device=False)

    def run(self, args):
        import warnings

        from glimpse.cli.base import open_pipeline
        from glimpse.images import load_image

        pipe = open_pipeline(args.bundle, "vqa", backend=args.backend, threads=args.threads, precision=args.precision)
        image = load_image(args.image)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            answers = pipe.ask(image, args.questions, top_k=args.top_k)
        for w in caught:
            log(f"glimpse: warning: {w.message}")
        for a in answers:
            a.image = args.image
            if args.json:
                print(json.dumps(a.to_json()), flush=True)
                continue
            note = " (no word of it is known to the model)" if a.no_known_words else ""
            if a.unknown and not note:
                note = f" (unknown words: {', '.join(a.unknown)})"
            print(f"{a.question}{note}")
            for answer, p in a.answers:
                print(f"  {p:6.1%}  {answer}")
        if args.attention_plot:
            from glimpse.plot import attention_plot

            a = answers[0]
            labels = [f"glimpse {g + 1}" for g in range(len(a.glimpses))]
            attention_plot(image, labels, a.glimpses, args.attention_plot, first=a.answer)
            log(f"attention maps of the first question: {args.attention_plot}")
        return 0
