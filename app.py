"""MiniGPT-4 Studio: `python app.py [--smolvlm ID --precision P --no-download | --local-model PATH_OR_ID |
--cog URL]` (also the Hugging Face Spaces entry point)."""

import argparse
import signal
import sys
from dataclasses import replace

from starlette.middleware import Middleware

from minigpt4_ui import backend, ui
from minigpt4_ui.page_cache import PageCache
from minigpt4_ui.request_limits import BoundedLog, RequestLimits
from minigpt4_ui.server.predictors import PredictionError
from minigpt4_ui.server.predictors.onnx_engine import PRECISIONS
from minigpt4_ui.settings import Settings

SESSION_CAPACITY = 2000


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
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    sys.stderr = BoundedLog(sys.stderr)
    settings = Settings.from_env()
    settings = replace(settings, local_model=args.local_model or settings.local_model,
                       allow_download=args.allow_download or settings.allow_download,
                       smolvlm=args.smolvlm or settings.smolvlm,
                       precision=args.precision or settings.precision,
                       downloads=settings.downloads and not args.no_download,
                       cog_url=args.cog or settings.cog_url,
                       cog_callback_url=args.cog_callback_url or settings.cog_callback_url)
    try:
        connected = backend.connect(settings)
    except PredictionError as exc:  # the local model is missing or cannot load
        sys.exit(f"error: {exc}")
    try:
        # Server name and port come from GRADIO_SERVER_NAME / GRADIO_SERVER_PORT when set.
        # Gradio keeps every session's state (a copy of each component's config, ~150 KB here)
        # for an hour after it ends; the cap bounds that memory on a busy public host.
        demo = ui.build(connected, settings)
        # Closing (not just stopping the server, as Gradio's Ctrl-C does) ends open streams, so its
        # server shuts down in full and deletes the uploads and downloads it cached. SIGTERM is
        # how hosts and containers stop an app; by default it would end the process on the spot.
        signal.signal(signal.SIGTERM, lambda signum, frame: demo.close())
        limits = Middleware(RequestLimits, max_upload_bytes=settings.max_upload_mb * 1_000_000)
        demo.launch(theme=ui.THEME, css=ui.CSS, head=ui.HEAD, max_file_size=f"{settings.max_upload_mb}mb",
                    state_session_capacity=SESSION_CAPACITY, app_kwargs={"middleware": [limits, Middleware(PageCache)]})
        demo.close()
    finally:
        connected.close()


if __name__ == "__main__":
    main()
