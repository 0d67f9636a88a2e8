"""`o1 serve`: the studio (every task in the browser and over HTTP) for a trained workdir."""

from __future__ import annotations

import argparse

from o1.cli.sample import trained_model


def _serve(args: argparse.Namespace) -> None:
    from o1.serve import server, studio

    options = studio.StudioOptions(
        host=args.host, port=args.port, out_dir=args.out_dir, max_upload=args.max_upload,
        max_storage=args.max_storage, concurrency=args.concurrency, queue_size=args.queue_size,
        cleanup_age=args.cleanup_age, max_seconds=args.max_seconds, max_steps=args.max_steps,
        allowed_hosts=tuple(args.allowed_host or ()), warmup=not args.no_warmup)
    server.check_port(options.host, options.port)  # before minutes of loading and compiling
    server.run(args.workdir, options, args.checkpoint)


def add_commands(commands: argparse._SubParsersAction) -> None:
    srv = commands.add_parser(
        "serve", help="the studio: every task in the browser and over HTTP (Gradio)",
        description="Load a workdir's model, compile every task once, and serve the studio "
                    "web app; every tab is also an HTTP endpoint for gradio_client.")
    trained_model(srv)
    srv.add_argument("--host", default="127.0.0.1",
                     help="interface to bind (default: 127.0.0.1, this machine only; "
                          "0.0.0.0 serves the network)")
    srv.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    srv.add_argument("--out-dir", default=None,
                     help="uploads and outputs, the only folder served "
                          "(default: <workdir>/samples/studio)")
    srv.add_argument("--max-upload", default="50mb", help="largest upload (default: 50mb)")
    srv.add_argument("--max-storage", default="2gb",
                     help="most the served folder may hold; uploads beyond are refused until "
                          "old files are deleted (default: 2gb)")
    srv.add_argument("--allowed-host", action="append", metavar="NAME",
                     help="a Host name the studio answers to, repeatable (default: the "
                          "loopback names when bound to loopback, any name on 0.0.0.0; name "
                          "the public host here when serving a network, or '*' behind a proxy "
                          "that checks it)")
    srv.add_argument("--concurrency", type=int, default=1,
                     help="requests running at once on the device (default: 1)")
    srv.add_argument("--queue-size", type=int, default=16,
                     help="requests allowed to wait; more are refused as busy (default: 16)")
    srv.add_argument("--cleanup-age", type=int, default=3600,
                     help="seconds after which uploads and outputs are deleted "
                          "(default: 3600)")
    srv.add_argument("--max-seconds", type=float, default=None,
                     help="longest clip a request may ask for (default: the workdir's "
                          "sample.max_seconds, as in the CLI)")
    srv.add_argument("--max-steps", type=int, default=None,
                     help="most denoising steps a request may ask for (default: the "
                          "workdir's sample.max_steps)")
    srv.add_argument("--no-warmup", action="store_true",
                     help="listen at once; the first requests then pay compilation")
    srv.set_defaults(func=_serve)
