"""The recipe's optional ``analysis`` section: a hook that runs inside a run, after each forget set's report.

``analysis: {entanglement: true, landscape: false, embedding: false}`` adds, for every model of the report that
has weights: the global and class-wise entanglement score of its penultimate features on retain vs forget
(``models.<run>.analysis.entanglement`` in report.json), and optionally the loss landscapes on test and forget
(basin ratio etc. in ``models.<run>.analysis.landscape``, contours in ``analysis/<run>_landscape.png``) and a 2-D
embedding of retain vs forget features (``analysis/<run>_embedding.png``); report.md links them (docs/analysis.md).
The hook reads the splits of the run's forget set and the saved model folders: it rebuilds nothing.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from .recipe_schema import AnalysisSection


def analysis_wanted(recipe: dict[str, Any]) -> bool:
    return AnalysisSection.of(recipe).wanted


def analyze_forget_set(
    recipe: dict[str, Any], report: dict[str, Any], run: Any, stage_dir: Any, *, use_cpu: bool
) -> None:
    """Add ``analysis`` to every model entry of ``report`` that has weights (``stage_dir(name)`` holds them).

    ``run`` is the forget set's `hf_unlearn.steps.forget.ForgetSetRun`. Evaluation only, no collectives: the caller
    runs it on the main process alone.
    """
    from .models import load_saved_model
    from .paths import inside

    settings = dataclasses.asdict(AnalysisSection.of(recipe))
    splits = run.splits
    for name, entry in report["models"].items():
        folder = stage_dir(name)
        if not (Path(folder) / "config.json").is_file():
            continue  # a given reference, or a run that diverged before its first checkpoint
        model = load_saved_model(str(folder))
        if not use_cpu:
            model.to("cuda")
        entry["analysis"] = model_analysis(
            model,
            splits.retain,
            splits.forget,
            splits.test,
            settings,
            inside(run.folder / "analysis", run.root),
            name,
        )


def model_analysis(
    model: Any, retain: Any, forget: Any, test: Any, settings: dict[str, Any], folder: Path, run: str
) -> dict[str, Any]:
    """Entanglement (global, class-wise) and optional landscape / embedding of one model; PNGs in ``folder``."""
    from . import plots as plotting
    from .metrics import classwise_entanglement_score, entanglement_score, loss_landscape, penultimate_features

    out: dict[str, Any] = {}
    features = None
    if settings["entanglement"] or settings["embedding"]:
        fr, yr = penultimate_features(model, retain)
        ff, yf = penultimate_features(model, forget)
        features = (fr, yr, ff, yf)
    if settings["entanglement"]:
        fr, yr, ff, yf = features
        out["entanglement"] = {
            "global": entanglement_score(fr, ff),
            "classwise": classwise_entanglement_score(fr, yr, ff, yf),
        }
    if settings["landscape"]:
        lands = {
            name: loss_landscape(
                model,
                data,
                steps=int(settings["landscape_steps"]),
                seed=int(settings["landscape_seed"]),
                max_samples=settings["max_samples"],
            )
            for name, data in (("test", test), ("forget", forget))
        }
        out["landscape"] = {name: land.stats() for name, land in lands.items()}
        folder.mkdir(parents=True, exist_ok=True)
        plotting.plot_loss_landscapes(lands, folder / f"{run}_landscape.png", title=f"{run}: loss landscape")
        out["landscape_png"] = f"analysis/{run}_landscape.png"
    if settings["embedding"]:
        fr, yr, ff, yf = features
        folder.mkdir(parents=True, exist_ok=True)
        plotting.plot_feature_embedding(fr, ff, folder / f"{run}_embedding.png", retain_labels=yr, forget_labels=yf)
        out["embedding_png"] = f"analysis/{run}_embedding.png"
    return out
