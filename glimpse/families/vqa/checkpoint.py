"""Import VQA checkpoints written the way Cyanogenoid/pytorch-vqa's train.py writes them, and the
separate CNN weights their features came from.

    checkpoint  {'name', 'tracker', 'config', 'weights', 'eval', 'vocab'} (pytorch-vqa; pytorch-vqa-dan
                writes the same dict), or a bare {'weights', 'vocab'}; ``weights`` is the state dict,
                with DataParallel's ``module.`` prefix or without. The family's keys: saaa
                ``text.* attention.* classifier.*``; san, rdan and naive glimpse's canonical layouts (naive's
                ``text.* v_lin.* q_lin.* classifier.*`` after pytorch-vqa's names).
    vocab       {'question': {token: id from 1}, 'answer': {answer: id from 0}}; 0 is unknown/padding.
    cnn         a ResNet classifier's state dict (torchvision names; ``fc`` ignored), e.g. the Caffe
                ResNet-152 of pytorch-resnet that pytorch-vqa's preprocess-images.py used.

Every dimension is read from the weights; the vocabulary is checked against them.
"""

from __future__ import annotations

from pathlib import Path

from glimpse.errors import CheckpointError, GlimpseError
from glimpse.export.unpickler import load_weights, safe_load
from glimpse.families.vqa import NAMES
from glimpse.nn.cnn import image_preprocess, load_cnn
from glimpse.nn.text import UNKNOWN
from glimpse.vocab import Vocab


def load_vqa_checkpoint(path: str | Path) -> tuple[dict, dict, dict]:
    """(state dict without ``module.``, vocab dict, training config or {}) of a pytorch-vqa-style checkpoint."""
    path = Path(path)
    ckpt = safe_load(path)
    if not isinstance(ckpt, dict) or not {"weights", "vocab"} <= set(ckpt):
        found = sorted(ckpt)[:6] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{path}: not a pytorch-vqa checkpoint (needs 'weights' and 'vocab'; found {found})")
    weights = {k.removeprefix("module."): v for k, v in ckpt["weights"].items()}
    config = ckpt.get("config")
    return weights, ckpt["vocab"], config if isinstance(config, dict) else {}


def vocabularies(vocab: dict, source: Path) -> tuple[Vocab, Vocab]:
    """pytorch-vqa's vocab dict -> (question Vocab with <unk> at 0, answer Vocab)."""
    try:
        questions, answers = vocab["question"], vocab["answer"]
        q_itos, a_itos = [UNKNOWN] + [""] * len(questions), [""] * len(answers)
        for itos, table, first in ((q_itos, questions, 1), (a_itos, answers, 0)):
            if sorted(table.values()) != list(range(first, first + len(table))):
                raise ValueError(f"ids must run from {first} without gaps")
            for token, i in table.items():
                itos[i] = str(token)
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise CheckpointError(f"{source}: its vocab is not pytorch-vqa's {{'question', 'answer'}} ({e})") from None
    return Vocab(q_itos, {"unk": 0, "pad": 0}), Vocab(a_itos)


def infer_config(family: str, w: dict, backbone: str, caffe: bool, image_size: int, max_question_length: int):
    from glimpse.families.vqa.naive import NaiveConfig
    from glimpse.families.vqa.rdan import RDANConfig
    from glimpse.families.vqa.saaa import SAAAConfig
    from glimpse.families.vqa.san import SANConfig

    common = {"backbone": backbone, "caffe": caffe, "image_size": image_size}
    common["max_question_length"] = max_question_length
    if family in ("saaa", "naive"):  # pytorch-vqa's TextProcessor and Classifier
        common |= {
            "tokens": w["text.embedding.weight"].shape[0],
            "embedding_features": w["text.embedding.weight"].shape[1],
            "lstm_features": w["text.lstm.weight_hh_l0"].shape[1],
            "classifier_features": w["classifier.lin1.weight"].shape[0],
            "answers": w["classifier.lin2.weight"].shape[0],
        }
    if family == "saaa":
        return SAAAConfig(
            **common,
            vision_features=w["attention.v_conv.weight"].shape[1],
            mid_features=w["attention.v_conv.weight"].shape[0],
            glimpses=w["attention.x_conv.weight"].shape[0],
        )
    if family == "naive":
        return NaiveConfig(
            **common, vision_features=w["v_lin.weight"].shape[1], fused_features=w["v_lin.weight"].shape[0]
        )
    hops = len({k.split(".")[1] for k in w if k.startswith(("hops.", "visual."))})
    text = {
        "tokens": w["embedding.weight"].shape[0],
        "embedding_features": w["embedding.weight"].shape[1],
        "features": w["lstm.weight_hh_l0"].shape[1],
        "hops": hops,
        "answers": w["classifier.weight"].shape[0],
    }
    if family == "san":
        return SANConfig(
            **common,
            **text,
            vision_features=w["image.weight"].shape[1],
            attention_features=w["hops.0.image.weight"].shape[0],
        )
    return RDANConfig(**common, **text, vision_features=w["pool.0.weight"].shape[1])


def model_class(family: str):
    from glimpse.families.vqa.naive import NaiveVQA
    from glimpse.families.vqa.rdan import RDAN
    from glimpse.families.vqa.saaa import SAAA
    from glimpse.families.vqa.san import SAN

    return {"saaa": SAAA, "san": SAN, "rdan": RDAN, "naive": NaiveVQA}[family]


def import_vqa(
    family: str,
    checkpoint: str | Path,
    cnn: str | Path,
    caffe: bool | None = None,
    image_size: int | None = None,
    max_question_length: int = 23,
    central_fraction: float | None = None,
):
    """-> (model in eval mode, question Vocab, answer Vocab, Preprocess).

    ``caffe``: whether ``cnn`` holds the Caffe-ported ResNet (default: yes for saaa, whose public
    features came from it; no otherwise). Images are resized (shorter side) to image_size /
    central_fraction and center-cropped to image_size, as pytorch-vqa's get_transform does; both
    default to the checkpoint's training config (pytorch-vqa's config.py records them), else 448 and 0.875.
    """
    from glimpse.nn.cnn import infer_backbone

    if family not in NAMES:
        raise GlimpseError(f"unknown VQA family '{family}' (choose from {', '.join(NAMES)})")
    caffe = family == "saaa" if caffe is None else caffe
    weights, vocab, trained = load_vqa_checkpoint(checkpoint)
    preprocess, image_size = image_preprocess(image_size, central_fraction, trained)
    questions, answers = vocabularies(vocab, Path(checkpoint))
    cnn_sd = load_cnn(cnn)
    try:
        backbone = infer_backbone(cnn_sd)
        config = infer_config(family, weights, backbone, caffe, image_size, max_question_length)
        model = model_class(family)(config)
    except KeyError as e:
        raise CheckpointError(f"{checkpoint}: not a {family} checkpoint (no {e} weight)") from None
    except ValueError as e:
        raise CheckpointError(f"{cnn}: {e}") from None
    if config.tokens != len(questions) or config.answers != len(answers):
        raise CheckpointError(
            f"{checkpoint}: its vocab has {len(questions) - 1} question words and {len(answers)} answers, its"
            f" weights {config.tokens - 1} and {config.answers}"
        )
    head = model.net if family == "saaa" else model
    head_weights = weights if family == "saaa" else {**weights, **{f"cnn.{k}": v for k, v in cnn_sd.items()}}
    parts = [(head, head_weights, checkpoint)] + ([(model.cnn, cnn_sd, cnn)] if family == "saaa" else [])
    for module, sd, source in parts:
        load_weights(module, sd, f"{source}: the weights", family)
    return model.eval(), questions, answers, preprocess


def tokenize(question: str) -> list[str]:
    """pytorch-vqa's tokenisation, ``question.lower()[:-1].split(' ')``, where the last character it
    drops is always the '?': here the '?' is dropped if present (so a question typed without one keeps
    its last letter) and runs of spaces do not make empty tokens."""
    q = question.lower().strip()
    return q.removesuffix("?").split()
