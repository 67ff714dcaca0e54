"""``gptclf serve``: a trained classifier behind HTTP. ``POST /v1/classify`` answers with the
label and every class probability of each text; concurrent requests are gathered into
micro-batches for one model thread. A page at ``/`` classifies a pasted message."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import re
import socket
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gptclf.errors import GptclfError
from gptclf.predict import Classifier, Prediction

API_KEY_ENV = "GPTCLF_API_KEY"
LONE_SURROGATE = re.compile("[\ud800-\udfff]")
BEARER = HTTPBearer(auto_error=False, description=f"the key in ${API_KEY_ENV}")


@dataclass(frozen=True)
class ServeSettings:
    """How the service batches and what it accepts."""

    max_batch: int = 64  # texts per model call
    max_wait_ms: float = 5.0  # how long the first request of a batch waits for others
    batching: bool = True  # False: every request is computed alone
    max_texts: int = 256  # per request
    max_chars: int = 10_000  # per text
    max_body_bytes: int = 1_000_000
    api_key: str | None = None  # when set, /v1/* needs "Authorization: Bearer <key>"

    def __post_init__(self) -> None:
        for name in ("max_batch", "max_texts", "max_chars", "max_body_bytes"):
            value = getattr(self, name)
            if value < 1:
                raise GptclfError(f"{name.replace('_', '-')} must be at least 1, not {value}")
        if self.max_wait_ms < 0:
            raise GptclfError(f"max-wait-ms must not be negative, not {self.max_wait_ms}")


class ClassifyRequest(BaseModel):
    """One text, or a list of texts classified in order."""

    model_config = ConfigDict(extra="forbid", strict=True)
    text: str | None = None
    texts: list[str] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ClassifyRequest:
        if (self.text is None) == (self.texts is None):
            raise ValueError('give exactly one of "text" and "texts"')
        return self


class ClassifyResponse(BaseModel):
    predictions: list[Prediction]


class ModelInfo(BaseModel):
    labels: list[str]
    base_model: str
    pooling: str
    max_length: int
    template: str | None
    metrics: dict  # validation and test metrics recorded by training, when the run has them


class ErrorBody(BaseModel):
    error: str


@dataclass
class _Job:
    ids: list[list[int]]
    future: asyncio.Future[np.ndarray]


class MicroBatcher:
    """Gathers the token ids of concurrent requests into micro-batches of at most ``max_batch``
    texts (a larger request goes alone), waiting at most ``max_wait_s`` for a batch to fill, and
    computes each batch in one model thread; every request gets its own rows back."""

    def __init__(
        self,
        probabilities_of_ids: Callable[[list[list[int]]], np.ndarray],
        max_batch: int,
        max_wait_s: float,
        enabled: bool = True,
    ):
        self.probabilities_of_ids = probabilities_of_ids
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.enabled = enabled
        self.model_calls = 0
        self._queue: asyncio.Queue[_Job | None] | None = None
        self._worker: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None

    def start(self) -> None:
        """Start the worker on the running event loop."""
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gptclf-model")
        self._worker = asyncio.create_task(self._work())

    async def stop(self) -> None:
        """Compute everything already queued, then stop the worker and the model thread."""
        queue, self._queue = self._queue, None
        queue.put_nowait(None)
        await self._worker
        self._executor.shutdown()

    async def probabilities(self, ids: list[list[int]]) -> np.ndarray:
        """Class probabilities of ``ids`` (one row per sequence), computed in some batch."""
        if self._queue is None:
            raise RuntimeError("the batcher is not running")
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(ids, future))
        return await future

    async def _work(self) -> None:
        queue = self._queue
        held: deque[_Job | None] = deque()
        while True:
            job = held.popleft() if held else await queue.get()
            if job is None:
                return
            batch = [job]
            if self.enabled:
                await self._fill(batch, queue, held)
            await self._compute(batch)

    async def _fill(
        self, batch: list[_Job], queue: asyncio.Queue[_Job | None], held: deque[_Job | None]
    ) -> None:
        """Add queued jobs until the batch is full or the wait is over; a job that does not fit,
        or the stop signal, is held for the next round."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        size = len(batch[0].ids)
        while size < self.max_batch:
            remaining = deadline - loop.time()
            try:
                if remaining > 0:
                    job = await asyncio.wait_for(queue.get(), remaining)
                else:
                    job = queue.get_nowait()
            except (asyncio.TimeoutError, asyncio.QueueEmpty):
                return
            if job is None or size + len(job.ids) > self.max_batch:
                held.append(job)
                return
            batch.append(job)
            size += len(job.ids)

    async def _compute(self, batch: list[_Job]) -> None:
        ids = [sequence for job in batch for sequence in job.ids]
        self.model_calls += 1
        loop = asyncio.get_running_loop()
        try:
            probabilities = await loop.run_in_executor(
                self._executor, self.probabilities_of_ids, ids
            )
        except Exception as exc:
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        start = 0
        for job in batch:
            end = start + len(job.ids)
            if not job.future.done():  # done: its request was cancelled
                job.future.set_result(probabilities[start:end])
            start = end


class BodySizeLimit:
    """ASGI middleware reading each request body before the app does, refusing one larger than
    ``max_bytes`` with 413: at once when declared by Content-Length, else as soon as the
    streamed bytes pass the limit, so no more than the limit is ever held."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > self.max_bytes:
            message = (
                f"the request body has {int(declared):,} bytes; the limit is {self.max_bytes:,}"
            )
            await _error_response(413, message)(scope, receive, send)
            return
        try:
            body = await self._read(receive)
        except _ClientGone:
            return
        if body is None:
            message = f"the request body is larger than the limit of {self.max_bytes:,} bytes"
            await _error_response(413, message)(scope, receive, send)
            return
        await self.app(scope, _replaying(body, receive), send)

    async def _read(self, receive: Receive) -> bytes | None:
        """The whole body, or None as soon as it passes the limit."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


class _ClientGone(Exception):
    """The client disconnected before sending its whole body."""


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the already read body first, then defers to the server's."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


def _error_response(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def parse_classify_request(raw: bytes, content_type: str | None) -> ClassifyRequest:
    """The request body as a ``ClassifyRequest``; anything else is a 415 or 422 error naming
    the problem."""
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise HTTPException(415, "send the body as JSON with Content-Type: application/json")
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise HTTPException(422, f"the body is not UTF-8 (byte {exc.start} is invalid)") from exc
    except RecursionError as exc:
        raise HTTPException(422, "the body's JSON is nested too deeply") from exc
    except ValueError as exc:
        raise HTTPException(422, f"the body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise HTTPException(
            422, 'the body must be a JSON object: {"text": ...} or {"texts": [...]}'
        )
    try:
        return ClassifyRequest.model_validate(data)
    except ValidationError as exc:
        raise HTTPException(422, validation_message(exc)) from exc


def validation_message(error: ValidationError) -> str:
    """The first problem pydantic found, as ``where: what``, and how many others there are."""
    problems = error.errors()
    first = problems[0]
    where = "".join(
        f"[{part}]" if isinstance(part, int) else f".{part}" for part in first["loc"]
    ).lstrip(".")
    message = first["msg"].removeprefix("Value error, ")
    others = len(problems) - 1
    more = f" (and {others} more problem{'s' if others > 1 else ''})" if others else ""
    return f"{where}: {message}{more}" if where else f"{message}{more}"


def checked_texts(
    request: ClassifyRequest, settings: ServeSettings
) -> tuple[list[str], Callable[[int], str]]:
    """The request's texts within the limits, and how errors name text ``i``."""
    if request.text is not None:
        texts, where = [request.text], lambda i: "text"
    else:
        texts, where = request.texts, lambda i: f"texts[{i}]"
    if not texts:
        raise HTTPException(422, '"texts" is empty; give at least one text')
    if len(texts) > settings.max_texts:
        raise HTTPException(
            422, f"the request has {len(texts):,} texts; the limit is {settings.max_texts:,}"
        )
    for i, text in enumerate(texts):
        if len(text) > settings.max_chars:
            raise HTTPException(
                422,
                f"{where(i)} has {len(text):,} characters; the limit is {settings.max_chars:,}",
            )
        if LONE_SURROGATE.search(text):
            raise HTTPException(422, f"{where(i)} is not valid Unicode (a lone surrogate)")
    return texts, where


def training_metrics(run_dir: Path) -> dict:
    """The validation and test metrics in the run folder's ``metrics.json``, if it has one."""
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        return {}
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GptclfError(f"{path}: not readable JSON ({exc})") from exc
    return {split: recorded[split] for split in ("validation", "test") if split in recorded}


def _api_key_check(expected: str) -> Callable:
    """A dependency refusing requests without ``Authorization: Bearer <expected>``."""

    async def require_api_key(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
    ) -> None:
        given = credentials.credentials.encode() if credentials else b""
        if not hmac.compare_digest(given, expected.encode()):
            raise HTTPException(
                401,
                "missing or wrong API key: send Authorization: Bearer <key>",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return require_api_key


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return _error_response(exc.status_code, str(exc.detail), exc.headers)


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    return _error_response(500, "internal error; the server's log has the details")


def create_app(
    classifier: Classifier, settings: ServeSettings, metrics: dict | None = None
) -> FastAPI:
    """The HTTP service of ``classifier``; ``metrics`` are the training figures shown by
    ``GET /v1/model``. The batcher is ``app.state.batcher``."""
    batcher = MicroBatcher(
        lambda ids: classifier.probabilities_of_ids(ids, settings.max_batch),
        settings.max_batch,
        settings.max_wait_ms / 1000,
        settings.batching,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPI(
        title="gptclf",
        summary="Text classification by a finetuned GPT-style model",
        lifespan=lifespan,
    )
    app.state.batcher = batcher
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _internal_error)
    protected = [Depends(_api_key_check(settings.api_key))] if settings.api_key else []
    classify_errors = {code: {"model": ErrorBody} for code in (401, 413, 415, 422)}
    info = ModelInfo(
        labels=classifier.labels.names,
        base_model=classifier.config.base_model,
        pooling=classifier.config.pooling,
        max_length=classifier.config.max_length,
        template=classifier.config.template,
        metrics=metrics or {},
    )

    @app.post(
        "/v1/classify",
        response_model=ClassifyResponse,
        responses=classify_errors,
        dependencies=protected,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": ClassifyRequest.model_json_schema()}},
            }
        },
    )
    async def classify(request: Request) -> ClassifyResponse:
        """Label and class probabilities of each text, in request order."""
        body = parse_classify_request(await request.body(), request.headers.get("content-type"))
        texts, where = checked_texts(body, settings)
        try:
            ids = await asyncio.to_thread(classifier.token_ids, texts, where)
        except GptclfError as exc:
            raise HTTPException(422, str(exc)) from exc
        probabilities = await batcher.probabilities(ids)
        return ClassifyResponse(predictions=[classifier.prediction(p) for p in probabilities])

    @app.get(
        "/v1/model",
        response_model=ModelInfo,
        responses={401: {"model": ErrorBody}},
        dependencies=protected,
    )
    async def model() -> ModelInfo:
        """Labels, base model, pooling, maximum length and training metrics."""
        return info

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Liveness: always open, even with an API key."""
        return {"status": "ok"}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE, headers={"Content-Security-Policy": PAGE_POLICY})

    return app


def app_for_run(run_dir: Path, settings: ServeSettings) -> FastAPI:
    """The service of the classifier trained in ``run_dir``."""
    metrics = training_metrics(run_dir)
    return create_app(Classifier.from_pretrained(run_dir), settings, metrics)


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket listening on ``host:port`` (port 0: any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        raise GptclfError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from exc


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(app: FastAPI, sock: socket.socket) -> None:
    """Serve ``app`` on ``sock`` until Ctrl-C or SIGTERM; requests in flight then finish and
    the batcher computes what it holds before the server stops."""
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises Ctrl-C once it has stopped
        uvicorn.Server(uvicorn.Config(app, lifespan="on")).run(sockets=[sock])


PAGE_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 42rem; margin: 2rem auto; padding: 0 1rem; }
textarea, input { width: 100%; box-sizing: border-box; font: inherit; }
button { margin-top: 0.5rem; font: inherit; padding: 0.3rem 1.2rem; }
table { border-collapse: collapse; margin-top: 0.5rem; }
td, th { border-bottom: 1px solid #ccc; padding: 0.2rem 1rem 0.2rem 0; text-align: left; }
#status { color: #a00; }
"""

PAGE_SCRIPT = """
const byId = (id) => document.getElementById(id);

function show(prediction) {
  byId("verdict").textContent = prediction.label;
  byId("confidence").textContent = prediction.probability.toFixed(4);
  const rows = Object.entries(prediction.probabilities).map(([label, probability]) => {
    const row = document.createElement("tr");
    for (const text of [label, probability.toFixed(4)]) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.append(cell);
    }
    return row;
  });
  byId("probabilities").replaceChildren(...rows);
  byId("result").hidden = false;
}

async function classify() {
  const headers = {"Content-Type": "application/json"};
  const key = byId("api-key").value;
  if (key) headers["Authorization"] = "Bearer " + key;
  byId("result").hidden = true;
  byId("status").textContent = "classifying...";
  try {
    const response = await fetch("v1/classify", {
      method: "POST", headers, body: JSON.stringify({text: byId("message").value}),
    });
    const answer = await response.json();
    if (!response.ok) {
      byId("status").textContent = answer.error || "error " + response.status;
      return;
    }
    byId("status").textContent = "";
    show(answer.predictions[0]);
  } catch (error) {
    byId("status").textContent = "the request failed: " + error.message;
  }
}

byId("classify").addEventListener("click", classify);
"""

PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>gptclf</title>
<style>{PAGE_STYLE}</style>
</head>
<body>
<h1>gptclf</h1>
<label for="message">Message</label>
<textarea id="message" rows="6"></textarea>
<details><summary>API key</summary><input id="api-key" type="password" autocomplete="off">
</details>
<button id="classify" type="button">Classify</button>
<p id="status" role="status"></p>
<section id="result" hidden>
<p>Verdict: <strong id="verdict"></strong>, probability <span id="confidence"></span></p>
<table>
<thead><tr><th>class</th><th>probability</th></tr></thead>
<tbody id="probabilities"></tbody>
</table>
</section>
<script>{PAGE_SCRIPT}</script>
</body>
</html>
"""


def _sha256_source(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


PAGE_POLICY = (
    f"default-src 'none'; script-src {_sha256_source(PAGE_SCRIPT)}; "
    f"style-src {_sha256_source(PAGE_STYLE)}; connect-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
