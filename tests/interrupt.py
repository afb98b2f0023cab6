"""Ctrl-C while a CLI waits on the network: an S3 endpoint that accepts the connection and never
answers, and a SIGINT once the command's first request is under way."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

#: Fake credentials: the command signs its request, the silent endpoint never checks it.
SILENT_ENV = {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "x" * 30}


def interrupt_first_request(argv: Callable[[str], list[str]], cwd: Path, timeout: float) -> tuple[int, str]:
    """Run `argv(endpoint)` against a silent S3 endpoint, SIGINT it once it connected; return its
    exit code and stderr."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        endpoint = f"http://127.0.0.1:{server.getsockname()[1]}"
        proc = subprocess.Popen(argv(endpoint), cwd=cwd, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                env={**os.environ, **SILENT_ENV})
        try:
            server.settimeout(timeout)
            conn, _ = server.accept()  # the command's first request is under way
            with conn:
                proc.send_signal(signal.SIGINT)
                _, err = proc.communicate(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return proc.returncode, err
