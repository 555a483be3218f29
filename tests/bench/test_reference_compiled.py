"""The tutorial's loop under torch.compile captions exactly as the eager loop, and compiles only while it loads."""

import pytest

from glimpse import families
from glimpse.demo import scenes
from glimpse.demo.bundles import PACKAGED, sat_bundle


@pytest.mark.slow  # inductor compiles the encoder and four variants of the step: about a minute on 2 cores
def test_compiled_reference_gives_the_reference_tokens(tmp_path):
    from torch._dynamo.utils import counters

    bundle = sat_bundle(PACKAGED, tmp_path / "sat", log=lambda m: None)  # trained: its captions end
    images = [s.image(bundle.preprocess.output_size[0]) for s in scenes.scenes("test", 3)]
    sat = families.get("sat")
    eager = sat.contender("reference", bundle, "cpu", None, compile=False)
    compiled = sat.contender("reference-compiled", bundle, "cpu", None, compile=False)
    graphs = counters["stats"]["unique_graphs"]
    for beam in (1, 3):
        want, got = eager(images, beam, 1), compiled(images, beam, 1)
        assert any(want["tokens"]), "no caption finished: nothing compared"
        assert got["tokens"] == want["tokens"] and got["steps"] == want["steps"]
    assert counters["stats"]["unique_graphs"] == graphs, "a timed caption compiled"
