"""`vlkit serve`: one local model behind an OpenAI-compatible chat-completions endpoint.

Code written for the hosted API (the `openai` client, curl, LangChain...) runs against a vlkit
model by changing its base_url to this server's `http://HOST:PORT/v1`:

    POST /v1/chat/completions   text and image_url parts (http(s) and data URLs), detail, max_tokens,
                                temperature, top_p, seed, stream (server-sent events)
    GET  /v1/models             the one model served; GET /health answers without a key

How a request travels: the API key is checked, then the request takes one of a bounded number of
places (at most one on the model and `max_queue` more; beyond that it gets a 429 at once, so a
burst cannot pile up request bodies and images in memory). Its body is read (capped), checked,
and its images are downloaded and decoded on a small thread pool, outside the model lock. Then
the model answers on a single worker thread: torch is not re-entrant on one model, so model
calls run one at a time. Every failure is an HTTP error in the API's shape
`{"error": {"message", "type", "param", "code"}}` and the server carries on.

FastAPI and uvicorn come with the `serve` extra (`pip install 'vlkit[serve]'`) and are imported
only here, so `import vlkit` never needs them.
"""

# No `from __future__ import annotations`: FastAPI reads the route functions' annotations at
# runtime, and `Request` is imported inside create_app.
import asyncio
import hmac
import ipaddress
import json
import logging
import socket
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial

from . import __version__
from .errors import ImageError, MessageError, VlkitError
from .images import load_image
from .messages import parse_messages

log = logging.getLogger("vlkit.serve")

MAX_IMAGE_BYTES = 20 * 1024 * 1024  # per image, as the hosted API
MAX_BODY_BYTES = 50 * 1024 * 1024  # per request, as the hosted API
INSTALL_HINT = "vlkit serve needs FastAPI and uvicorn: pip install 'vlkit[serve]'"

# Request fields vlkit cannot honour. Ignoring them would hand the caller an answer of a different
# kind than asked for (no tool call, no JSON, no logprobs), so they are refused by name; each maps
# to the values that mean "not used" and are therefore fine to send.
UNSUPPORTED = {
    "tools": (None, []),
    "functions": (None, []),
    "tool_choice": (None, "none"),
    "function_call": (None, "none"),
    "logprobs": (None, False),
    "top_logprobs": (None, 0),
    "logit_bias": (None, {}),
    "stop": (None, [], ""),
    "presence_penalty": (None, 0, 0.0),
    "frequency_penalty": (None, 0, 0.0),
    "audio": (None,),
    "modalities": (None, ["text"]),
    "prediction": (None,),
    "web_search_options": (None,),
}


class ApiError(Exception):
    """An error answered in the chat-completions API's JSON shape."""

    def __init__(self, status, message, *, type="invalid_request_error", param=None, code=None):
        super().__init__(message)
        self.status, self.message = status, message
        self.type, self.param, self.code = type, param, code

    def body(self) -> dict:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class _Cancelled(Exception):
    """Raised inside generation when the client that asked for it has gone away."""


@dataclass
class _Request:
    messages: list
    max_tokens: int
    temperature: float
    top_p: float
    seed: int | None
    stream: bool
    include_usage: bool


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _parse_request(body: dict, model_name: str, max_length: int, default_max_tokens: int):
    """Check the fields vlkit reads; unknown fields are ignored, as the hosted API does."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(
            400, f"you must provide a model parameter: use {model_name!r}", param="model"
        )
    if model != model_name:
        raise ApiError(
            404,
            f"The model {model!r} does not exist on this server; it serves {model_name!r} "
            "(GET /v1/models lists it): pass model=" + repr(model_name),
            param="model",
            code="model_not_found",
        )
    for name, allowed in UNSUPPORTED.items():
        if name in body and body[name] not in allowed:
            raise ApiError(
                400,
                f"{name!r} is not supported by vlkit serve (a plain vision-language model without "
                f"it): remove {name!r} from the request",
                param=name,
                code="unsupported_parameter",
            )
    fmt = body.get("response_format")
    if fmt is not None and not (isinstance(fmt, dict) and fmt.get("type") == "text"):
        raise ApiError(
            400,
            "response_format other than {'type': 'text'} is not supported: vlkit cannot "
            "constrain answers to JSON; remove response_format",
            param="response_format",
            code="unsupported_parameter",
        )
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        raise ApiError(
            400,
            "messages must be a non-empty list of {'role': ..., 'content': ...} objects",
            param="messages",
        )
    n = body.get("n")
    if n is not None and n != 1:
        raise ApiError(
            400, f"n={n!r}: vlkit serve returns one choice per request; set n=1", param="n"
        )

    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = body.get(key)
    if max_tokens is None:
        max_tokens = min(default_max_tokens, max_length)
    elif not _is_int(max_tokens) or not 1 <= max_tokens <= max_length:
        raise ApiError(
            400,
            f"{key}={max_tokens!r}: use a whole number from 1 to {max_length} (the model's "
            "max_length)",
            param=key,
        )
    temperature = body.get("temperature")
    temperature = 1.0 if temperature is None else temperature  # the API's default
    if not _is_number(temperature) or not 0 <= temperature <= 2:
        raise ApiError(
            400,
            f"temperature={temperature!r}: use a number from 0 to 2 (0 = greedy)",
            param="temperature",
        )
    top_p = body.get("top_p")
    top_p = 1.0 if top_p is None else top_p
    if not _is_number(top_p) or not 0 < top_p <= 1:
        raise ApiError(400, f"top_p={top_p!r}: use a number in (0, 1]", param="top_p")
    seed = body.get("seed")
    if seed is not None and not _is_int(seed):
        raise ApiError(400, f"seed={seed!r}: use a whole number, or leave it out", param="seed")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise ApiError(400, f"stream={stream!r}: use true or false", param="stream")
    options = body.get("stream_options")
    if options is not None and (not isinstance(options, dict) or not stream):
        raise ApiError(
            400,
            "stream_options must be an object, and is only allowed with stream=true",
            param="stream_options",
        )
    include_usage = bool((options or {}).get("include_usage"))
    return _Request(
        body["messages"],
        max_tokens,
        float(temperature),
        float(top_p),
        seed,
        bool(stream),
        include_usage,
    )


def _error_for(exc: BaseException) -> ApiError:
    """The HTTP answer for an error raised while preparing or running a model call."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ImageError):
        return ApiError(400, str(exc), param="messages", code="invalid_image")
    if isinstance(exc, MessageError):
        return ApiError(400, str(exc), param="messages")
    if isinstance(exc, VlkitError):
        # LanguageModel.tokenize words its length error this way; it has no error type of its own.
        code = "context_length_exceeded" if "over max_length=" in str(exc) else None
        return ApiError(400, str(exc), param="messages", code=code)
    log.error("model call failed", exc_info=exc)
    return ApiError(
        500,
        f"the model failed on this request ({type(exc).__name__}: {exc}); the server log has "
        "the traceback",
        type="server_error",
    )


class _TrimmedText:
    """Streams text so the pieces join to exactly `GenerationResult.text`, which is stripped:
    leading whitespace is dropped and trailing whitespace is held back until more text follows."""

    def __init__(self):
        self.raw = self.sent = ""

    def feed(self, piece: str) -> str:
        self.raw += piece
        return self._advance(self.raw.strip())

    def finish(self, text: str) -> str:
        return self._advance(text)

    def _advance(self, text: str) -> str:
        if not text.startswith(self.sent):
            return ""  # text already sent cannot be taken back
        delta, self.sent = text[len(self.sent) :], text
        return delta


class _Server:
    def __init__(
        self,
        model,
        model_name,
        api_key,
        max_queue,
        image_timeout,
        max_image_bytes,
        max_body_bytes,
        image_workers,
        default_max_tokens,
    ):
        if max_queue < 0:
            raise VlkitError(f"max_queue={max_queue}: use 0 or more waiting requests")
        self.model, self.model_name, self.api_key = model, model_name, api_key
        self.capacity = max_queue + 1  # one on the model, max_queue waiting
        self.admitted = 0  # only touched on the event loop's thread, so no lock is needed
        self.image_timeout, self.max_image_bytes = image_timeout, max_image_bytes
        self.max_body_bytes, self.default_max_tokens = max_body_bytes, default_max_tokens
        self.model_pool = ThreadPoolExecutor(1, thread_name_prefix="vlkit-model")
        self.image_pool = ThreadPoolExecutor(image_workers, thread_name_prefix="vlkit-images")
        self.created = int(time.time())

    # ---- the steps of a request ----------------------------------------------------------------
    def authorize(self, request) -> None:
        if self.api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(
                401,
                "You didn't provide an API key: send 'Authorization: Bearer KEY' (the openai "
                "client does this with OpenAI(api_key=KEY)), using the key the server was started "
                "with",
                code="invalid_api_key",
            )
        if not hmac.compare_digest(token.strip().encode(), self.api_key.encode()):
            raise ApiError(
                401,
                "Incorrect API key provided: use the key `vlkit serve` was started with "
                "(--api-key or VLKIT_API_KEY)",
                code="invalid_api_key",
            )

    def admit(self) -> None:
        if self.admitted >= self.capacity:
            raise ApiError(
                429,
                f"vlkit serve is busy: {self.capacity - 1} request(s) are already waiting for the "
                "model. Retry shortly, or start the server with a larger --max-queue",
                type="rate_limit_error",
                code="rate_limit_exceeded",
            )
        self.admitted += 1

    def release(self, _future=None) -> None:
        self.admitted -= 1

    async def read_json(self, request) -> dict:
        length = request.headers.get("content-length", "")
        too_big = ApiError(
            413,
            f"the request body is over {self.max_body_bytes:,} bytes: send fewer or smaller "
            "images (an image may be at most 20 MB)",
            code="request_too_large",
        )
        if length.isdigit() and int(length) > self.max_body_bytes:
            raise too_big
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > self.max_body_bytes:
                raise too_big
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(
                400,
                f"We could not parse the JSON body of your request ({exc}): send a JSON object "
                "with Content-Type: application/json",
            ) from exc
        if not isinstance(data, dict):
            raise ApiError(
                400, "the request body must be a JSON object, not " + type(data).__name__
            )
        return data

    async def load_images(self, messages: list) -> list:
        """The messages with every image_url part downloaded and decoded (on the image pool)."""
        try:
            _, refs = parse_messages(messages, self.model.config.image_token)
        except MessageError as exc:
            raise ApiError(400, str(exc), param="messages") from exc
        for i, message in enumerate(messages):
            parts = message["content"] if isinstance(message["content"], list) else []
            for j, part in enumerate(parts):
                if part.get("type") == "image":  # vlkit's notebook shortcut reads local files
                    raise ApiError(
                        400,
                        f"messages[{i}].content[{j}]: send images as image_url parts with an "
                        "http(s) or data URL",
                        param="messages",
                    )
        for ref in refs:
            if not ref.source.strip().lower().startswith(("http://", "https://", "data:")):
                raise ApiError(
                    400,
                    f"image_url {ref.source[:80]!r} is neither an http(s) URL nor a data URL "
                    "(data:image/png;base64,...): the server does not read local files",
                    param="messages",
                    code="invalid_image_url",
                )
        limit = self.model.config.max_images
        if len(refs) > limit:  # refused before anything is downloaded
            raise ApiError(
                400,
                f"{len(refs)} images in one request; this model takes at most {limit}: send fewer",
                param="messages",
                code="too_many_images",
            )
        loop = asyncio.get_running_loop()
        load = partial(load_image, max_bytes=self.max_image_bytes, timeout=self.image_timeout)
        futures = [loop.run_in_executor(self.image_pool, load, ref.source) for ref in refs]
        if futures:
            _, pending = await asyncio.wait(futures, return_when=asyncio.FIRST_EXCEPTION)
            for future in pending:  # one image failed: loads not started yet never start
                future.cancel()
            failed = [
                f.exception() for f in futures if f.done() and not f.cancelled() and f.exception()
            ]
            if failed:
                raise _error_for(failed[0])
        images = iter(zip(refs, [f.result() for f in futures], strict=True))
        out = []
        for message in messages:
            content = message["content"]
            if isinstance(content, list):
                content = [self._swap(part, images) for part in content]
            out.append({**message, "content": content})
        return out

    @staticmethod
    def _swap(part, images):
        if part.get("type") != "image_url":
            return part
        ref, image = next(images)
        return {"type": "image", "image": image, "detail": ref.detail}

    def start(self, messages: list, req: _Request):
        """Queue the model call; returns (future, pieces, cancelled). Releases the place when done."""
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue = asyncio.Queue()
        cancelled = threading.Event()

        def on_piece(text: str) -> None:  # runs on the model thread
            if cancelled.is_set():
                raise _Cancelled
            if req.stream:
                loop.call_soon_threadsafe(pieces.put_nowait, text)

        def call():
            if cancelled.is_set():
                raise _Cancelled
            return self.model.chat(
                messages,
                max_new_tokens=req.max_tokens,
                temperature=req.temperature,
                top_p=req.top_p,
                seed=req.seed,
                stream=on_piece,
            )

        future = loop.run_in_executor(self.model_pool, call)
        future.add_done_callback(self.release)
        future.add_done_callback(lambda _: pieces.put_nowait(None))  # after every piece
        return future, pieces, cancelled

    # ---- answers ---------------------------------------------------------------------------------
    def _head(self, rid: str, created: int) -> dict:
        return {
            "id": rid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": self.model_name,
            "system_fingerprint": f"vlkit-{__version__}",
        }

    @staticmethod
    def usage(result) -> dict:
        return {
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
            "total_tokens": result.prompt_tokens + result.completion_tokens,
        }

    def completion(self, result) -> dict:
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model_name,
            "system_fingerprint": f"vlkit-{__version__}",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": result.text},
                    "logprobs": None,
                    "finish_reason": result.finish_reason,
                }
            ],
            "usage": self.usage(result),
        }

    async def stream(self, future, pieces, cancelled, req: _Request):
        """Server-sent events, started only once the first piece (or the end) is known, so an
        error before the first token is still an ordinary HTTP error."""
        from fastapi.responses import StreamingResponse

        first = await pieces.get()
        if first is None and future.exception() is not None:
            raise _error_for(future.exception())
        head = self._head(f"chatcmpl-{uuid.uuid4().hex}", int(time.time()))
        extra = {"usage": None} if req.include_usage else {}

        def event(delta: dict, finish=None) -> str:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return f"data: {json.dumps({**head, 'choices': [choice], **extra})}\n\n"

        async def events():
            try:
                yield event({"role": "assistant", "content": ""})
                text, piece = _TrimmedText(), first
                while piece is not None:
                    if delta := text.feed(piece):
                        yield event({"content": delta})
                    piece = await pieces.get()
                if future.exception() is not None:
                    # Headers are sent; the API reports late failures as an error event.
                    yield f"data: {json.dumps(_error_for(future.exception()).body())}\n\n"
                    return
                result = future.result()
                if delta := text.finish(result.text):
                    yield event({"content": delta})
                yield event({}, result.finish_reason)
                if req.include_usage:
                    usage = {**head, "choices": [], "usage": self.usage(result)}
                    yield f"data: {json.dumps(usage)}\n\n"
                yield "data: [DONE]\n\n"
            finally:
                cancelled.set()  # a client gone mid-answer stops the model at its next token

        return StreamingResponse(
            events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    async def chat_completions(self, request):
        from fastapi.responses import JSONResponse

        self.authorize(request)
        self.admit()
        handed_over = False  # once the model call is queued, its future releases the place
        try:
            req = _parse_request(
                await self.read_json(request),
                self.model_name,
                self.model.config.lm.max_length,
                self.default_max_tokens,
            )
            messages = await self.load_images(req.messages)
            future, pieces, cancelled = self.start(messages, req)
            handed_over = True
            if req.stream:
                return await self.stream(future, pieces, cancelled, req)
            try:
                result = await future
            except Exception as exc:
                raise _error_for(exc) from exc
            return JSONResponse(self.completion(result))
        finally:
            if not handed_over:
                self.release()

    def models(self) -> dict:
        return {
            "object": "list",
            "data": [
                {
                    "id": self.model_name,
                    "object": "model",
                    "created": self.created,
                    "owned_by": "vlkit",
                }
            ],
        }


def require_server_packages():
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise VlkitError(INSTALL_HINT) from exc


def create_app(
    model,
    model_name: str,
    api_key: str | None = None,
    max_queue: int = 8,
    *,
    image_timeout: float = 10.0,
    max_image_bytes: int = MAX_IMAGE_BYTES,
    max_body_bytes: int = MAX_BODY_BYTES,
    image_workers: int = 4,
    default_max_tokens: int = 512,
):
    """The FastAPI app serving `model` as `model_name`.

    `api_key`: when set, requests need `Authorization: Bearer KEY`. `max_queue`: requests that may
    wait while one is on the model; more get a 429. `image_timeout` bounds each image download
    (seconds); `image_workers` the downloads and decodes running at once. `default_max_tokens`
    applies when a request gives no max_tokens. The server's state is `app.state.vlkit`.
    """
    require_server_packages()
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    server = _Server(
        model,
        model_name,
        api_key,
        max_queue,
        image_timeout,
        max_image_bytes,
        max_body_bytes,
        image_workers,
        default_max_tokens,
    )

    @asynccontextmanager
    async def lifespan(_app):
        yield
        server.image_pool.shutdown(wait=False, cancel_futures=True)
        server.model_pool.shutdown(wait=False, cancel_futures=True)

    # No OpenAPI pages: the requests are checked by hand to answer in the API's error shape.
    app = FastAPI(title="vlkit", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.vlkit = server

    @app.exception_handler(ApiError)
    async def api_error(_request, exc: ApiError):
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(HTTPException)
    async def http_error(request, exc: HTTPException):
        if exc.status_code not in (404, 405):
            error = ApiError(exc.status_code, str(exc.detail))
            return JSONResponse(error.body(), status_code=exc.status_code)
        message = f"Unknown request URL: {request.method} {request.url.path}"
        if exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        error = ApiError(
            exc.status_code,
            message + " (this server has POST /v1/chat/completions, GET /v1/models)",
            code="unknown_url",
        )
        return JSONResponse(error.body(), status_code=exc.status_code)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await server.chat_completions(request)

    @app.get("/v1/models")
    async def models(request: Request):
        server.authorize(request)
        return server.models()

    @app.get("/v1/models/{name}")
    async def model_info(name: str, request: Request):
        server.authorize(request)
        if name != model_name:
            raise ApiError(
                404,
                f"The model {name!r} does not exist on this server; it serves {model_name!r}",
                param="model",
                code="model_not_found",
            )
        return server.models()["data"][0]

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": model_name, "admitted": server.admitted}

    return app


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket, bound here so a busy port is a clear error and port 0 a known port."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise VlkitError(
            f"cannot listen on host {host!r} ({exc}): pass an address such as 127.0.0.1 or 0.0.0.0"
        ) from exc
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise VlkitError(
            f"cannot listen on {host}:{port} ({exc.strerror}): the port may be in "
            "use; pass another --port, or --port 0 for any free one"
        ) from exc
    sock.set_inheritable(True)
    return sock


def run_server(
    model,
    model_name: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    max_queue: int = 8,
    **options,
) -> None:
    """Serve `model` until interrupted; prints the URL and an example request first.

    `options` go to `create_app` (image_timeout, default_max_tokens, ...).
    """
    require_server_packages()
    import uvicorn

    app = create_app(model, model_name, api_key, max_queue, **options)
    sock = _bind(host, port)
    port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/v1"
    auth = ' -H "Authorization: Bearer $VLKIT_API_KEY"' if api_key else ""
    body = json.dumps({"model": model_name, "messages": [{"role": "user", "content": "Hello"}]})
    print(f"vlkit serve: model {model_name!r} at {url} (Ctrl+C stops it)", flush=True)
    print(
        f"try: curl {url}/chat/completions -H 'Content-Type: application/json'{auth} -d '{body}'",
        flush=True,
    )
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback and not api_key:
        print(
            f"warning: listening on {host} without an API key: anyone who can reach this "
            "machine can use the model; pass --api-key",
            file=sys.stderr,
            flush=True,
        )
    uvicorn.Server(uvicorn.Config(app, log_level="info")).run(sockets=[sock])
