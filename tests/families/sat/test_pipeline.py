"""Captioning: the ONNX Runtime and torch pipelines, over the step or the fused step, give exactly the
tutorial loop's tokens, batched equals unbatched, the glimpse program's shared thread pool equals a pool per
session, and bad images are reported one by one."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import tutorial
from glimpse.cli import main
from glimpse.errors import GlimpseError
from glimpse.families.sat.checkpoint import import_sat
from glimpse.families.sat.export import export_sat
from glimpse.families.sat.pipeline import CaptionPipeline
from glimpse.families.sat.reference import beam_search as tutorial_beam_search
from glimpse.images import load_image


@pytest.fixture(scope="module")
def images(photo, tmp_path_factory):
    d = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)).save(d / "noise.png")
    blocks = np.kron(rng.integers(0, 256, (6, 8, 3)), np.ones((40, 40, 1))).astype(np.uint8)
    Image.fromarray(blocks).save(d / "blocks.jpg")
    return [photo, photo.parent / "Minduka_Present_Blue_Pack.png", d / "noise.png", d / "blocks.jpg"]


@pytest.fixture(scope="module")
def second_bundle(tmp_path_factory):
    ckpt, wm = tutorial.write_checkpoint(tmp_path_factory.mktemp("sat18b"), backbone="resnet18", n_words=300, seed=7)
    model, vocab, pre = import_sat(ckpt, wm)
    return ckpt, export_sat(model, vocab, pre, tmp_path_factory.mktemp("b") / "b", log=lambda m: None)


@torch.no_grad()
def reference_tokens(checkpoint, image_path, beam):
    """caption.py end to end on the tutorial's own pickled modules."""
    tutorial.tutorial_models()
    saved = torch.load(checkpoint, weights_only=False)  # trusted: written by the test
    encoder, decoder = saved["encoder"].eval(), saved["decoder"].eval()
    word_map = json.loads(checkpoint.with_name("WORDMAP_coco_5_cap_per_img_5_min_word_freq.json").read_text())
    img = np.asarray(load_image(image_path).resize((256, 256), Image.BILINEAR)).transpose(2, 0, 1) / 255.0
    img = (torch.FloatTensor(img) - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) / torch.tensor(
        [0.229, 0.224, 0.225]
    )[:, None, None]
    encoder_out = encoder(img.unsqueeze(0)).view(1, -1, decoder.encoder_dim)
    h, c = decoder.init_hidden_state(encoder_out)

    def step(prev_words, hc):
        h, c = hc.unbind(1)
        k = len(prev_words)
        awe, _ = decoder.attention(encoder_out.expand(k, -1, -1), h)
        awe = decoder.sigmoid(decoder.f_beta(h)) * awe
        h, c = decoder.decode_step(torch.cat([decoder.embedding(prev_words), awe], dim=1), (h, c))
        return F.log_softmax(decoder.fc(h), dim=1).double(), torch.stack([h, c], 1)

    return tutorial_beam_search(
        step, torch.stack([h, c], 1), beam, word_map["<start>"], word_map["<end>"], len(word_map)
    )


@pytest.mark.parametrize("beam", [1, 3, 5])
def test_backends_equal_the_tutorial_loop(small_checkpoint, small_bundle, second_bundle, images, beam):
    for checkpoint, bundle in ((small_checkpoint[0], small_bundle), second_bundle):
        onnx, eager = CaptionPipeline(bundle), CaptionPipeline(bundle, backend="torch")
        runs = [pipe(images, beam_size=beam, fused=fused) for pipe in (onnx, eager) for fused in (False, True)]
        for path, a, *others in zip(images, *runs):
            assert all(b.tokens == a.tokens for b in others), path  # fused or not, either backend
            ref = reference_tokens(checkpoint, path, beam)
            if ref is None:  # the tutorial would crash; glimpse returns the best live beam
                assert not a.finished
            else:
                assert a.tokens == ref[0], path
                assert a.score == pytest.approx(ref[1], rel=1e-4)


def test_batched_equals_one_by_one(second_bundle, images):
    pipe = CaptionPipeline(second_bundle[1])
    for fused in (False, True):
        together = pipe(images, beam_size=3, batch_size=4, fused=fused)
        alone = [pipe([im], beam_size=3, fused=fused)[0] for im in images]
        assert [c.tokens for c in together] == [c.tokens for c in alone]
        assert all(c.alphas.shape == (len(c.tokens) - 1, 14, 14) for c in together)


def test_fused_step_serves_beams_up_to_its_k(small_bundle, images):
    pipe = CaptionPipeline(small_bundle)
    assert pipe.fused_beam == 5
    with pytest.raises(GlimpseError, match="the fused step runs beam search with up to 5 beams"):
        pipe(images[:1], beam_size=6, fused=True)


def test_the_program_shares_one_thread_pool_and_captions_the_same(small_bundle, images, capsys):
    argv = ["caption", str(small_bundle), *map(str, images), "--json", "-b", "5"]
    assert main(argv) == 0  # in this process: a pool per session (share_threads would refuse the tests' others)
    own = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    program = "import sys; from glimpse.cli import program; from glimpse.runtime import session; code = program(); "
    program += "assert session._shared_pool, 'no shared pool'; sys.exit(code)"
    done = subprocess.run([sys.executable, "-c", program, *argv], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    shared = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["tokens"] for r in shared] == [r["tokens"] for r in own]
    np.testing.assert_allclose([r["score"] for r in shared], [r["score"] for r in own], rtol=1e-5)


def test_cli_json_and_plot(small_bundle, images, tmp_path, capsys):
    plot = tmp_path / "att.png"
    assert main(["caption", str(small_bundle), str(images[0]), "--json", "-b", "3", "--attention-plot", str(plot)]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    row = json.loads(line)
    assert set(row) == {"image", "caption", "words", "tokens", "score", "finished"}
    assert row["tokens"][0] == 42 and row["caption"] == " ".join(row["words"])
    assert plot.stat().st_size > 10_000


def test_one_bad_image_does_not_stop_the_others(small_bundle, images, tmp_path, capsys):
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(images[3].read_bytes()[:300])
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    argv = ["caption", str(small_bundle), str(images[0]), str(truncated), str(text), str(images[2])]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert [line.split("\t")[0] for line in out.splitlines()] == [str(images[0]), str(images[2])]
    assert "truncated.jpg: not a readable image" in err and "notes.png: not a readable image" in err
    assert "2 of 4 images could not be read" in err


@pytest.mark.parametrize("beam", ["0", "45"])
def test_beam_size_out_of_range(small_bundle, images, capsys, beam):
    assert main(["caption", str(small_bundle), str(images[0]), "-b", beam]) == 2
    assert "beam size must be between 1 and the vocabulary size 44" in capsys.readouterr().err


def test_image_modes(tmp_path):
    """16-bit, CMYK, palette, RGBA, grey and EXIF-rotated files all arrive as upright 8-bit RGB."""
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8))
    Image.fromarray((np.arange(1200).reshape(30, 40) * 50).astype(np.uint16)).save(tmp_path / "deep.png")
    rgb.convert("CMYK").save(tmp_path / "cmyk.jpg")
    rgb.convert("P").save(tmp_path / "palette.png")
    rgb.convert("RGBA").save(tmp_path / "rgba.png")
    rgb.convert("L").save(tmp_path / "grey.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to view
    rgb.save(tmp_path / "rotated.jpg", exif=exif)
    for name in ("deep.png", "cmyk.jpg", "palette.png", "rgba.png", "grey.png"):
        im = load_image(tmp_path / name)
        assert im.mode == "RGB" and im.size == (40, 30), name
    deep = np.asarray(load_image(tmp_path / "deep.png"))
    assert deep.max() > 200 and len(np.unique(deep)) > 100  # scaled from 16 bits, not clipped at 255
    assert load_image(tmp_path / "rotated.jpg").size == (30, 40)


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    Image.new("RGB", (400, 300)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    from glimpse.errors import ImageError

    with pytest.raises(ImageError, match="big.png: refused, too many pixels"):
        load_image(tmp_path / "big.png")


def test_tampered_bundle_is_refused_by_the_pipeline(small_bundle, tmp_path, capsys):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(small_bundle, copy)
    with open(copy / "step.onnx", "ab") as f:
        f.write(b"\0")
    assert main(["caption", str(copy), "x.jpg"]) == 2
    assert "step.onnx: sha256 does not match" in capsys.readouterr().err
