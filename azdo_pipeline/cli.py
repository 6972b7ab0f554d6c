"""The `azdo-pipeline` console script.

    azdo-pipeline sync [--org NAME] [--config FILE] [--data-dir DIR]   full sync + access graph through Dagster
    azdo-pipeline login --org NAME [--device-code]                OAuth sign-in, once
    azdo-pipeline request grant|revoke|create-account|deprovision-account --org NAME --principal WHO ...
                                                                  write one request into the inbox

With the simulator installed (azdo-sim), also `demo`, `dev`, `simulate` and `tour`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path


def _sync_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--org", default=None, help="organization name in the configuration (default: every one)")
    p.add_argument("--config", default=None, help="configuration file (default: $AZDO_PIPELINE_CONFIG, "
                                                  "./azdo-pipeline.yaml)")
    p.add_argument("--data-dir", default=None, help="where the Parquet goes (default: the configuration's data_dir)")
    p.add_argument("--verbose", action="store_true", help="print the run's log (with tracebacks of failures)")


def run_sync(args: argparse.Namespace) -> int:
    """The full-sync job (sync + access graph) of one or every configured organization, through Dagster
    in this process; prints a summary per organization. Exit 0 when every run succeeded."""
    from .client.errors import ConfigurationError
    from .config import load_config
    from .remote import is_remote
    from .resources import AzdoPipeline
    from .runner import LocationNotFound, failure_causes, load_definitions, repo_root, run_full_sync
    from .summary import print_summary

    try:
        cfg = load_config(args.config)
        orgs = [cfg.org(args.org)] if args.org else list(cfg.organizations)
        problems = [p for p in cfg.check_environment()
                    if any(p.startswith(f"organizations[{cfg.organizations.index(o)}].") for o in orgs)]
        if problems:
            raise ConfigurationError("; ".join(problems))
        defs = load_definitions(repo_root(), cfg.source)
    except (ConfigurationError, LocationNotFound) as e:
        print(f"azdo-pipeline sync: {e}", file=sys.stderr)
        return 2
    data_dir = (args.data_dir if is_remote(args.data_dir) else str(Path(args.data_dir).resolve())) \
        if args.data_dir else None
    store = AzdoPipeline(config_path=cfg.source, data_dir=data_dir).store(cfg)
    where = f"{store.mirror.loc.url} (local cache {store.data_dir})" if store.mirror else str(store.data_dir)
    failed = []
    for org in orgs:
        print(f"syncing '{org.name}' ({org.url}) into {where} …", flush=True)
        run = run_full_sync(defs, org.name, config_path=cfg.source, data_dir=data_dir or store.data_dir,
                            tags={"azdo/run": "cli-sync"}, log_level="INFO" if args.verbose else "CRITICAL")
        if run.result.success:
            print_summary(store, org.name, run.seconds, run.result, requests_label="requests to Azure DevOps")
        else:
            failed.append(org.name)
            print(f"azdo-pipeline sync: the run for '{org.name}' FAILED:", file=sys.stderr)
            for cause in failure_causes(run.result):
                print(f"  {cause}", file=sys.stderr)
            if not args.verbose:
                print("  (--verbose prints the run's log, tracebacks included)", file=sys.stderr)
    return 1 if failed else 0


def _login_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--org", required=True, help="organization name in the configuration")
    p.add_argument("--config", default=None, help="configuration file (default: $AZDO_PIPELINE_CONFIG, "
                                                  "./azdo-pipeline.yaml)")
    p.add_argument("--device-code", action="store_true", help="device-code flow for headless machines")


def run_login(args: argparse.Namespace) -> int:
    """OAuth: sign in once (authorization code, or device code); later runs refresh silently."""
    from .auth import login_from_config
    from .client.errors import AzureDevOpsError, ConfigurationError

    try:
        path = login_from_config(args.org, device_code=args.device_code, config_path=args.config)
    except ConfigurationError as e:
        print(f"azdo-pipeline login: {e}", file=sys.stderr)
        return 2
    except AzureDevOpsError as e:  # sign-in refused (AADSTS explained), authority unreachable or untrusted
        print(f"azdo-pipeline login: {e}", file=sys.stderr)
        return 1
    print(f"logged in; token cache written to {path} (mode 0600)")
    return 0


# ---- request: write one provisioning request into the inbox ----------------------------------------
_REQUEST_ACTIONS = {"grant": "grant", "revoke": "revoke", "create-account": "create_account",
                    "deprovision-account": "deprovision_account"}


def _request_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, action in _REQUEST_ACTIONS.items():
        q = sub.add_parser(name, help=f"a {action} request")
        q.add_argument("--org", required=True, help="organization name in the configuration")
        q.add_argument("--principal", required=True,
                       help="who: a descriptor, or a principal name / e-mail (resolved through the synced tables)")
        if action in ("grant", "revoke"):
            q.add_argument("--target", required=True,
                           help="the group or team: a descriptor, '[Project]\\Group Name' or 'Project\\Team'")
        if action == "create_account":
            q.add_argument("--license", default="express",
                           help="express (basic), stakeholder or msdn (Visual Studio subscriber)")
            q.add_argument("--project", action="append", default=[], metavar="PROJECT[:ROLE]",
                           help="add the account to a project (role: contributors, readers, ...); repeatable")
        q.add_argument("--id", default=None, help="request id (default: a new UUID); the same id is carried out once")
        q.add_argument("--dry-run", action="store_true", help="report the calls it would make; make none")
        q.add_argument("--inbox", default=None, help="inbox folder (default: the configuration's "
                                                     "provisioning.inbox_dir, else {data_dir}/inbox)")
        q.add_argument("--config", default=None, help="configuration file (default: $AZDO_PIPELINE_CONFIG, "
                                                      "./azdo-pipeline.yaml)")
        q.set_defaults(request_action=action)


def request_document(args: argparse.Namespace) -> dict[str, object]:
    import uuid

    doc: dict[str, object] = {"id": args.id or str(uuid.uuid4()), "organization": args.org,
                              "action": args.request_action, "principal": args.principal}
    if getattr(args, "target", None):
        doc["target"] = args.target
    if args.request_action == "create_account":
        doc["license"] = args.license
        if args.project:
            doc["projects"] = [dict(zip(("project", "role"), p.split(":", 1), strict=False)) for p in args.project]
    if args.dry_run:
        doc["dry_run"] = True
    return doc


def run_request(args: argparse.Namespace) -> int:
    """Validate one request and write it into the inbox's incoming/ folder atomically."""
    import json
    from pathlib import Path

    from .client.errors import ConfigurationError
    from .config import load_config
    from .provisioning.flow import parse_request, provisioning_settings
    from .provisioning.inbox import Inbox
    from .provisioning.intake import RequestRejected

    doc = request_document(args)
    try:
        parse_request(json.dumps(doc).encode())
    except RequestRejected as e:
        print(f"azdo-pipeline request: {e}", file=sys.stderr)
        return 2
    if args.inbox:
        inbox = Inbox(Path(args.inbox))
    else:
        try:
            inbox = provisioning_settings(load_config(args.config)).inbox()
        except ConfigurationError as e:
            print(f"azdo-pipeline request: {e} (or name the inbox with --inbox)", file=sys.stderr)
            return 2
    path = inbox.ensure().write_request(doc)
    print(f"request {doc['id']} ({doc['action']}) written to {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="azdo-pipeline", description="Azure DevOps access connector.",
        epilog="demo, dev, simulate and tour come with the simulator (the azdo-sim distribution, "
               "./simulator in the repository; `make demo` installs it).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    p = sub.add_parser("sync", help="full sync + access graph of configured organizations through Dagster, "
                                    "in this process (runs land in $DAGSTER_HOME's instance when it is set)")
    _sync_arguments(p)
    p.set_defaults(run=run_sync)
    p = sub.add_parser("login", help="sign in once with OAuth for an organization (msal token cache, mode 0600)")
    _login_arguments(p)
    p.set_defaults(run=run_login)
    p = sub.add_parser("request", help="write a provisioning request into the inbox (grant, revoke, "
                                       "create-account, deprovision-account)")
    _request_arguments(p)
    p.set_defaults(run=run_request)
    # Development tools (the simulator) add their commands through this entry-point group, so the
    # product never imports them and a production install simply lacks them.
    for ep in entry_points(group="azdo_pipeline.commands"):
        ep.load()(sub)
    return parser


# Commands the simulator distribution (azdo-sim, simulator/ in the repository) adds; a production
# install does not have them.
SIMULATOR_COMMANDS = ("demo", "dev", "simulate", "tour")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    simulator = list(entry_points(group="azdo_pipeline.commands"))
    if words and words[0] in SIMULATOR_COMMANDS and not simulator:
        print(f"azdo-pipeline {words[0]}: this command comes with the bundled simulator, which a production install "
              "does not include; from the repository run `make install` (or `pip install ./simulator`), then try "
              "again. Against your own organization: `azdo-pipeline sync --config FILE`.", file=sys.stderr)
        return 2
    args = parser.parse_args(words)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
