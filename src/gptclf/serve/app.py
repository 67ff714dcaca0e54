"""The HTTP service of a classifier: its routes, the API key, and serving it on a socket."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Annotated

import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.params import Depends as Dependency
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from gptclf.errors import GptclfError
from gptclf.predict import Classifier
from gptclf.run.folder import RunDir
from gptclf.serve.batcher import MicroBatcher
from gptclf.serve.limits import (
    BodySizeLimit,
    checked_texts,
    error_response,
    parse_classify_request,
)
from gptclf.serve.page import PAGE, PAGE_POLICY
from gptclf.serve.schemas import ClassifyRequest, ClassifyResponse, ErrorBody, ModelInfo
from gptclf.serve.settings import API_KEY_ENV, ServeSettings

BEARER = HTTPBearer(auto_error=False, description=f"the key in ${API_KEY_ENV}")


def training_metrics(run_dir: Path) -> dict:
    """The validation and test metrics in the run folder's metrics file, if it has one."""
    path = RunDir(Path(run_dir)).metrics
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
    """An HTTP error (404, 422, ...) as the service's JSON error."""
    return error_response(exc.status_code, str(exc.detail), exc.headers)


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    """Any other exception as a 500 that tells the client nothing of the server's insides."""
    return error_response(500, "internal error; the server's log has the details")


def _lifespan(batcher: MicroBatcher) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager]:
    """The app's lifespan: the batcher works while the app runs and finishes what it holds."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    return lifespan


def _model_info(classifier: Classifier, metrics: dict | None) -> ModelInfo:
    """What ``GET /v1/model`` tells of ``classifier``."""
    return ModelInfo(
        labels=classifier.labels.names,
        base_model=classifier.config.base_model,
        pooling=classifier.config.pooling,
        max_length=classifier.config.max_length,
        template=classifier.config.template,
        metrics=metrics or {},
    )


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
    app = FastAPI(
        title="gptclf",
        summary="Text classification by a finetuned GPT-style model",
        lifespan=_lifespan(batcher),
    )
    app.state.batcher = batcher
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _internal_error)
    protected = [Depends(_api_key_check(settings.api_key))] if settings.api_key else []
    _add_classify(app, classifier, settings, protected)
    _add_model(app, _model_info(classifier, metrics), protected)
    _add_open_routes(app)
    return app


def _add_classify(
    app: FastAPI, classifier: Classifier, settings: ServeSettings, protected: list[Dependency]
) -> None:
    """``POST /v1/classify``: the request checked, its texts tokenized, then computed in some
    batch of ``app.state.batcher``."""
    batcher: MicroBatcher = app.state.batcher

    @app.post(
        "/v1/classify",
        response_model=ClassifyResponse,
        responses={code: {"model": ErrorBody} for code in (401, 413, 415, 422)},
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


def _add_model(app: FastAPI, info: ModelInfo, protected: list[Dependency]) -> None:
    """``GET /v1/model``: ``info``."""

    @app.get(
        "/v1/model",
        response_model=ModelInfo,
        responses={401: {"model": ErrorBody}},
        dependencies=protected,
    )
    async def model() -> ModelInfo:
        """Labels, base model, pooling, maximum length and training metrics."""
        return info


def _add_open_routes(app: FastAPI) -> None:
    """The routes open even with an API key: ``GET /healthz`` and the page at ``/``."""

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Liveness: always open, even with an API key."""
        return {"status": "ok"}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE, headers={"Content-Security-Policy": PAGE_POLICY})


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
    """The ``http://`` address that ``sock`` listens on."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(app: FastAPI, sock: socket.socket) -> None:
    """Serve ``app`` on ``sock`` until Ctrl-C or SIGTERM; requests in flight then finish and
    the batcher computes what it holds before the server stops."""
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises Ctrl-C once it has stopped
        uvicorn.Server(uvicorn.Config(app, lifespan="on")).run(sockets=[sock])
