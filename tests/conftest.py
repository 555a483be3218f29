import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import tutorial  # noqa: E402


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory):
    """A tutorial-format checkpoint with a ResNet-18 backbone: (checkpoint, word map)."""
    return tutorial.write_checkpoint(tmp_path_factory.mktemp("sat18"), backbone="resnet18", n_words=40)


@pytest.fixture(scope="session")
def small_bundle(small_checkpoint, tmp_path_factory):
    from glimpse.families.sat.checkpoint import import_sat
    from glimpse.families.sat.export import export_sat

    model, vocab, preprocess = import_sat(*small_checkpoint)
    return export_sat(model, vocab, preprocess, tmp_path_factory.mktemp("b") / "sat18", log=lambda m: None)


@pytest.fixture(scope="session")
def photo():
    """A real photograph that ships with matplotlib."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
