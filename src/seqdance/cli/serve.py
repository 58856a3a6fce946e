"""``seqdance serve``: the local web app (a page and a JSON API around one loaded model)."""

from __future__ import annotations

import argparse
import os
import signal
import sys

from seqdance.cli.options import SOURCE, add_device_option, add_dtype_option, add_quiet_option, int_at_least
from seqdance.model.kinds import DEFAULT_MODEL_SOURCE, MODEL_SELECTS

TOKEN_ENV = "SEQDANCE_SERVE_TOKEN"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="a local web app: paste sequences, predict, scan mutations, look at the report's panels; JSON API",
        description="Loads the model once and serves a page and a JSON API (GET /api/health, POST /api/predict) on "
        "127.0.0.1 unless --host says otherwise; a host reachable from other machines needs --token. One worker "
        "runs the heavy jobs from a bounded queue; repeated sequences are answered from a cache. Needs the app "
        "extra: pip install 'seqdance[app]'. Stop it with Ctrl-C (or SIGTERM).",
    )
    parser.add_argument("--model", default=DEFAULT_MODEL_SOURCE, metavar=SOURCE,
                        help="Hugging Face repo id or local model directory / checkpoint "
                             f"(default: {DEFAULT_MODEL_SOURCE})")
    parser.add_argument("--model-select", choices=MODEL_SELECTS, default=None,
                        help="model kind; needed for a training checkpoint (update_*.pt)")
    parser.add_argument("--encoder", default=None, metavar="PRESET", help="encoder preset of a training checkpoint")
    add_device_option(parser)
    add_dtype_option(parser)
    parser.add_argument("--host", default="127.0.0.1", metavar="HOST",
                        help="address to listen on (default 127.0.0.1: this machine only; another needs --token)")
    parser.add_argument("--port", type=int_at_least(1, maximum=65535), default=7860, metavar="N",
                        help="port (default 7860)")
    parser.add_argument("--token", default=None, metavar="TOKEN",
                        help=f"a secret every request must carry (default: ${TOKEN_ENV}); required with a --host "
                        "other machines can reach. Note: a command line is visible to other users of this machine")
    parser.add_argument("--max-sequences", type=int_at_least(1), default=50, metavar="N",
                        help="sequences per request (default 50)")
    parser.add_argument("--max-residues", type=int_at_least(1), default=5000, metavar="N",
                        help="residues per request, all sequences together (default 5000)")
    parser.add_argument("--max-scan-residues", type=int_at_least(1), default=500, metavar="N",
                        help="longest wild type of a saturation scan or list of variants (default 500)")
    parser.add_argument("--max-upload-mb", type=float, default=2.0, metavar="MB",
                        help="largest request body: FASTA, structure or JSON (default 2)")
    parser.add_argument("--queue-size", type=int_at_least(1), default=8, metavar="N",
                        help="heavy jobs that may wait for the model; more get 'queue full' (default 8)")
    parser.add_argument("--cache-mb", type=int_at_least(0), default=512, metavar="MB",
                        help="memory for results of repeated sequences (default 512)")
    add_quiet_option(parser, help="no request log, and third-party libraries' messages kept to errors")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from seqdance.app.settings import AppSettings, check_binding
    from seqdance.errors import InputError

    token = args.token or os.environ.get(TOKEN_ENV) or None
    check_binding(args.host, token)
    if not args.max_upload_mb > 0:
        raise InputError(f"--max-upload-mb must be positive, got {args.max_upload_mb}")
    settings = AppSettings(max_sequences=args.max_sequences, max_residues=args.max_residues,
                           max_scan_residues=args.max_scan_residues,
                           max_upload_bytes=int(args.max_upload_mb * 1e6), queue_size=args.queue_size,
                           cache_bytes=args.cache_mb * 2**20, token=token)
    from seqdance.extras import require_extra

    require_extra("app", "seqdance serve")
    from pathlib import Path

    import uvicorn

    from seqdance.app.server import create_app
    from seqdance.app.work import ModelService
    from seqdance.devices import model_dtype, resolve_device
    from seqdance.model import load_model
    from seqdance.report.assets import plotly_js

    plotly_js()  # the page's library: a missing plots extra fails now, not on the first visit
    from seqdance.model.hints import model_option

    with model_option("--model", "--model-select"):
        model = load_model(args.model, model_select=args.model_select, encoder=args.encoder,
                           device=resolve_device(args.device), dtype=model_dtype(args.dtype))
    device = str(next(model.parameters()).device)
    local = Path(args.model).expanduser()
    name = str(local.resolve()) if local.exists() else args.model  # as `seqdance predict` records it
    service = ModelService(model, name=name, device=device, settings=settings)
    app = create_app(service, settings, host=args.host)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning" if args.quiet else "info",
                            access_log=not args.quiet, timeout_graceful_shutdown=5, lifespan="on")
    server = uvicorn.Server(config)
    shown_host = f"[{args.host}]" if ":" in args.host else args.host
    query = "?token=<your token>" if token else ""
    print(f"seqdance serve: model {service.name} ({service.fingerprint[:12]}) on {device}; "
          f"open http://{shown_host}:{args.port}/{query}", file=sys.stderr, flush=True)
    # uvicorn shuts down gracefully on SIGTERM / SIGINT and then raises the signal again for the handler that was
    # there before it started: a no-op here, so that the command ends normally (exit status 0).
    before = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run()
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
    print("seqdance serve: stopped", file=sys.stderr)
    return 0
