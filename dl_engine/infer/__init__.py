"""Inference tools (Classify Pixels / Detect Objects / Classify Objects Using Deep Learning).

``run_inference(InferConfig(...))`` in-process, or the worker process
``python -m dl_engine infer --config cfg.json`` (JSON-lines events on stdout). torch is
imported only when a tool runs, so the QGIS side can import the configuration cheaply.
"""

from .config import TOOLS, InferConfig

__all__ = ["TOOLS", "InferConfig", "InferResult", "Canceled", "run_inference"]


def __getattr__(name):  # lazy: torch loads with the run, not with the config
    if name in ("InferResult", "run_inference"):
        from . import run
        return getattr(run, name)
    if name == "Canceled":
        from .job import Canceled
        return Canceled
    raise AttributeError(name)
