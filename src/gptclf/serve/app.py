"""The HTTP service of a classifier: its routes, its middleware and its batcher."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.params import Depends as Dependency
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPBearer
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive

from gptclf.errors import GptclfError
from gptclf.explain import advance
from gptclf.predict import Classifier
from gptclf.run import RunDir, read_run_config
from gptclf.run.record import TrainingRecord, training_record
from gptclf.serve.batcher import MicroBatcher, QueueFull, model_thread
from gptclf.serve.guards import ApiKeyGuard
from gptclf.serve.limits import (
    BodySizeLimit,
    ClientGone,
    check_text,
    checked_texts,
    error_response,
    parse_request,
)
from gptclf.serve.page import PAGE, PAGE_POLICY
from gptclf.serve.schemas import (
    ClassifyRequest,
    ClassifyResponse,
    ErrorBody,
    Example,
    ExplainRequest,
    ExplainResponse,
    Limits,
    ModelInfo,
    ServedPrediction,
)
from gptclf.serve.settings import API_KEY_ENV, ServeSettings

# Declares the key in the OpenAPI schema; ApiKeyGuard checks it, from the headers alone.
BEARER = HTTPBearer(auto_error=False, description=f"the key in ${API_KEY_ENV}")
T = TypeVar("T")


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


def _model_info(
    classifier: Classifier, record: TrainingRecord, settings: ServeSettings
) -> ModelInfo:
    """What ``GET /v1/model`` tells of ``classifier``, its training and the service's limits."""
    return ModelInfo(
        labels=classifier.labels.names,
        multi_label=classifier.labels.multi_label,
        text_pairs=classifier.takes_pairs,
        base_model=classifier.config.base_model,
        pooling=classifier.config.pooling,
        max_length=classifier.config.max_length,
        template=classifier.config.template,
        decision=classifier.config.decision_rule.to_json(),
        metrics=record.metrics,
        trained_at=record.finished_at,
        training_rows=record.training_rows,
        examples=[Example(**example) for example in record.examples],
        limits=Limits(
            max_texts=settings.max_texts,
            max_chars=settings.max_chars,
            max_body_bytes=settings.max_body_bytes,
        ),
    )


def create_app(
    classifier: Classifier,
    settings: ServeSettings,
    record: TrainingRecord | None = None,
    thread: ThreadPoolExecutor | None = None,
) -> FastAPI:
    """The HTTP service of ``classifier``; ``record`` is what ``GET /v1/model`` tells of its
    training; ``thread``, the one the classifier was loaded in, computes its batches.
    The batcher is ``app.state.batcher``, the settings ``app.state.settings``. The API key is
    checked from the headers before any body is read; then the body is read within the size and
    time limits."""
    batcher = MicroBatcher(
        lambda ids: classifier.probabilities_of_ids(ids, settings.max_batch),
        settings.max_batch,
        settings.max_wait_ms / 1000,
        settings.batching,
        settings.max_queue,
        settings.max_batch_tokens,
        thread,
    )
    app = FastAPI(
        title="gptclf",
        summary="Text classification by a finetuned GPT-style model",
        lifespan=_lifespan(batcher),
        redirect_slashes=False,
    )
    app.state.batcher = batcher
    app.state.settings = settings
    app.add_middleware(
        BodySizeLimit, max_bytes=settings.max_body_bytes, timeout_s=settings.timeout_s
    )
    if settings.api_key:
        app.add_middleware(ApiKeyGuard, key=settings.api_key)  # added last: runs first
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _internal_error)
    documented = [Depends(BEARER)] if settings.api_key else []
    _add_classify(app, classifier, settings, documented)
    _add_explain(app, classifier, settings, documented)
    _add_model(app, _model_info(classifier, record or TrainingRecord(), settings), documented)
    _add_open_routes(app)
    return app


def _json_route(
    app: FastAPI,
    path: str,
    request: type[BaseModel],
    response: type[BaseModel],
    documented: list[Dependency],
) -> Callable:
    """``POST path`` taking a JSON ``request`` (read by the route itself, within the limits, so
    only documented here) and answering ``response`` or a JSON error."""
    return app.post(
        path,
        response_model=response,
        response_model_exclude_none=True,  # a multi-label answer has no single label
        responses={code: {"model": ErrorBody} for code in (401, 408, 413, 415, 422, 503)},
        dependencies=documented,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": request.model_json_schema()}},
            }
        },
    )


def _add_classify(
    app: FastAPI, classifier: Classifier, settings: ServeSettings, documented: list[Dependency]
) -> None:
    """``POST /v1/classify``: the request checked, its texts tokenized, then computed in some
    batches of ``app.state.batcher``, unless its client leaves first."""
    batcher: MicroBatcher = app.state.batcher

    @_json_route(app, "/v1/classify", ClassifyRequest, ClassifyResponse, documented)
    async def classify(request: Request) -> ClassifyResponse:
        """Label and class probabilities of each text, in request order."""
        body = parse_request(await request.body(), request.headers.get("content-type"))
        texts, pairs, where = checked_texts(body, settings)
        try:
            ids = await asyncio.to_thread(
                classifier.token_ids, texts, where, settings.max_chunks, pairs
            )
        except GptclfError as exc:
            raise HTTPException(422, str(exc)) from exc
        try:
            probabilities = await unless_client_leaves(batcher.probabilities(ids), request.receive)
            probabilities = await asyncio.to_thread(
                classifier.final_probabilities, texts, probabilities
            )
        except QueueFull as busy:
            raise HTTPException(
                503, str(busy), headers={"Retry-After": str(busy.retry_after_s)}
            ) from busy
        except ClientGone:
            return Response(status_code=499)  # nginx's "client closed request": nobody reads it
        predictions = [ServedPrediction.of(classifier.prediction(p)) for p in probabilities]
        return ClassifyResponse(predictions=predictions)


def _add_explain(
    app: FastAPI, classifier: Classifier, settings: ServeSettings, documented: list[Dependency]
) -> None:
    """``POST /v1/explain``: one text's decision and its tokens' scores, computed in the model
    thread in steps, with batches between them; one explanation at a time (it costs dozens of
    forward and backward passes), another meanwhile is a 503 whose Retry-After is the last
    one's duration."""
    batcher: MicroBatcher = app.state.batcher
    busy = asyncio.Lock()
    last_seconds = [1.0]

    @_json_route(app, "/v1/explain", ExplainRequest, ExplainResponse, documented)
    async def explain(request: Request) -> ExplainResponse:
        """Which tokens of the text pushed its decision (see ``gptclf explain``)."""
        raw, content_type = await request.body(), request.headers.get("content-type")
        body = parse_request(raw, content_type, ExplainRequest)
        check_text(body.text, "text", settings)
        if busy.locked():
            message = "another explanation is being computed; try again shortly"
            retry = str(max(1, math.ceil(last_seconds[0])))
            raise HTTPException(503, message, headers={"Retry-After": retry})
        async with busy:
            began = time.perf_counter()
            steps = classifier.explanation_steps(body.text, body.method, body.label)
            try:
                explained = None
                while explained is None:  # batches are computed between the steps
                    explained = await batcher.in_model_thread(advance, steps)
            except GptclfError as exc:
                raise HTTPException(422, str(exc)) from exc
            finally:
                last_seconds[0] = time.perf_counter() - began
        return ExplainResponse.model_validate(explained.to_json())


async def unless_client_leaves(work: Awaitable[T], receive: Receive) -> T:
    """The result of ``work``, unless the client disconnects first: then ``work`` is cancelled
    (the batcher drops its texts not yet computed) and :class:`ClientGone` raised. ``receive``
    is the request's, its body already read."""
    task = asyncio.ensure_future(work)
    leaving = asyncio.ensure_future(_disconnected(receive))
    try:
        done, _ = await asyncio.wait({task, leaving}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        leaving.cancel()
        if not task.done():
            task.cancel()
    if task not in done:
        raise ClientGone
    return task.result()


async def _disconnected(receive: Receive) -> None:
    """Return once the client has disconnected."""
    while (await receive())["type"] != "http.disconnect":
        pass


def _add_model(app: FastAPI, info: ModelInfo, documented: list[Dependency]) -> None:
    """``GET /v1/model``: ``info``."""

    @app.get(
        "/v1/model",
        response_model=ModelInfo,
        responses={401: {"model": ErrorBody}},
        dependencies=documented,
    )
    async def model() -> ModelInfo:
        """Labels, base model, recipe, training metrics and examples, and the request limits."""
        return info


def _add_open_routes(app: FastAPI) -> None:
    """The routes open even with an API key: ``/healthz`` and the page at ``/``."""

    @app.head("/healthz", include_in_schema=False)
    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Liveness (HEAD: the status alone): always open, even with an API key."""
        return {"status": "ok"}

    @app.head("/", include_in_schema=False)
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        """The page, with the policy that allows only its own style and script."""
        return HTMLResponse(PAGE, headers={"Content-Security-Policy": PAGE_POLICY})


def app_for_run(run_dir: Path, settings: ServeSettings) -> FastAPI:
    """The service of the classifier trained in ``run_dir``, loaded and warmed up in the thread
    that computes its batches; what the run recorded is read (and checked) first."""
    run = RunDir(Path(run_dir))
    labels = read_run_config(run).label_map
    record = training_record(run, labels, settings.max_chars, settings.examples)
    thread = model_thread()
    load = thread.submit(lambda: Classifier.from_pretrained(run_dir, settings.runtime).warm_up())
    try:
        classifier = load.result()
    except BaseException:
        thread.shutdown()
        raise
    return create_app(classifier, settings, record, thread)
