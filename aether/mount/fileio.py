"""Whole reads and writes at an offset: what os.pread/os.pwrite do in one
call for a regular file, except at its end, past 2 GiB (Linux's cap per call)
or when interrupted."""

from __future__ import annotations

import os


def pread_all(fd: int, length: int, offset: int) -> bytes:
    """`length` bytes at `offset`, fewer only at the end of the file."""
    # One pread is one allocation: a piece is held once, not twice.
    data = os.pread(fd, length, offset)
    if len(data) == length or not data:
        return data
    out = bytearray(data)
    while len(out) < length:
        piece = os.pread(fd, length - len(out), offset + len(out))
        if not piece:
            break
        out += piece
    return bytes(out)


def pwrite_all(fd: int, data: bytes, offset: int) -> None:
    """Write all of `data` at `offset`."""
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n
