"""Record the project files a `protalign` command opens, for the test that every file a stage reads is a dep.

cli.py installs the hook when PROTALIGN_AUDIT_OPENS=<log file> is set. Each new (event, path) inside the working
directory appends one JSON line {"cmd", "event", "path", "write"} to the log at once (O_APPEND, one write per
line), so forked workers, which inherit the hook and the descriptor, are recorded too. Not seen: spawned workers
(a fresh interpreter without the hook) and reads done in native code (Arrow's parquet reader, gemmi).
Imported only by cli.py, so it is in no stage's code closure.
"""

from __future__ import annotations

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
