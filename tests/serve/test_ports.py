"""glimpse serve names a port that is taken, and the process holding it, in one line before starting Ray
(an HAProxy left over from an earlier server holds its ports after `ray stop`). No Ray is started."""

import os
import socket

import pytest

from glimpse.cli import main
from glimpse.errors import GlimpseError

pytest.importorskip("fastapi")
from glimpse.serve.app import check_ports, port_holder  # noqa: E402  (FastAPI: the serve extra)


@pytest.fixture
def listening():
    """A port this process listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_the_holder_of_a_port_is_named(listening):
    assert port_holder(listening).startswith(f"pid {os.getpid()} (")


def test_a_taken_serving_port_is_refused_naming_its_holder(listening):
    with pytest.raises(GlimpseError, match=rf"^port {listening} \(the serving port\) is held by pid {os.getpid()} \("):
        check_ports("127.0.0.1", listening)


def test_serve_refuses_a_taken_port_in_one_line_before_reading_bundles(listening, capsys):
    assert main(["serve", "no-such-bundle", "--port", str(listening)]) == 2
    line = capsys.readouterr().err.splitlines()[-1]
    assert line.startswith(f"glimpse: error: port {listening} (the serving port) is held by pid {os.getpid()} (")
    assert line.endswith("; end it, or serve on another --port")
