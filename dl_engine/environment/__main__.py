"""The engine environment without QGIS:

    python -m dl_engine.environment install [--device auto|cpu|cuda] [--package-index URL|FOLDER]
                                            [--reinstall] [--folder F] [--python BASE] [--proxy URL] [--verbose]
    python -m dl_engine.environment check [--folder F] [--no-smoke]
    python -m dl_engine.environment reset [--folder F]

install prints progress lines (``[ 42 %] Downloading torch-2.13.0 (915.3 MB): 40 %``) and, last,
``PYTHON=<path>`` and ``DEVICE=<device>``; check prints the report and exits 0 when ready, 1
when not. Ctrl-C cancels an install (run it again to finish it). Exit 2: bad options.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import Canceled, InputError
from . import location, manager


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dl_engine.environment",
                                     description="The deep-learning engine's environment (torch, timm, rasterio …).")
    sub = parser.add_subparsers(dest="command", required=True)
    folder_help = f"the environment's folder (default: ${location.ENV_DIR_VAR} or {location.default_env_dir()})"
    install = sub.add_parser("install", help="install or repair the environment")
    install.add_argument("--device", default="auto", help="auto (the GPU if a driver is found), cpu or cuda")
    install.add_argument("--package-index", help="a package index URL, or a folder of wheels for a site "
                                                 "without internet")
    install.add_argument("--reinstall", action="store_true", help="remove the environment first")
    install.add_argument("--folder", help=folder_help)
    install.add_argument("--python", help="the Python to make the environment from (default: this installation's)")
    install.add_argument("--proxy", help="a proxy for pip (http://user:password@host:port)")
    install.add_argument("--verbose", action="store_true", help="print pip's own lines too")
    check = sub.add_parser("check", help="print the environment's report; exit 0 when ready")
    check.add_argument("--folder", help=folder_help)
    check.add_argument("--no-smoke", action="store_true", help="read the stamp only (no torch import)")
    reset = sub.add_parser("reset", help="remove the environment (its install log stays)")
    reset.add_argument("--folder", help=folder_help)
    return parser


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "install":
            return _install(args)
        if args.command == "check":
            state = manager.inspect(args.folder, smoke=not args.no_smoke)
            print(manager.report_text(state), end="")
            return 0 if state.ready else 1
        manager.reset(args.folder)
        print(f"Removed {location.resolve(args.folder)}")
        return 0
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except manager.EnvironmentInstallError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except Canceled as error:
        print(str(error), file=sys.stderr)
        return 130


def _install(args) -> int:
    last = {"text": None}

    def progress(percent: float, message: str) -> None:
        text = f"[{percent:3.0f} %] {message}"
        if text != last["text"]:
            print(text, flush=True)
            last["text"] = text

    options = manager.InstallOptions(device=args.device, package_index=args.package_index, reinstall=args.reinstall,
                                     base_python=args.python, folder=args.folder, proxy=args.proxy)
    print(f"Log: {location.log_path(args.folder)}", flush=True)
    state = manager.install(options, progress=progress,
                            log=(lambda line: print("  " + line, flush=True)) if args.verbose else None)
    print(state.summary())
    print(f"PYTHON={state.python}")
    print(f"DEVICE={state.device}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
