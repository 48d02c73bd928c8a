"""Fixtures for the webhook tests: a real uvicorn server on 127.0.0.1 in a thread."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest
import uvicorn

from cio_relay.serving import BackgroundServer, bind_socket


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve ``app`` on a free 127.0.0.1 port in a thread (``BackgroundServer``); yield its
    base URL."""
    config = uvicorn.Config(app, log_level="warning", lifespan="off")
    with BackgroundServer(config, bind_socket("127.0.0.1", 0)) as server:
        yield server.url


@pytest.fixture
def live_server() -> Callable[[Any], AbstractContextManager[str]]:
    """``with live_server(app) as url: ...``: a real socket server for end-to-end tests."""
    return serve
