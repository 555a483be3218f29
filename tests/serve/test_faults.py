"""A serving replica SIGKILLed under load loses no request: benchmarks/serve_faults.py's own fault run, smaller
(8 client threads, 200 caption requests, the kill after 50 answers), with 2 replicas and with 1. Slow: a
server each, and Ray's restart of the killed replica."""

import argparse
import sys
from pathlib import Path

import pytest

from glimpse.demo import scenes
from glimpse.demo.bundles import PACKAGED, sat_bundle

pytest.importorskip("ray.serve")
sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
import serve_faults  # noqa: E402


@pytest.mark.slow
@pytest.mark.parametrize("replicas", [2, 1])
def test_a_replica_killed_under_load_loses_no_request(replicas, tmp_path):
    bundle = sat_bundle(PACKAGED, tmp_path / "sat-bundle", lambda m: None).path
    files = []
    for s in scenes.scenes("test", 8):
        files.append(tmp_path / f"test-{s.index}.png")
        s.image(128).save(files[-1])
    want = serve_faults.cli_captions(bundle, files)
    run = argparse.Namespace(requests=200, threads=8, kill_after=50)
    got = serve_faults.fault_run(bundle, files, want, replicas, "glimpse", run)
    assert got["in_flight_at_kill"] > 0, got  # the kill caught requests in flight
    # every request answered 200: none dropped, none a 500 or a timeout; the in-flight ones resent
    assert got["statuses"] == {"200": 200}, got
    assert got["in_flight_answered"] == got["in_flight_at_kill"], got
    assert got["after_recovery"] == "16/16" and got["wrong_captions"] == 0, got
