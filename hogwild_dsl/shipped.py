"""Shipped specs by name: the .hog files of the repository's specs/ folder, installed as the
package data `hogwild_dsl.specs`, so `load("svm")` and `HogwildClassifier(spec="logreg")` work
from an installed package. Hands `load` and the estimators a spec's path or text."""
from __future__ import annotations

import importlib.resources
from pathlib import Path

from .errors import SpecError


def _folder() -> Path:
    try:
        return Path(str(importlib.resources.files("hogwild_dsl.specs")))
    except ModuleNotFoundError:      # an editable install made before specs were package data
        return Path(__file__).resolve().parent.parent / "specs"


def names() -> list[str]:
    """The names of the shipped specs, sorted."""
    return sorted(p.stem for p in _folder().glob("*.hog"))


def path(name: str) -> Path:
    """The file of shipped spec `name`, or a SpecError listing the shipped names."""
    p = _folder() / f"{name}.hog"
    if not isinstance(name, str) or "/" in name or "\\" in name or not _is_file(p):
        raise SpecError(f"{name}: no such file, and not a shipped spec (shipped: "
                        f"{', '.join(names())})")
    return p


def text(name: str) -> str:
    """The source text of shipped spec `name`."""
    return path(name).read_text(encoding="utf-8")


def resolve(spec) -> Path:
    """A spec argument given as a path or a shipped name -> the file to read. An existing file
    wins over a shipped spec of the same name. Spec text given there is a SpecError saying
    where text goes (it was "TEXT: no such file", or an OSError for a name too long)."""
    if isinstance(spec, str) and ("\n" in spec.strip() or spec.lstrip().startswith("model ")):
        raise SpecError("this is a spec's text, not a path or a shipped spec's name: pass the "
                        "text as hogwild_dsl.load(text=...)")
    p = Path(spec)
    if _is_file(p) or _exists(p):
        return p
    return path(str(spec))


def _exists(p: Path) -> bool:
    try:
        return p.exists()
    except (OSError, ValueError):        # a name too long for the file system, a NUL byte
        return False


def _is_file(p: Path) -> bool:
    try:
        return p.is_file()
    except (OSError, ValueError):
        return False
