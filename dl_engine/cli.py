"""Command line of the engine (no QGIS): ``python -m dl_engine export --help``,
``python -m dl_engine train --help``, ``python -m dl_engine infer --help``,
``python -m dl_engine autodl --help``, ``python -m dl_engine importweights --help``,
``python -m dl_engine accuracy --help``."""

from __future__ import annotations

import argparse
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dl_engine", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    from .export.cli import add_parser as _export_parser  # rasterio loads when an export runs
    _export_parser(sub)
    from .train.cli import add_parser as _train_parser  # torch is imported only when training runs
    _train_parser(sub)
    from .infer.cli import add_parser as _infer_parser  # likewise: torch loads when inference runs
    _infer_parser(sub)
    from .autodl.cli import add_parser as _autodl_parser
    _autodl_parser(sub)
    from .models.cli import add_parser as _import_weights_parser  # Import Pretrained Weights
    _import_weights_parser(sub)
    from .accuracy.cli import add_parser as _accuracy_parser  # the two accuracy tools' worker
    _accuracy_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "train":
        from .train.cli import run as _run_train
        return _run_train(args)
    if args.command == "autodl":
        from .autodl.cli import run as _run_autodl
        return _run_autodl(args)
    if args.command == "importweights":
        from .models.cli import run as _run_import_weights
        return _run_import_weights(args)
    if args.command == "accuracy":
        from .accuracy.cli import run as _run_accuracy
        return _run_accuracy(args)
    if args.command == "infer":
        from .infer.cli import run as _run_infer
        return _run_infer(args)
    from .export.cli import run as _run_export
    return _run_export(args)
