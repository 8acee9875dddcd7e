#!/usr/bin/python3
"""Logs when nginx closes each HLS fragment: raw inotify (IN_CLOSE_WRITE) on
the HLS directory and its stream directories, writing one line per closed
`*.ts`:

    <unix time, s> <stream directory name> <file name>

The time is taken when the event reaches this process, so it is at or just
after nginx's close; a latency measured from it is, if anything, a little
short. inotify is read through libc directly: watchdog's observer holds every
event behind a rename for half a second (to pair IN_MOVED_FROM with
IN_MOVED_TO), and livebucket renames each fragment away at its close, so
watchdog's times came half a second late. Used by bench/realpath.py; stops
on SIGTERM.

    bench/closewatch.py HLS_DIR OUT_FILE
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import struct
import sys
import time

IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_Q_OVERFLOW = 0x00004000
IN_ISDIR = 0x40000000
IN_NONBLOCK = 0o4000
HEADER = struct.Struct("iIII")

libc = ctypes.CDLL("libc.so.6", use_errno=True)


def add_watch(fd: int, path: str, mask: int) -> int:
    wd = libc.inotify_add_watch(fd, os.fsencode(path), mask)
    if wd < 0:
        raise OSError(ctypes.get_errno(), f"inotify_add_watch {path}")
    return wd


def main() -> None:
    hls, out_path = sys.argv[1], sys.argv[2]
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(1))
    fd = libc.inotify_init1(IN_NONBLOCK)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "inotify_init1")
    dirs = {add_watch(fd, hls, IN_CREATE | IN_MOVED_TO): None}

    def watch_stream(name: str) -> None:
        dirs[add_watch(fd, os.path.join(hls, name), IN_CLOSE_WRITE)] = name

    for entry in os.scandir(hls):
        if entry.is_dir(follow_symlinks=False):
            watch_stream(entry.name)
    with open(out_path, "a", buffering=1) as out:
        print("watching", hls, flush=True)
        while not stopping:
            try:
                ready, _, _ = select.select([fd], [], [], 0.5)
            except InterruptedError:
                continue
            if not ready:
                continue
            t = time.time()
            try:
                buf = os.read(fd, 65536)
            except BlockingIOError:
                continue
            off = 0
            while off < len(buf):
                wd, mask, _cookie, length = HEADER.unpack_from(buf, off)
                name = buf[off + HEADER.size : off + HEADER.size + length].rstrip(b"\0").decode()
                off += HEADER.size + length
                if mask & IN_Q_OVERFLOW:
                    print("inotify queue overflowed; closes were lost", file=sys.stderr, flush=True)
                elif dirs.get(wd, "") is None:
                    if mask & IN_ISDIR:
                        watch_stream(name)
                elif mask & IN_CLOSE_WRITE and name.endswith(".ts"):
                    out.write(f"{t:.6f} {dirs[wd]} {name}\n")
    os.close(fd)


if __name__ == "__main__":
    main()
