"""Manifest parsing on any manifest.json: a bundle whose every accessor answers, or one BundleError naming the
manifest, never another exception."""

import json
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glimpse.bundle import MANIFEST, Bundle
from glimpse.errors import GlimpseError

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def paths(value, prefix=()):
    """Every key path into ``value`` (dicts and lists), the root first."""
    yield prefix
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, inner in items:
        yield from paths(inner, (*prefix, key))


@st.composite
def manifests(draw, real: dict):
    """The real manifest with one to three of its values deleted or replaced by any JSON; or any JSON."""
    if draw(st.integers(0, 9)) == 0:
        return draw(JSON)
    m = json.loads(json.dumps(real))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from([p for p in paths(m) if p]))
        parent = m
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(JSON)
    return m


@pytest.fixture(scope="module")
def scratch(small_bundle, tmp_path_factory):
    """A copy of a real bundle whose manifest the test rewrites."""
    out = tmp_path_factory.mktemp("fuzzed") / "bundle"
    shutil.copytree(small_bundle, out)
    return out


def read_everything(bundle: Bundle) -> None:
    """What readers of a bundle touch: family, config, preprocessing, vocabulary, every graph and precision."""
    assert isinstance(bundle.family, str) and isinstance(bundle.config, dict)
    assert bundle.preprocess is None or len(bundle.preprocess.output_size) == 2
    assert len(bundle.vocab) > 0
    for name, graph in bundle.graphs.items():
        for precision in ("fp32", *graph.get("precisions", {})):
            assert bundle.graph_path(name, precision).is_file()
            bundle.cpu_graph_path(name, precision)


def test_the_real_manifest_reads_whole(small_bundle):
    read_everything(Bundle(small_bundle))


def test_any_manifest_is_a_bundle_or_a_bundle_error(small_bundle, scratch):
    real = json.loads((small_bundle / MANIFEST).read_text())

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(manifests(real), st.booleans())
    def check(manifest, cut):
        text = json.dumps(manifest)
        (scratch / MANIFEST).write_text(text[: len(text) // 2] if cut else text)
        try:
            read_everything(Bundle(scratch))
        except GlimpseError as e:
            assert "\n" not in str(e)

    check()
