"""Canary files: the kernel (inotify) reports every open of them, by any process.

A test points a hostile playlist at a canary, lets every front and worker handle it, then asks
whether anything opened the canary. Linux only, through libc, so no package is needed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import struct
from pathlib import Path
from types import TracebackType

IN_ACCESS = 0x001
IN_OPEN = 0x020
IN_NONBLOCK = 0o4000
_EVENT = struct.Struct("iIII")


class Canaries:
    """Watches files for opens and reads; `opened()` returns those touched since the last call."""

    def __init__(self, *paths: Path) -> None:
        self._libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self._fd = self._libc.inotify_init1(IN_NONBLOCK)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self._paths: dict[int, Path] = {}
        for path in paths:
            wd = self._libc.inotify_add_watch(self._fd, os.fsencode(path), IN_OPEN | IN_ACCESS)
            if wd < 0:
                raise OSError(ctypes.get_errno(), f"cannot watch {path}")
            self._paths[wd] = path

    def opened(self) -> set[Path]:
        """Return the watched files opened or read since the last call."""
        touched: set[Path] = set()
        while True:
            try:
                data = os.read(self._fd, 64 * 1024)
            except BlockingIOError:
                return touched
            offset = 0
            while offset < len(data):
                wd, _mask, _cookie, length = _EVENT.unpack_from(data, offset)
                touched.add(self._paths[wd])
                offset += _EVENT.size + length

    def close(self) -> None:
        """Stop watching."""
        os.close(self._fd)

    def __enter__(self) -> Canaries:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
