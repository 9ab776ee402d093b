"""`vlkit serve` for real: uvicorn on loopback, driven by the official `openai` client.

Most tests share one in-process server around the session's tiny model, so an answer can be
checked against `model.chat` itself. The queue and API-key tests start their own; the load test
runs `vlkit serve` as a subprocess, so the memory it measures is the server's alone. Images come
from a local http.server thread. All traffic stays on 127.0.0.1.
"""

import base64
import contextlib
import io
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import numpy as np
import openai
import pytest
import uvicorn
from PIL import Image

from vlkit.errors import VlkitError
from vlkit.serve import create_app, run_server

IMAGE_TIMEOUT = 0.5  # seconds the server waits for an image URL; the slow image takes longer


# ---- helpers ------------------------------------------------------------------------------------
@contextlib.contextmanager
def serving(app):
    """Run `app` with uvicorn in a thread on a free loopback port; yield its /v1 URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_until(lambda: server.started, what="uvicorn to start")
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def wait_until(condition, what, seconds=20.0):
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


def client_for(url, key="unused"):
    # No retries: the client would otherwise retry 429s and 5xx, hiding the first answer.
    return openai.OpenAI(base_url=url, api_key=key, max_retries=0, timeout=30)


def ask(client, content="Hello", **kwargs):
    kwargs = {"model": "tiny", "max_tokens": 4, "temperature": 0} | kwargs
    return client.chat.completions.create(messages=[{"role": "user", "content": content}], **kwargs)


def answered(response) -> bool:
    return response.choices[0].finish_reason in ("stop", "length")


def png_bytes(seed=0, size=(48, 40)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def image_part(url, detail="low"):
    return {"type": "image_url", "image_url": {"url": url, "detail": detail}}


def data_url(seed=0) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(seed)).decode()


# ---- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def images():
    """A local image host: /good.png, /missing.png (404), /page (HTML), /slow.png (stalls)."""
    release = threading.Event()
    good = png_bytes(3)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/slow.png":
                release.wait(5)  # well past IMAGE_TIMEOUT; released at teardown
            kind, body = {
                "/good.png": ("image/png", good),
                "/slow.png": ("image/png", good),
                "/page": ("text/html", b"<html>a page</html>"),
            }.get(self.path, (None, b"not found"))
            self.send_response(200 if kind else 404)
            self.send_header("Content-Type", kind or "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with contextlib.suppress(OSError):  # the server under test may have hung up
                self.wfile.write(body)

        def log_message(self, *args):
            pass

    host = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    host.daemon_threads = True
    thread = threading.Thread(target=host.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{host.server_address[1]}"
    release.set()
    host.shutdown()
    host.server_close()


@pytest.fixture(scope="module")
def url(tiny):
    with serving(create_app(tiny, "tiny", image_timeout=IMAGE_TIMEOUT)) as base:
        yield base


@pytest.fixture(scope="module")
def client(url):
    with client_for(url) as c:
        yield c


# ---- answers ------------------------------------------------------------------------------------
def test_plain_text_answer_is_the_models_answer(tiny, client):
    messages = [{"role": "user", "content": "What is in the picture?"}]
    response = client.chat.completions.create(
        model="tiny", messages=messages, max_tokens=6, temperature=0
    )
    expected = tiny.chat(messages, max_new_tokens=6, temperature=0)
    assert response.object == "chat.completion" and response.model == "tiny"
    assert response.id.startswith("chatcmpl-") and response.created > 0
    choice = response.choices[0]
    assert choice.index == 0 and choice.message.role == "assistant"
    assert choice.message.content == expected.text
    assert choice.finish_reason == expected.finish_reason
    usage = response.usage
    assert usage.prompt_tokens == expected.prompt_tokens
    assert usage.completion_tokens == expected.completion_tokens
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert [m.id for m in client.models.list()] == ["tiny"]


def test_images_by_data_url_cost_their_image_tokens(tiny, client):
    def ask_with(*urls):
        parts = [{"type": "text", "text": "What differs?"}] + [image_part(u) for u in urls]
        return client.chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": parts}],
            max_completion_tokens=5,
            temperature=0,
        )

    none, one, two = ask_with(), ask_with(data_url(0)), ask_with(data_url(0), data_url(1))
    per_view = tiny.image_tokens_per_view
    assert one.usage.prompt_tokens == none.usage.prompt_tokens + per_view
    assert two.usage.prompt_tokens == one.usage.prompt_tokens + per_view
    expected = tiny.chat(
        [
            {
                "role": "user",
                "content": [{"type": "text", "text": "What differs?"}, image_part(data_url(0))],
            }
        ],
        max_new_tokens=5,
        temperature=0,
    )
    assert one.choices[0].message.content == expected.text

    high = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": [image_part(data_url(0), "high")]}],
        max_tokens=2,
    )
    assert high.usage.prompt_tokens > one.usage.prompt_tokens  # tiles cost more tokens


def test_image_by_http_url_is_fetched(client, images):
    by_url = ask(client, [{"type": "text", "text": "Describe"}, image_part(images + "/good.png")])
    inline = "data:image/png;base64," + base64.b64encode(png_bytes(3)).decode()
    by_data = ask(client, [{"type": "text", "text": "Describe"}, image_part(inline)])
    assert by_url.choices[0].message.content == by_data.choices[0].message.content
    assert by_url.usage.prompt_tokens == by_data.usage.prompt_tokens


def test_unknown_fields_are_ignored_like_the_api(client):
    response = ask(
        client, user="someone", extra_body={"metadata_x": {"a": 1}, "tools": [], "stop": None}
    )
    assert answered(response)


def test_streaming_joins_to_the_same_answer(client):
    content = [{"type": "text", "text": "Describe"}, image_part(data_url(2))]
    whole = ask(client, content, max_tokens=8)
    chunks = list(
        ask(client, content, max_tokens=8, stream=True, stream_options={"include_usage": True})
    )
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    with_choice = [c for c in chunks if c.choices]
    text = "".join(c.choices[0].delta.content or "" for c in with_choice)
    assert text == whole.choices[0].message.content
    assert with_choice[-1].choices[0].finish_reason == whole.choices[0].finish_reason
    assert all(c.choices[0].finish_reason is None for c in with_choice[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == whole.usage.total_tokens


def test_a_client_leaving_a_stream_stops_the_model(tiny, url, monkeypatch):
    outcomes = []
    real_chat = tiny.chat

    def recorded_chat(messages, **kwargs):
        try:
            result = real_chat(messages, **kwargs)
        except Exception as exc:
            outcomes.append(type(exc).__name__)
            raise
        outcomes.append("finished")
        return result

    monkeypatch.setattr(tiny, "chat", recorded_chat)
    body = {
        "model": "tiny",
        "messages": [{"role": "user", "content": "Hello"}],
        "max_tokens": 1000,
        "temperature": 0,  # greedy: the tiny model repeats one word and never stops by itself
        "stream": True,
    }
    with httpx.stream("POST", url + "/chat/completions", json=body, timeout=30) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        next(line for line in lines if '"content"' in line)  # one piece arrives, then we leave
    wait_until(lambda: outcomes, what="the abandoned generation to end")
    assert outcomes == ["_Cancelled"]


# ---- errors -------------------------------------------------------------------------------------
def _many(n):
    return [{"type": "text", "text": "Compare"}] + [image_part(data_url(i)) for i in range(n)]


# (id, request arguments given the image host's URL, status, error code or None)
ERRORS = [
    ("unknown-model", lambda h: {"model": "gpt-4o"}, 404, "model_not_found"),
    ("empty-messages", lambda h: {"messages": []}, 400, None),
    ("bad-role", lambda h: {"messages": [{"role": "robot", "content": "hi"}]}, 400, None),
    ("n-2", lambda h: {"n": 2}, 400, None),
    ("temperature", lambda h: {"temperature": 5}, 400, None),
    ("max-tokens", lambda h: {"max_tokens": 0}, 400, None),
    (
        "tools",
        lambda h: {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
        400,
        "unsupported_parameter",
    ),
    (
        "json-schema",
        lambda h: {
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}
        },
        400,
        "unsupported_parameter",
    ),
    (
        "bad-base64",
        lambda h: {"content": [image_part("data:image/png;base64,@@@!")]},
        400,
        "invalid_image",
    ),
    (
        "not-an-image",
        lambda h: {
            "content": [
                image_part("data:image/png;base64," + base64.b64encode(b"hello, world").decode())
            ]
        },
        400,
        "invalid_image",
    ),
    (
        "over-20-MB",  # 28 M base64 characters decode to 21 MB; refused before decoding
        lambda h: {"content": [image_part("data:image/png;base64," + "A" * (28 * 1024 * 1024))]},
        400,
        "invalid_image",
    ),
    ("too-many-images", lambda h: {"content": _many(9)}, 400, "too_many_images"),
    ("prompt-too-long", lambda h: {"content": "word " * 1500}, 400, "context_length_exceeded"),
    ("url-404", lambda h: {"content": [image_part(h + "/missing.png")]}, 400, "invalid_image"),
    ("url-html", lambda h: {"content": [image_part(h + "/page")]}, 400, "invalid_image"),
    ("url-timeout", lambda h: {"content": [image_part(h + "/slow.png")]}, 400, "invalid_image"),
    ("local-file", lambda h: {"content": [image_part("/etc/hostname")]}, 400, "invalid_image_url"),
]


@pytest.mark.parametrize("make, status, code", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_errors_have_the_api_shape_and_the_server_carries_on(client, images, make, status, code):
    kwargs = make(images)
    messages = kwargs.pop("messages", [{"role": "user", "content": kwargs.pop("content", "Hi")}])
    start = time.perf_counter()
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(
            **({"model": "tiny", "max_tokens": 4, "messages": messages} | kwargs)
        )
    error = caught.value
    assert error.status_code == status, error.message
    assert error.type == "invalid_request_error" and error.code == code
    assert set(error.body) == {"message", "type", "param", "code"} and error.message
    assert time.perf_counter() - start < 5  # the slow image is cut off at IMAGE_TIMEOUT
    assert answered(ask(client))


@pytest.mark.parametrize(
    "body, status",
    [
        (b'{"model": "tiny", "messages": [', 400),
        (b"[1, 2, 3]", 400),
        (b'{"model": "tiny"}', 400),
        (
            b'{"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": "x"}',
            400,
        ),
        (b"\xff\xfe not utf-8", 400),
    ],
    ids=["truncated-json", "not-an-object", "no-messages", "max-tokens-text", "not-utf8"],
)
def test_malformed_requests_get_400(url, client, body, status):
    response = httpx.post(
        url + "/chat/completions", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == status
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert answered(ask(client))


def test_unknown_route_answers_in_the_api_shape(url):
    response = httpx.post(url + "/completions", json={})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_url"


def test_import_vlkit_needs_no_server_packages():
    code = "import sys, vlkit; assert not {'fastapi', 'uvicorn'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_a_busy_port_is_a_clear_error(tiny):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(VlkitError, match="--port"):
            run_server(tiny, "tiny", port=taken.getsockname()[1])


def test_an_oversized_body_gets_413(tiny):
    with serving(create_app(tiny, "tiny", max_body_bytes=4096)) as base, client_for(base) as c:
        with pytest.raises(openai.APIStatusError) as caught:
            ask(c, "many words " * 1000)
        assert caught.value.status_code == 413 and caught.value.code == "request_too_large"
        assert answered(ask(c))


def test_api_key_is_required_when_set(tiny):
    with serving(create_app(tiny, "tiny", api_key="s3cret")) as base:
        for key in ("wrong", ""):
            with client_for(base, key or "x") as c:
                if not key:  # the client always sends some key; send none at all by hand
                    response = httpx.get(base + "/models")
                    assert response.status_code == 401
                    assert response.json()["error"]["code"] == "invalid_api_key"
                    continue
                with pytest.raises(openai.AuthenticationError) as caught:
                    ask(c)
                assert caught.value.code == "invalid_api_key"
                with pytest.raises(openai.AuthenticationError):
                    c.models.list()
        with client_for(base, "s3cret") as c:
            assert answered(ask(c))


def test_a_full_queue_answers_429_at_once(tiny, monkeypatch):
    entered, gate = threading.Event(), threading.Event()
    real_chat = tiny.chat

    def held_chat(messages, **kwargs):  # the real model call, held until the test lets it go
        entered.set()
        gate.wait(20)
        return real_chat(messages, **kwargs)

    monkeypatch.setattr(tiny, "chat", held_chat)
    app = create_app(tiny, "tiny", max_queue=1)
    state = app.state.vlkit
    with serving(app) as base, client_for(base) as c, ThreadPoolExecutor(2) as pool:
        try:
            running = pool.submit(ask, c)
            assert entered.wait(10)
            waiting = pool.submit(ask, c)
            wait_until(lambda: state.admitted == 2, what="the second request to queue")
            start = time.perf_counter()
            with pytest.raises(openai.RateLimitError) as caught:
                ask(c)
            assert time.perf_counter() - start < 2
            assert caught.value.status_code == 429
            assert caught.value.type == "rate_limit_error"
        finally:
            gate.set()
        assert answered(running.result(20)) and answered(waiting.result(20))
        assert answered(ask(c))
        assert state.admitted == 0


# ---- load -------------------------------------------------------------------------------------
def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        kb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return kb / 1024


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads RSS from /proc")
def test_load_every_request_answered_and_memory_flat(tmp_path):
    """200 requests from 8 threads, ~15% malformed, against `vlkit serve` in its own process."""
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vlkit", "serve", "--preset", "tiny", "--port", "0"],
            stdout=out,
            stderr=subprocess.STDOUT,
            # One torch thread: on a small shared machine, threads spinning for work slow every
            # request down many times over, and the tiny model gains nothing from a second one.
            env=os.environ | {"OMP_NUM_THREADS": "1"},
        )
    try:
        found = []

        def started():
            assert proc.poll() is None, log.read_text()
            found[:] = re.findall(r"at (http://127\.0\.0\.1:\d+/v1)", log.read_text())
            return bool(found)

        wait_until(started, what="`vlkit serve` to start", seconds=90)
        base = found[0]
        assert "try: curl " + base + "/chat/completions" in log.read_text()
        wait_until(lambda: httpx.get(base[:-3] + "/health").status_code == 200, what="health")

        images = [data_url(i) for i in range(4)]
        bad_kinds = ["json", "base64", "model", "n"]

        def one(i: int, c) -> tuple[bool, int, float]:
            """(valid?, status, seconds) of request i."""
            start = time.perf_counter()
            bad = i % 20 in (3, 9, 16)  # 15%
            try:
                if bad and bad_kinds[i % 4] == "json":
                    r = httpx.post(base + "/chat/completions", content=b'{"model": "tiny",')
                    return False, r.status_code, time.perf_counter() - start
                content = [{"type": "text", "text": f"Request {i}: describe"}]
                if bad and bad_kinds[i % 4] == "base64":
                    content.append(image_part("data:image/png;base64,!!!"))
                elif i % 2:
                    content.append(image_part(images[i % 4]))
                extra = {"model": "nope"} if bad and bad_kinds[i % 4] == "model" else {}
                extra |= {"n": 3} if bad and bad_kinds[i % 4] == "n" else {}
                if not bad and i % 5 == 0:
                    pieces = list(ask(c, content, stream=True, seed=i, temperature=0.8, **extra))
                    assert pieces[-1].choices[0].finish_reason
                else:
                    assert answered(ask(c, content, **extra))
                return not bad, 200, time.perf_counter() - start
            except openai.APIStatusError as exc:
                return not bad, exc.status_code, time.perf_counter() - start

        def run(indices):
            with client_for(base) as c:
                return [one(i, c) for i in indices]

        run(range(100, 116))  # warm-up: allocator, tokenizer caches, first connections
        rss_before = _rss_mb(proc.pid)
        start = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            results = [r for rs in pool.map(run, [range(t, 200, 8) for t in range(8)]) for r in rs]
        wall = time.perf_counter() - start
        rss_after = _rss_mb(proc.pid)

        valid = [r for r in results if r[0]]
        malformed = [r for r in results if not r[0]]
        latencies = sorted(r[2] for r in valid)
        p50 = statistics.median(latencies)
        p95 = latencies[int(0.95 * (len(latencies) - 1))]
        print(
            f"\nvlkit serve load: {len(results)} requests ({len(malformed)} malformed) from 8 "
            f"threads in {wall:.1f} s = {len(results) / wall:.1f} req/s; valid latency p50 "
            f"{p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms; server RSS {rss_before:.0f} MB after "
            f"warm-up -> {rss_after:.0f} MB at the end ({rss_after - rss_before:+.1f} MB)"
        )
        assert len(results) == 200 and 25 <= len(malformed) <= 35
        assert all(status == 200 for _, status, _ in valid), sorted({r[1] for r in valid})
        assert all(400 <= status < 500 for _, status, _ in malformed)
        assert rss_after - rss_before < 100, "the server's memory grew by over 100 MB"
        assert proc.poll() is None
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
