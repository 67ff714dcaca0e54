"""``gptclf serve``: a trained classifier behind HTTP. ``POST /v1/classify`` answers with the
label and every class probability of each text; concurrent requests are gathered into
micro-batches for one model thread. A page at ``/`` shows the model and
classifies a pasted message or a file of them.

``settings`` declares the options, ``limits`` what a request may be, ``guards`` what is decided
from the headers alone (the API key, the lingering close), ``batcher`` the micro-batching,
``page`` the page and its Content-Security-Policy, ``app`` the routes, ``protocol`` and
``server`` how uvicorn serves it without letting any client hold it."""

from gptclf.serve.app import app_for_run, create_app
from gptclf.serve.batcher import MicroBatcher
from gptclf.serve.server import listening_socket, serve, server_for, url_of
from gptclf.serve.settings import API_KEY_ENV, ServeSettings

__all__ = [
    "API_KEY_ENV",
    "MicroBatcher",
    "ServeSettings",
    "app_for_run",
    "create_app",
    "listening_socket",
    "serve",
    "server_for",
    "url_of",
]
