"""A few bytes of memory shared between the supervisor and the worker processes it starts.

An anonymous memory file (memfd), mapped in every process: the supervisor creates it and hands
the descriptor to each worker it starts (subprocess `pass_fds`, so it keeps its number), and
the object pickles as that number. multiprocessing's shared values would need its resource
tracker, a whole helper process (12 MB) kept only to unlink named semaphores after a crash; a
memfd disappears with its last descriptor, and an `flock` dies with the process holding it.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import threading
from typing import Any


class SharedMemory:
    """`size` bytes, zeroed, shared with every process this object is pickled to (pass `fd`)."""

    def __init__(self, size: int, fd: int | None = None, name: str = "sqs-poller"):
        if fd is None:
            fd = os.memfd_create(name, os.MFD_CLOEXEC)
            os.ftruncate(fd, size)
        self.fd, self.size = fd, size
        self._map = mmap.mmap(fd, size)
        self._views: list[memoryview] = []
        self._lock: HostLock | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        return SharedMemory, (self.size, self.fd)

    def doubles(self, offset: int, count: int) -> memoryview:
        """A view of `count` doubles at `offset` (a multiple of 8): aligned 8-byte stores."""
        return self._view(offset, count * 8, "d")

    def octets(self, offset: int, count: int) -> memoryview:
        return self._view(offset, count, "B")

    def _view(self, offset: int, length: int, fmt: str) -> memoryview:
        view = memoryview(self._map)[offset : offset + length].cast(fmt)
        self._views.append(view)
        return view

    def lock(self) -> HostLock:
        """One lock for every process and thread that shares this memory."""
        if self._lock is None:
            self._lock = HostLock(self.fd)
        return self._lock

    def close(self) -> None:
        for view in self._views:
            view.release()
        self._views.clear()
        self._map.close()
        if self._lock is not None:
            self._lock.close()
        os.close(self.fd)


class HostLock:
    """A lock across processes (flock on this process's own open of the memory file: flock
    excludes open file descriptions, not processes) and across this process's threads."""

    def __init__(self, fd: int):
        self._fd = os.open(f"/proc/self/fd/{fd}", os.O_RDWR | os.O_CLOEXEC)
        self._threads = threading.Lock()

    def __enter__(self) -> HostLock:
        self._threads.acquire()
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._threads.release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._threads.release()

    def close(self) -> None:
        os.close(self._fd)


class Beat:
    """A worker's heartbeat: the time of its last poll (0.0 until it is ready), one double."""

    def __init__(self, memory: SharedMemory | None = None):
        self.memory = memory or SharedMemory(8, name="sqs-poller-beat")
        self._value = self.memory.doubles(0, 1)

    def __reduce__(self) -> tuple[Any, ...]:
        return Beat, (self.memory,)

    @property
    def value(self) -> float:
        return self._value[0]

    @value.setter
    def value(self, when: float) -> None:
        self._value[0] = when

    @property
    def fd(self) -> int:
        return self.memory.fd

    def close(self) -> None:
        self.memory.close()
