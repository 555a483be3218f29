"""glimpse serve, started on a loopback port with the demo's captioner, a VQA model and the m-DAN, and
spoken to over real HTTP: the CLI's captions, the pipelines' answers and scores, a 4xx JSON error for
each kind of bad request while the server keeps serving, and 32 concurrent requests all answered."""

import asyncio
import io
import json
import socket
import time
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from glimpse.cli import main
from glimpse.demo import scenes
from glimpse.demo.bundles import PACKAGED, sat_bundle
from glimpse.demo.m2 import m2_bundle
from glimpse.demo.matching import mdan_bundle
from glimpse.demo.vqa import vqa_bundle
from glimpse.families.mdan.pipeline import MatchPipeline
from glimpse.families.vqa.pipeline import VQAPipeline
from glimpse.runtime import gallery
from glimpse.serve import app as serve

httpx = pytest.importorskip("httpx")
pytest.importorskip("ray.serve")

MAX_BODY = 1 << 20
TIMEOUT_S = 15  # the server's --timeout: the slow upload below waits it out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(base URL, {family: bundle}, test scene image files)."""
    import ray
    from ray import serve as ray_serve

    out = tmp_path_factory.mktemp("serve")
    quiet = lambda m: None  # noqa: E731
    bundles = {
        "sat": sat_bundle(PACKAGED, out / "sat-bundle", quiet),
        "san": vqa_bundle("san", PACKAGED, out, quiet),
        "mdan": mdan_bundle(PACKAGED, out, quiet),
        "m2": m2_bundle(PACKAGED, out / "m2-bundle", quiet),
    }
    files = []
    for s in scenes.scenes("test", 6):
        files.append(out / f"test-{s.index}.png")
        s.image(128).save(files[-1])
    index = gallery.build(MatchPipeline(bundles["mdan"]), out, files, out / "scenes-index", log=quiet)
    port = free_port()
    limits = serve.Limits(max_body_bytes=MAX_BODY, max_pixels=1_000_000, timeout_s=TIMEOUT_S)
    paths = [str(b.path) for b in bundles.values()]
    serve.run(paths, port=port, replicas=2, limits=limits, indexes=[index.path], blocking=False)
    yield f"http://127.0.0.1:{port}", bundles, files
    ray_serve.shutdown()
    ray.shutdown()


def post(url, path, image: bytes, name="scene.png", **form):
    return httpx.post(url + path, files={"image": (name, image)}, data=form, timeout=120)


def test_health_and_models(server):
    url, bundles, _ = server
    assert httpx.get(url + "/healthz").json() == {"status": "ok"}
    models = httpx.get(url + "/v1/models").json()["models"]
    families = {m: v["family"] for m, v in models.items()}
    assert families == {"sat-bundle": "sat", "san-bundle": "san", "mdan-bundle": "mdan", "m2-bundle": "m2"}


def test_captions_equal_the_cli(server, capsys):
    url, bundles, files = server
    assert main(["caption", str(bundles["sat"].path), *map(str, files), "--json", "-b", "3"]) == 0
    cli = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    for f, want in zip(files, cli):
        got = post(url, "/v1/caption", f.read_bytes(), f.name, beam_size=3)
        assert got.status_code == 200
        got = got.json()
        score = got.pop("score")  # summed in float32 by kernels whose thread count may differ: ulps apart
        assert got == {k: v for k, v in want.items() if k != "score"} | {"image": f.name}
        assert score == pytest.approx(want["score"], rel=1e-5)


def test_vqa_and_match_equal_the_pipelines(server):
    url, bundles, files = server
    scene = scenes.scenes("test", 1)[0]
    question = scene.questions[0][0]
    want = VQAPipeline(bundles["san"])([(files[0], question)])[0].to_json()
    got = post(url, "/v1/vqa", files[0].read_bytes(), files[0].name, question=question).json()
    assert got["answers"] == want["answers"] and got["answer"] == scene.questions[0][1]
    texts = [scene.captions[0], "a large red circle"]
    got = post(url, "/v1/match", files[0].read_bytes(), files[0].name, texts=texts).json()
    want = MatchPipeline(bundles["mdan"]).scores([files[0]], texts)[0]
    assert [m["text"] for m in got["matches"]] == texts
    np.testing.assert_allclose([m["score"] for m in got["matches"]], want, rtol=1e-5)


def test_m2_captions_uploaded_detections(server):
    """/v1/caption with a features upload goes to the m2 captioner, with an image to sat's."""
    from glimpse.demo.train_m2 import scene_regions
    from glimpse.demo.train_vqa import frozen_cnn
    from glimpse.families.m2.pipeline import M2Pipeline

    url, bundles, _ = server
    regions = scene_regions(frozen_cnn(PACKAGED)[0], "test", 2)[0].numpy()
    for i, x in enumerate(regions):
        npy = io.BytesIO()
        np.save(npy, x)
        got = httpx.post(url + "/v1/caption", files={"features": (f"{i}.npy", npy.getvalue())}, timeout=60)
        assert got.status_code == 200, got.text
        want = M2Pipeline(bundles["m2"])([x])[0].to_json()
        got = got.json()
        assert got["tokens"] == want["tokens"] and got["caption"] == want["caption"]
    bad = httpx.post(url + "/v1/caption", files={"features": ("x.npy", b"not numpy")}, timeout=60)
    assert bad.status_code == 400 and "'x.npy': not a .npy or .npz file" in bad.text
    bad = httpx.post(url + "/v1/caption", data={"beam_size": 3}, timeout=60)
    assert bad.status_code == 422 and "'features'" in bad.text


def test_search_equals_the_index(server):
    url, bundles, files = server
    text = scenes.scenes("test", 1)[0].captions[0]
    got = httpx.post(url + "/v1/search", data={"text": text, "top_k": 3}, timeout=60).json()
    index = gallery.Gallery(files[0].parent / "scenes-index")
    scores, ids = index.index.search(MatchPipeline(bundles["mdan"]).embed_texts([text]), 3)
    assert [r["image"] for r in got["results"]] == [str(files[0].parent / index.files[i]) for i in ids[0]]
    assert got["results"][0]["image"] == str(files[0])  # the scene the caption describes comes first
    np.testing.assert_allclose([r["score"] for r in got["results"]], scores[0], rtol=1e-5)
    bad = httpx.post(url + "/v1/search", data={"text": text, "index": "nope"}, timeout=60)
    assert bad.status_code == 404 and "no index 'nope' serves /v1/search" in bad.text


def test_each_bad_request_gets_a_4xx_json_error(server):
    url, _, files = server
    good = files[0].read_bytes()
    big = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (700, 700, 3), np.uint8)).save(big, format="PNG")
    wide = io.BytesIO()
    Image.new("RGB", (1500, 800)).save(wide, format="PNG")  # small file, 1.2M pixels
    cases = [
        (post(url, "/v1/caption", b"not an image", "notes.png"), 400, "'notes.png' is not an image"),
        (post(url, "/v1/caption", good[: len(good) // 2], "cut.png"), 400, "cut.png: not a readable image"),
        (post(url, "/v1/caption", big.getvalue(), "big.png"), 413, "larger than 1048576 bytes"),
        (post(url, "/v1/caption", wide.getvalue(), "wide.png"), 413, "1500x800 pixels"),
        (post(url, "/v1/caption", good, beam_size=0), 400, "beam size must be between 1"),
        (post(url, "/v1/caption", good, model="nope"), 404, "no model 'nope' serves /v1/caption"),
        (post(url, "/v1/vqa", good), 422, "question"),  # the missing field, named by FastAPI
        (post(url, "/v1/caption", good, beam_size="five"), 422, "beam_size"),
    ]
    for response, status, words in cases:
        assert response.status_code == status, (words, response.text)
        assert words in response.text
    assert post(url, "/v1/caption", good).status_code == 200  # still serving


def raw_request(url: str, head: bytes, body: bytes = b"", wait: float = 0.0) -> bytes:
    """Over a plain socket: the request's head, then after ``wait`` seconds its body; what comes back."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=TIMEOUT_S + 30) as s:
        s.sendall(head)
        time.sleep(wait)
        try:
            s.sendall(body)
        except OSError:  # the server answered and closed before the whole body was sent
            pass
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
            if b"\r\n\r\n" in answer and b'"}' in answer:
                return answer
        return answer


def multipart_head(length: int) -> bytes:
    return (
        f"POST /v1/caption HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\n\r\n"
    ).encode()


def test_an_upload_declared_over_the_limit_is_refused_without_waiting_for_it(server):
    url, _, files = server
    start = time.perf_counter()
    # HAProxy reads a body up to its buffer (1 MiB) before forwarding it, so that it could resend it; the
    # replica answers from the head, before the other 48 MiB are sent.
    answer = raw_request(url, multipart_head(50 * MAX_BODY), bytes(2 * MAX_BODY))
    assert answer.startswith(b"HTTP/1.1 413") and b"larger than 1048576 bytes" in answer
    assert time.perf_counter() - start < 10
    assert post(url, "/v1/caption", files[0].read_bytes()).status_code == 200


def test_a_stalled_upload_gets_408_within_the_timeout(server):
    url, _, files = server
    start = time.perf_counter()
    part = b'--b\r\nContent-Disposition: form-data; name="image"; filename="s.png"\r\n\r\n'
    answer = raw_request(url, multipart_head(len(part) + 1000) + part)  # 1000 bytes promised, none sent
    assert answer.startswith(b"HTTP/1.1 408") and b"did not arrive within 15 s" in answer
    assert TIMEOUT_S <= time.perf_counter() - start < TIMEOUT_S + 10
    assert post(url, "/v1/caption", files[0].read_bytes()).status_code == 200


def test_clients_that_hang_up_mid_request_leave_the_server_serving(server):
    url, _, files = server
    image = files[0].read_bytes()
    part = b'--b\r\nContent-Disposition: form-data; name="image"; filename="s.png"\r\n\r\n' + image + b"\r\n--b--\r\n"
    host, port = url.removeprefix("http://").split(":")
    for cut in (len(part) // 2, len(part)):  # during the upload, and while the caption is computed
        for _ in range(4):
            with socket.create_connection((host, int(port))) as s:
                s.sendall(multipart_head(len(part)) + part[:cut])
    answers = [post(url, "/v1/caption", f.read_bytes(), beam_size=3) for f in files[:3]]
    assert [a.status_code for a in answers] == [200] * 3


def scrape(url) -> str:
    """/metrics once every replica has published what it answered so far."""
    time.sleep(2 * serve.PUBLISH_S)
    return httpx.get(url + "/metrics").text


def batch_sizes(url) -> dict:
    """The captioner's batch-size histogram from /metrics: {"count": n, "<le>": cumulative count}."""
    text = scrape(url)
    out = {"count": 0.0, "1.0": 0.0}
    for line in text.splitlines():
        if line.startswith("glimpse_batch_size_") and 'model="sat-bundle"' in line:
            name, value = line.rsplit(" ", 1)
            le = name.partition('le="')[2].partition('"')[0]
            out["count" if name.startswith("glimpse_batch_size_count") else le] = float(value)
    return out


def test_32_concurrent_requests_all_answered(server):
    url, _, files = server
    images = [f.read_bytes() for f in files]

    async def many():
        async with httpx.AsyncClient(timeout=120) as client:
            files = [{"image": ("s.png", images[i % len(images)])} for i in range(32)]
            beams = [{"beam_size": 1 + i % 3} for i in range(32)]  # options differ within a batch
            posts = [client.post(url + "/v1/caption", files=f, data=b) for f, b in zip(files, beams)]
            return await asyncio.gather(*posts)

    before = batch_sizes(url)
    responses = asyncio.run(many())
    assert [r.status_code for r in responses] == [200] * 32
    after = batch_sizes(url)
    assert after["count"] - before["count"] == 32
    assert after["1.0"] - before["1.0"] < 32  # some of them were answered in batches of several
    for i, r in enumerate(responses[:8]):  # batched with others: the caption each gets alone
        alone = post(url, "/v1/caption", images[i % len(images)], beam_size=1 + i % 3).json()
        assert r.json()["tokens"] == alone["tokens"]


def answered(text: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("glimpse_requests_total"))


def test_metrics_are_summed_over_the_replicas(server):
    """A scrape reaches one of the two replicas; each answers every replica's counts."""
    url, _, files = server
    before = answered(scrape(url))
    for i in range(10):
        assert post(url, "/v1/caption", files[i % len(files)].read_bytes(), beam_size=1).status_code == 200
    time.sleep(2 * serve.PUBLISH_S)
    assert [answered(httpx.get(url + "/metrics").text) - before for _ in range(6)] == [10] * 6


def test_prometheus_text_sums_snapshots():
    a, b = serve.Metrics(), serve.Metrics()
    a.requests.labels("caption", "sat", 200).inc(3)
    b.requests.labels("caption", "sat", 200).inc(2)
    b.requests.labels("vqa", "san", 400).inc()
    a.batch.labels("sat").observe(4)
    b.batch.labels("sat").observe(1)
    text = serve.prometheus_text([a.snapshot(), b.snapshot()])
    for line in [
        'glimpse_requests_total{model="sat",route="caption",status="200"} 5.0',
        'glimpse_requests_total{model="san",route="vqa",status="400"} 1.0',
        'glimpse_batch_size_bucket{le="2.0",model="sat"} 1.0',
        'glimpse_batch_size_bucket{le="4.0",model="sat"} 2.0',
        'glimpse_batch_size_sum{model="sat"} 5.0',
    ]:
        assert line in text.splitlines()
    created = [line for line in text.splitlines() if line.startswith('glimpse_batch_size_created{model="sat"}')]
    first = min(v for m in (a, b) for f in m.snapshot() for n, _, v in f[3] if n == "glimpse_batch_size_created")
    assert float(created[0].rsplit(" ", 1)[1]) == first


FUZZ_EXAMPLES = 300  # per operation: the four POST routes give 1200 requests, the GETs one each


@pytest.mark.slow
def test_fuzzing_every_endpoint_gets_no_5xx_and_keeps_to_the_schema(server, capsys):
    """Schemathesis, from the server's own OpenAPI schema: requests generated for every operation (random
    fields, uploads and options), each answer checked against the schema and for a 5xx; afterwards the
    server still captions as the CLI does."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error, positive_data_acceptance

    url, _, _ = server
    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    answered = Counter()
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=FUZZ_EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case):
            response = case.call(base_url=url, timeout=120)
            answered[(case.operation.method.upper(), case.operation.path, response.status_code)] += 1
            # A schema-valid form can hold an unreadable image or an unknown model: a 4xx is right for those.
            case.validate_response(
                response, additional_checks=[not_a_server_error], excluded_checks=[positive_data_acceptance]
            )

        fuzz()
    routes = {(method, path) for method, path, _ in answered}
    assert routes == {("GET", p) for p in ("/healthz", "/v1/models", "/metrics")} | {
        ("POST", f"/v1/{r}") for r in ("caption", "vqa", "match", "search")
    }
    assert sum(answered.values()) >= 1000
    assert not [key for key in answered if key[2] >= 500]
    assert any(method == "POST" and status == 200 for method, _, status in answered)  # some reached a model
    test_captions_equal_the_cli(server, capsys)
