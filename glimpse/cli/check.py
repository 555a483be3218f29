"""``glimpse check``: a bundle's graphs against TensorRT's ONNX-parser rules, without TensorRT."""

from __future__ import annotations

from glimpse.cli.base import Tool, add_bundle_argument


class Check(Tool):
    """check every graph of a bundle against TensorRT's ONNX-parser rules, without TensorRT

    Check each graph, in fp32 and every precision glimpse quantize made, against the rules of TensorRT's ONNX
    parser: opset 9..25 and the ONNX domain only; supported operators; no double/string tensors and int8 only in
    Q/DQ; Q/DQ zero points int8 zeros and no int32 (bias) dequantization; TopK sorted with K < 3840; no
    Loop/If/Scan in step graphs; every dynamic input axis named and given a profile range. Exits 1 when a graph
    fails.
    """

    name = "check"
    examples = ("glimpse quantize sat-bundle --precision fp16 int8 && glimpse check sat-bundle",)

    def add_arguments(self, parser):
        add_bundle_argument(parser)

    def run(self, args):
        from glimpse.bundle import Bundle
        from glimpse.export.check import check_bundle

        reports = check_bundle(Bundle(args.bundle))
        print(f"{'graph':<10} {'precision':<9} {'file':<20} {'opset':>5} {'nodes':>6}  TensorRT parser rules")
        for r in reports:
            if r.skipped:
                print(f"{r.graph:<10} {r.precision:<9} {r.file:<20}  skipped: {r.skipped}")
                continue
            ok = "ok" if r.ok else "FAILED"
            print(f"{r.graph:<10} {r.precision:<9} {r.file:<20} {r.opset!s:>5} {r.nodes:>6}  {ok}")
            for problem in r.problems:
                print(f"    {problem}")
        skipped = sum(bool(r.skipped) for r in reports)
        failed = sum(not r.ok for r in reports)
        checked = len(reports) - skipped
        print(
            f"{checked - failed} of {checked} graphs pass"
            + (f"; {failed} would not parse" if failed else "")
            + (f"; {skipped} CPU variants skipped (not for TensorRT)" if skipped else "")
        )
        return 1 if failed else 0
