"""The ``glimpse`` command. Bad input prints one line to stderr and exits 2, never a traceback."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from glimpse import __version__
from glimpse.errors import GlimpseError


def cmd_export(args) -> None:
    import numpy as np

    from glimpse.bundle import check_output_dir
    from glimpse.checkpoints.sat import import_sat
    from glimpse.export.sat import export_sat
    from glimpse.images import image_files, load_image

    check_output_dir(Path(args.out), args.force)  # before the slow import
    log(f"importing {args.checkpoint}")
    model, vocab, preprocess = import_sat(args.checkpoint, args.word_map, args.image_size)
    c = model.config
    log(
        f"sat: {c.backbone}, attention {c.attention_dim}, embedding {c.embed_dim}, decoder {c.decoder_dim},"
        f" vocabulary {c.vocab_size}"
    )
    images = None
    if args.images:
        images = np.stack([preprocess(load_image(p)) for p in image_files(args.images)[: args.max_images]])
    out = export_sat(
        model,
        vocab,
        preprocess,
        args.out,
        images=images,
        force=args.force,
        tolerance=args.tolerance,
        fused_beam=args.fused_beam,
        log=log,
        source={"checkpoint": Path(args.checkpoint).name, "word_map": Path(args.word_map).name},
    )
    log(f"wrote bundle {out}")


def cmd_export_vqa(args) -> None:
    import numpy as np

    from glimpse.bundle import check_output_dir
    from glimpse.checkpoints.vqa import import_vqa
    from glimpse.export.vqa import export_vqa
    from glimpse.images import image_files, load_image

    check_output_dir(Path(args.out), args.force)
    log(f"importing {args.checkpoint} and {args.cnn}")
    model, questions, answers, preprocess = import_vqa(
        args.family,
        args.checkpoint,
        args.cnn,
        args.caffe,
        args.image_size,
        args.max_question_length,
        args.central_fraction,
    )
    c = model.config
    log(
        f"{args.family}: {c.backbone}{' (Caffe)' if c.caffe else ''} at {c.image_size}, {len(questions) - 1}"
        f" question words, {len(answers)} answers"
    )
    images = None
    if args.images:
        images = np.stack([preprocess(load_image(p)) for p in image_files(args.images)[: args.max_images]])
    source = {"checkpoint": Path(args.checkpoint).name, "cnn": Path(args.cnn).name}
    options = {"images": images, "force": args.force, "tolerance": args.tolerance, "source": source, "log": log}
    out = export_vqa(model, args.family, questions, answers, preprocess, args.out, **options)
    log(f"wrote bundle {out}")


def cmd_vqa(args) -> int:
    import json
    import warnings

    from glimpse.images import load_image
    from glimpse.runtime.vqa import VQAPipeline

    pipe = VQAPipeline(args.bundle, backend=args.backend, threads=args.threads, precision=args.precision)
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


def cmd_inspect(args) -> None:
    from glimpse.bundle import Bundle

    b = Bundle(args.bundle)
    m = b.manifest
    print(f"bundle   {b.path}  (format {m['format_version']}, family {b.family})")
    print("config   " + ", ".join(f"{k}={v}" for k, v in b.config.items()))
    p = m["preprocess"]
    if p is None:  # m2 reads detection features
        print(f"regions  {b.config['regions']} per image, {b.config['d_in']} features each (zero-padded or cut)")
    else:
        crop = f", center crop {p['crop'][0]}x{p['crop'][1]}" if p.get("crop") else ""
        print(
            f"images   RGB, {p['interpolation']} resize {p['resize']} {p['size'][0]}x{p['size'][1]}{crop},"
            f" /255, mean {p['mean']}, std {p['std']}"
        )
    print("tokens   " + ", ".join(f"{k}={v}" for k, v in m["special_tokens"].items()) + f", vocabulary {len(b.vocab)}")
    width = max(len(v["name"]) for g in b.graphs.values() for v in g["inputs"] + g["outputs"])
    for name, g in b.graphs.items():
        err = max((e["max_rel"] for e in g.get("max_error", {}).values()), default=float("nan"))
        print(f"\n{name}  {g['file']}  {g['bytes'] / 1e6:.1f} MB  {g['precision']}  max rel error {err:.1e}")
        for precision, q in g.get("precisions", {}).items():
            err = max((e["max_rel"] for e in q["max_error_vs_fp32"].values()), default=float("nan"))
            print(f"  {precision}  {q['file']}  {q['bytes'] / 1e6:.1f} MB  max rel error {err:.1e} against fp32")
        for kind, values in (("in ", g["inputs"]), ("out", g["outputs"])):
            for v in values:
                print(f"  {kind}  {v['name']:<{width}}  {v['dtype']:<8} [{', '.join(map(str, v['shape']))}]")
    print()
    check = m.get("check", {})
    if check:
        inputs = check.get("regions") or f"{check['images']} images"  # m2 is checked on detections
        print(f"checked  on {inputs}, tolerance {check['tolerance']:.0e}: {check['metric']}")
    print("tools    " + ", ".join(f"{k} {v}" for k, v in m.get("tools", {}).items()))


def cmd_caption(args) -> None:
    import json

    from tqdm import tqdm

    from glimpse.bundle import Bundle
    from glimpse.images import image_files, load_image
    from glimpse.runtime.caption import CaptionPipeline

    if Bundle(args.bundle).family == "m2":
        from glimpse import cli_m2

        return cli_m2.caption(args)
    if args.features or args.collapse_repeats:
        raise GlimpseError("--features and --collapse-repeats are for m2 bundles; a sat bundle reads images")
    pipe = CaptionPipeline(
        args.bundle,
        backend=args.backend,
        device=args.device,
        threads=args.threads,
        precision=args.precision,
        cuda_graphs=args.cuda_graphs,
    )
    if not args.images:
        raise GlimpseError("give the images to caption (files or directories)")
    files = image_files(args.images)
    if not files:
        raise GlimpseError("no images found in " + " ".join(args.images))
    sampling = None
    if args.sample:
        sampling = {"temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p, "seed": args.seed}
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
            caps = pipe(
                [im for _, im in batch],
                beam_size=args.beam_size,
                max_steps=args.max_steps or 51,
                length_penalty=args.length_penalty,
                nbest=args.nbest,
                sampling=sampling,
                batch_size=args.batch_size,
                fused=args.fused,
            )
            for (f, im), cap in zip(batch, caps):
                cap.image = str(f)
                if args.json:
                    print(json.dumps(cap.to_json()), flush=True)
                else:
                    print(f"{f}\t{cap.caption}", flush=True)
                    for c, s in cap.nbest[1:]:
                        print(f"{f}\t  {s:9.4f}  {c}")
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


def cmd_build(args) -> None:
    from glimpse.bundle import Bundle
    from glimpse.runtime import tensorrt

    bundle = Bundle(args.bundle)
    tensorrt.require()  # one line on a machine without TensorRT or a GPU
    for precision in args.precision:
        tensorrt.build(bundle, precision, log=log)


def cmd_demo(args) -> None:
    from glimpse.demo import run

    run.run(
        Path(args.out),
        checkpoints=Path(args.checkpoints) if args.checkpoints else run.PACKAGED,
        count=args.scenes,
        show=args.show,
        beam_size=args.beam_size,
        speed_scenes=args.speed_scenes,
        attention_plot=Path(args.attention_plot) if args.attention_plot else None,
        threads=args.threads,
        vqa=args.vqa,
        log=log,
    )


def cmd_demo_train(args) -> None:
    from dataclasses import replace

    from glimpse.demo import train_m2, train_mdan, train_sat, train_vqa

    out = Path(args.out)
    given = {k: getattr(args, k) for k in ("steps", "batch_size", "val_every", "seed") if getattr(args, k) is not None}
    families = tuple(m for m in args.models if m in train_vqa.FAMILIES)
    if "sat" not in args.models and not (out / train_sat.CHECKPOINT).is_file():
        raise GlimpseError(f"{out}: the other models read the captioner's CNN; train it first (--models sat ...)")
    if "sat" in args.models:
        train_sat.train(out, replace(train_sat.TrainConfig(), **given), log=log)
    if families:
        train_vqa.train(out, out, families, replace(train_vqa.TrainConfig(), **given), log=log)
    if "mdan" in args.models:
        train_mdan.train(out, out, replace(train_mdan.TrainConfig(), **given), log=log)
    if "m2" in args.models:
        train_m2.train(out, out, replace(train_m2.TrainConfig(), **given), log=log)


def cmd_bench(args) -> None:
    from glimpse import bench

    bench.run(
        args.model,
        out=Path(args.out),
        cache=Path(args.cache),
        device=args.device,
        contenders=args.contenders and tuple(args.contenders),
        beams=tuple(args.beams),
        batches=tuple(args.batches),
        images=args.images,
        throughput_beam=args.throughput_beam,
        threads=args.threads,
        compile=args.compile,
        log=log,
    )


def cmd_quantize(args) -> None:
    from glimpse.bundle import Bundle
    from glimpse.export.precision import quantize

    bundle = Bundle(args.bundle)
    if bundle.family == "m2":
        from glimpse.cli_m2 import calibration_regions

        if args.calibration_images:
            raise GlimpseError("an m2 bundle reads detection features: calibrate it with --calibration-features")
        inputs = calibration_regions(bundle, args.calibration_features, args.calibration_size)
    elif args.calibration_features:
        raise GlimpseError(f"--calibration-features is for m2 bundles; a {bundle.family} bundle calibrates on images")
    else:
        inputs = calibration_pixels(bundle, args.calibration_images, args.calibration_size)
    for precision in args.precision:
        quantize(bundle, precision, inputs, log=log)


def calibration_pixels(bundle, sources: list[str] | None, size: int):
    """(N, 3, H, W) preprocessed images for ``glimpse quantize``: the files given, or generated
    validation scenes."""
    import numpy as np

    from glimpse.images import image_files, load_image

    if sources:
        files = image_files(sources)[:size]
        if not files:
            raise GlimpseError("no images found in " + " ".join(sources))
        images = [load_image(f) for f in files]
    else:
        from glimpse.demo import scenes

        log(f"calibrating on {size} generated validation scenes (--calibration-images for yours)")
        side = bundle.preprocess.output_size[0]
        images = [s.image(side) for s in scenes.scenes("val", size)]
    return np.stack([bundle.preprocess(im) for im in images])


def cmd_check(args) -> int:
    from glimpse.bundle import Bundle
    from glimpse.check import check_bundle

    reports = check_bundle(Bundle(args.bundle))
    print(f"{'graph':<10} {'precision':<9} {'file':<20} {'opset':>5} {'nodes':>6}  TensorRT parser rules")
    for r in reports:
        print(f"{r.graph:<10} {r.precision:<9} {r.file:<20} {r.opset!s:>5} {r.nodes:>6}  {'ok' if r.ok else 'FAILED'}")
        for problem in r.problems:
            print(f"    {problem}")
    failed = sum(not r.ok for r in reports)
    print(f"{len(reports) - failed} of {len(reports)} graphs pass" + (f"; {failed} would not parse" if failed else ""))
    return 1 if failed else 0


def cmd_eval(args) -> None:
    from glimpse.bundle import Bundle
    from glimpse.evaluate import evaluate, table, write

    results = evaluate(Bundle(args.bundle), args.precision, args.scenes, args.beam_size, args.threads, log=log)
    print(table(results), end="")
    if args.json:
        write(results, Path(args.json))
        log(f"wrote {args.json}")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="glimpse",
        description="Export, check and run attention-based vision-language models (Show-Attend-Tell, ...).",
        epilog="Run 'glimpse COMMAND --help' for the options of each command.",
    )
    p.add_argument("--version", action="version", version=f"glimpse {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    e = sub.add_parser(
        "export",
        help="import a trained checkpoint and write a bundle of checked ONNX graphs",
        description="Import a checkpoint of a public implementation and write a bundle: ONNX graphs cut for fast"
        " decoding, each checked against the PyTorch reference on ONNX Runtime before anything is written.",
    )
    fam = e.add_subparsers(dest="family", required=True, metavar="FAMILY")
    sat = fam.add_parser(
        "sat",
        help="Show, Attend and Tell (sgrvinod/a-PyTorch-Tutorial-to-Image-Captioning)",
        description="Export a Show-Attend-Tell captioner: encoder.onnx (image -> features), init.onnx (features ->"
        " attention projection, h0, c0) and step.onnx (one decode step for K beams per image).",
        epilog="example: glimpse export sat --checkpoint BEST_checkpoint_coco_5_cap_per_img_5_min_word_freq.pth.tar"
        " --word-map WORDMAP_coco_5_cap_per_img_5_min_word_freq.json --out sat-bundle",
    )
    sat.add_argument(
        "--checkpoint",
        required=True,
        help="the tutorial's .pth.tar (whole pickled modules, loaded"
        " through an allow-list: no code from it runs), or a state dict with encoder./decoder. keys",
    )
    sat.add_argument("--word-map", required=True, help="the tutorial's WORDMAP_*.json")
    sat.add_argument(
        "--image-size",
        type=int,
        default=256,
        help="side images were resized to in training (default 256, the tutorial's; checkpoints do not say)",
    )
    sat.add_argument("--out", required=True, help="bundle directory to write")
    sat.add_argument(
        "--images",
        nargs="+",
        metavar="PATH",
        help="real images (files or directories) to check the graphs on, besides noise images",
    )
    sat.add_argument("--max-images", type=int, default=8, help="at most this many of --images (default 8)")
    sat.add_argument(
        "--tolerance",
        type=float,
        default=1e-4,
        help="largest max|onnx - torch| / max|torch| accepted per output (default 1e-4)",
    )
    sat.add_argument(
        "--fused-beam",
        type=int,
        default=5,
        metavar="K",
        help="slots of step_fused.onnx, the step with the beam selection inside (GPU serving), which serves"
        " beam sizes up to K (default 5; 0: no fused step)",
    )
    sat.add_argument("--force", action="store_true", help="replace --out even if it is not a bundle")
    sat.set_defaults(run=cmd_export)

    for family, title in (
        ("saaa", "Show, Ask, Attend, and Answer (Cyanogenoid/pytorch-vqa)"),
        ("san", "Stacked Attention Networks (glimpse's canonical layout)"),
        ("rdan", "Dual Attention Networks, r-DAN (glimpse's canonical layout)"),
    ):
        v = fam.add_parser(
            family,
            help=title,
            description=f"Export a {title} VQA model: encoder.onnx (image -> grid), question.onnx (tokens,"
            " lengths -> the question's encoding; the lengths act as the packed batch did) and head.onnx (grid,"
            " question -> answer logits and glimpse maps).",
            epilog=f"example: glimpse export {family} --checkpoint logs/2017-08-04_00.55.19.pth --cnn"
            " resnet152-95e0e999.pth --out vqa-bundle",
        )
        v.add_argument(
            "--checkpoint",
            required=True,
            help="a checkpoint as pytorch-vqa's train.py writes it ({'weights', 'vocab', ...}; loaded through"
            " an allow-list: no code from it runs)",
        )
        v.add_argument("--cnn", required=True, help="the ResNet state dict the image features came from")
        v.add_argument(
            "--caffe",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="the CNN is the Caffe-ported ResNet (stride in the first 1x1 convolution, ceil-mode max-pool);"
            f" default: {'yes, as pytorch-vqa used' if family == 'saaa' else 'no'}",
        )
        v.add_argument(
            "--image-size",
            type=int,
            help="center crop the features were computed at (default: the checkpoint's config, else 448)",
        )
        v.add_argument(
            "--central-fraction",
            type=float,
            help="images are resized to image-size / this, then center-cropped (default: the checkpoint's"
            " config, else 0.875, pytorch-vqa's)",
        )
        v.add_argument(
            "--max-question-length",
            type=int,
            default=23,
            help="longest question the model reads; longer ones are cut with a warning (default 23)",
        )
        v.add_argument("--out", required=True, help="bundle directory to write")
        v.add_argument("--images", nargs="+", metavar="PATH", help="real images to check the graphs on, besides noise")
        v.add_argument("--max-images", type=int, default=8, help="at most this many of --images (default 8)")
        v.add_argument("--tolerance", type=float, default=1e-4, help="largest relative error accepted (default 1e-4)")
        v.add_argument("--force", action="store_true", help="replace --out even if it is not a bundle")
        v.set_defaults(run=cmd_export_vqa)

    from glimpse import cli_match

    cli_match.add_export(fam)
    from glimpse import cli_m2

    cli_m2.add_export(fam)

    q = sub.add_parser(
        "vqa",
        help="answer questions about an image with a VQA bundle",
        description="Answer questions about one image with a saaa/san/rdan bundle: the top-k answers with"
        " their probabilities. The image is encoded once for all the questions. Words the model does not"
        " know are read as unknown and named; a question longer than the model's limit is cut, with a warning.",
        epilog='examples: glimpse vqa vqa-bundle photo.jpg "what colour is the bus?" "how many people are there?"'
        ' | glimpse vqa vqa-bundle photo.jpg "is it raining?" --json --attention-plot glimpses.png',
    )
    q.add_argument("bundle", help="bundle directory (glimpse export saaa|san|rdan ...)")
    q.add_argument("image", help="image file")
    q.add_argument("questions", nargs="+", metavar="QUESTION", help="one or more questions")
    q.add_argument("--top-k", type=int, default=5, help="answers to list per question (default 5)")
    q.add_argument("--json", action="store_true", help="one JSON object per question")
    q.add_argument("--attention-plot", metavar="PNG", help="save the first question's glimpse maps over the image")
    q.add_argument("--backend", default="onnxruntime", choices=["onnxruntime", "torch"])
    q.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8"])
    q.add_argument("--threads", type=int, default=None, help="CPU threads (default: the cores this process may use)")
    q.set_defaults(run=cmd_vqa)
    cli_match.add_commands(sub)
    from glimpse import cli_serve

    cli_serve.add_command(sub)

    c = sub.add_parser(
        "caption",
        help="caption images with a sat bundle, or detection features with an m2 bundle",
        description="Caption images with a Show-Attend-Tell bundle, or detection features with a Meshed-Memory"
        " Transformer bundle, each with its public beam search. sat's is the tutorial's (caption.py): cumulative"
        " log-probs, finished hypotheses leave the beam, at most 51 steps. m2's is the repository's: a fixed width"
        " where finished beams carry on unchanged, 20 steps. Both pick the best by raw summed log-prob and are"
        " batched over images with identical results.",
        epilog="examples: glimpse caption sat-bundle photo.jpg | glimpse caption sat-bundle photos/ --json"
        " --batch-size 16 | glimpse caption sat-bundle photo.jpg --attention-plot att.png"
        " | glimpse caption m2-bundle --features 391895.npy coco_detections.hdf5:522418",
    )
    c.add_argument("bundle", help="bundle directory (glimpse export sat|m2 ...)")
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
        "--max-steps",
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
    c.add_argument(
        "--backend",
        choices=["onnxruntime", "torch", "tensorrt"],
        default="onnxruntime",
        help="onnxruntime (default; the bundle's ONNX graphs), torch (the reference modules) or tensorrt (the"
        " engines glimpse build made; a GPU)",
    )
    c.add_argument(
        "--precision",
        choices=["fp32", "fp16", "int8"],
        default="fp32",
        help="which graphs to run (default fp32; fp16/int8 are made by glimpse quantize; onnxruntime, tensorrt)",
    )
    c.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    c.add_argument(
        "--fused",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="search over the fused step (beam selection inside the graph; the same captions). Default: at beam"
        " size K (the bundle's --fused-beam, 5), and on a GPU at any beam size up to K",
    )
    c.add_argument(
        "--cuda-graphs",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="on CUDA, capture each graph once per input shape and replay it (default on)",
    )
    c.add_argument("--threads", type=int, default=None, help="CPU threads (default: the cores this process may use)")
    c.add_argument("--batch-size", type=int, default=8, help="images decoded together (default 8)")
    c.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per image: image, caption, words, tokens (with <start>/<end> ids), score",
    )
    c.add_argument("--attention-plot", metavar="OUT.png", help="write each word's attention map over the image")
    c.set_defaults(run=cmd_caption)

    d = sub.add_parser(
        "demo",
        help="run the packaged demo models on generated scenes: captions, answers, retrieval; scored and timed",
        description="Import the packaged demo checkpoint (a Show-Attend-Tell model trained on generated scenes of"
        " coloured shapes, saved in the tutorial's format), export it to a bundle (once; reused), caption held-out"
        " test scenes with ONNX Runtime on the CPU, print them beside their reference captions with BLEU and CIDEr"
        " (pycocoevalcap), check the torch backend gives the same captions, and time glimpse against the"
        " tutorial's caption.py loop. Then the packaged VQA models (saaa, san, rdan; pytorch-vqa's checkpoint"
        " format) answer every question of those scenes (accuracy per kind of question), and the m-DAN"
        " matching model retrieves them by their captions (R@1/5/10 both ways), each checked against the"
        " torch backend.",
        epilog="examples: glimpse demo | glimpse demo --attention-plot attention.png | glimpse demo train --out my-demo"
        " && glimpse demo --checkpoints my-demo",
    )
    d.add_argument(
        "--out", default="glimpse-demo", help="directory for the bundle and scene images (default glimpse-demo)"
    )
    d.add_argument("--checkpoints", help="a directory written by 'glimpse demo train' (default: the packaged model)")
    d.add_argument("--scenes", type=int, default=500, help="held-out test scenes to caption and score (default 500)")
    d.add_argument("--show", type=int, default=8, help="scenes to print beside their references (default 8)")
    d.add_argument("--beam-size", "-b", type=int, default=3, help="beam width (default 3)")
    d.add_argument(
        "--speed-scenes",
        type=int,
        default=20,
        help="scenes to time at batch 1 against the reference (default 20; 0 skips)",
    )
    d.add_argument("--attention-plot", metavar="OUT.png", help="write the first scene's attention maps")
    d.add_argument(
        "--vqa",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also answer the scenes' questions with the demo VQA models (saaa, san, rdan), retrieve them by"
        " their captions with the demo m-DAN and caption them with the demo M2 (default: yes)",
    )
    d.add_argument("--threads", type=int, default=None, help="CPU threads (default: the cores this process may use)")
    d.set_defaults(run=cmd_demo)
    demo_sub = d.add_subparsers(dest="demo_command", metavar="train")
    t = demo_sub.add_parser(
        "train",
        help="train the demo models from scratch (about 40 minutes on 2 CPU cores)",
        description="Train the demo Show-Attend-Tell captioner on freshly generated scenes as the tutorial's"
        " train.py trains, and write the checkpoint with the best validation BLEU-4 in the tutorial's layout"
        " (BEST_checkpoint_shapes.pth.tar, WORDMAP_shapes.json); then the VQA models saaa, san and rdan on the"
        " scenes' questions over the captioner's frozen CNN, as pytorch-vqa's train.py trains, each written as"
        " pytorch-vqa writes its checkpoints (<family>_shapes.pth); then the m-DAN matching model on the scenes'"
        " captions (mdan_shapes.pth); then the Meshed-Memory Transformer on the grid cells of the captioner's CNN as"
        " its regions (m2_shapes.pth, m2_vocab.json).",
        epilog="examples: glimpse demo train --out my-demo | glimpse demo train --out my-demo --models saaa"
        " (the VQA models need the captioner in --out)",
    )
    t.add_argument("--out", required=True, help="directory to write the checkpoints into")
    t.add_argument(
        "--models",
        nargs="+",
        choices=("sat", "saaa", "san", "rdan", "mdan", "m2"),
        default=["sat", "saaa", "san", "rdan", "mdan", "m2"],
        help="which to train (default all; the captioner first, its CNN feeds the others)",
    )
    t.add_argument("--steps", type=int, help="optimizer steps (default 1500 sat, 3000 VQA, 2000 mdan, 3000 m2)")
    t.add_argument("--batch-size", type=int, help="scenes (sat 32, mdan 64) or questions (VQA 128) per step")
    t.add_argument("--val-every", type=int, help="validate and keep the best every N steps (default 250 / 500)")
    t.add_argument("--seed", type=int, help="random seed of the initialisation and data order (default 0)")
    t.set_defaults(run=cmd_demo_train)

    q = sub.add_parser(
        "quantize",
        help="write fp16 and int8 versions of a bundle's graphs, checked against fp32",
        description="Write <graph>.fp16.onnx (onnxruntime's float16 converter; fp32 inputs/outputs; softmax,"
        " normalisations and reductions kept in fp32) and/or <graph>.int8.onnx (Q/DQ by onnxruntime's"
        " quantize_static with TensorRT's rules: symmetric int8, zero points 0, per-channel weights, float bias,"
        " only Conv/MatMul/Gemm) beside the fp32 graphs, measure each against fp32 on the calibration inputs"
        " and record them in the manifest. The step graph calibrates on the states seen while decoding. An m2"
        " bundle calibrates on detection features (--calibration-features) instead of images.",
        epilog="examples: glimpse quantize sat-bundle --precision fp16 int8 | glimpse quantize sat-bundle"
        " --precision int8 --calibration-images photos/ --calibration-size 64 | glimpse quantize m2-bundle"
        " --precision int8 --calibration-features val_detections.hdf5",
    )
    q.add_argument("bundle", help="bundle directory")
    q.add_argument("--precision", nargs="+", choices=["fp16", "int8"], required=True)
    q.add_argument(
        "--calibration-images",
        nargs="+",
        metavar="PATH",
        help="images (files or directories) to calibrate on (default: generated validation scenes)",
    )
    q.add_argument(
        "--calibration-features",
        nargs="+",
        metavar="FILE",
        help="m2: detection features to calibrate on, as glimpse caption --features reads them (default, for an m2"
        " of the demo scenes: their validation scenes' grid cells)",
    )
    q.add_argument("--calibration-size", type=int, default=32, help="at most this many images (default 32)")
    q.set_defaults(run=cmd_quantize)

    from glimpse.bench import CONTENDERS, GPU_CONTENDERS, PRECISION_CONTENDERS

    b = sub.add_parser(
        "bench",
        help="measure captioning latency, throughput and memory against the tutorial's reference",
        description="Run the benchmark suite: the tutorial's caption.py (eager PyTorch, one image at a time),"
        " glimpse's torch backend and glimpse on ONNX Runtime, each in its own process on the same device."
        " Prints a table and writes JSON, markdown and a PNG plot; every figure is also a ratio to the reference"
        " measured in the same run.",
        epilog="examples: glimpse bench | glimpse bench --model demo --images 20 | glimpse bench --device cuda"
        " | glimpse bench --model my-bundle --contenders onnxruntime --batches 1 8 32",
    )
    b.add_argument(
        "--model",
        default="tutorial",
        help="tutorial (default: ResNet-101, 512/512/512, 9,490 words, random weights), demo (the packaged"
        " demo model), or a sat bundle directory",
    )
    b.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    b.add_argument(
        "--contenders",
        nargs="+",
        choices=CONTENDERS + PRECISION_CONTENDERS + GPU_CONTENDERS,
        help="what to measure: the tutorial's loop, glimpse on torch, glimpse on ONNX Runtime in fp32/fp16/int8,"
        " and on CUDA glimpse on torch with CUDA graphs and on TensorRT engines (default all that can run here;"
        " the fp16/int8 graphs are made for the tutorial and demo models, and used for a bundle directory where"
        " glimpse quantize made them)",
    )
    b.add_argument("--beams", nargs="+", type=int, default=[1, 3, 5], help="beam widths for latency (default 1 3 5)")
    b.add_argument(
        "--batches", nargs="+", type=int, default=[1, 2, 4, 8, 16, 32, 64], help="batch sizes for throughput"
    )
    b.add_argument("--throughput-beam", type=int, default=5, help="beam width of the throughput runs (default 5)")
    b.add_argument("--images", type=int, default=12, help="test scenes timed per beam at batch 1 (default 12)")
    b.add_argument("--threads", type=int, default=None, help="CPU threads (default: the cores this process may use)")
    b.add_argument("--compile", action="store_true", help="torch contender: torch.compile each graph")
    b.add_argument("--out", default="benchmarks/results", help="directory for the results (default benchmarks/results)")
    b.add_argument("--cache", default="runs/bench", help="directory for the exported bundles (default runs/bench)")
    b.set_defaults(run=cmd_bench)

    t = sub.add_parser(
        "build",
        help="build TensorRT engines from a bundle's graphs (needs TensorRT and an NVIDIA GPU)",
        description="Parse each graph of the bundle at each --precision with TensorRT's ONNX parser (strongly"
        " typed: the precision is the graph's own, made by glimpse quantize), with one optimisation profile over"
        " the image and beam axes (glimpse.profiles), and write the engines to the bundle's cache,"
        " engines/sm<compute capability>-trt<version>/<graph>.<precision>.<sha256>.plan, with a timing cache."
        " Engines already built for this GPU, TensorRT version and graph are kept. Then: glimpse caption BUNDLE"
        " IMAGE --backend tensorrt --device cuda.",
        epilog="example: glimpse quantize sat-bundle --precision fp16 && glimpse check sat-bundle && glimpse build"
        " sat-bundle --precision fp32 fp16",
    )
    t.add_argument("bundle", help="bundle directory")
    t.add_argument("--precision", nargs="+", choices=["fp32", "fp16", "int8"], default=["fp32"])
    t.set_defaults(run=cmd_build)

    c = sub.add_parser(
        "check",
        help="check every graph of a bundle against TensorRT's ONNX-parser rules, without TensorRT",
        description="Check each graph, in fp32 and every precision glimpse quantize made, against the rules of"
        " TensorRT's ONNX parser: opset 9..25 and the ONNX domain only; supported operators; no double/string"
        " tensors and int8 only in Q/DQ; Q/DQ zero points int8 zeros and no int32 (bias) dequantization; TopK"
        " sorted with K < 3840; no Loop/If/Scan in step graphs; every dynamic input axis named and given a"
        " profile range. Exits 1 when a graph fails.",
        epilog="example: glimpse quantize sat-bundle --precision fp16 int8 && glimpse check sat-bundle",
    )
    c.add_argument("bundle", help="bundle directory")
    c.set_defaults(run=cmd_check)

    v = sub.add_parser(
        "eval",
        help="accuracy of a demo model's fp16/int8 graphs (captioner, VQA, matching) against fp32 on the test scenes",
        description="Run the demo's held-out test scenes through the fp32 graphs and through each --precision."
        " A captioner (sat, or m2 on the scenes' grid cells): captions identical to fp32's, BLEU-4 and CIDEr and"
        " their change from fp32, and the max/mean error of the step's log-probabilities on the inputs fp32"
        " decoding fed it. A VQA model (saaa, san, rdan): every question of the scenes, top-1 answers identical to"
        " fp32's, accuracy and its change, and the max/mean error of the answer probabilities. A matching model"
        " (mdan): R@1/5/10 both ways, the share of first results equal to fp32's and the embeddings' error. The"
        " bundle must be a model of the demo scenes (glimpse demo's, or one trained by glimpse demo train).",
        epilog="examples: glimpse quantize runs/demo/sat-bundle --precision fp16 int8 &&"
        " glimpse eval runs/demo/sat-bundle --precision fp16 int8 | glimpse eval runs/demo/san-bundle",
    )
    v.add_argument("bundle", help="bundle directory")
    v.add_argument("--precision", nargs="+", choices=["fp32", "fp16", "int8"], default=["fp16", "int8"])
    v.add_argument("--scenes", type=int, default=500, help="test scenes (default 500)")
    v.add_argument("--beam-size", type=int, help="captioners: beam width (default the demo's: 3 for sat, 5 for m2)")
    v.add_argument("--threads", type=int, default=None, help="CPU threads (default: the cores this process may use)")
    v.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    v.set_defaults(run=cmd_eval)

    i = sub.add_parser(
        "inspect",
        help="show a bundle's graphs, shapes, sizes and measured errors",
        description="Print a bundle's manifest as a table.",
    )
    i.add_argument("bundle", help="bundle directory")
    i.set_defaults(run=cmd_inspect)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        code = args.run(args)
    except GlimpseError as e:
        print(f"glimpse: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("glimpse: interrupted", file=sys.stderr)
        return 130
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
