"""The registry is the only list of families: what reads it sees every family, and a family is described
in full."""

import pytest

from glimpse import families
from glimpse.cli import parser
from glimpse.errors import GlimpseError
from glimpse.families.vqa import NAMES as VQA_NAMES

TASKS = {"caption", "vqa", "match"}


@pytest.mark.parametrize("name", families.names())
def test_each_family_is_described(name):
    f = families.get(name)
    assert f.name == name and f.task in TASKS and f.reads in ("images", "regions")
    assert f.title and f.description and f.example.startswith(f"glimpse export {name} ")


def test_export_offers_every_family_and_its_own_arguments(capsys):
    with pytest.raises(SystemExit):
        parser().parse_args(["export", "--help"])
    listed = capsys.readouterr().out
    assert all(name in listed for name in families.names())
    args = parser().parse_args(["export", "m2", "--checkpoint", "c", "--vocab", "v", "--out", "o"])
    assert (args.family, args.regions, args.tolerance) == ("m2", 50, 1e-2) and not hasattr(args, "images")


def test_names_by_task_and_unknown_family():
    assert families.names("vqa") == list(VQA_NAMES)
    assert set(families.names("caption")) == {"sat", "m2", "nic"} and families.names("match") == ["mdan"]
    with pytest.raises(GlimpseError, match="unknown model family 'show-and-tell' \\(glimpse knows sat, "):
        families.get("show-and-tell")


def test_no_import_circle_among_glimpse_modules():
    """Lazy imports (inside functions) count too: grimp reads every import statement."""
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("glimpse")
    seen, path = set(), []

    def visit(module):  # depth-first; a module met again on the current path closes a circle
        if module in path:
            raise AssertionError(" -> ".join(path[path.index(module) :] + [module]))
        if module in seen:
            return
        path.append(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            visit(imported)
        path.pop()
        seen.add(module)

    for module in sorted(graph.modules):
        visit(module)
