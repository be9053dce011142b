"""MiniGPT-4 Studio: `python app.py [--smolvlm ID --precision P --no-download | --local-model PATH_OR_ID |
--cog URL] [--deployment OWNER/NAME] [--warm-up] [--mcp] [--host ADDRESS] [--port PORT]` (also the
Hugging Face Spaces entry point)."""

import argparse
import functools
import os
import signal
import socket
import sys
from dataclasses import replace
from typing import NamedTuple

from starlette.middleware import Middleware

from minigpt4_ui.app import backend, mcp_calls, ui
from minigpt4_ui.app.guard import request_visitor
from minigpt4_ui.app.mcp_calls import McpCalls
from minigpt4_ui.app.page_cache import PageCache
from minigpt4_ui.app.request_limits import BoundedLog, RequestLimits
from minigpt4_ui.app.settings import Settings, parse_deployment
from minigpt4_ui.shared.facts import PRECISIONS

SESSION_CAPACITY = 2000
# Every step of a streamed answer runs on one of Gradio's worker threads (40 by default), fewer
# than the answers the queue lets run at once. With twice the limit, bench/audience.py's median
# first word came 4.1 s after the bare app's with 256 visitors instead of 9.9 s, and 5.8 s instead
# of 6.9 s with 128 (one run each); four times the limit was slower again (one GIL, more threads).
WORKER_THREADS = 2 * ui.CONCURRENCY_LIMIT


class Listen(NamedTuple):
    """Where the app listens; None: Gradio's default (127.0.0.1; the first free port from 7860)."""

    host: str | None
    port: int | None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="MiniGPT-4 Studio: ask about an image in the browser.")
    parser.add_argument("--local-model", metavar="PATH_OR_ID",
                        help="without a Replicate token, answer with this local vision-language model "
                             "(a folder or a Hugging Face id; also MINIGPT4_LOCAL_MODEL), "
                             "e.g. HuggingFaceTB/SmolVLM-256M-Instruct")
    parser.add_argument("--allow-download", action="store_true",
                        help="let --local-model download from the Hugging Face hub "
                             "(also MINIGPT4_ALLOW_DOWNLOAD=1); offline by default")
    parser.add_argument("--smolvlm", metavar="ID_OR_FOLDER",
                        help="the SmolVLM whose ONNX files answer by default (also MINIGPT4_SMOLVLM), "
                             "e.g. HuggingFaceTB/SmolVLM-500M-Instruct; default SmolVLM-256M-Instruct")
    parser.add_argument("--precision", choices=PRECISIONS,
                        help="which of its ONNX exports to run (also MINIGPT4_PRECISION; default int8, "
                             "the fastest on CPU)")
    parser.add_argument("--no-download", action="store_true",
                        help="never download the default model: use it only from the Hugging Face "
                             "cache, else the built-in stand-in answers (also MINIGPT4_DOWNLOADS=0)")
    parser.add_argument("--cog", metavar="URL",
                        help="answer with the model in the Cog container at URL, e.g. MiniGPT-4 on "
                             "this machine's GPU at http://127.0.0.1:5000 (also MINIGPT4_COG_URL)")
    parser.add_argument("--cog-callback-url", metavar="URL",
                        help="http://HOST:PORT where the container can reach this app, so answers "
                             "stream (e.g. http://172.17.0.1:5001 from Docker's bridge; port 0: "
                             "any; also MINIGPT4_COG_CALLBACK_URL); without it they arrive whole")
    parser.add_argument("--deployment", metavar="OWNER/NAME",
                        help="send the chat's questions to this Replicate deployment of the model, "
                             "the host's own always-on instances (also MINIGPT4_DEPLOYMENT; needs "
                             "REPLICATE_API_TOKEN)")
    parser.add_argument("--warm-up", action="store_true",
                        help="send one tiny prediction at start and show 'warming up' → 'ready in N s' "
                             "in the log and the banner (also MINIGPT4_WARM_UP=1; it is paid like a "
                             "question)")
    parser.add_argument("--mcp", action="store_true",
                        help="serve ask, ask_model and list_models as MCP tools for agents at "
                             "/gradio_api/mcp/ (also MINIGPT4_MCP=1 or GRADIO_MCP_SERVER=True)")
    parser.add_argument("--host", metavar="ADDRESS",
                        help="the address to listen on (also GRADIO_SERVER_NAME; default 127.0.0.1, "
                             "this machine only; 0.0.0.0 for every network interface)")
    parser.add_argument("--port", type=int, metavar="PORT",
                        help="the port to listen on (also GRADIO_SERVER_PORT); it must be free. "
                             "Default: the first free port from 7860")
    return parser.parse_args(argv)


def _listen_address(args: argparse.Namespace) -> Listen:
    """Where to listen: --host/--port, else GRADIO_SERVER_NAME/GRADIO_SERVER_PORT, else Gradio's
    defaults; a port that was asked for must be free (Gradio would move to another silently)."""
    host = args.host or os.environ.get("GRADIO_SERVER_NAME") or None
    named = "--port" if args.port is not None else "GRADIO_SERVER_PORT"
    port = args.port if args.port is not None else os.environ.get("GRADIO_SERVER_PORT")
    if port is None:
        return Listen(host, None)
    where = host or "127.0.0.1"
    with socket.socket() as probe:  # as Gradio probes it
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((where.strip("[]"), int(port)))
        except OSError as exc:
            sys.exit(f"error: cannot listen on {where} port {port} ({named}): {exc.strerror or exc}. "
                     "Stop what uses it, or choose another port with --port.")
    return Listen(host, int(port))


def main() -> None:
    args = parse_args()
    sys.stderr = BoundedLog(sys.stderr)
    try:
        settings = Settings.from_env()
        deployment = parse_deployment(args.deployment, source="--deployment")
        settings = replace(settings, local_model=args.local_model or settings.local_model,
                           allow_download=args.allow_download or settings.allow_download,
                           smolvlm=args.smolvlm or settings.smolvlm,
                           precision=args.precision or settings.precision,
                           downloads=settings.downloads and not args.no_download,
                           cog_url=args.cog or settings.cog_url,
                           cog_callback_url=args.cog_callback_url or settings.cog_callback_url,
                           deployment=deployment or settings.deployment,
                           warm_up=args.warm_up or settings.warm_up, mcp=args.mcp or settings.mcp)
        settings.check()
    except ValueError as exc:  # a setting that cannot work: said in one line, like a bad option
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    listen = _listen_address(args)
    try:
        connected = backend.connect(settings)
    except backend.CannotStart as exc:
        sys.exit(f"error: {exc}")
    if settings.warm_up:
        connected.warm_up()
    try:
        # Gradio keeps every session's state (a copy of each component's config, ~150 KB here)
        # for an hour after it ends; the cap bounds that memory on a busy public host.
        demo = ui.build(connected, settings)
        # Closing (not just stopping the server, as Gradio's Ctrl-C does) ends open streams, so its
        # server shuts down in full and deletes the uploads and downloads it cached. SIGTERM is
        # how hosts and containers stop an app; by default it would end the process on the spot.
        signal.signal(signal.SIGTERM, lambda signum, frame: demo.close())
        limits = Middleware(RequestLimits, max_upload_bytes=settings.max_upload_mb * 1_000_000)
        # An MCP tool call counts as its visitor's, in its own session (mcp_calls).
        calls = Middleware(McpCalls, visitor_of=functools.partial(request_visitor, hops=settings.proxy_hops))
        demo.launch(theme=ui.THEME, css=ui.CSS, head=ui.HEAD, max_file_size=f"{settings.max_upload_mb}mb",
                    state_session_capacity=SESSION_CAPACITY, mcp_server=settings.mcp, max_threads=WORKER_THREADS,
                    app_kwargs={"middleware": [limits, calls, Middleware(PageCache)],
                                "lifespan": mcp_calls.install(demo)},
                    server_name=listen.host, server_port=listen.port)
        demo.close()
    finally:
        connected.close()


if __name__ == "__main__":
    main()
