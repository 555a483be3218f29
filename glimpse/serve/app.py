"""``glimpse serve``: bundles behind HTTP on Ray Serve, requests batched across clients.

    glimpse serve sat-bundle san-bundle mdan-bundle --port 8000 --replicas 2

One deployment with a FastAPI ingress, whose replicas each hold a pipeline of every bundle:

    POST /v1/caption   multipart image (sat) or features (m2: .npy/.npz regions); form model, beam_size,
                       max_length, nbest, length_penalty
    POST /v1/vqa       multipart image; form model, question, top_k
    POST /v1/match     multipart image; form model, texts (the field repeated, one sentence each)
    POST /v1/search    form text, index, top_k: a sentence against a gallery index (glimpse index)
    GET  /healthz      GET /v1/models      GET /metrics (Prometheus: requests, latency, batch sizes,
                       summed over the replicas)

Concurrent requests for one model in a replica are gathered by ``serve.batch`` (up to ``max_batch_size``, waiting at
most ``batch_wait_ms`` for more) and run as one batched call per set of options, so batching never
changes a result: the pipelines give a batch of images what they give each alone. Images are decoded and
checked in the ingress (size, pixels, format); a bad request gets a 4xx JSON ``{"error": ...}`` naming
the problem, and the others are served. This module needs the ``serve`` extra (Ray Serve, FastAPI);
nothing else in glimpse imports it.
"""

# No ``from __future__ import annotations``: FastAPI reads the endpoints' annotations, and Ray ships the
# ingress class to its replica by value, without the module globals that string annotations would name.
import asyncio
import atexit
import io
import json
import os
import shutil
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from glimpse.errors import GlimpseError
from glimpse.runtime.profiles import AXIS_RANGES

ROUTES = ("caption", "vqa", "match")  # a model is served at the route of its family's task
PUBLISH_S = 1.0  # how often a replica sends its metrics to the store that /metrics reads
HAPROXY_BUFFER = 1 << 20  # HAProxy's buffer: a request up to this size is read whole, and can be resent
HAPROXY_PORTS = {  # the ports Serve's HAProxy and Ray's fallback proxy bind besides the serving port
    "RAY_SERVE_HAPROXY_STATS_PORT": (8404, "Serve's HAProxy stats"),
    "RAY_SERVE_HAPROXY_METRICS_PORT": (9101, "Serve's HAProxy metrics"),
    "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": (8500, "Ray Serve's fallback proxy"),
}


class ErrorBody(BaseModel):
    error: str  # what is wrong, in one line


# The answers besides 200 and FastAPI's 422 (a missing or mistyped field), as the OpenAPI schema shows them.
ERRORS = {
    status: {"model": ErrorBody, "description": description}
    for status, description in [
        (400, "an unreadable upload, a bad option, or several models that could answer"),
        (404, "no such model or index"),
        (408, "the upload did not arrive within the timeout"),
        (413, "an upload or image over the limit"),
        (504, "no answer within the timeout"),
    ]
}


@dataclass
class Limits:
    max_body_bytes: int = 20 << 20  # an upload larger than this is refused (413)
    max_pixels: int = 40_000_000  # width x height
    timeout_s: float = 60.0  # per request, queueing included (504)

    @property
    def too_large(self) -> str:
        """The 413 answer's words for an upload over the limit."""
        return f"the upload is larger than {self.max_body_bytes} bytes"

    @property
    def stalled(self) -> str:
        """The 408 answer's words, whether the replica or HAProxy gives it."""
        return f"the upload did not arrive within {self.timeout_s:g} s"


@dataclass
class ModelOptions:
    backend: str = "onnxruntime"
    device: str = "cpu"
    precision: str = "fp32"
    threads: int | None = None
    max_batch_size: int = 16
    batch_wait_ms: float = 5.0
    gpus_per_replica: float | None = None  # None: 1 on a CUDA device, 0 on the CPU


def replica_options(device: str, gpus: float | None) -> dict:
    """Ray actor options of one replica: a CPU, and on a CUDA device the GPUs Ray reserves for it (``gpus``,
    default 1; a fraction such as 0.5 places replicas on a shared GPU knowingly, each holding its own
    sessions, engines and contexts). Ray hands a replica its GPU as CUDA_VISIBLE_DEVICES, so in there the
    device is ``cuda`` (cuda:0); Ray does not police a fraction's memory (its "Fractional GPUs" notes)."""
    cuda = device.split(":")[0] == "cuda"
    gpus = (1.0 if cuda else 0.0) if gpus is None else float(gpus)
    if gpus and not cuda:
        raise GlimpseError(f"--gpus-per-replica {gpus:g} asks Ray for GPUs, but the device is {device} (--device cuda)")
    if cuda and not 0 < gpus <= 1:
        raise GlimpseError(
            f"--gpus-per-replica must be above 0 and at most 1 (a replica runs on one GPU), not {gpus:g}"
        )
    if cuda and device not in ("cuda", "cuda:0"):
        raise GlimpseError(f"a replica sees only the GPU Ray gives it, as cuda: serve with --device cuda, not {device}")
    return {"num_cpus": 1, "num_gpus": gpus}


def answer(pipe, task: str, items: list, options: dict, galleries: dict) -> list[dict]:
    """One batched call: ``items`` (an image, and for VQA its question, for matching its texts; for a
    search, a sentence) that share ``options`` -> one JSON-ready result each."""
    if "index" in options:  # sentences against a gallery index of this (mdan) model's embeddings
        if options["top_k"] < 1:
            raise GlimpseError(f"top_k must be at least 1, not {options['top_k']}")
        gallery, texts = galleries[options["index"]], [text for (text,) in items]
        scores, ids = gallery.index.search(pipe.embed_texts(texts), options["top_k"])
        root = Path(gallery.meta["root"])
        return [
            {"text": t, "results": [{"image": str(root / gallery.files[i]), "score": float(v)} for v, i in zip(sc, ii)]}
            for t, sc, ii in zip(texts, scores, ids)
        ]
    if task == "caption":  # an image, or (m2) detection regions
        options = options | {"max_length": options["max_length"] or None}  # 0: the family's default
        captions = pipe([x for x, _ in items], batch_size=len(items), **options)
        return [c.to_json() | {"image": name} for c, (_, name) in zip(captions, items)]
    if task == "match":
        embedded = pipe.embed_images([image for image, _, _ in items])  # (N, dim): one batch for the images
        out = []
        for row, (_, name, texts) in zip(embedded, items):
            scores = pipe.embed_texts(texts) @ row  # (M,)
            out.append({"image": name, "matches": [{"text": t, "score": float(v)} for t, v in zip(texts, scores)]})
        return out
    answers = pipe([(image, question) for image, _, question in items], batch_size=len(items), **options)
    return [a.to_json() | {"image": name} for a, (_, name, _) in zip(answers, items)]


def batched(pipe, task: str, requests: list[tuple[tuple, dict]], galleries: dict) -> list[dict]:
    """Requests [(item, options)] gathered by serve.batch -> their results in order: one call per set
    of options; an error (bad options) answers its own group only."""
    groups = defaultdict(list)
    for i, (_, options) in enumerate(requests):
        groups[json.dumps(options, sort_keys=True)].append(i)
    out: list[dict] = [{}] * len(requests)
    for indices in groups.values():
        try:
            results = answer(pipe, task, [requests[i][0] for i in indices], requests[indices[0]][1], galleries)
        except GlimpseError as e:
            results = [{"error": str(e)}] * len(indices)
        for i, r in zip(indices, results):
            out[i] = r | {"_batch": len(requests)}  # for the ingress's batch-size histogram
    return out


def application(bundles: dict[str, str], indexes: dict, replicas: int, model: ModelOptions, limits: Limits):
    """The Ray Serve application: ``bundles`` {model name: bundle path}, ``indexes`` {index name: (index
    path, the name of the model that embedded it)}."""
    from ray import serve

    from glimpse import families
    from glimpse.bundle import Bundle

    class Served:
        """One bundle in a replica: its pipeline, its gallery indexes, and the queue that batches its
        requests."""

        def __init__(self, path: str, options: ModelOptions, galleries: dict[str, str]):
            from glimpse.runtime.gallery import Gallery

            bundle = Bundle(path)
            self.task = families.get(bundle.family).task
            opened = {k: getattr(options, k) for k in ("backend", "device", "threads", "precision")}
            self.pipe = families.open_pipeline(bundle, **opened, arena=False)  # see fixed_mmap_threshold
            self.galleries = {name: Gallery(p) for name, p in galleries.items()}
            self.run.set_max_batch_size(options.max_batch_size)
            self.run.set_batch_wait_timeout_s(options.batch_wait_ms / 1000)

        @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
        async def run(self, requests: list[tuple[tuple, dict]]) -> list[dict]:
            # in a thread: the replica keeps reading requests into the next batch while this one computes
            return await asyncio.to_thread(batched, self.pipe, self.task, requests, self.galleries)

    api = FastAPI(title="glimpse", version=_version())
    api.add_middleware(UploadGuard, limits=limits)
    api.add_exception_handler(UploadRefused, lambda request, e: JSONResponse({"error": e.detail}, e.status_code))
    models = {name: {"family": Bundle(p).family, "bundle": p, **asdict(model)} for name, p in bundles.items()}
    # who answers what: {route: {name given in the request: model}}
    routes = {route: {n: n for n, m in models.items() if families.get(m["family"]).task == route} for route in ROUTES}
    routes["search"] = {name: owner for name, (_, owner) in indexes.items()}

    # Every replica holds every bundle: a request crosses one process boundary (proxy -> replica), not
    # two, which on a small machine is most of a request's cost. Ray Serve lets 5 requests at a time
    # into a replica by default, too few to fill a batch.
    @serve.deployment(max_ongoing_requests=1000)
    @serve.ingress(api)
    class Glimpse:
        def __init__(self, options: dict, store):
            fixed_mmap_threshold()
            owned = {name: {i: p for i, (p, owner) in indexes.items() if owner == name} for name in bundles}
            self.models = {name: Served(p, ModelOptions(**options), owned[name]) for name, p in bundles.items()}
            # Each replica counts what it answered; a scrape reaches one replica, which answers the sum
            # of every replica's latest counts, kept by the store (at most PUBLISH_S old but its own).
            self.metrics, self.store, self.replica, self.publishing = Metrics(), store, uuid.uuid4().hex, None

        @api.get("/healthz")
        def healthz(self):
            return {"status": "ok"}

        @api.get("/v1/models")
        def models(self):
            return {"models": models, "indexes": {n: {"index": p, "model": m} for n, (p, m) in indexes.items()}}

        @api.post("/v1/caption", responses=ERRORS)
        async def caption(
            self,
            request: Request,
            # one of the two; typed UploadFile, not "| None", so that the schema calls each a file upload
            image: Annotated[UploadFile, File()] = None,
            features: Annotated[UploadFile, File()] = None,
            model: Annotated[str | None, Form()] = None,
            beam_size: Annotated[int, Form()] = 5,
            max_length: Annotated[int, Form()] = 0,  # 0: the family's (sat 51, m2 20)
            nbest: Annotated[int, Form()] = 1,
            length_penalty: Annotated[float, Form()] = 0.0,
        ):
            options = {"beam_size": beam_size, "max_length": max_length, "nbest": nbest}
            upload, options = image or features, options | {"length_penalty": length_penalty}
            if upload is None:  # in FastAPI's own words for a missing field
                missing = "field 'image' (or 'features', detections for an m2 model) is missing"
                detail = [{"type": "missing", "loc": ["body", "image"], "msg": missing, "input": None}]
                return JSONResponse({"detail": detail}, status_code=422)
            return await self.serve("caption", model, request, upload, (), options, regions=features is not None)

        @api.post("/v1/vqa", responses=ERRORS)
        async def vqa(
            self,
            request: Request,
            image: Annotated[UploadFile, File()],
            question: Annotated[str, Form()],
            model: Annotated[str | None, Form()] = None,
            top_k: Annotated[int, Form()] = 5,
        ):
            return await self.serve("vqa", model, request, image, (question,), {"top_k": top_k})

        @api.post("/v1/match", responses=ERRORS)
        async def match(
            self,
            request: Request,
            image: Annotated[UploadFile, File()],
            texts: Annotated[list[str], Form()],
            model: Annotated[str | None, Form()] = None,
        ):
            return await self.serve("match", model, request, image, (texts,), {})

        @api.post("/v1/search", responses=ERRORS)
        async def search(
            self,
            request: Request,
            text: Annotated[str, Form()],
            index: Annotated[str | None, Form()] = None,
            top_k: Annotated[int, Form()] = 10,
        ):
            return await self.serve("search", index, request, None, (text,), {"top_k": top_k})

        @api.get("/metrics", response_class=PlainTextResponse)
        async def metrics(self):
            await self.publish()
            return Response(await self.store.text.remote(), media_type="text/plain; version=0.0.4")

        async def publish(self):
            await self.store.report.remote(self.replica, self.metrics.snapshot())

        async def publish_every(self, seconds: float):
            while True:
                await asyncio.sleep(seconds)
                try:
                    await self.publish()
                except Exception as e:  # the store restarting: the next snapshot carries the counts
                    print(f"glimpse: could not publish metrics ({e})", flush=True)

        async def serve(self, route: str, model, request, upload, rest: tuple, options: dict, regions=False):
            start, name = time.perf_counter(), model or "-"
            if self.publishing is None:  # counts exist from the first request on
                self.publishing = asyncio.create_task(self.publish_every(PUBLISH_S))
            try:
                name, target = self.model_for(route, model, regions)
                if route == "search":
                    item, options = rest, options | {"index": name}
                else:
                    read = read_regions if regions else read_image
                    item = (await read(request, upload, limits), upload.filename or "image", *rest)
                result = await asyncio.wait_for(self.models[target].run((item, options)), limits.timeout_s)
                self.metrics.batch.labels(name).observe(result.pop("_batch"))
                response = JSONResponse(result, status_code=400 if "error" in result else 200)
            except HTTPError as e:
                response = JSONResponse({"error": str(e)}, status_code=e.status)
            except TimeoutError:
                response = JSONResponse({"error": f"no answer within {limits.timeout_s:g} s"}, status_code=504)
            self.metrics.requests.labels(route, name, response.status_code).inc()
            self.metrics.seconds.labels(route, name).observe(time.perf_counter() - start)
            return response

        def model_for(self, route: str, name: str | None, regions: bool = False) -> tuple[str, str]:
            """The model (or index) a request names, and the model deployment that answers it. /v1/caption
            picks among the captioners of what was uploaded: detections (``regions``, m2) or an image."""
            served, what = routes[route], "index" if route == "search" else "model"
            if route == "caption":
                served = {
                    n: m for n, m in served.items() if (families.get(models[m]["family"]).reads == "regions") == regions
                }
                route += " with features" if regions else " with an image"
            if not served:
                raise HTTPError(404, f"no {what} serves /v1/{route} here")
            if name is None and len(served) == 1:
                name = next(iter(served))
            if name is None:
                raise HTTPError(400, f"several {what}es serve /v1/{route} ({', '.join(served)}): name one in '{what}'")
            if name not in served:
                raise HTTPError(404, f"no {what} '{name}' serves /v1/{route} (loaded: {', '.join(served) or 'none'})")
            return name, served[name]

    store = serve.deployment(MetricsStore).options(name="glimpse-metrics", ray_actor_options={"num_cpus": 0})
    resources = replica_options(model.device, model.gpus_per_replica)  # each replica holds its own GPU sessions
    glimpse = Glimpse.options(name="glimpse", num_replicas=replicas, ray_actor_options=resources)
    return glimpse.bind(asdict(model), store.bind())


class Metrics:
    """One replica's Prometheus metrics, in a registry of its own."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "glimpse_requests", "Requests answered", ["route", "model", "status"], registry=self.registry
        )
        self.seconds = Histogram(
            "glimpse_request_seconds",
            "Time from the upload read to the answer, queueing and batching included",
            ["route", "model"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.batch = Histogram(
            "glimpse_batch_size",
            "Requests in the batch that answered a request",
            ["model"],
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=self.registry,
        )

    def snapshot(self) -> list[tuple]:
        """The current values as plain data: [(family, help, type, [(sample, labels, value), ...]), ...]."""
        return [
            (m.name, m.documentation, m.type, [(s.name, tuple(sorted(s.labels.items())), s.value) for s in m.samples])
            for m in self.registry.collect()
        ]


class MetricsStore:
    """The latest metrics snapshot of every replica (a deployment of one replica)."""

    def __init__(self):
        self.snapshots: dict[str, list] = {}

    def report(self, replica: str, snapshot: list) -> None:
        self.snapshots[replica] = snapshot

    def text(self) -> str:
        return prometheus_text(self.snapshots.values())


def prometheus_text(snapshots) -> str:
    """Snapshots (``Metrics.snapshot``) summed into one Prometheus exposition: counts, sums and buckets
    add up; a ``_created`` time is the earliest."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.metrics_core import Metric

    families: dict[str, Metric] = {}
    values: dict[tuple, float] = {}  # (family, sample, labels) -> value, in the order first seen
    for snapshot in snapshots:
        for name, documentation, kind, samples in snapshot:
            families.setdefault(name, Metric(name, documentation, kind))
            for sample, labels, value in samples:
                key, seen = (name, sample, labels), values.get((name, sample, labels))
                values[key] = (
                    value if seen is None else min(seen, value) if sample.endswith("_created") else seen + value
                )
    for (name, sample, labels), value in values.items():
        families[name].add_sample(sample, dict(labels), value)

    class Summed:
        def collect(self):
            return families.values()

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Summed())
    return generate_latest(registry).decode()


def fixed_mmap_threshold() -> None:
    """Keep this process's large allocations (128 KiB and up: a batch's images and activations) in memory maps
    of their own, which go back to the OS when freed. glibc's malloc starts so, but raises that threshold to each
    large block freed, and from then on serves such blocks from its heaps, which fragment and never shrink.

    With ONNX Runtime's arena off too, a replica's memory grew 5% over a 10-minute soak, against 13 to 17% with
    both as they come (docs/serving.md, Soak), for 18% less batched throughput at 32 clients. No-op off glibc."""
    import ctypes
    import ctypes.util

    M_MMAP_THRESHOLD = -3  # <malloc.h>; setting it also stops glibc adjusting it
    try:
        ctypes.CDLL(ctypes.util.find_library("c")).mallopt(M_MMAP_THRESHOLD, 128 << 10)
    except (OSError, AttributeError, TypeError):  # no C library found, or not glibc's
        pass


class UploadRefused(StarletteHTTPException):
    """An upload refused while it arrives: over the size limit (413), or not in within the timeout (408).
    A Starlette HTTPException, which FastAPI's form parsing passes on instead of calling it a bad body."""


class UploadGuard:
    """ASGI middleware: a request whose Content-Length is over the limit is answered 413 before its body is
    read; one that grows past it while arriving (chunked) is cut off with 413; and an upload that has not
    arrived within the request timeout (a slow or stalled client) gets 408. So no upload holds a
    replica's memory, or a connection, for longer than the timeout. The slack is the multipart framing."""

    SLACK = 64 << 10

    def __init__(self, app, limits: Limits):
        self.app, self.limits = app, limits

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        most = self.limits.max_body_bytes + self.SLACK
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if length.isdigit() and int(length) > most:
            body = json.dumps({"error": self.limits.too_large}).encode()
            headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
            await send({"type": "http.response.start", "status": 413, "headers": headers})
            return await send({"type": "http.response.body", "body": body})
        loop = asyncio.get_running_loop()
        deadline, received, arrived = loop.time() + self.limits.timeout_s, 0, False

        async def bounded():
            nonlocal received, arrived
            if arrived:  # after the body: waiting for a disconnect, unbounded
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0))
            except TimeoutError:
                raise UploadRefused(408, self.limits.stalled) from None
            received += len(message.get("body", b""))
            arrived = not message.get("more_body", False)
            if received > most:
                raise UploadRefused(413, self.limits.too_large)
            return message

        await self.app(scope, bounded, send)


class HTTPError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


async def read_body(request, upload, limits: Limits) -> bytes:
    """The upload, or HTTPError 413 when it is larger than the limit."""
    size = int(request.headers.get("content-length") or 0)
    data = await upload.read(limits.max_body_bytes + 1)
    if size > limits.max_body_bytes or len(data) > limits.max_body_bytes:
        raise HTTPError(413, limits.too_large)
    return data


async def read_image(request, upload, limits: Limits) -> np.ndarray:
    """The uploaded image as HxWx3 uint8 RGB, or HTTPError 413/400 naming what is wrong with it."""
    from PIL import Image

    from glimpse.images import load_image

    data = await read_body(request, upload, limits)
    try:
        with Image.open(io.BytesIO(data)) as probe:
            width, height = probe.size
    except Exception:
        raise HTTPError(400, f"'{upload.filename}' is not an image Pillow can read") from None
    if width * height > limits.max_pixels:
        raise HTTPError(413, f"'{upload.filename}' has {width}x{height} pixels, more than {limits.max_pixels}")
    upload_file = io.BytesIO(data)
    upload_file.name = upload.filename or "image"
    try:
        return np.asarray(load_image(upload_file))
    except GlimpseError as e:
        raise HTTPError(400, str(e)) from None


async def read_regions(request, upload, limits: Limits) -> np.ndarray:
    """Uploaded detection features (.npy or .npz, never unpickled) as (n, d) float32, or HTTPError 413/400."""
    from glimpse.runtime.regions import read_regions as read

    data = await read_body(request, upload, limits)
    try:
        return read(io.BytesIO(data), f"'{upload.filename}'")
    except GlimpseError as e:
        raise HTTPError(400, str(e)) from None


def haproxy_retries(limits: Limits) -> dict[str, str]:
    """Ray's settings for Serve's HAProxy (read when Ray starts), so that a request whose replica dies is sent
    again: to another replica, or with none left to Ray's fallback proxy, which holds it until one is back (a
    request has no side effects, so it may run twice).

    HAProxy can resend only a request it still holds whole, so it must read each body before forwarding it
    (``option http-buffer-request``; a body over its buffer goes on as it arrives, and cannot be resent), and
    that wait is bounded by ``timeout http-request`` (the server's timeout), answered 408 in JSON like the
    app's own errors. Ray's generated config has no setting for these three, so they go in its defaults
    section on lines of their own after ``retry-on``, whose value Ray writes there verbatim."""
    body = json.dumps({"error": limits.stalled})
    folder = tempfile.mkdtemp(prefix="glimpse-haproxy-")  # HAProxy reads the answer at each reload
    atexit.register(shutil.rmtree, folder, True)
    answer = Path(folder) / "408.http"
    answer.write_bytes(
        b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
        + f"content-length: {len(body)}\r\n\r\n{body}".encode()
    )
    defaults = [
        "conn-failure empty-response junk-response",
        "option http-buffer-request",
        f"timeout http-request {round(limits.timeout_s * 1000)}",  # milliseconds
        f"errorfile 408 {answer}",
    ]
    return {
        "RAY_SERVE_HAPROXY_RETRY_ON": "\n    ".join(defaults),
        "RAY_SERVE_HAPROXY_RETRIES": "8",  # enough to mark a dead replica down and move on
        "RAY_SERVE_HAPROXY_TUNE_BUFSIZE": str(HAPROXY_BUFFER),
    }


def run(
    bundles: list[str],
    host: str = "127.0.0.1",
    port: int = 8000,
    replicas: int = 1,
    model: ModelOptions | None = None,
    limits: Limits | None = None,
    address: str | None = None,
    indexes: list[str] = (),
    blocking: bool = True,
):
    """Start Ray (or join the cluster at ``address``) and serve ``bundles`` and the gallery ``indexes``
    (each answered by the served mdan bundle that embedded it); models and indexes are named after
    their directories. Bad options, bundles and indexes are reported here, before anything starts."""
    model, limits = model or ModelOptions(), limits or Limits()
    gpus = replicas * replica_options(model.device, model.gpus_per_replica)["num_gpus"]
    most = AXIS_RANGES["batch"][2]
    if model.backend == "tensorrt" and model.max_batch_size > most:  # a batch the engines' profile refuses
        raise GlimpseError(f"--max-batch-size {model.max_batch_size} is over the TensorRT engines' batch of {most}")

    # Ray Serve's throughput mode: HAProxy (the binary comes with ray[serve]) takes the port and sends
    # each request straight to a replica's own HTTP server, instead of through Ray's Python proxy and
    # an actor call; measured on the demo captioner, 2.1x -> 2.6x one client's throughput at 32 clients
    # (benchmarks/serve_load.py). Ray reads these when it starts; a cluster's nodes set them at `ray start`.
    for flag in ("RAY_SERVE_THROUGHPUT_OPTIMIZED", "RAY_SERVE_ENABLE_HA_PROXY"):
        os.environ.setdefault(flag, "1")
    for setting, value in haproxy_retries(limits).items():
        os.environ.setdefault(setting, value)
    if not address:
        check_ports(host, port)
    import ray
    from ray import serve

    from glimpse.bundle import Bundle

    named: dict[str, str] = {}
    for path in bundles:
        name = Path(path).resolve().name
        if name in named:
            raise GlimpseError(f"two bundles named '{name}': models are named after their directories")
        Bundle(path)
        named[name] = str(Path(path).resolve())
    owned: dict[str, tuple[str, str]] = {}
    for path in indexes:
        meta = Path(path) / "index.json"
        if not meta.is_file():
            raise GlimpseError(f"{path}: not an index (no index.json; make one with glimpse index)")
        graphs = json.loads(meta.read_text())["graphs"]  # the sha256s of the graphs that embedded it
        owners = [n for n, b in named.items() if _sha256s(Bundle(b), graphs) == graphs]
        if not owners:
            raise GlimpseError(f"{path}: none of the bundles served is the m-DAN that embedded this index")
        owned[Path(path).resolve().name] = (str(Path(path).resolve()), owners[0])
    if address:
        ray.init(address=address, log_to_driver=False)
    else:  # logical CPUs: one per replica, whatever the cores (a replica's threads share them)
        cpus = max(os.cpu_count() or 1, replicas * len(named))
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        have = ray.cluster_resources().get("GPU", 0)
        if gpus > have:  # Serve would wait for them forever
            ray.shutdown()
            raise GlimpseError(f"{replicas} replica(s) x {gpus / replicas:g} GPU need {gpus:g} GPUs; Ray sees {have:g}")
    # Ray's own limit on a request, past ours (504): a request held while no replica is up gets 408 then.
    serve.start(http_options={"host": host, "port": port, "request_timeout_s": limits.timeout_s + 10})
    app = application(named, owned, replicas, model, limits)
    serve.run(app, name="glimpse", route_prefix="/", blocking=blocking)


def check_ports(host: str, port: int) -> None:
    """Refuse in one line, naming the holder, when a port the server will bind is taken, as by an HAProxy
    left over from an earlier server (``ray stop`` does not always end it)."""
    import socket

    ports = {port: ("the serving port", host)}
    if os.environ.get("RAY_SERVE_ENABLE_HA_PROXY") == "1":
        for setting, (default, what) in HAPROXY_PORTS.items():
            ports.setdefault(int(os.environ.get(setting, default)), (what, "0.0.0.0"))
    for number, (what, address) in ports.items():
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a closed connection's TIME_WAIT is no holder
            try:
                s.bind((address, number))
            except OSError:
                raise GlimpseError(
                    f"port {number} ({what}) is held by {port_holder(number)}; end it, or serve on another --port"
                ) from None


def port_holder(port: int) -> str:
    """'pid N (name)' of the process listening on a TCP ``port`` of this machine, from /proc."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = [row.split() for row in Path(table).read_text().splitlines()[1:]]
        except OSError:
            continue
        inodes |= {f"socket:[{r[9]}]" for r in rows if r[3] == "0A" and int(r[1].rsplit(":", 1)[1], 16) == port}
    for process in Path("/proc").iterdir():
        if process.name.isdigit() and inodes:
            try:
                if any(os.readlink(fd) in inodes for fd in (process / "fd").iterdir()):
                    return f"pid {process.name} ({(process / 'comm').read_text().strip()})"
            except OSError:  # another user's process, or one that just ended
                continue
    return "a process this user cannot see"


def _sha256s(bundle, graphs) -> dict:
    return {g: bundle.graphs.get(g, {}).get("sha256") for g in graphs}


def _version() -> str:
    from glimpse import __version__

    return __version__
