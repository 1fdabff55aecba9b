"""Stage folders: ``models/<stage>/`` with the weights (safetensors), the image processor of the run's input transform
(``preprocessor_config.json``, so the folder works in ``transformers.pipeline``) and ``stage.json``, the record that
marks the stage finished. The store finds finished stages by fingerprint and saves new ones atomically (a temporary folder,
then a rename); it never evaluates (metrics: `hf_unlearn.steps.score`).

The original model is shared by every forget set and sits at the top of the output folder; the reference and the
unlearning runs belong to one forget set and sit in its folder.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..atomic import atomic_save_npy, atomic_write_json, match_umask
from ..distributed import barrier, is_main_process
from ..paths import inside

logger = logging.getLogger(__name__)

# Prefixes of the atomic writers' temporary files that a killed run may leave behind.
TEMPORARY_PREFIXES = (".report.", ".manifest.", ".learning_events.", ".accuracy_tow.", ".scores.")


class StageStore:
    """The stage folders of one output folder (``root``), for the forget set in ``folder`` (``root`` itself when
    the recipe has one forget set). ``force`` treats every stage as unfinished. ``preprocessing``: the run's input
    transform as report.json records it (`hf_unlearn.processors.save_processor`), set once the data is prepared."""

    def __init__(
        self,
        root: str | Path,
        folder: str | Path | None = None,
        *,
        force: bool = False,
        preprocessing: dict[str, Any] | None = None,
    ):
        self.root = Path(root)
        self.folder = Path(folder) if folder is not None else self.root
        self.force = force
        self.preprocessing = preprocessing

    def at(self, folder: Path) -> StageStore:
        """The same store for another forget set's folder."""
        return StageStore(self.root, folder, force=self.force, preprocessing=self.preprocessing)

    def stage_dir(self, name: str) -> Path:
        """``models/<name>`` of this forget set; the shared original sits at the top of the output folder."""
        return inside((self.root if name == "original" else self.folder) / "models" / name, self.root)

    def checkpoint_dir(self, stage: str) -> Path:
        """Where a stage's training checkpoints go while it trains (pretraining: ``checkpoints/pretrain``)."""
        if stage == "original":
            return inside(self.root / "checkpoints" / "pretrain", self.root)
        return inside(self.folder / "checkpoints" / stage, self.root)

    def logs_dir(self, stage: str) -> Path:
        """``logs/<stage>``: the stage's tracking files (TensorBoard event files, ``*_results.json``:
        `hf_unlearn.tracking`), beside ``models/`` and kept when its checkpoints are deleted."""
        return inside((self.root if stage == "original" else self.folder) / "logs" / stage, self.root)

    @property
    def learning_events_path(self) -> Path:
        """Per-sample confidence over pretraining. It ranks the training samples (it picks low_confidence forget
        sets), so it is private run state beside manifest.json, never inside a (shareable) model folder."""
        return inside(self.root / "learning_events.npy", self.root)

    # -------------------------------------------------------------------------------------------------- read
    def record(self, name: str) -> dict[str, Any]:
        """The saved ``stage.json`` of a finished stage."""
        with open(self.stage_dir(name) / "stage.json", encoding="utf-8") as handle:
            return json.load(handle)

    def finished(self, name: str, fingerprint: str) -> dict[str, Any] | None:
        """The record of stage ``name`` when it finished with this fingerprint, else None (it is to be done)."""
        path = self.stage_dir(name) / "stage.json"
        if self.force or not path.is_file():
            return None
        record = self.record(name)
        if record.get("fingerprint") != fingerprint:
            logger.info("Stage %s: settings changed since it was run; redoing it", name)
            return None
        return record

    def has_weights(self, name: str) -> bool:
        return (self.stage_dir(name) / "config.json").is_file()

    # ------------------------------------------------------------------------------------------------- write
    def save(
        self,
        name: str,
        model: Any,
        record: dict[str, Any],
        extra_arrays: dict[str, Any] | None = None,
    ) -> None:
        """Write weights (safetensors, none when ``model`` is None) and ``stage.json`` to a temporary folder, then
        rename it. ``extra_arrays`` (per-sample data) go to the output folder, atomically, never into the model
        folder. Under DDP only the main process writes; the others wait for it."""
        if not is_main_process():
            barrier()
            return
        models_dir = self.stage_dir(name).parent
        models_dir.mkdir(parents=True, exist_ok=True)
        for filename, array in (extra_arrays or {}).items():
            atomic_save_npy(self.root / filename, array)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=models_dir))
        if model is not None:
            model.save_pretrained(tmp)
            match_umask(tmp.glob("*.safetensors"))  # safetensors writes 0600; the folder's other files follow the umask
            self._save_processor(name, model, tmp)
        with open(tmp / "stage.json", "w", encoding="utf-8") as handle:
            json.dump(record, handle, indent=2, default=str)
        final = self.stage_dir(name)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        barrier()  # the other processes read stage.json next

    def _save_processor(self, name: str, model: Any, folder: Path) -> None:
        """The image processor of the run's transform beside the weights; a failure costs the stage nothing else."""
        if self.preprocessing is None:
            return
        from ..models import is_timm_model
        from ..processors import save_processor

        try:
            save_processor(folder, self.preprocessing, None, timm=is_timm_model(model))
        except ValueError as error:
            logger.warning("Stage %s: saved without its image processor (%s)", name, error)

    def save_record(self, name: str, record: dict[str, Any]) -> None:
        """A stage without weights of its own (a given reference): its ``stage.json`` alone, atomically."""
        if is_main_process():
            atomic_write_json(self.stage_dir(name) / "stage.json", record)
        barrier()

    def clean_partial(self) -> None:
        """Remove what a killed run left half-written: `save`'s temporary folders and the atomic writers'
        temporary files, at the top and in each forget set's folder (main process; the others wait)."""
        from accelerate import PartialState  # it also sets up the process group of a launch, if not yet done

        if PartialState().is_main_process:
            for path in [*self.root.glob("models/.*-*"), *self.root.glob("*/models/.*-*")]:
                shutil.rmtree(path, ignore_errors=True)
            for path in [*self.root.glob(".*"), *self.root.glob("*/.*")]:
                if path.is_file() and path.name.startswith(TEMPORARY_PREFIXES):
                    path.unlink(missing_ok=True)
        barrier()  # nobody reads the folder while process 0 cleans it
