"""m-DAN image-text matching: checkpoints imported and exported, embeddings checked against the
reference module, the similarity the paper's sum over hops; gallery index, search (numpy and FAISS)
and the CLI; bad input refused on one line."""

import importlib.util
import json
import shutil

import numpy as np
import pytest
import torch
import vqa_checkpoints

from glimpse.cli import main
from glimpse.families.mdan.model import MDAN, MDANConfig, ranking_loss
from glimpse.families.mdan.pipeline import MatchPipeline
from glimpse.images import load_image
from glimpse.runtime.gallery import Gallery, InnerProductIndex

SENTENCES = ["a red circle", "two dogs on the beach.", "a", "word3 word4 word5 word6 word7 dog red circle two"]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """(reference model, bundle path) of a small m-DAN over a ResNet-18 at 96 pixels."""
    out = tmp_path_factory.mktemp("mdan")
    config = MDANConfig(backbone="resnet18", image_size=96, tokens=31, embedding_features=32, vision_features=512)
    model = MDAN(config).eval()
    checkpoint, cnn = vqa_checkpoints.write_mdan(out, model, n_words=30)
    assert (
        main(["export", "mdan", "--checkpoint", str(checkpoint), "--cnn", str(cnn), "--out", str(out / "bundle")]) == 0
    )
    return model, out / "bundle"


@pytest.fixture(scope="module")
def gallery_dir(tmp_path_factory, photo):
    root = tmp_path_factory.mktemp("gallery")
    rng = np.random.default_rng(0)
    (root / "sub").mkdir()
    for i in range(6):
        image = (rng.random((70 + 10 * i, 90, 3)) * 255).astype(np.uint8)
        __import__("PIL.Image").Image.fromarray(image).save(root / ("sub" if i % 2 else ".") / f"noise{i}.png")
    shutil.copy(photo, root / "photo.jpg")
    return root


def test_embeddings_match_the_reference_and_the_papers_similarity(small, photo):
    model, bundle = small
    pipe, eager = MatchPipeline(bundle), MatchPipeline(bundle, backend="torch")
    zv, zu = pipe.embed_images([photo]), pipe.embed_texts(SENTENCES)
    assert zv.shape == (1, 3 * 512) and zu.shape == (len(SENTENCES), 3 * 512)
    pixels = torch.from_numpy(pipe.preprocess(load_image(photo)))[None]
    reads = [pipe.read(s) for s in SENTENCES]
    with torch.no_grad():
        grid = model.cnn(pixels)
        want_v = model.image_embed(grid)[0].numpy()
        for r, got in zip(reads, zu):
            ids = torch.tensor([r.ids])
            want_u = model.text_embed(ids, torch.tensor([len(r.ids)]))[0][0].numpy()
            assert np.abs(got - want_u).max() <= 1e-4 * np.abs(want_u).max()
            # S = sum_k <v(k), u(k)>, as the paper writes it, is the one inner product of z_v and z_u
            s = model.reference(grid, ids, torch.tensor([len(r.ids)])).item()
            assert np.isclose(zv[0] @ got, s, rtol=1e-4)
    assert np.abs(zv - want_v).max() <= 1e-4 * np.abs(want_v).max()
    np.testing.assert_allclose(eager.scores([photo], SENTENCES), pipe.scores([photo], SENTENCES), rtol=1e-4, atol=1e-4)


def test_batched_sentences_of_mixed_lengths_equal_one_by_one(small):
    pipe = MatchPipeline(small[1])
    together = pipe.embed_texts(SENTENCES)
    for sentence, row in zip(SENTENCES, together):
        np.testing.assert_allclose(pipe.embed_texts([sentence])[0], row, rtol=1e-5, atol=1e-6)


def test_ranking_loss_is_zero_only_when_every_pair_wins_by_the_margin():
    zv = torch.eye(3)
    assert ranking_loss(zv * 5, zv, margin=4.0).item() == 0  # S(i, i) = 5, others 0: wins by 5 > 4
    # margin 6: each of the 6 off-diagonal pairs costs 6 - 5 = 1, in both directions, over 3 pairs
    assert ranking_loss(zv * 5, zv, margin=6.0).item() == pytest.approx(2 * 6 * 1 / 3)


def test_index_resumes_and_search_finds_the_image(small, gallery_dir, tmp_path, capsys):
    _, bundle = small
    index = tmp_path / "index"
    (gallery_dir / "notes.txt").write_text("not an image")
    # a first run over part of the gallery (as if interrupted), then the whole: only the rest is embedded
    files = sorted(p for p in gallery_dir.rglob("*.png"))[:3]
    from glimpse.runtime import gallery

    gallery.build(MatchPipeline(bundle), gallery_dir, files, index, log=lambda m: None)
    capsys.readouterr()
    assert main(["index", str(bundle), str(gallery_dir), "--out", str(index)]) == 0
    assert "resuming: 3 of 7 images" in capsys.readouterr().err
    g = Gallery(index)
    assert sorted(g.files) == sorted(p.relative_to(gallery_dir).as_posix() for p in gallery_dir.rglob("*.*g"))
    pipe = MatchPipeline(bundle)
    want = pipe.embed_images([gallery_dir / f for f in g.files])
    np.testing.assert_allclose(g.embeddings, want, rtol=1e-5, atol=1e-6)

    assert main(["search", str(index), SENTENCES[0], "--top-k", "3", "--json"]) == 0
    hits = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    scores = want @ pipe.embed_texts([SENTENCES[0]])[0]
    best = [str(gallery_dir / g.files[i]) for i in np.argsort(-scores)[:3]]
    assert [h["image"] for h in hits] == best and [h["rank"] for h in hits] == [1, 2, 3]
    if importlib.util.find_spec("faiss"):
        assert main(["search", str(index), SENTENCES[0], "--top-k", "3", "--json", "--backend", "faiss"]) == 0
        assert [json.loads(line)["image"] for line in capsys.readouterr().out.splitlines()] == best


def test_search_the_reverse_and_match(small, photo, tmp_path, gallery_dir, capsys):
    _, bundle = small
    index = tmp_path / "index"
    assert main(["index", str(bundle), str(gallery_dir), "--out", str(index)]) == 0
    sentences = tmp_path / "sentences.txt"
    sentences.write_text("\n".join(SENTENCES) + "\n\n")
    capsys.readouterr()
    assert main(["search", str(index), "--image", str(photo), "--sentences", str(sentences), "--json"]) == 0
    ranked = [json.loads(line)["sentence"] for line in capsys.readouterr().out.splitlines()]
    scores = MatchPipeline(bundle).scores([photo], SENTENCES)[0]
    assert ranked == [SENTENCES[i] for i in np.argsort(-scores)]
    assert main(["match", str(bundle), str(photo), *SENTENCES, "--json"]) == 0
    printed = {json.loads(line)["text"]: json.loads(line)["score"] for line in capsys.readouterr().out.splitlines()}
    assert printed == pytest.approx(dict(zip(SENTENCES, scores.tolist())), rel=1e-6)


@pytest.mark.parametrize("backend", ["numpy", "faiss"])
def test_exact_search_is_brute_force(backend):
    if backend == "faiss":
        pytest.importorskip("faiss")
    rng = np.random.default_rng(0)
    items, queries = (
        rng.standard_normal((5000, 64)).astype(np.float32),
        rng.standard_normal((20, 64)).astype(np.float32),
    )
    scores, ids = InnerProductIndex(items, backend).search(queries, 10)
    brute = queries @ items.T
    np.testing.assert_array_equal(ids, np.argsort(-brute, axis=1)[:, :10])
    np.testing.assert_allclose(scores, np.take_along_axis(brute, ids, axis=1), rtol=1e-5)


def test_bad_input_is_refused_on_one_line(small, tmp_path, capsys):
    _, bundle = small
    cases = [
        (["match", str(bundle), "missing.jpg", "a red circle"], "missing.jpg"),
        (["search", str(tmp_path), "a red circle"], "not an index"),
        (["index", str(bundle), str(tmp_path / "nowhere"), "--out", str(tmp_path / "i")], "not a directory"),
    ]
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    (tmp_path / "imgs").mkdir()
    __import__("PIL.Image").Image.new("RGB", (40, 40)).save(tmp_path / "imgs" / "a.png")
    cases.append((["index", str(bundle), str(tmp_path / "imgs"), "--out", str(tmp_path / "taken")], "is not an index"))
    for args, words in cases:
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and words in err, err
    with pytest.raises(Exception, match="empty sentence"):
        MatchPipeline(bundle).embed_texts(["  "])
