"""The `azdo-pipeline` console script.

    azdo-pipeline login --org NAME [--device-code]                OAuth sign-in, once

With the simulator installed (azdo-sim), also `demo`, `dev`, `simulate` and `tour`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points


def _login_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--org", required=True, help="organization name in the configuration")
    p.add_argument("--config", default=None, help="configuration file (default: $AZDO_PIPELINE_CONFIG, "
                                                  "./azdo-pipeline.yaml)")
    p.add_argument("--device-code", action="store_true", help="device-code flow for headless machines")


def run_login(args: argparse.Namespace) -> int:
    """OAuth: sign in once (authorization code, or device code); later runs refresh silently."""
    from .auth import login_from_config
    from .client.errors import ConfigurationError

    try:
        path = login_from_config(args.org, device_code=args.device_code, config_path=args.config)
    except ConfigurationError as e:
        print(f"azdo-pipeline login: {e}", file=sys.stderr)
        return 2
    print(f"logged in; token cache written to {path} (mode 0600)")
    return 0




def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="azdo-pipeline", description="Azure DevOps access connector.",
        epilog="demo, dev, simulate and tour come with the simulator (the azdo-sim distribution, "
               "./simulator in the repository; `make demo` installs it).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    p = sub.add_parser("login", help="sign in once with OAuth for an organization (msal token cache, mode 0600)")
    _login_arguments(p)
    p.set_defaults(run=run_login)
    # Development tools (the simulator) add their commands through this entry-point group, so the
    # product never imports them and a production install simply lacks them.
    for ep in entry_points(group="azdo_pipeline.commands"):
        ep.load()(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
