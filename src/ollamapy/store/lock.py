"""One reader-writer lock per store, shared by every server that uses the store directory.

Replicas may share one `$OLLAMA_MODELS` (a shared disk or a network filesystem). Two kinds
of work touch it:

- *writers of references* (a pull's or create's final commit, a copy, a blob upload)
  make blobs and manifests appear: they hold the lock **shared**, so many run at once;
- *removers* (delete, the blob cleanup after a pull or a failed create, the startup prune)
  decide from the manifests which blobs nobody uses and delete them: they hold it
  **exclusive**, so no blob can become referenced between that decision and the unlink.

Both hold it only for short windows (never across a download), so a delete waits at most
for another server's manifest write, never for its pull.

The lock is `flock` on `<root>/.ollamapy.lock` (Linux emulates `flock` with POSIX locks
on NFS, where such locks are per process) plus a process-local reader-writer state, so
threads of one server exclude each other in the same way whatever the filesystem: the
process takes the file lock when its first holder enters and drops it when its last
leaves, through one descriptor.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ollamapy.errors import ServiceUnavailableError

LOCK_NAME = ".ollamapy.lock"
"""In the store's root, beside `blobs/` and `manifests/` (Ollama ignores other files there)."""
POLL_S = 0.02


class StoreBusyError(ServiceUnavailableError):
    """The exclusive lock was not free within the wait allowed (a 503: try again)."""


class _ProcessState:
    """This process's holders of one lock file, and the one descriptor that locks it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.cond = threading.Condition()
        self.shared = 0
        self.exclusive = False
        self.fd: int | None = None

    def open(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)


_states: dict[str, _ProcessState] = {}
_states_guard = threading.Lock()


def _state_for(root: Path) -> _ProcessState:
    path = Path(os.path.abspath(root)) / LOCK_NAME
    with _states_guard:
        state = _states.get(str(path))
        if state is None:
            state = _states[str(path)] = _ProcessState(path)
        return state


class StoreLock:
    """The shared/exclusive lock of the store rooted at `root`."""

    def __init__(self, root: Path) -> None:
        self._state = _state_for(root)

    @contextmanager
    def shared(self) -> Iterator[None]:
        """Hold the lock shared (blocks while a remover anywhere holds it exclusive)."""
        state = self._state
        with state.cond:
            while state.exclusive:
                state.cond.wait()
            if state.shared == 0:
                fd = state.open()
                try:
                    fcntl.flock(fd, fcntl.LOCK_SH)  # waits out another process's remover
                except BaseException:
                    os.close(fd)
                    raise
                state.fd = fd
            state.shared += 1
        try:
            yield
        finally:
            with state.cond:
                state.shared -= 1
                if state.shared == 0:
                    self._drop(state)

    @contextmanager
    def exclusive(self, timeout: float) -> Iterator[None]:
        """Hold the lock exclusive, waiting at most `timeout` seconds (`StoreBusyError`).

        The wait polls instead of blocking in `flock`, so it is bounded and a thread
        holding the lock shared can never deadlock against itself forever."""
        state = self._state
        deadline = time.monotonic() + timeout
        with state.cond:
            while True:
                if not state.exclusive and state.shared == 0 and self._try_file_lock(state):
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StoreBusyError(f"the model store is busy ({state.path})")
                state.cond.wait(min(left, POLL_S))
            state.exclusive = True
        try:
            yield
        finally:
            with state.cond:
                state.exclusive = False
                self._drop(state)

    @staticmethod
    def _try_file_lock(state: _ProcessState) -> bool:
        fd = state.open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        state.fd = fd
        return True

    @staticmethod
    def _drop(state: _ProcessState) -> None:
        """Close the descriptor (releasing the file lock) and wake local waiters."""
        if state.fd is not None:
            os.close(state.fd)
            state.fd = None
        state.cond.notify_all()
