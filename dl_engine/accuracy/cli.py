"""The accuracy tools as a worker: ``python -m dl_engine accuracy --job FILE`` runs a job written by
Compute Accuracy For Pixel Classification or Compute Accuracy For Object Detection
(``dl_engine/accuracy/job.py``): JSON-lines events on stdout, its figures in the ``result`` event,
SIGTERM as a cancel (``dl_engine/worker.py``)."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("accuracy", help="Compute Accuracy For Pixel Classification / Object Detection (a job "
                                        "written by the Processing algorithm)")
    p.add_argument("--job", required=True, help="the job file; events go to stdout as JSON lines")


def run(a) -> int:
    from ..worker import leave, run_job

    def job(events, cancel) -> None:
        from .job import PIXELS, job_kind, read_job, result_fields  # numpy, rasterio, shapely load here
        config = read_job(a.job)
        if job_kind(config) == PIXELS:
            from .pixels import compute_pixel_accuracy as compute
        else:
            from .detection import compute_detection_accuracy as compute
        events.result(**result_fields(compute(config, events, cancel)))

    return leave(run_job(job, "accuracy"))
