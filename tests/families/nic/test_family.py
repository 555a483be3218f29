"""Show and Tell (nic): checkpoints in yunjey/pytorch-tutorial's exact layout imported, the graphs against the
tutorial's modules, greedy decoding equal to model.py's sample() (batched and alone, captions that end early
and never end), beam search by the sat tutorial's rules on hand-written tables and on the real graphs."""

import json
import pickle

import nic_public
import numpy as np
import pytest
import torch

from glimpse.cli import main
from glimpse.errors import CheckpointError, UnsafePickleError
from glimpse.families.nic.checkpoint import import_nic, load_vocab
from glimpse.families.nic.export import export_nic
from glimpse.families.nic.pipeline import NICPipeline
from glimpse.families.nic.reference import sample
from glimpse.images import as_image
from glimpse.runtime.session import Session
from glimpse.vocab import Vocab

END_BIAS = 0.26  # with it, the greedy captions of IMAGES below: five run 20 steps, one ends at step 6


def images():
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 256, (120, 160, 3), dtype=np.uint8) for _ in range(3)]
    return noise + [np.full((100, 100, 3), v, np.uint8) for v in (0, 128, 255)]


@pytest.fixture(scope="module")
def nic(tmp_path_factory):
    """(bundle, model, vocab, preprocess) of a ResNet-18 checkpoint, one LSTM layer."""
    out = tmp_path_factory.mktemp("nic")
    encoder, decoder, vocab, _ = nic_public.write_checkpoint(out / "ckpt", end_bias=END_BIAS)
    model, words, preprocess = import_nic(encoder, decoder, vocab)
    return export_nic(model, words, preprocess, out / "bundle", log=lambda m: None), model, words, preprocess


def test_import_reads_the_tutorials_layout(tmp_path):
    encoder, decoder, vocab, (enc, dec) = nic_public.write_checkpoint(tmp_path, layers=2, n_words=30)
    enc_keys, dec_keys = set(torch.load(encoder)), set(torch.load(decoder))
    assert {"resnet.0.weight", "resnet.1.running_mean", "resnet.4.0.conv1.weight", "resnet.7.1.bn2.weight"} <= enc_keys
    assert {"linear.weight", "linear.bias", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"} <= enc_keys
    lstm = {f"lstm.{w}_{g}_l{n}" for w in ("weight", "bias") for g in ("ih", "hh") for n in (0, 1)}
    assert dec_keys == {"embed.weight", "linear.weight", "linear.bias", *lstm}
    model, words, preprocess = import_nic(encoder, decoder, vocab)
    c = model.config
    assert (c.backbone, c.embed_size, c.hidden_size, c.num_layers, c.vocab_size) == ("resnet18", 32, 48, 2, 30)
    assert words.itos[:4] == ["<pad>", "<start>", "<end>", "<unk>"] and words.special["end"] == 2
    assert (preprocess.size, preprocess.interpolation) == ((224, 224), "lanczos")


@pytest.mark.parametrize("module", ["__main__", "build_vocab"])
def test_vocab_pickle_of_either_module_and_json(tmp_path, module):
    path = nic_public.pickle_vocab(nic_public.vocabulary(12), tmp_path / "vocab.pkl", module)
    assert module.encode() in path.read_bytes() and b"Vocabulary" in path.read_bytes()  # the class it names
    assert load_vocab(path).itos == load_vocab(path).itos[:4] + [f"w{i}" for i in range(8)]
    (tmp_path / "vocab.json").write_text(json.dumps(load_vocab(path).itos))
    assert load_vocab(tmp_path / "vocab.json").itos == load_vocab(path).itos


def test_bad_vocab_and_checkpoints_are_refused_in_one_line(tmp_path, capsys):
    encoder, decoder, vocab, _ = nic_public.write_checkpoint(tmp_path / "c", n_words=20)
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(print))  # a pickle that names a function
    (tmp_path / "words.json").write_text(json.dumps(["<pad>", "<start>", "<end>", "<unk>", "a"]))
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(UnsafePickleError, match="not on the allow-list"):
        load_vocab(tmp_path / "evil.pkl")
    cases = [
        ((encoder, decoder, tmp_path / "words.json"), "the vocabulary has 5 words but the decoder predicts 20"),
        ((encoder, tmp_path / "junk.ckpt", vocab), "junk.ckpt: not the decoder's state dict"),
        ((decoder, decoder, vocab), "not a Show and Tell encoder"),
        ((encoder, encoder, vocab), "not a Show and Tell decoder"),
    ]
    for (enc, dec, voc), message in cases:
        with pytest.raises(CheckpointError, match=message):
            import_nic(enc, dec, voc)
        args = ["export", "nic", "--encoder", str(enc), "--decoder", str(dec), "--vocab", str(voc)]
        assert main([*args, "--out", str(tmp_path / "out")]) == 2
        errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("glimpse: error: ")]
        assert len(errors) == 1 and message in errors[0], errors
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("layers", [1, 3])
def test_graphs_match_the_tutorials_modules(nic, tmp_path, layers):
    if layers == 1:
        bundle, model, words, preprocess = nic
    else:
        encoder, decoder, vocab, _ = nic_public.write_checkpoint(tmp_path, layers=layers)
        model, words, preprocess = import_nic(encoder, decoder, vocab)
        bundle = export_nic(model, words, preprocess, tmp_path / "bundle", log=lambda m: None)
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert set(manifest["graphs"]) == {"encoder", "init", "step"}
    for graph in manifest["graphs"].values():
        assert all(e["max_rel"] <= 1e-4 for e in graph["max_error"].values())
    assert manifest["preprocess"]["interpolation"] == "lanczos" and manifest["config"]["num_layers"] == layers
    pixels = torch.from_numpy(np.stack([preprocess(as_image(im)) for im in images()]))
    want = sample(model, pixels, words.special["end"])
    assert [c.tokens for c in NICPipeline(bundle)(images(), beam_size=1, batch_size=6)] == want


def test_greedy_is_sample_batched_and_alone(nic):
    bundle, model, words, preprocess = nic
    pixels = torch.from_numpy(np.stack([preprocess(as_image(im)) for im in images()]))
    want = sample(model, pixels, words.special["end"])
    assert {len(w) for w in want} == {20, 6}, "the checkpoint no longer gives captions that end and that do not"
    pipe = NICPipeline(bundle)
    batched = pipe(images(), beam_size=1, batch_size=6)
    alone = [pipe([im], beam_size=1)[0] for im in images()]
    assert [c.tokens for c in batched] == [c.tokens for c in alone] == want
    assert all(c.finished == (c.tokens[-1] == words.special["end"]) for c in batched)
    assert batched[0].words == [w for w in words.decode(want[0]) if w not in ("<start>", "<end>")]


class TableSession(Session):
    """A graph whose outputs are hand-written: init's first-token log-probs, then a step table by token."""

    def __init__(self, fn):
        self.fn = fn

    def run(self, inputs):
        return self.fn(inputs)


def test_beam_search_on_hand_written_tables():
    """V = 4: 0 <pad>, 1 <start>, 2 <end>, 3 w. The image's step says <start> 0.6, w 0.4. After <start>:
    <end> 0.55, w 0.45; after w: <end> 0.9, w 0.1. Beam 2 keeps both first tokens; the best finished caption
    is w <end> (0.4 * 0.9 = 0.36) over <start> <end> (0.6 * 0.55 = 0.33); greedy takes <start>, then <end>."""
    lp = np.log(np.array([1e-9, 0.6, 1e-9, 0.4], np.float32))
    after = {1: [1e-9, 1e-9, 0.55, 0.45], 3: [1e-9, 1e-9, 0.9, 0.1]}
    pipe = NICPipeline.__new__(NICPipeline)  # the pipeline's search over hand-written graphs, without a bundle
    pipe.vocab = Vocab(["<pad>", "<start>", "<end>", "w"], {"pad": 0, "start": 1, "end": 2})
    state = np.zeros((1, 1, 1), np.float32)  # (B, L, H)
    pipe.sessions = {
        "encoder": TableSession(lambda x: {"features": np.zeros((1, 2), np.float32)}),
        "init": TableSession(lambda x: {"logprobs": lp[None], "h": state, "c": state}),
        "step": TableSession(
            lambda x: {
                "logprobs": np.log(np.array([[after[t] for t in row] for row in x["tokens"]], np.float32)),
                "h_next": x["h"],
                "c_next": x["c"],
            }
        ),
    }
    pixels = np.zeros((1, 3, 2, 2), np.float32)
    [beam2] = pipe.decode(pixels, beam_size=2, max_length=5, nbest=2)
    assert beam2.best.tokens == [3, 2] and np.isclose(np.exp(beam2.best.score), 0.36)
    assert [h.tokens for h in beam2.nbest] == [[3, 2], [1, 2]]
    [greedy] = pipe.decode(pixels, beam_size=1, max_length=5)
    assert greedy.best.tokens == [1, 2] and np.isclose(np.exp(greedy.best.score), 0.33)
    assert pipe._caption("x", beam2).words == ["w"]  # the specials are not words


@torch.no_grad()
def test_beam_search_follows_the_tutorial_rules_on_the_real_graphs(nic):
    """The sat tutorial's caption.py loop, restated over nic's modules (step 1 is the image's LSTM step), and
    glimpse at caption.py's 51 steps: the same caption and score for every image, or none finished."""
    from glimpse.families.sat.reference import beam_search

    bundle, model, words, preprocess = nic
    dec, end = model.decoder, words.special["end"]
    pipe = NICPipeline(bundle)
    caps = pipe(images(), beam_size=3, max_length=51, batch_size=6)
    finished = 0
    for im, cap in zip(images(), caps):
        feature = model.encoder(torch.from_numpy(preprocess(as_image(im)))[None])  # (1, E)
        hiddens, (h, c) = dec.lstm(feature.unsqueeze(1))
        first = torch.log_softmax(dec.linear(hiddens.squeeze(1)), -1)  # (1, V)
        calls = []

        def step(prev_words, state, first=first, calls=calls):  # state (s, 2, L, H): h and c
            calls.append(1)
            if len(calls) == 1:
                return first.expand(len(prev_words), -1), state
            hc = (state[:, 0].transpose(0, 1).contiguous(), state[:, 1].transpose(0, 1).contiguous())
            y, (h, c) = dec.lstm(dec.embed(prev_words).unsqueeze(1), hc)
            return torch.log_softmax(dec.linear(y.squeeze(1)), -1), torch.stack([h, c], 1).transpose(0, 2)

        start = words.special["start"]
        found = beam_search(step, torch.stack([h, c], 1).transpose(0, 2), 3, start, end, len(words))
        if found is None:  # the tutorial's loop keeps no unfinished caption (it would crash)
            assert not cap.finished
            continue
        seq, score = found
        assert cap.tokens == seq[1:] and cap.score == pytest.approx(score, rel=1e-4)
        finished += 1
    assert finished >= 2


def test_torch_backend_and_the_command_line(nic, tmp_path, capsys):
    bundle, *_ = nic
    files = []
    for i, im in enumerate(images()[:3]):
        as_image(im).save(tmp_path / f"{i}.png")
        files.append(str(tmp_path / f"{i}.png"))
    onnx = NICPipeline(bundle)(files, beam_size=3)
    eager = NICPipeline(bundle, backend="torch")(files, beam_size=3)
    assert [c.tokens for c in onnx] == [c.tokens for c in eager]
    assert main(["caption", str(bundle), *files, "--beam-size", "3", "--json"]) == 0
    got = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [g["tokens"] for g in got] == [c.tokens for c in onnx]
    assert main(["caption", str(bundle), files[0], "--fused"]) == 2
    assert "no fused step" in capsys.readouterr().err
    assert main(["inspect", str(bundle)]) == 0
    assert "lanczos resize exact 224x224" in capsys.readouterr().out


def test_quantize_check_and_serve_read_the_registry(nic, tmp_path, capsys):
    """Nothing outside the family folder names nic: quantize calibrates it through its family, check reads
    its graphs, and serve's batched answer captions with it as with any captioner."""
    import shutil

    from glimpse.serve.app import answer

    bundle = str(shutil.copytree(nic[0], tmp_path / "bundle"))
    assert main(["quantize", bundle, "--precision", "fp16", "int8", "--calibration-size", "8"]) == 0
    assert main(["check", bundle]) == 0
    assert "9 of 9 graphs pass" in capsys.readouterr().out
    assert main(["caption", bundle, "--precision", "int8", "--beam-size", "3"]) == 2  # no images given
    pipe = NICPipeline(bundle)
    items = [(as_image(im), f"image {i}") for i, im in enumerate(images()[:3])]
    options = {"beam_size": 3, "max_length": None, "nbest": 1, "length_penalty": 0.0}
    got = answer(pipe, "caption", items, options, {})
    assert [g["tokens"] for g in got] == [c.tokens for c in pipe([im for im, _ in items], beam_size=3)]
    assert [g["image"] for g in got] == ["image 0", "image 1", "image 2"]


def test_sampling_and_nbest(nic):
    bundle, _, words, _ = nic
    pipe = NICPipeline(bundle)
    sampling = {"temperature": 0.7, "top_k": 5, "top_p": 0.9, "seed": 3}
    first, again = (pipe(images(), sampling=sampling, batch_size=6) for _ in range(2))
    assert [c.tokens for c in first] == [c.tokens for c in again]  # the seed decides
    assert all(len(c.tokens) <= 20 and (c.finished == (c.tokens[-1] == words.special["end"])) for c in first)
    [cap] = pipe(images()[-1:], beam_size=4, nbest=3)
    scores = [s for _, s in cap.nbest]
    # the finished captions, at most 3, best first (this image's beams mostly run the 20 steps)
    assert 1 <= len(scores) <= 3 and scores == sorted(scores, reverse=True) and scores[0] == cap.score
