"""PNG plots of a run's evidence: ToW per method, accuracy triplets, loss landscapes, feature embeddings.

Every function draws on its own `matplotlib.figure.Figure` with the Agg canvas (no pyplot, no global
backend switch, safe on headless machines and in threads), writes the PNG atomically (a temporary file in
the same folder, then ``os.replace``) and returns the path. Values given as lists (one per seed) are drawn as
their mean with an error bar: the 95% t-interval by default (``error="ci95"``), or the standard deviation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .atomic import atomic_path

ErrorKind = Literal["ci95", "std", "none"]
EmbeddingMethod = Literal["auto", "umap", "tsne"]
SPLITS = ("retain", "forget", "test")


# ------------------------------------------------------------------------------------------ helpers
def save_figure(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Write ``fig`` as a PNG atomically and return the path."""
    path = Path(path)
    FigureCanvasAgg(fig)
    # mkstemp creates 0600; a report's figures are meant to be read
    with atomic_path(path, suffix=".png", mode=0o644) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return path


def _values(value: float | Sequence[float] | None) -> np.ndarray:
    if value is None:
        return np.zeros((0,), dtype=np.float64)
    array = np.atleast_1d(np.asarray(value, dtype=np.float64))
    return array[np.isfinite(array)]


def summarize(value: float | Sequence[float] | None, error: ErrorKind = "ci95") -> tuple[float, float]:
    """(mean, error-bar half width) of one value or of values over seeds; the half width is 0 for one value."""
    values = _values(value)
    if len(values) == 0:
        return float("nan"), 0.0
    mean = float(values.mean())
    if len(values) < 2 or error == "none":
        return mean, 0.0
    std = float(values.std(ddof=1))
    if error == "std":
        return mean, std
    if error != "ci95":
        raise ValueError(f"Unknown error kind {error!r}; use 'ci95', 'std' or 'none'.")
    from scipy import stats

    return mean, float(stats.t.ppf(0.975, len(values) - 1) * std / math.sqrt(len(values)))


def _error_label(error: ErrorKind) -> str:
    labels = {"ci95": "mean ± 95% t-interval over seeds", "std": "mean ± std over seeds", "none": "mean over seeds"}
    return labels[error]


# ------------------------------------------------------------------------------------------- ToW
def plot_tow(
    tow: Mapping[str, float | Sequence[float]],
    path: str | Path,
    *,
    error: ErrorKind = "ci95",
    title: str = "ToW against the retrained model (higher is better)",
) -> Path:
    """Bars of ToW per method (mean over seeds) with error bars, and each seed's value as a dot."""
    names = [n for n in tow if len(_values(tow[n]))]
    if not names:
        raise ValueError("plot_tow needs at least one method with a finite ToW value")
    summaries = [summarize(tow[n], error) for n in names]
    fig = Figure(figsize=(max(5.0, 0.9 * len(names) + 2.0), 4.5))
    ax = fig.subplots()
    x = np.arange(len(names))
    ax.bar(x, [m for m, _ in summaries], yerr=[e for _, e in summaries], capsize=4, color="tab:purple", alpha=0.8)
    for i, n in enumerate(names):
        values = _values(tow[n])
        if len(values) > 1:
            ax.scatter(np.full(len(values), x[i]), values, s=10, color="black", zorder=3)
    pairs = list(zip(names, summaries, strict=True))
    low = min(min(_values(tow[n]).min(), m - e) for n, (m, e) in pairs)
    high = max(max(_values(tow[n]).max(), m + e) for n, (m, e) in pairs)
    ax.set_ylim(max(0.0, low - 0.05), high + 0.02)
    ax.set_xticks(x, names, rotation=35, ha="right")
    ax.set_ylabel("ToW")
    ax.set_title(title)
    if any(len(_values(tow[n])) > 1 for n in names):
        ax.text(0.99, 0.02, _error_label(error), transform=ax.transAxes, ha="right", va="bottom", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_accuracy_triplets(
    accuracies: Mapping[str, Mapping[str, float | Sequence[float]]],
    path: str | Path,
    *,
    error: ErrorKind = "ci95",
    title: str = "Accuracy on retain / forget / test",
) -> Path:
    """Grouped bars of retain / forget / test accuracy per run (``{run: {"retain": a, ...}}``, values or lists)."""
    names = list(accuracies)
    if not names:
        raise ValueError("plot_accuracy_triplets needs at least one run")
    fig = Figure(figsize=(max(6.0, 1.1 * len(names) + 2.0), 4.5))
    ax = fig.subplots()
    width = 0.27
    for k, split in enumerate(SPLITS):
        summaries = [summarize(accuracies[n].get(split), error) for n in names]
        positions = np.arange(len(names)) + (k - 1) * width
        ax.bar(positions, [m for m, _ in summaries], width, yerr=[e for _, e in summaries], capsize=3, label=split)
    ax.set_xticks(np.arange(len(names)), names, rotation=35, ha="right")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.05)
    ax.legend(loc="lower left")
    ax.set_title(title)
    fig.tight_layout()
    return save_figure(fig, path)


# -------------------------------------------------------------------------------- loss landscapes
def plot_loss_landscapes(
    landscapes: Mapping[str, Any],
    path: str | Path,
    *,
    levels: int = 20,
    title: str | None = None,
) -> Path:
    """One contour panel per landscape (e.g. ``{"test": L_test, "forget": L_forget}``), basin ratio in each title.

    Each value needs ``alphas``, ``betas``, ``losses`` (``[len(alphas), len(betas)]``) and ``center_loss``, as
    `hf_unlearn.metrics.LossLandscape` has.
    """
    from hf_unlearn.metrics.landscape import basin_ratio

    names = list(landscapes)
    if not names:
        raise ValueError("plot_loss_landscapes needs at least one landscape")
    fig = Figure(figsize=(5.0 * len(names), 4.3))
    axes = np.atleast_1d(fig.subplots(1, len(names)))
    for ax, name in zip(axes, names, strict=True):
        land = landscapes[name]
        losses = np.asarray(land.losses, dtype=np.float64)
        grid_b, grid_a = np.meshgrid(np.asarray(land.betas), np.asarray(land.alphas))
        shown = np.where(np.isfinite(losses), losses, np.nan)
        contour = ax.contourf(grid_a, grid_b, shown, levels=levels, cmap="viridis")
        ax.contour(grid_a, grid_b, shown, levels=levels, colors="white", linewidths=0.4, alpha=0.6)
        fig.colorbar(contour, ax=ax, label="mean CE")
        ax.plot([0], [0], marker="*", color="red", markersize=10)
        ratio = basin_ratio(losses, land.center_loss)
        ax.set_title(f"{name}: basin {ratio:.2f}, L(w) = {land.center_loss:.3f}")
        ax.set_xlabel("direction 1 (alpha)")
        ax.set_ylabel("direction 2 (beta)")
        ax.set_aspect("equal")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


# ---------------------------------------------------------------------------------- embeddings
def umap_available() -> bool:
    try:
        import umap  # noqa: F401
    except ImportError:
        return False
    return True


def embed_2d(features: Any, method: EmbeddingMethod = "auto", seed: int = 0) -> tuple[np.ndarray, str]:
    """A 2-D embedding of ``[N, D]`` features: UMAP when ``umap-learn`` is installed (``auto``), else t-SNE.

    Returns ``(coords [N, 2], method used)``. Both are seeded.
    """
    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 2 or len(x) < 3:
        raise ValueError(f"embed_2d needs a [N, D] array with N >= 3, got shape {x.shape}")
    if method not in ("auto", "umap", "tsne"):
        raise ValueError(f"Unknown embedding method {method!r}; use 'auto', 'umap' or 'tsne'.")
    if method == "umap" or (method == "auto" and umap_available()):
        import umap

        reducer = umap.UMAP(n_components=2, random_state=seed, n_neighbors=min(15, len(x) - 1))
        return np.asarray(reducer.fit_transform(x)), "umap"
    from sklearn.manifold import TSNE

    perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3.0)))
    tsne = TSNE(n_components=2, random_state=seed, perplexity=perplexity, init="pca")
    return np.asarray(tsne.fit_transform(x)), "t-SNE"


def _subsample(n: int, limit: int | None, rng: np.random.Generator) -> np.ndarray:
    if limit is None or n <= limit:
        return np.arange(n)
    return np.sort(rng.choice(n, size=limit, replace=False))


def plot_feature_embedding(
    retain_features: Any,
    forget_features: Any,
    path: str | Path,
    *,
    retain_labels: Any | None = None,
    forget_labels: Any | None = None,
    method: EmbeddingMethod = "auto",
    seed: int = 0,
    max_retain: int | None = 1500,
    max_forget: int | None = 500,
    title: str | None = None,
) -> Path:
    """A 2-D embedding of retain vs forget features (UMAP if installed, else t-SNE), seeded and subsampled.

    With labels, points are coloured by class: retain as small dots, forget as black-edged crosses, so a forget
    sample sitting in another class's cluster is visible (the paper's UMAP figure). Without labels retain is
    grey and forget red.
    """
    retain = np.asarray(retain_features, dtype=np.float32)
    forget = np.asarray(forget_features, dtype=np.float32)
    rng = np.random.default_rng(seed)
    keep_r = _subsample(len(retain), max_retain, rng)
    keep_f = _subsample(len(forget), max_forget, rng)
    coords, used = embed_2d(np.concatenate([retain[keep_r], forget[keep_f]]), method=method, seed=seed)
    coords_r, coords_f = coords[: len(keep_r)], coords[len(keep_r) :]
    fig = Figure(figsize=(6.5, 5.5))
    ax = fig.subplots()
    if retain_labels is not None and forget_labels is not None:
        labels_r = np.asarray(retain_labels).reshape(-1)[keep_r]
        labels_f = np.asarray(forget_labels).reshape(-1)[keep_f]
        classes = np.union1d(labels_r, labels_f)
        cmap = _class_colormap(len(classes))
        color_of = {c: cmap(i) for i, c in enumerate(classes)}
        ax.scatter(*coords_r.T, s=6, alpha=0.35, c=[color_of[c] for c in labels_r])
        ax.scatter(*coords_f.T, s=28, marker="X", c=[color_of[c] for c in labels_f], edgecolors="black", linewidths=0.5)
        handles = [
            Line2D([], [], linestyle="", marker="o", markersize=4, color="tab:gray", label="retain (colour = class)"),
            Line2D(
                [],
                [],
                linestyle="",
                marker="X",
                markersize=7,
                color="tab:gray",
                markeredgecolor="black",
                label="forget (colour = class)",
            ),
        ]
        ax.legend(handles=handles, loc="best", fontsize=8)
    else:
        ax.scatter(*coords_r.T, s=6, alpha=0.35, color="tab:gray", label="retain")
        ax.scatter(*coords_f.T, s=20, marker="X", color="tab:red", label="forget")
        ax.legend(loc="best", fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or f"{used} of penultimate features: {len(keep_r)} retain, {len(keep_f)} forget")
    fig.tight_layout()
    return save_figure(fig, path)


def _class_colormap(n: int):
    from matplotlib import colormaps

    return colormaps["tab10" if n <= 10 else "tab20" if n <= 20 else "turbo"].resampled(max(n, 1))
