"""Studio latency through the HTTP API: `o1 serve` started here, then gradio_client requests.

    o1 bench studio_latency --workdir runs/quickstart [--requests 20]
        [--seconds 2] [--clients 16] [--queue-size 4]

Phase 1 sends `--requests` text -> video+sound requests one after another and prints the
p50 / p95 / max latency (request sent to mp4 downloaded). Phase 2 starts `--clients` clients
at once against a queue of `--queue-size` and counts how many completed and how many were
refused as busy, with their latencies. The server's start-up (load + warm-up) is timed too.
"""

from __future__ import annotations

import argparse
import pathlib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence

import numpy as np
from gradio_client import Client

from o1.benchmarks import report
from o1.serve.pipeline import load_config

PROMPT = "a fast red circle bounces"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args, out_dir: str) -> tuple[subprocess.Popen, str, float]:
    port = _free_port()
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "o1.cli", "serve", "--workdir", args.workdir, "--port",
         str(port), "--out-dir", out_dir, "--queue-size", str(args.queue_size)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        print("  server:", line.rstrip())
        if line.startswith("o1 studio: serving"):
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
            return proc, f"http://127.0.0.1:{port}/", time.perf_counter() - start
    raise SystemExit(f"o1 serve exited with {proc.wait()}")


def _row(values: list[float]) -> list[str]:
    """p50, p95 and max of `values` in seconds, as table cells."""
    if not values:
        return ["-", "-", "-"]
    v = np.array(values)
    return [f"{np.percentile(v, 50):.2f}", f"{np.percentile(v, 95):.2f}", f"{v.max():.2f}"]

def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="run directory with a trained model")
    parser.add_argument("--requests", type=int, default=20, help="sequential requests")
    parser.add_argument("--seconds", type=float, default=2.0, help="clip length requested")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients")
    parser.add_argument("--queue-size", type=int, default=4, help="the server's queue size")
    args = report.parse(parser, argv, __file__)

    sample = load_config(args.workdir).sample  # the options the studio's sliders start at
    flow = (sample.steps, sample.cfg_video, sample.cfg_audio)
    with tempfile.TemporaryDirectory() as tmp:
        proc, url, startup = _start(args, str(pathlib.Path(tmp) / "studio"))
        try:
            client = Client(url, verbose=False, download_files=tmp)
            client.predict(PROMPT, args.seconds, api_name="/generate")  # first connection
            sequential = []
            for i in range(args.requests):
                start = time.perf_counter()
                client.predict(PROMPT, args.seconds, *flow, i, api_name="/generate")
                sequential.append(time.perf_counter() - start)

            clients = [Client(url, verbose=False, download_files=tmp)
                       for _ in range(args.clients)]
            barrier, outcomes = threading.Barrier(args.clients), []

            def run(c: Client, seed: int) -> None:
                barrier.wait()
                start = time.perf_counter()
                try:
                    c.submit(PROMPT, args.seconds, *flow, seed,
                             api_name="/generate").result(timeout=600)
                    outcomes.append(("done", time.perf_counter() - start))
                except Exception as e:  # noqa: BLE001 (classified and printed)
                    kind = "busy" if "Queue is full" in str(e) else f"error {e!r}"
                    outcomes.append((kind, time.perf_counter() - start))

            threads = [threading.Thread(target=run, args=(c, i)) for i, c in enumerate(clients)]
            start = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            burst = time.perf_counter() - start
            alive = proc.poll() is None
        finally:
            proc.terminate()
            proc.wait(60)

    kinds = [k for k, _ in outcomes]
    others = [k for k in kinds if k not in ("done", "busy")]
    table = report.Table(["requests", "n", "p50 s", "p95 s", "max s"])
    for label, values in (
            ("one after another", sequential),
            (f"{args.clients} at once: completed", [s for k, s in outcomes if k == "done"]),
            (f"{args.clients} at once: refused as busy",
             [s for k, s in outcomes if k == "busy"])):
        table.add([label, len(values), *_row(values)])
    report.publish("Studio latency", table, args, note=(
        f"`{args.workdir}` through `o1 serve` and gradio_client: text -> video+sound of "
        f"{args.seconds:g} s, {sample.steps} steps, guidance {sample.cfg_video:g}/"
        f"{sample.cfg_audio:g}, request sent to mp4 and picture "
        f"downloaded; queue size {args.queue_size}, concurrency 1. Server start-up (load + "
        f"warm-up) {startup:.1f} s. Burst: {kinds.count('done')} completed, "
        f"{kinds.count('busy')} busy, {len(others)} other {others or ''} in {burst:.1f} s; "
        f"server up afterwards: {alive}."))

if __name__ == "__main__":
    main()
