"""``hf-unlearn verify RUN_DIR --ids FILE``: is this list the forget set a run's report (or card) committed to?

The report and the model card publish the forget set's commitment, HMAC-SHA256(key, sorted indices) with a random
key kept only in the run's private ``manifest.json`` (`hf_unlearn.data.manifest`). Holding the manifest, the
publisher recomputes the HMAC of a claimed list and compares it with the published value: a match proves the list
is the committed one (up to HMAC-SHA256 collisions), a mismatch that it is not. See docs/reliability.md.
"""

from __future__ import annotations

import hmac
from pathlib import Path

import numpy as np

from .data.forget_sets import read_index_file
from .data.manifest import SplitManifest, indices_commitment
from .errors import ValidationError
from .paths import read_json


def published_commitment(run_dir: Path) -> str:
    """The commitment in ``run_dir/report.json`` (what the model card of that run carries too)."""
    report_path = run_dir / "report.json"
    if not report_path.is_file():
        raise ValidationError(f"{report_path} not found: give the folder of a finished run (or pass --commitment).")
    report = read_json(report_path)
    value = (report.get("forget_set") or {}).get("commitment") if isinstance(report, dict) else None
    if not isinstance(value, str):
        raise ValidationError(
            f"{report_path} has no forget_set.commitment (written before commitments existed); pass the card's "
            "value with --commitment, or rerun the recipe."
        )
    return value


def read_ids(path: Path) -> list[int]:
    """Training-split positions (the manifest's forget_indices) from a .txt / .csv / .json / .npy file."""
    try:
        entries = read_index_file(path)
        return [int(v) for v in np.asarray(entries, dtype=np.int64)]
    except (TypeError, ValueError, OverflowError) as error:
        raise ValidationError(
            f"--ids {path}: {error}; give the forgotten samples' positions in the training split, one per line."
        ) from None


def verify(run_dir: str | Path, ids_path: str | Path, commitment: str | None = None) -> tuple[bool, str]:
    """(match, the commitment checked against) for the list in ``ids_path`` and the run in ``run_dir``."""
    run_dir = Path(run_dir)
    manifest_path = run_dir / "manifest.json"
    if not manifest_path.is_file():
        raise ValidationError(
            f"{manifest_path} not found: verify needs the run's private manifest (it holds the commitment key); "
            "give the folder the run wrote (for several forget sets, the forget set's subfolder)."
        )
    try:
        manifest = SplitManifest.from_json(manifest_path)
    except ValueError as error:
        raise ValidationError(f"{error}") from None
    published = commitment if commitment is not None else published_commitment(run_dir)
    if not hmac.compare_digest(published.strip().lower(), manifest.commitment):
        raise ValidationError(
            f"the commitment {published[:16]}... is not the one of {manifest_path} ({manifest.commitment[:16]}...): "
            "this manifest belongs to another run or forget set; give the folder the published run was made in."
        )
    ids = read_ids(Path(ids_path))
    claimed = indices_commitment(ids, manifest.commitment_key)
    return hmac.compare_digest(claimed, manifest.commitment), manifest.commitment
