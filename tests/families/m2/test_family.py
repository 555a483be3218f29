"""Meshed-Memory Transformer: the public checkpoint layout imported, the graphs against the public
stateful decoding, and glimpse's captions token for token against the public beam search (restated in
glimpse.families.m2.reference), single and batched, with captions that finish early and ones that never do."""

import json
import shutil

import m2_public
import numpy as np
import pytest
import torch
from m2_public import SPECIALS, write_checkpoint, write_vocab

from glimpse.cli import main
from glimpse.errors import CheckpointError, GlimpseError, UnsafePickleError
from glimpse.families.m2.checkpoint import import_m2, load_vocab
from glimpse.families.m2.export import export_m2
from glimpse.families.m2.model import M2Config
from glimpse.families.m2.pipeline import M2Pipeline, load_regions, pad_regions
from glimpse.families.m2.reference import beam_search as public_beam_search
from glimpse.families.m2.search import beam_search

SMALL = M2Config(vocab_size=40, d_model=64, heads=8, d_ff=128, memory=8, d_in=32)
BOS, EOS = SPECIALS.index("<bos>"), SPECIALS.index("<eos>")


def regions(n, config=SMALL, seed=0):
    """n images' detections (n_i, d_in), 10 to 60 of them: padded to 50 and truncated alike."""
    return m2_public.regions(n, config, seed)


@pytest.fixture(scope="module", params=[2.0, -60.0], ids=["finishing", "never-finishing"])
def m2(request, tmp_path_factory):
    """(bundle, reference model) of a small public-layout checkpoint; <eos> favoured or ruled out."""
    out = tmp_path_factory.mktemp("m2")
    checkpoint, vocab, _ = write_checkpoint(out, SMALL, seed=3, eos_bias=request.param)
    model, words = import_m2(checkpoint, vocab)
    return export_m2(model, words, out / "bundle", log=lambda m: None), model, request.param


def test_state_dict_keys_are_the_public_ones():
    """The key list of reference-formats.md, section 3.2, for one layer of each side."""
    from glimpse.families.m2.model import M2

    keys = set(M2(SMALL).state_dict())
    attention = [f"{fc}.{p}" for fc in ("fc_q", "fc_k", "fc_v", "fc_o") for p in ("weight", "bias")]
    norm = ["layer_norm.weight", "layer_norm.bias"]
    pwff = [f"pwff.{m}.{p}" for m in ("fc1", "fc2", "layer_norm") for p in ("weight", "bias")]
    want = {"encoder.fc.weight", "encoder.fc.bias", "encoder.layer_norm.weight", "encoder.layer_norm.bias"}
    e = "encoder.layers.0."
    want |= {e + "mhatt.attention." + k for k in attention + ["m_k", "m_v"]} | {e + "mhatt." + k for k in norm}
    want |= {e + k for k in pwff}
    d = "decoder.layers.0."
    want |= {d + f"{m}.attention.{k}" for m in ("self_att", "enc_att") for k in attention}
    want |= {d + f"{m}.{k}" for m in ("self_att", "enc_att") for k in norm} | {d + k for k in pwff}
    want |= {d + "self_att.running_keys", d + "self_att.running_values"}
    want |= {d + f"fc_alpha{i}.{p}" for i in (1, 2, 3) for p in ("weight", "bias")}
    want |= {"decoder.word_emb.weight", "decoder.pos_emb.weight", "decoder.fc.weight"}
    want |= {"decoder.running_mask_self_attention", "decoder.running_seq"}
    layer0 = {k for k in keys if ".layers." not in k or ".layers.0." in k}
    assert layer0 == want
    assert len(keys) == len(want) + 2 * (len([k for k in want if ".layers.0." in k]))  # three layers each side


def test_import_reads_the_public_files(tmp_path):
    checkpoint, vocab, model = write_checkpoint(tmp_path, SMALL, seed=1)
    imported, words = import_m2(checkpoint, vocab)
    assert imported.config == SMALL
    assert words.special == {"unk": 0, "pad": 1, "start": 2, "end": 3} and len(words) == SMALL.vocab_size
    for k, v in model.state_dict().items():
        assert torch.equal(imported.state_dict()[k], v), k


def test_vocab_and_checkpoint_errors(tmp_path):
    class Evil:
        def __reduce__(self):
            return (__import__("os").system, ("echo pwned",))

    (tmp_path / "evil.pkl").write_bytes(__import__("pickle").dumps(Evil()))
    with pytest.raises(UnsafePickleError, match="not on the allow-list"):
        load_vocab(tmp_path / "evil.pkl")
    (tmp_path / "list.pkl").write_bytes(__import__("pickle").dumps([1, 2]))
    with pytest.raises(CheckpointError, match="not a torchtext-style Vocab"):
        load_vocab(tmp_path / "list.pkl")
    checkpoint, _, _ = write_checkpoint(tmp_path, SMALL)
    write_vocab(tmp_path / "vocab.pkl", 10)  # 14 words against a 40-word embedding
    with pytest.raises(CheckpointError, match="14 words, but the checkpoint's embedding has 40"):
        import_m2(checkpoint, tmp_path / "vocab.pkl")
    torch.save({"weights": {}}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not an M2 checkpoint"):
        import_m2(tmp_path / "other.pth", tmp_path / "vocab.pkl")


def test_graphs_match_the_public_decoding(m2):
    bundle, _, _ = m2
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["family"] == "m2" and manifest["preprocess"] is None
    for name in ("encoder", "init", "step"):
        worst = max(e["max_rel"] for e in manifest["graphs"][name]["max_error"].values())
        assert worst <= 1e-4, name
    from glimpse.bundle import Bundle
    from glimpse.export.check import check_bundle

    reports = check_bundle(Bundle(bundle))
    assert all(r.ok for r in reports), [
        r.problems for r in reports
    ]  # TensorRT's parser rules, every dynamic axis ranged


@pytest.mark.parametrize("beam", [1, 3, 5])
def test_tokens_equal_the_public_beam_search(m2, beam):
    bundle, model, _ = m2
    pipe = M2Pipeline(bundle, threads=1)
    images = regions(5)
    batched = pipe(images, beam_size=beam, max_length=20, nbest=beam, batch_size=5)
    alone = [pipe([x], beam_size=beam, max_length=20, nbest=beam)[0] for x in images]
    padded = torch.from_numpy(np.stack([pad_regions(x, SMALL.regions) for x in images]))
    tokens, _, scores = public_beam_search(model, padded, 20, BOS, EOS, beam, out_size=beam)
    for i, (got, single) in enumerate(zip(batched, alone)):
        assert got.tokens == single.tokens
        want = tokens[i, 0].tolist()
        want = want[: want.index(EOS) + 1] if EOS in want else want
        assert got.tokens == want
        assert got.score == pytest.approx(float(scores[i, 0]), rel=1e-5)
        assert [s for _, s in got.nbest] == pytest.approx(scores[i].tolist(), rel=1e-5)
        assert got.finished == (EOS in want)


def test_captions_finish_early_and_never(m2):
    bundle, _, eos_bias = m2
    caps = M2Pipeline(bundle)(regions(5), beam_size=3, max_length=20)
    eager = M2Pipeline(bundle, backend="torch")(regions(5), beam_size=3, max_length=20)
    assert [c.tokens for c in eager] == [c.tokens for c in caps]  # the reference modules' inference cut
    if eos_bias > 0:
        assert any(c.finished and len(c.tokens) < 20 for c in caps)
    else:
        assert not any(c.finished for c in caps) and {len(c.tokens) for c in caps} == {20}


# --------------------------------------------------------------------------- the search on hand-written tables

A, B = 4, 5  # two words beside the specials; V = 6


def table_step(tables):
    """Log-probs by prefix: tables maps a prefix tuple (after <bos>) to {token: prob}; unlisted 1e-9."""

    def step(tokens, t, state):
        prefix = state["prefix"]
        lp = np.full(tokens.shape + (6,), np.log(1e-9), np.float32)
        new = np.empty_like(prefix)
        for idx in np.ndindex(tokens.shape):
            p = prefix[idx] + ((int(tokens[idx]),) if t else ())
            new[idx] = p
            for tok, prob in tables.get(p, {}).items():
                lp[idx + (tok,)] = np.log(prob)
        return lp, {"prefix": new}

    return step


def start():
    s = np.empty((1, 1), object)
    s[0, 0] = ()
    return {"prefix": s}


def test_a_finished_beam_carries_on_with_token_0_at_its_score():
    # A<eos> finishes at step 2 with 0.6*0.9; B goes on and ends lower. The finished beam stays in the
    # width-2 beam, followed by <unk> (0) at an unchanged score, and wins on raw summed log-prob.
    tables = {(): {A: 0.6, B: 0.4}, (A,): {EOS: 0.9, B: 0.1}, (B,): {A: 0.5, B: 0.5}, (B, A): {B: 0.9}}
    tables[(B, A, B)] = {EOS: 0.5}
    seen = []

    def spy(tokens, t, state):
        seen.append(tokens.copy())
        return table_step(tables)(tokens, t, state)

    (r,) = beam_search(spy, start(), 1, BOS, EOS, beam_size=2, max_length=6, out_size=2)
    assert r.best.tokens == [A, EOS] and r.best.score == pytest.approx(np.log(0.54), rel=1e-6)
    assert [h.tokens for h in r.nbest] == [[A, EOS], [B, A, B, EOS]]
    assert r.nbest[1].score == pytest.approx(np.log(0.4 * 0.5 * 0.9 * 0.5), rel=1e-6)
    assert seen[2].tolist() == [[EOS, A]] and seen[3].tolist() == [[0, B]]  # carried on with token 0
    assert r.steps == 4  # every beam had finished: the remaining steps would change nothing


def test_never_finishing_runs_max_len_steps():
    (r,) = beam_search(table_step({}), start(), 1, BOS, EOS, beam_size=2, max_length=7)
    assert r.steps == 7 and len(r.best.tokens) == 7 and not r.best.finished


# --------------------------------------------------------------------------- inputs and the command line


def test_region_files(tmp_path):
    x = regions(1)[0]
    np.save(tmp_path / "a.npy", x)
    np.savez(tmp_path / "b.npz", features=x, boxes=np.zeros((len(x), 4)))
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "d.hdf5", "w") as f:
        f["391895_features"] = x
    for source in ("a.npy", "b.npz", "d.hdf5:391895"):
        assert np.array_equal(load_regions(f"{tmp_path}/{source}"), x)
    assert pad_regions(x[:3], 50)[3:].any() == 0 and np.array_equal(pad_regions(x, 50), x[:50])
    np.save(tmp_path / "bad.npy", np.zeros(5))
    for source, message in [
        ("bad.npy", "regions must be a finite"),
        ("missing.npy", "no such file"),
        ("d.hdf5:7", "no dataset '7_features'"),
        ("d.hdf5", "name the image as"),
    ]:
        with pytest.raises(GlimpseError, match=message):
            load_regions(f"{tmp_path}/{source}")


def test_command_line_exports_and_captions(tmp_path, capsys):
    checkpoint, vocab, _ = write_checkpoint(tmp_path, SMALL, seed=4, eos_bias=2.0)
    bundle = str(tmp_path / "b")
    assert main(["export", "m2", "--checkpoint", str(checkpoint), "--vocab", str(vocab), "--out", bundle]) == 0
    files = []
    for i, x in enumerate(regions(2)):
        np.save(tmp_path / f"{i}.npy", x)
        files.append(str(tmp_path / f"{i}.npy"))
    capsys.readouterr()
    assert main(["caption", bundle, "--features", *files, "--json", "--beam-size", "3"]) == 0
    got = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    want = M2Pipeline(bundle)(files, beam_size=3)
    assert [g["tokens"] for g in got] == [w.tokens for w in want]
    assert {"image", "caption", "words", "tokens", "score", "finished"} <= set(got[0])
    assert main(["caption", bundle, files[0]]) == 2
    assert "--features" in capsys.readouterr().err


def test_inspect_quantize_and_check_an_m2_bundle(m2, tmp_path, capsys):
    bundle = str(shutil.copytree(m2[0], tmp_path / "bundle"))
    assert main(["inspect", bundle]) == 0
    assert "regions  50 per image, 32 features each" in capsys.readouterr().out
    for args, message in [
        ([], "give detection features to calibrate on"),  # not a model of the demo scenes
        (["--calibration-images", str(tmp_path)], "reads detection features"),
        (["--calibration-features", str(tmp_path / "missing.npy")], "no such file"),
    ]:
        assert main(["quantize", bundle, "--precision", "fp16", *args]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err
    files = []
    for i, x in enumerate(regions(4, seed=7)):
        np.save(tmp_path / f"{i}.npy", x)
        files.append(str(tmp_path / f"{i}.npy"))
    np.save(tmp_path / "wide.npy", np.ones((5, 33), np.float32))
    assert main(["quantize", bundle, "--precision", "int8", "--calibration-features", str(tmp_path / "wide.npy")]) == 2
    assert "have 33 features each; the model reads 32" in capsys.readouterr().err
    assert main(["quantize", bundle, "--precision", "fp16", "int8", "--calibration-features", *files]) == 0
    assert main(["check", bundle]) == 0
    assert "9 of 9 graphs pass" in capsys.readouterr().out
    assert main(["inspect", bundle]) == 0
    assert "int8  step.int8.onnx" in capsys.readouterr().out
    assert main(["caption", bundle, "--features", *files[:2], "--precision", "int8", "--beam-size", "3"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
