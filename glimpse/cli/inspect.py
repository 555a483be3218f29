"""``glimpse inspect``: a bundle's manifest as a table."""

from __future__ import annotations

from glimpse.cli.base import Tool, add_bundle_argument


class Inspect(Tool):
    """show a bundle's graphs, shapes, sizes and measured errors

    Print a bundle's manifest as a table.
    """

    name = "inspect"

    def add_arguments(self, parser):
        add_bundle_argument(parser)

    def run(self, args):
        from glimpse.bundle import Bundle
        from glimpse.export.compare import checked_error

        b = Bundle(args.bundle)
        m = b.manifest
        print(f"bundle   {b.path}  (format {m['format_version']}, family {b.family})")
        print("config   " + ", ".join(f"{k}={v}" for k, v in b.config.items()))
        p = m["preprocess"]
        if p is None:  # a model that reads detection features, not images
            print(f"regions  {b.config['regions']} per image, {b.config['d_in']} features each (zero-padded or cut)")
        else:
            crop = f", center crop {p['crop'][0]}x{p['crop'][1]}" if p.get("crop") else ""
            print(
                f"images   RGB, {p['interpolation']} resize {p['resize']} {p['size'][0]}x{p['size'][1]}{crop},"
                f" /255, mean {p['mean']}, std {p['std']}"
            )
        tokens = ", ".join(f"{k}={v}" for k, v in m["special_tokens"].items())
        print(f"tokens   {tokens}, vocabulary {len(b.vocab)}")
        width = max(len(v["name"]) for g in b.graphs.values() for v in g["inputs"] + g["outputs"])
        for name, g in b.graphs.items():
            err = max(map(checked_error, g.get("max_error", {}).values()), default=float("nan"))
            print(f"\n{name}  {g['file']}  {g['bytes'] / 1e6:.1f} MB  {g['precision']}  error {err:.1e}")
            for precision, q in g.get("precisions", {}).items():
                err = max((e["max_rel"] for e in q["max_error_vs_fp32"].values()), default=float("nan"))
                print(f"  {precision}  {q['file']}  {q['bytes'] / 1e6:.1f} MB  max rel error {err:.1e} against fp32")
                cpu = q.get("cpu")  # int8's variant for ONNX Runtime's CPU provider (the line above: TensorRT's)
                if cpu:
                    ms = f"{cpu['ms']['int8']:.1f} ms against fp32's {cpu['ms']['fp32']:.1f}"
                    if cpu["scheme"] == "fp32":
                        print(f"  {precision}-cpu  {cpu['file']}  fp32 kept: {cpu['int8_scheme_tried']} took {ms}")
                    else:
                        err = max((e["max_rel"] for e in cpu["max_error_vs_fp32"].values()), default=float("nan"))
                        print(
                            f"  {precision}-cpu  {cpu['file']}  {cpu['bytes'] / 1e6:.1f} MB  {cpu['scheme']}  max rel"
                            f" error {err:.1e} against fp32, {ms} on ONNX Runtime's CPU provider"
                        )
            for kind, values in (("in ", g["inputs"]), ("out", g["outputs"])):
                for v in values:
                    print(f"  {kind}  {v['name']:<{width}}  {v['dtype']:<8} [{', '.join(map(str, v['shape']))}]")
        print()
        check = m.get("check", {})
        if check:
            inputs = check.get("regions") or f"{check['images']} images"  # a regions model is checked on detections
            print(f"checked  on {inputs}, tolerance {check['tolerance']:.0e}: {check['metric']}")
        print("tools    " + ", ".join(f"{k} {v}" for k, v in m.get("tools", {}).items()))
