"""The engine's one pinned list (requirements-engine.txt at the plugin root, shared with
``make setup``) and its hash: an environment stamped with another hash was made for another
list and is upgraded by the next install.
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import List, Optional, Tuple

PLUGIN_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REQUIREMENTS_FILE = os.path.join(PLUGIN_ROOT, "requirements-engine.txt")
# torch and the torchvision built for it: installed (and repaired) as a pair.
TORCH_PAIR = ("torch", "torchvision")
# Distributions whose import name is not their name with "-" → "_".
IMPORT_NAMES = {"pillow": "PIL", "pyyaml": "yaml", "scikit-learn": "sklearn", "opencv-python": "cv2"}
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def canonical(name: str) -> str:
    """PEP 503's normalised distribution name: ``huggingface_hub`` → ``huggingface-hub``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(line: str) -> str:
    m = _NAME.match(line)
    if not m:
        raise ValueError(f"not a requirement: {line!r}")
    return canonical(m.group(1))


def import_name(requirement: str) -> str:
    """The module a distribution provides, to check it imports: ``pillow>=9`` → ``PIL``."""
    name = requirement_name(requirement)
    return IMPORT_NAMES.get(name, name.replace("-", "_"))


def _read(path: str, seen: Tuple[str, ...] = ()) -> Tuple[List[str], List[str]]:
    """(requirements, constraints) of a requirements file, following -r and -c (relative to it)."""
    path = os.path.abspath(path)
    if path in seen:
        return [], []
    requirements, constraints = [], []
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
            if not line:
                continue
            words = line.split()
            if words[0] in ("-r", "--requirement", "-c", "--constraint") and len(words) > 1:
                nested = os.path.join(os.path.dirname(path), words[1])
                more, more_constraints = _read(nested, seen + (path,))
                if words[0] in ("-c", "--constraint"):
                    constraints += more + more_constraints
                else:
                    requirements += more
                    constraints += more_constraints
            elif not line.startswith("-"):
                requirements.append(" ".join(words))
    return requirements, constraints


def pinned_requirements(path: Optional[str] = None) -> List[str]:
    """The requirement lines (``torch==2.13.0``, ``numpy<2``, …) in the file's order."""
    return _read(path or REQUIREMENTS_FILE)[0]


def constraints(path: Optional[str] = None) -> List[str]:
    """The lines of the constraint files the list names with ``-c``."""
    return _read(path or REQUIREMENTS_FILE)[1]


def requirements_hash(path: Optional[str] = None) -> str:
    """sha256 of the normalised set: the requirement and constraint lines, sorted (comments,
    blank lines and order do not count)."""
    requirements, constrained = _read(path or REQUIREMENTS_FILE)
    text = "\n".join(sorted(r.replace(" ", "") for r in requirements)) + "\n--\n" + \
        "\n".join(sorted(c.replace(" ", "") for c in constrained))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def torch_pair(requirements: List[str]) -> List[str]:
    """The torch and torchvision lines of a list (empty when it has neither)."""
    return [r for r in requirements if requirement_name(r) in TORCH_PAIR]
