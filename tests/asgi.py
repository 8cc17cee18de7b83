"""Run an ASGI app with uvicorn in a background thread: the one way tests start servers."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import uvicorn


@dataclass
class ThreadedServer:
    """A started uvicorn server; `stop()` asks it to exit and waits for its thread."""

    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self, timeout: float = 60) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=timeout)


def start_server(
    app: Any, host: str, port: int, *, log_level: str = "warning", **config: Any
) -> ThreadedServer:
    """Start `app` on host:port and wait (up to 20 s) until uvicorn says it is serving."""
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level=log_level,
            timeout_graceful_shutdown=5,
            **config,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("server did not start")
        time.sleep(0.02)
    return ThreadedServer(f"http://{host}:{port}", server, thread)
