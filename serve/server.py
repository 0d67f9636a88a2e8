"""The studio as a process (`o1 serve`, the end of `o1 quickstart`): the port checked before
minutes of loading and compiling, the model loaded and warmed up, then served until Ctrl-C or
SIGTERM.

    check_port("127.0.0.1", 7860)
    run("runs/quickstart", StudioOptions(port=7860))
"""

from __future__ import annotations

import os
import signal
import socket
import time

from o1.serve.pipeline import RequestError
from o1.serve.studio import Studio, StudioOptions


def check_port(host: str, port: int) -> None:
    """RequestError when nothing can listen on host:port (in use, or not this machine's)."""
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError as e:
            raise RequestError(f"cannot listen on {host}:{port} ({e.strerror}); pass a free "
                               "--port or another --host") from None


def run(workdir: str | os.PathLike, options: StudioOptions, checkpoint: int | None = None,
        ) -> None:
    """Loads `workdir` (its `checkpoint`, default the latest), warms it up unless
    `options.warmup` is off, and serves it; returns when stopped by Ctrl-C or SIGTERM."""
    start = time.perf_counter()
    served = Studio(workdir, options, checkpoint)
    print(f"loaded {workdir} (checkpoint {served.pipe.step}) in "
          f"{time.perf_counter() - start:.1f} s", flush=True)
    if options.warmup:
        print("warming up: compiling every task once ...", flush=True)
        print(f"warm-up done in {served.warm_up():.1f} s", flush=True)
    try:
        app, url = served.launch(block=False)
    except OSError as e:
        raise RequestError(f"cannot listen on {options.host}:{options.port} ({e}); pass a "
                           "free --port") from None
    print(f"o1 studio: serving {workdir} (checkpoint {served.pipe.step}) at {url} "
          f"(files in {served.out_dir}); Ctrl-C stops", flush=True)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop as on Ctrl-C
    try:
        app.block_thread()  # returns on Ctrl-C
    finally:
        app.close()
    print("o1 studio: stopped", flush=True)
