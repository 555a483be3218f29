"""``glimpse serve``: bundles over HTTP on Ray Serve (the ``serve`` extra, imported only when serving)."""

from __future__ import annotations

from glimpse.cli.base import Tool, add_runtime_arguments, log


class Serve(Tool):
    """serve bundles over HTTP on Ray Serve, batching concurrent requests

    Serve bundles over HTTP: POST /v1/caption (sat, nic; m2 from detection features), /v1/vqa (saaa, san, rdan,
    naive), /v1/match (mdan), multipart with the image in field 'image'; /v1/search (a sentence against an
    --index); GET /healthz, /v1/models, /metrics.
    Each bundle is a Ray Serve deployment with --replicas replicas; concurrent requests to a replica are batched
    (up to --max-batch-size, waiting at most --batch-wait-ms), one batched call per set of options, so batching
    never changes a result. A local Ray is started, or --address joins a cluster (ray start --head; workers: ray
    start --address HEAD:6379; then glimpse serve ... --address auto --replicas N). With --device cuda each
    replica asks Ray for --gpus-per-replica GPUs (default 1), so Ray places it on a GPU node, and holds its own
    sessions (for tensorrt: engines, execution contexts and CUDA graphs). A request whose replica dies before
    answering is sent again to a live one where HAProxy kept it whole (Ray restarts the dead one; docs/serving.md).
    With a local Ray, a port the server needs that is taken (as by an HAProxy left over from an earlier server) is
    named, with its holder, before anything starts.
    """

    name = "serve"
    examples = (
        "glimpse serve sat-bundle",
        "curl -F image=@photo.jpg -F beam_size=3 http://127.0.0.1:8000/v1/caption",
        "glimpse serve sat-bundle san-bundle --replicas 2 --port 8080",
        "glimpse serve sat-bundle --backend tensorrt --device cuda --replicas 2 --gpus-per-replica 0.5",
    )

    def add_arguments(self, s):
        s.add_argument(
            "bundles", nargs="+", metavar="BUNDLE", help="bundle directories; each model is named after its directory"
        )
        s.add_argument(
            "--index",
            action="append",
            metavar="INDEX",
            help="a gallery index (glimpse index) to search at /v1/search, by the served m-DAN that made it;"
            " repeatable",
        )
        s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
        s.add_argument("--port", type=int, default=8000, help="port (default 8000)")
        s.add_argument("--replicas", type=int, default=1, help="replicas of each model (default 1)")
        s.add_argument("--max-batch-size", type=int, default=16, help="requests batched together (default 16)")
        s.add_argument("--batch-wait-ms", type=float, default=5.0, help="longest wait for a batch to fill (default 5)")
        add_runtime_arguments(s, threads="CPU threads per replica (default: all cores)")
        s.add_argument(
            "--gpus-per-replica",
            type=float,
            default=None,
            help="GPUs Ray reserves for each replica with --device cuda (default 1; a fraction such as 0.5 places"
            " replicas on a shared GPU, each with its own engines and contexts)",
        )
        s.add_argument("--max-body-mb", type=int, default=20, help="largest upload in MiB (default 20; larger: 413)")
        s.add_argument("--max-pixels", type=int, default=40_000_000, help="largest image, width x height (default 40M)")
        s.add_argument(
            "--timeout", type=float, default=60.0, help="seconds a request may take, queueing included (504)"
        )
        s.add_argument("--address", default=None, help="join the Ray cluster at this address ('auto': the local one)")

    def run(self, args):
        from glimpse.serve import app as serve  # Ray Serve and FastAPI: a missing one is named in one line

        model = serve.ModelOptions(
            backend=args.backend,
            device=args.device,
            precision=args.precision,
            threads=args.threads,
            max_batch_size=args.max_batch_size,
            batch_wait_ms=args.batch_wait_ms,
            gpus_per_replica=args.gpus_per_replica,
        )
        limits = serve.Limits(args.max_body_mb << 20, args.max_pixels, args.timeout)
        log(f"serving {len(args.bundles)} bundle(s) on http://{args.host}:{args.port} (Ctrl-C stops)")
        serve.run(args.bundles, args.host, args.port, args.replicas, model, limits, args.address, args.index or [])
