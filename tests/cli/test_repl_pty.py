"""`ollama run MODEL` in a real pseudo-terminal against a tiny fake HTTP server."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

pexpect = pytest.importorskip("pexpect")

ANSWERS: dict[str, list[dict[str, Any]]] = {
    "/api/generate": [{"model": "m", "response": "", "done": True, "done_reason": "load"}],
    "/api/chat": [
        {"message": {"role": "assistant", "content": "Hello "}},
        {"message": {"role": "assistant", "content": "from the fake"}},
        {"message": {"role": "assistant", "content": ""}, "done": True},
    ],
}


class FakeHandler(BaseHTTPRequestHandler):
    """Answers the calls `ollama run` makes with canned JSON / NDJSON; records chat bodies."""

    chats: ClassVar[list[Any]] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if self.path == "/api/show":
            self._send(json.dumps({"capabilities": ["completion"], "details": {}}).encode())
            return
        if self.path == "/api/chat":
            self.chats.append(body)
        parts = ANSWERS.get(self.path)
        if parts is None:
            self.send_response(404)
            self.end_headers()
            return
        self._send("".join(json.dumps(p) + "\n" for p in parts).encode())

    def _send(self, data: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def spawn(host: str, home: Path) -> Any:
    env = {
        "OLLAMA_HOST": host,
        "HOME": str(home),
        "TERM": "xterm-256color",
        "PATH": "/usr/bin:/bin",
    }
    return pexpect.spawn(
        sys.executable,
        ["-m", "ollamapy", "run", "m"],
        env=env,
        encoding="utf-8",
        timeout=20,
        dimensions=(24, 100),
    )


def test_repl_streams_an_answer_and_exits_on_bye(server: str, hermetic_env: Path) -> None:
    FakeHandler.chats.clear()
    child = spawn(server, hermetic_env)
    child.expect_exact(">>> ")
    child.expect_exact("Send a message (/? for help)")
    child.send("hello\r")
    child.expect_exact("Hello from the fake")
    child.expect_exact(">>> ")
    child.send("/bye\r")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert FakeHandler.chats[0]["messages"] == [{"role": "user", "content": "hello"}]
    assert "hello" in (hermetic_env / ".ollama" / "history").read_text()


def test_repl_ctrl_c_hint_and_ctrl_d_exit(server: str, hermetic_env: Path) -> None:
    child = spawn(server, hermetic_env)
    child.expect_exact(">>> ")
    child.sendintr()
    child.expect_exact("Use Ctrl + d or /bye to exit.")
    child.expect_exact(">>> ")
    child.send("/x\r")
    child.expect_exact("Unknown command '/x'. Type /? for help")
    child.expect_exact(">>> ")
    child.send("\x04")  # Ctrl+D on an empty line
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
