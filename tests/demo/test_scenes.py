"""The scene generator: deterministic, splits apart, and every text true of its scene."""

import numpy as np
import pytest

from glimpse.demo import scenes


def test_a_scene_is_a_pure_function_of_split_and_index():
    a, b = scenes.scene("test", 7), scenes.scene("test", 7)
    assert a == b
    assert np.array_equal(np.asarray(a.image(96)), np.asarray(b.image(96)))
    assert a.image(96).size == (96, 96) and a.image().mode == "RGB"
    assert scenes.scene("train", 7) != a


def test_splits_do_not_share_scenes():
    seen = {split: {(s.shapes, s.background) for s in scenes.scenes(split, 300)} for split in scenes.SPLITS}
    assert not seen["train"] & seen["test"] and not seen["val"] & seen["test"]
    with pytest.raises(ValueError, match="unknown split"):
        scenes.scene("dev", 0)


def test_captions_use_the_word_list_and_describe_the_scene():
    words = scenes.caption_words()
    assert len(set(words)) == len(words)
    counts = {1: 0, 2: 0, 3: 0, 4: 0}
    for s in scenes.scenes("val", 400):
        counts[len(s.shapes)] += 1
        assert len(s.captions) == 5
        for caption in s.captions:
            assert set(caption.split()) <= set(words), caption
        assert [t.x for t in s.shapes] == sorted(t.x for t in s.shapes)
        for t in s.shapes:  # every shape is named, with its colour, in the first caption
            assert f"{t.colour} {t.kind}" in s.captions[0]
        if len(s.shapes) == 2:
            a, b = s.shapes  # left to right
            top, bottom = sorted(s.shapes, key=lambda t: t.y)
            vertical = abs(a.y - b.y) > abs(a.x - b.x)
            want = f"{top.words} above {bottom.words}" if vertical else f"{a.words} to the left of {b.words}"
            assert s.captions[0] == want
    assert min(counts.values()) > 60  # one to four shapes, about evenly


def test_answers_are_true_of_the_scene():
    for s in scenes.scenes("test", 200):
        qa = dict(s.questions)
        assert qa["how many shapes are there ?"] == scenes.NUMBERS[len(s.shapes)]
        for q, a in s.questions:
            words = q.split()
            if q.startswith("what colour is the "):
                assert [t.colour for t in s.shapes if t.kind == words[4]] == [a]
            elif q.startswith("what shape is the "):
                assert [t.kind for t in s.shapes if t.colour == words[4]] == [a]
            elif q.startswith("is there "):
                colour, kind = words[3], words[4]
                assert a == ("yes" if any(t.colour == colour and t.kind == kind for t in s.shapes) else "no")
            elif q.startswith("how many ") and words[2] != "shapes":
                assert a == scenes.NUMBERS[sum(t.colour == words[2] for t in s.shapes)]


def test_the_word_map_is_laid_out_as_the_tutorials(tmp_path):
    import json

    from glimpse.demo.train_sat import word_map
    from glimpse.families.sat.checkpoint import load_word_map

    wm = word_map()
    assert wm["<pad>"] == 0 and [wm[t] for t in ("<unk>", "<start>", "<end>")] == [
        len(wm) - 3,
        len(wm) - 2,
        len(wm) - 1,
    ]
    (tmp_path / "wm.json").write_text(json.dumps(wm))
    vocab = load_word_map(tmp_path / "wm.json")
    assert vocab.decode([wm["<start>"], wm["a"], wm["red"], wm["star"], wm["<end>"]]) == ["a", "red", "star"]
