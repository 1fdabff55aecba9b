"""Names that become paths, and paths that must stay inside their output folder (docs/reliability.md).

A run name, a forget-set name, a recipe name (the default output folder ``runs/<name>``) and an exported run's
name become folder names. A recipe may come from someone else, so every such name must be a plain folder name:
``[A-Za-z0-9][A-Za-z0-9._-]*``, at most 100 characters (no ``/``, no ``..``, not absolute, not hidden). Every path
the pipeline writes is also resolved (symlinks followed) and checked to lie inside the resolved output folder, so
a symlink planted inside the folder cannot redirect a write elsewhere; the output folder itself may be a symlink.
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import ValidationError

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
NAME_RULE = "letters, digits, '.', '_' and '-', starting with a letter or digit, at most 100 characters"


def safe_name(name: object, where: str) -> str:
    """``name`` if it is a plain folder name; else a `ValidationError` naming ``where`` and the rule."""
    text = str(name)
    if isinstance(name, bool) or not isinstance(name, (str, int)) or not SAFE_NAME.fullmatch(text):
        fixed = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip(".-_")[:100] or "run1"
        raise ValidationError(
            f"{where}: {text[:120]!r} is not a safe folder name (it becomes a path); use {NAME_RULE}, e.g. {fixed!r}."
        )
    return text


def inside(path: str | Path, root: str | Path) -> Path:
    """``path`` resolved, after checking that it lies inside ``root`` (resolved too); else a `ValidationError`."""
    base = Path(root).resolve()
    target = Path(path).resolve()
    if target != base and base not in target.parents:
        raise ValidationError(
            f"{path}: resolves to {target}, outside the output folder {base} (a symlink inside the folder points "
            "elsewhere?); remove that link or choose another --output-dir."
        )
    return target


def read_json(path: str | Path) -> object:
    """Parse a JSON file; a syntax error becomes a one-line `ValidationError` with the file, line and column."""
    import json

    source = Path(path)
    try:
        return json.loads(source.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValidationError(
            f"{source}:{error.lineno}:{error.colno}: not valid JSON ({error.msg}); fix the file there."
        ) from None
