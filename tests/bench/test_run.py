"""The benchmark suite runs every contender on a bundle and writes its JSON, markdown and figure."""

import json

from glimpse.bench.report import goal_table
from glimpse.cli import main


def test_bench_writes_tables_and_figure(small_bundle, tmp_path, capsys):
    argv = ["bench", "--model", str(small_bundle), "--beams", "1", "5", "--batches", "1", "32", "--images", "2"]
    argv += ["--no-reference-compiled"]  # its compilation takes a minute: tests/bench/test_reference_compiled.py
    assert main([*argv, "--out", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    results = json.loads((tmp_path / f"sat-{small_bundle.name}-cpu.json").read_text())
    assert set(results["contenders"]) == {"reference", "torch", "onnxruntime"}
    for r in results["contenders"].values():
        for beam in ("1", "5"):
            t = r["latency"][beam]
            assert 0 < t["p50_ms"] <= t["p90_ms"] <= t["p99_ms"]
            assert t["steps"] >= 1 and t["encoder_ms"] > 0 and t["decode_ms"] > 0
        assert r["throughput"]["32"] > 0 and r["memory"]["peak_rss_mib"] > 0
        assert r["same_tokens"] == {"1": 2, "5": 2} and r["startup"]["load_s"] > 0
    # every contender decodes the same tokens, so the same number of steps
    steps = {r["latency"]["5"]["steps"] for r in results["contenders"].values()}
    assert len(steps) == 1
    assert "| onnxruntime | 5 |" in table and "### Goals" not in table  # the goals are the tutorial-size model's
    # the limits: the ResNet-18 encoder's work counted, this machine's peaks measured, bounds derived from both
    limits = results["limits"]
    assert 1e9 < limits["work"]["encoder_flop"] < 1e10 and limits["work"]["step_weight_bytes"] > 1e6
    assert limits["peaks"]["fp32_flops"] > 1e9 and limits["peaks"]["weights_bytes_per_s"] > 1e8
    assert limits["bounds"]["encoder_ms"] > 0 and "| lower bound |" in table
    assert (tmp_path / f"sat-{small_bundle.name}-cpu.png").stat().st_size > 0
    assert (tmp_path / f"sat-{small_bundle.name}-cpu.md").read_text().strip() == table.strip()


def test_goals_are_read_per_contender_for_the_tutorial_model():
    def contender(p50, decode, images_per_s):
        return {"latency": {5: {"p50_ms": p50, "decode_ms": decode}}, "throughput": {32: images_per_s}}

    results = {
        "model": "tutorial",
        "contenders": {
            "reference": contender(700.0, 560.0, 1.5),
            "onnxruntime": contender(140.0, 80.0, 9.0),
            "onnxruntime-int8": contender(70.0, 40.0, 24.0),
        },
    }
    rows = goal_table(results)
    assert "| end-to-end latency at batch 1 | onnxruntime | 7x | 5.0x | no |" in rows
    assert "| end-to-end latency at batch 1 | onnxruntime-int8 | 10x | 10.0x | yes |" in rows
    assert "| decode steps alone at batch 1 | onnxruntime-int8 | 10x | 14.0x | yes |" in rows
    assert "| throughput at batch 32 | onnxruntime-int8 | 15x | 16.0x | yes |" in rows
    assert goal_table({**results, "model": "demo"}) == []
