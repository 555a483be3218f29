"""``glimpse eval``: what fp16 and int8 cost in accuracy, measured on the demo's held-out test scenes.

For a captioner trained on the demo scenes (sat, or an m2 reading their grid cells): captions of
every precision against fp32's (token for token), BLEU-4 and CIDEr against the five references and
their change from fp32, and the error of the step's log-probabilities on the very inputs fp32
decoding fed it (so the error is the graph's own, not one compounded over a diverging search).

For a VQA model trained on them (saaa, san, rdan, naive): every question of the test scenes, top-1 answers
against fp32's, accuracy and its change, and the error of the answer probabilities.

For a matching model (mdan): retrieval between the test scenes and their captions, R@1/5/10 both ways
and their change, the share of queries whose first result is fp32's, and the embeddings' error.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from glimpse import families
from glimpse.bundle import Bundle
from glimpse.errors import GlimpseError

LOGIT_IMAGES = 50  # test scenes whose fp32 decoding supplies the step inputs of the logit error


def evaluate(
    bundle: Bundle,
    precisions: list[str],
    count: int = 500,
    beam_size: int | None = None,
    threads: int | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """-> {"task", "scenes", "precisions": {precision: figures}, ...}, fp32 first. ``beam_size``: the
    captioners' (default the demo's: 3 for sat, 5 for m2)."""
    for graph in bundle.graphs:
        for p in precisions:
            bundle.graph_path(graph, p)  # a clear error now if glimpse quantize has not made it
    precisions = ["fp32", *(p for p in precisions if p != "fp32")]
    family = families.get(bundle.family)
    if family.task == "caption":
        beam_size = family.demo_beam if beam_size is None else beam_size
        if beam_size < 1:
            raise GlimpseError(f"beam size must be at least 1, not {beam_size}")
        return _captions(bundle, precisions, count, beam_size, threads, log)
    return {"vqa": _answers, "match": _retrieval}[family.task](bundle, precisions, count, threads, log)


def check_demo_model(bundle: Bundle, words: set[str], vocabulary: list[str]) -> None:
    unknown = words - set(vocabulary)
    if unknown:
        raise GlimpseError(
            f"{bundle.path}: not a model of the demo scenes ({len(unknown)} of their words, e.g. "
            f"'{sorted(unknown)[0]}', are not in its vocabulary); train one with glimpse demo train"
        )


def _captions(bundle: Bundle, precisions: list[str], count: int, beam_size: int, threads, log) -> dict:
    from glimpse.demo import scenes
    from glimpse.demo.metrics import caption_scores
    from glimpse.runtime.session import OnnxRuntimeSession

    test = scenes.scenes("test", count)
    check_demo_model(bundle, {w for s in test for c in s.captions for w in c.split()}, bundle.vocab.itos)
    if families.get(bundle.family).reads == "regions":
        from glimpse.demo.m2 import scene_regions

        sources = list(scene_regions("test", count)[0])  # (16, 512) each
        inputs = np.stack(sources[:LOGIT_IMAGES])
    else:
        sources = [s.image(bundle.preprocess.output_size[0]) for s in test]
        inputs = np.stack([bundle.preprocess(im) for im in sources[:LOGIT_IMAGES]])
    references = [s.captions for s in test]
    step_feeds = families.recorder(bundle, [], beam_size)(inputs)["step"]
    fp32_step = OnnxRuntimeSession(bundle.graph_path("step"), threads=threads)

    results: dict = {"task": "captions", "scenes": count, "beam_size": beam_size, "precisions": {}}
    fp32 = None
    for p in precisions:
        pipe = families.open_pipeline(bundle, threads=threads, precision=p)
        for fused in (False, True) if beam_size <= getattr(pipe, "fused_beam", 0) else (False,):
            name = f"{p} fused" if fused else p
            log(f"captioning {count} test scenes with the {name} graphs, beam {beam_size}")
            captions = pipe(sources, beam_size=beam_size, batch_size=50, **({"fused": True} if fused else {}))
            figures = caption_scores([c.caption for c in captions], references)
            fp32 = fp32 or (captions, figures)
            figures["agree_with_fp32"] = sum(a.tokens == b.tokens for a, b in zip(captions, fp32[0]))
            for metric in ("BLEU-4", "CIDEr"):
                figures[f"{metric} change"] = figures[metric] - fp32[1][metric]
            if p != "fp32" and not fused:
                step = OnnxRuntimeSession(bundle.cpu_graph_path("step", p), threads=threads)  # what the pipeline ran
                diffs = [np.abs(step.run(f)["logprobs"] - fp32_step.run(f)["logprobs"]) for f in step_feeds]
                figures["logprob_error_max"] = float(max(d.max() for d in diffs))
                figures["logprob_error_mean"] = float(np.mean([d.mean() for d in diffs]))
            results["precisions"][name] = figures
    return results


def _answers(bundle: Bundle, precisions: list[str], count: int, threads, log) -> dict:
    from glimpse.demo.vqa import accuracy, test_questions

    pairs, truth, kinds = test_questions(count)
    fp32 = families.open_pipeline(bundle, threads=threads)
    check_demo_model(bundle, {w for _, q in pairs for w in fp32.read(q).words}, bundle.vocab.itos)
    check_demo_model(bundle, set(truth), fp32.answers.itos)
    results: dict = {"task": "answers", "scenes": count, "questions": len(pairs), "precisions": {}}
    reference = None
    for p in precisions:
        log(f"answering {len(pairs)} questions of {count} test scenes with the {p} graphs")
        pipe = fp32 if p == "fp32" else families.open_pipeline(bundle, threads=threads, precision=p)
        answers = pipe(pairs, top_k=len(pipe.answers), batch_size=256)
        probs = np.array([[q for _, q in sorted(a.answers)] for a in answers])  # (N, A), answers by name
        top1 = [a.answer for a in answers]
        figures = {"accuracy": accuracy(top1, truth, kinds)["all"]}
        reference = reference or (top1, probs, figures["accuracy"])
        figures["accuracy change"] = figures["accuracy"] - reference[2]
        figures["agree_with_fp32"] = sum(map(str.__eq__, top1, reference[0]))
        if p != "fp32":
            figures["probability_error_max"] = float(np.abs(probs - reference[1]).max())
            figures["probability_error_mean"] = float(np.abs(probs - reference[1]).mean())
        results["precisions"][p] = figures
    return results


def _retrieval(bundle: Bundle, precisions: list[str], count: int, threads, log) -> dict:
    from glimpse.demo.matching import recall, test_pairs

    images, sentences, relevant = test_pairs(count)
    pipe = families.open_pipeline(bundle, threads=threads)
    check_demo_model(bundle, {w for s in sentences for w in pipe.read(s).words}, bundle.vocab.itos)
    results: dict = {"task": "retrieval", "scenes": count, "sentences": len(sentences), "precisions": {}}
    fp32 = None
    for p in precisions:
        log(f"embedding {count} test scenes and {len(sentences)} captions with the {p} graphs")
        pipe = families.open_pipeline(bundle, threads=threads, precision=p)
        zv, zu = pipe.embed_images(images), pipe.embed_texts(sentences)
        scores = zv @ zu.T
        fp32 = fp32 or (zv, zu, scores, recall(scores, relevant))
        figures = {**recall(scores, relevant)}
        figures["R@1 change"] = sum(figures[k] - fp32[3][k] for k in figures if "R@1" in k) / 2
        firsts = (scores.argmax(1) == fp32[2].argmax(1)).tolist() + (scores.argmax(0) == fp32[2].argmax(0)).tolist()
        figures["first_result_as_fp32"] = sum(firsts) / len(firsts)
        if p != "fp32":
            figures["embedding_error"] = max(
                float(np.abs(a - b).max() / np.abs(b).max()) for a, b in ((zv, fp32[0]), (zu, fp32[1]))
            )
        results["precisions"][p] = figures
    return results


def table(results: dict) -> str:
    return {"captions": _caption_table, "answers": _answer_table, "retrieval": _retrieval_table}[results["task"]](
        results
    )


def _retrieval_table(results: dict) -> str:
    lines = [
        f"demo test split: {results['scenes']} scenes and their {results['sentences']} captions",
        "",
        "| precision | image-to-text R@1 / 5 / 10 | text-to-image R@1 / 5 / 10 | mean R@1 change | first result = fp32"
        " | embedding error (max rel) |",
        "|---|---|---|---|---|---|",
    ]
    for p, f in results["precisions"].items():
        i2t, t2i = ("/".join(f"{f[f'{d} R@{k}']:.3f}" for k in (1, 5, 10)) for d in ("image-to-text", "text-to-image"))
        err = f"{f['embedding_error']:.2e}" if "embedding_error" in f else "-"
        lines.append(
            f"| {p} | {i2t} | {t2i} | {100 * f['R@1 change']:+.2f} pt | {f['first_result_as_fp32']:.3f} | {err} |"
        )
    return "\n".join(lines) + "\n"


def _answer_table(results: dict) -> str:
    n = results["questions"]
    lines = [
        f"demo test split: {results['scenes']} scenes, {n} questions",
        "",
        "| precision | answers = fp32 | accuracy | change | probability error max | mean |",
        "|---|---|---|---|---|---|",
    ]
    for p, f in results["precisions"].items():
        err = "- | -"
        if "probability_error_max" in f:
            err = f"{f['probability_error_max']:.2e} | {f['probability_error_mean']:.2e}"
        lines.append(
            f"| {p} | {f['agree_with_fp32']}/{n} | {f['accuracy']:.4f} | {100 * f['accuracy change']:+.2f} pt | {err} |"
        )
    return "\n".join(lines) + "\n"


def _caption_table(results: dict) -> str:
    n = results["scenes"]
    fused = "; 'fused': the search over the fused step" if any("fused" in p for p in results["precisions"]) else ""
    lines = [
        f"demo test split: {n} scenes, beam {results['beam_size']}; step log-prob error on the inputs of"
        f" {LOGIT_IMAGES} scenes' fp32 decoding{fused}",
        "",
        "| precision | captions = fp32 | BLEU-4 | change | CIDEr | change | log-prob error max | mean |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p, f in results["precisions"].items():
        err = f"{f['logprob_error_max']:.2e} | {f['logprob_error_mean']:.2e}" if "logprob_error_max" in f else "- | -"
        lines.append(
            f"| {p} | {f['agree_with_fp32']}/{n} | {f['BLEU-4']:.4f} | {100 * f['BLEU-4 change']:+.2f} pt"
            f" | {f['CIDEr']:.3f} | {f['CIDEr change']:+.3f} | {err} |"
        )
    return "\n".join(lines) + "\n"


def write(results: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
