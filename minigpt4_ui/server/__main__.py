"""`python -m minigpt4_ui.server`: serve the Replicate-compatible API until Ctrl-C."""

from __future__ import annotations

import argparse
import os
import threading

from . import RateLimits, start_background
from .predictors.cog import CogPredictor


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m minigpt4_ui.server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--token", default=os.environ.get("MINIGPT4_SERVER_TOKEN"),
                        help="require this API token (default: $MINIGPT4_SERVER_TOKEN; none = open)")
    parser.add_argument("--db", default=":memory:", help="SQLite file that keeps predictions")
    parser.add_argument("--tokens-per-second", type=float, default=None,
                        help="pace streamed words (default: as fast as possible)")
    parser.add_argument("--allow-host", action="append", default=[], metavar="HOST_OR_CIDR",
                        help="let image URLs reach this private/loopback host, IP or network "
                             "(repeatable; default: public addresses only)")
    parser.add_argument("--webhook-secret", default=os.environ.get("MINIGPT4_WEBHOOK_SECRET"),
                        help="whsec_… key that signs webhooks (default: generated, kept in --db)")
    parser.add_argument("--rate-limit-create", type=int, default=None, metavar="PER_MINUTE",
                        help="429 after this many prediction creations a minute (default: off)")
    parser.add_argument("--rate-limit", type=int, default=None, metavar="PER_MINUTE",
                        help="429 after this many other requests a minute (default: off)")
    parser.add_argument("--cog", metavar="URL", default=os.environ.get("MINIGPT4_COG_URL"),
                        help="answer with the Cog container at URL, e.g. http://127.0.0.1:5000 "
                             "(default: $MINIGPT4_COG_URL; none = the built-in predictor)")
    parser.add_argument("--cog-callback-url", metavar="URL",
                        default=os.environ.get("MINIGPT4_COG_CALLBACK_URL"),
                        help="http://HOST:PORT where the container can reach this process for "
                             "progress webhooks, e.g. http://172.17.0.1:5001 for Docker's bridge "
                             "(port 0: any); without it answers arrive whole")
    parser.add_argument("--deployment", action="append", default=[], metavar="OWNER/NAME",
                        help="also serve MiniGPT-4 as the deployment OWNER/NAME, as a host's on "
                             "Replicate (GET /v1/deployments/OWNER/NAME, POST …/predictions; "
                             "repeatable)")
    args = parser.parse_args(argv)
    options: dict = {}
    if args.cog:
        cog = CogPredictor(args.cog, callback_url=args.cog_callback_url)
        options = {"predictor": cog, "openapi_schema": cog.openapi_schema}
    try:
        server = start_background(host=args.host, port=args.port, token=args.token, db_path=args.db,
                                  tokens_per_second=args.tokens_per_second,
                                  allow_hosts=tuple(args.allow_host),
                                  webhook_secret=args.webhook_secret,
                                  rate_limits=RateLimits(args.rate_limit_create, args.rate_limit),
                                  deployments=tuple(args.deployment), **options)
    except ValueError as exc:  # a --deployment that is not owner/name
        parser.error(str(exc))
    auth = "token required" if args.token else "no token required"
    model = f"the Cog container at {args.cog}" if args.cog else "the built-in predictor"
    deployed = "".join(f", deployment {name}" for name in args.deployment)
    print(f"MiniGPT-4 predictions server on {server.url} ({auth}), answering with {model}{deployed}; "
          "Ctrl-C stops it", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        if args.cog:
            cog.close()


if __name__ == "__main__":
    main()
