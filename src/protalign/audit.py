"""Record the project files a `protalign` command opens, for the test that every file a stage reads is a dep.

cli.py installs the hook when PROTALIGN_AUDIT_OPENS=<log file> is set. Each new (event, path) inside the working
directory appends one JSON line {"cmd", "event", "path", "write"} to the log at once (O_APPEND, one write per
line), so forked workers, which inherit the hook and the descriptor, are recorded too. Arrow reads parquet in C++,
so `pyarrow.parquet.read_table` (also behind `pandas.read_parquet`) is wrapped to raise the same event. Not seen:
spawned workers (a fresh interpreter without the hook; prepare's parsers) and other native readers.
Imported only by cli.py, so it is in no stage's code closure.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import threading

EVENTS = ("open", "os.listdir", "os.scandir")  # a listed folder is read too (its entries decide the result)


def install(log: str, cmd: str) -> None:
    root = os.path.realpath(os.getcwd()) + os.sep
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    seen: set[tuple[str, str, bool]] = set()
    local = threading.local()  # the hook itself must not recurse (realpath, json) or race between threads

    def hook(event: str, args: tuple) -> None:
        if event not in EVENTS or getattr(local, "busy", False):
            return
        path = args[0] if args else "."
        if path is None or isinstance(path, int):  # an open file descriptor: its path was seen when opened
            return
        if event == "open" and args[1] is None and not os.path.isabs(path) and not os.path.lexists(path):
            return  # os.open(name, dir_fd=...) (shutil.rmtree): the event does not say which folder
        local.busy = True
        try:
            full = os.path.realpath(os.fsdecode(path))
            flags = args[2] if event == "open" and len(args) > 2 and isinstance(args[2], int) else 0
            write = bool(flags & (os.O_WRONLY | os.O_RDWR))
            key = (event, full, write)
            if full.startswith(root) and key not in seen:
                seen.add(key)
                line = json.dumps({"cmd": cmd, "event": event, "path": full, "write": write}) + "\n"
                os.write(fd, line.encode())
        finally:
            local.busy = False

    sys.addaudithook(hook)
    _audit_parquet()


def _audit_parquet() -> None:
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - a dependency of the project
        return
    original = pq.read_table

    @functools.wraps(original)
    def read_table(source, *args, **kwargs):
        if isinstance(source, str | os.PathLike):
            sys.audit("open", os.fspath(source), "rb", os.O_RDONLY)
        return original(source, *args, **kwargs)

    pq.read_table = read_table
