"""What OUT_FOLDER may already hold, and when a run continues there (ARGUMENTS ``resume true``).

- A finished model (its .emd, .dlpk, .pth or model_metrics.html): refused, so that two models
  are never mixed in one folder; the message says the ways on (another folder, or the model
  as PRETRAINED_MODEL).
- The checkpoint of an interrupted run: continued with ``resume true``, else refused with
  the same choice (resume, or another folder).
- Resume continues only the same run: the checkpoint's fingerprint (model type, backbone,
  data, chip size, batch size, FREEZE) must match, each difference refused naming its
  parameter; MAX_EPOCHS may grow (the schedule stretches over the new length).
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional

from ..destinations import writable_folder
from ..errors import InputError
from . import checkpoint as ckpt

RESUME = "ARGUMENTS 'resume true'"
MODEL_FILES = (".emd", ".dlpk", ".pth")
REPORT = "model_metrics.html"
# fingerprint key -> the parameter a person changes to change it
PARAMETERS = {"model_type": "MODEL_TYPE", "backbone": "BACKBONE_MODEL", "folders": "IN_FOLDER",
              "bands": "IN_FOLDER", "classes": "IN_FOLDER", "chip_size": "CHIP_SIZE", "batch_size": "BATCH_SIZE",
              "freeze_epochs": "FREEZE", "max_epochs": "MAX_EPOCHS"}


def model_files(folder: str) -> List[str]:
    """The files of a finished model at the top of ``folder`` (sorted names)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return sorted(n for n in names if os.path.isfile(os.path.join(folder, n))
                  and (os.path.splitext(n)[1].lower() in MODEL_FILES or n == REPORT))


def check_out_folder(path: str, resume: bool) -> None:
    """OUT_FOLDER is a folder (or can be created), writable, and holds no other model: a
    finished model is refused, an interrupted run's checkpoint needs ``resume``."""
    path = writable_folder("OUT_FOLDER", path)
    check_path = ckpt.path_for(path)
    interrupted = os.path.isfile(check_path)
    finished = model_files(path)
    if finished and not (resume and interrupted):
        shown = ", ".join(finished[:4]) + (", …" if len(finished) > 4 else "")
        package = next((n for n in finished if n.lower().endswith(".dlpk")), None) or \
            next((n for n in finished if n.lower().endswith(".emd")), finished[0])
        raise InputError("OUT_FOLDER", f"{path} already holds a trained model ({shown}); training into it would "
                                       f"mix two models. Give another OUT_FOLDER (or empty this one); to train that "
                                       f"model further, give {os.path.join(path, package)} as PRETRAINED_MODEL and "
                                       f"another OUT_FOLDER")
    if interrupted and not resume:
        raise InputError("OUT_FOLDER", f"{path} holds the checkpoint of an interrupted training "
                                       f"({check_path}, {size_text(check_path)}). Continue it with {RESUME} and the "
                                       f"same parameters (a larger MAX_EPOCHS is accepted), or give another "
                                       f"OUT_FOLDER (or delete {os.path.dirname(check_path)} to start again here)")


def resumable(saved: Dict[str, Any], current: Dict[str, Any], epochs_done: int, where: str) -> Dict[str, Any]:
    """The fingerprint the resumed run goes on with: ``current``, with the checkpoint's
    freeze epochs (the phases already run stay as they were). Raises InputError naming the
    parameter whose value differs from the checkpoint's run; MAX_EPOCHS may only grow."""
    current = parse_fingerprint(ckpt.fingerprint(**current))  # as the checkpoint stored it (tuples as lists)
    if ("freeze_epochs" in saved) == ("freeze_epochs" in current) and "freeze_epochs" in saved:
        current["freeze_epochs"] = saved["freeze_epochs"]
    for key in list(PARAMETERS) + sorted(set(saved) | set(current)):
        if key == "max_epochs" or saved.get(key) == current.get(key):
            continue
        parameter = PARAMETERS.get(key, "ARGUMENTS")
        if key == "freeze_epochs":
            what = (f"FREEZE {'on' if 'freeze_epochs' in saved else 'off'} (with pretrained weights), and this run "
                    f"has it {'on' if 'freeze_epochs' in current else 'off'}")
        else:
            what = f"{parameter} {_show(saved.get(key))}, and this run has {_show(current.get(key))}"
        raise InputError(parameter, f"resume: the checkpoint in {where} is of another run: it was made with {what}; "
                                    f"give the same {parameter} to resume it (only MAX_EPOCHS may grow), or leave "
                                    f"out 'resume true' and give another OUT_FOLDER to start again")
    old, new = int(saved.get("max_epochs", 0)), int(current.get("max_epochs", 0))
    if new < old:
        raise InputError("MAX_EPOCHS", f"resume: the run in {where} was planned for {old} epochs ({epochs_done} "
                                       f"done); resume accepts the same or a larger MAX_EPOCHS, not {new}")
    return current


def canceled_message(check_path: str, epochs_done: int, max_epochs: int, best: Optional[str] = None) -> str:
    """What a canceled run kept and how to go on."""
    if not os.path.isfile(check_path):
        return "training canceled before the first epoch ended; nothing was kept"
    kept = f"kept the checkpoint {check_path} ({size_text(check_path)}, {epochs_done} of {max_epochs} epochs"
    kept += f"; {best})" if best else ")"
    return (f"training canceled after epoch {epochs_done} of {max_epochs}; {kept}. To resume, run again with the "
            f"same parameters and {RESUME} (a larger MAX_EPOCHS trains longer); to start again, give another "
            f"OUT_FOLDER or delete {os.path.dirname(check_path)}")


def size_text(path: str) -> str:
    try:
        size = os.path.getsize(path)
    except OSError:
        return "size unknown"
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}" if size < 10 * scale else f"{size / scale:.0f} {unit}"
    return f"{size} bytes"


def parse_fingerprint(text: Any) -> Dict[str, Any]:
    """A checkpoint's fingerprint (checkpoint.fingerprint's JSON) as a dict; {} when unreadable."""
    try:
        value = json.loads(text) if isinstance(text, str) else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _show(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "; ".join(str(v) for v in value) or "none"
    return "none" if value is None else str(value)
