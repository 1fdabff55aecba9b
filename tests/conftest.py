"""Shared test fixtures: offline Hugging Face settings, one torch thread, tiny classifiers, tiny datasets, argument
builders, the one tiny recipe that end-to-end tests run (`tiny_recipe`), and its runs trained once per session
(`baseline`, `all_methods_reference`).

The environment variables are set at import time (before any test module imports transformers or
huggingface_hub, which read them once), and they are *set*, not defaulted: a developer's own
HF_HOME or a missing HF_HUB_OFFLINE must never leak into the tests. OMP_NUM_THREADS=1 reaches the subprocesses
the tests start (the CLI under SIGKILL, torchrun); `torch.set_num_threads(1)` below covers this process.

End-to-end tests (a whole recipe, a subprocess, a DDP launch) carry the ``slow`` marker (pyproject.toml):
``pytest -q -n 2`` runs everything in two processes, as CI does; ``pytest -q -m "not slow"`` is the quick loop.
"""

from __future__ import annotations

import atexit
import copy
import os
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

_HF_HOME = tempfile.mkdtemp(prefix="hf_unlearn_tests_hf_home_")
atexit.register(shutil.rmtree, _HF_HOME, ignore_errors=True)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HOME"] = _HF_HOME
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["OMP_NUM_THREADS"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402


# ----------------------------------------------------------------------------------------------- models
class TinyClassifier(nn.Module):
    """``model(pixel_values=x).logits``: flatten -> Linear -> (BatchNorm1d) -> tanh -> Linear.

    tanh (not ReLU) keeps every gradient entry non-zero, so saliency rankings have no ties.
    """

    def __init__(self, in_features: int = 6, hidden: int = 5, num_labels: int = 3, batchnorm: bool = False) -> None:
        super().__init__()
        self.config = SimpleNamespace(num_labels=num_labels)
        self.fc1 = nn.Linear(in_features, hidden)
        self.bn = nn.BatchNorm1d(hidden) if batchnorm else None
        self.fc2 = nn.Linear(hidden, num_labels)

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None) -> SimpleNamespace:
        h = self.fc1(pixel_values.flatten(1))
        if self.bn is not None:
            h = self.bn(h)
        return SimpleNamespace(logits=self.fc2(torch.tanh(h)))


def make_model(seed: int = 0, **kwargs: Any) -> TinyClassifier:
    torch.manual_seed(seed)
    return TinyClassifier(**kwargs)


def tiny_resnet_config() -> dict[str, Any]:
    """A fresh recipe ``model.config`` for a two-stage transformers ResNet of width 8/16 (digits at 8x8, 1 channel)."""
    return {
        "model_type": "resnet",
        "num_channels": 1,
        "embedding_size": 8,
        "hidden_sizes": [8, 16],
        "depths": [1, 1],
        "layer_type": "basic",
    }


# A one-stage ResNet of width 8 on 120 digits images: the subset-model tests (memorization, shadows) train tens of them.
SUBSET_MODEL: dict[str, Any] = {
    "model_type": "resnet",
    "num_channels": 1,
    "embedding_size": 4,
    "hidden_sizes": [8],
    "depths": [1],
    "layer_type": "basic",
}


def subset_settings(epochs: int) -> dict[str, Any]:
    return {"epochs": epochs, "batch_size": 32, "learning_rate": 0.1, "optim": "sgd", "optim_args": "momentum=0.9"}


@pytest.fixture(scope="module")
def small_digits(tmp_path_factory) -> Path:
    """120 digits images as a save_to_disk folder (one split: the test split is carved from it), a source subset
    models train on in seconds."""
    from hf_unlearn.data import load_digits_dataset

    folder = tmp_path_factory.mktemp("small-digits") / "digits120"
    load_digits_dataset().select(range(120)).save_to_disk(str(folder))
    return folder


def small_digits_recipe(source: Path, name: str, settings: dict[str, Any]) -> dict[str, Any]:
    """A validated recipe of `small_digits` with `SUBSET_MODEL` pretrained with ``settings``."""
    from hf_unlearn.recipe import validate

    return validate(
        {
            "name": name,
            "data": {"source": str(source), "image_size": 8},
            "model": {"config": SUBSET_MODEL},
            "pretrain": settings,
            "unlearn": {"runs": [{"method": "finetune"}]},
        }
    )


# ------------------------------------------------------------------------------------------- the tiny recipe
# Half of digits for training (898 samples), 5% of them forgotten (45): retain has 853 = 4 steps of 256 per epoch.
TINY_RECIPE: dict[str, Any] = {
    "name": "tiny",
    "seed": 0,
    "data": {"source": "digits", "test_size": 0.5, "image_size": 8},
    "forget": {"kind": "low_confidence", "size": 0.05},
    "model": {"config": tiny_resnet_config()},
    "pretrain": {"epochs": 2, "batch_size": 256},
    "retrain": {"epochs": 1},
    "unlearn": {"defaults": {"epochs": 2, "batch_size": 256}, "runs": [{"method": "neggrad", "sharpness": "sam"}]},
    "evaluation": {"mia_shadow_size": 200},
}
TINY_STEPS_PER_EPOCH = 4


def tiny_recipe(**changes: Any) -> dict[str, Any]:
    """A fresh copy of `TINY_RECIPE` with dotted-path changes, e.g. ``tiny_recipe(**{"forget.size": 0})``; a
    number in the path indexes a list (``"unlearn.runs.0.rho"``). Every end-to-end test starts from this recipe."""
    recipe = copy.deepcopy(TINY_RECIPE)
    for dotted, value in changes.items():
        node = recipe
        *parents, last = dotted.split(".")
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return recipe


def write_recipe(folder: Path, recipe: dict[str, Any], name: str = "recipe.yaml") -> Path:
    path = Path(folder) / name
    path.write_text(yaml.safe_dump(recipe))
    return path


def run_cli(folder: Path, recipe: dict[str, Any], out: Path, *extra: str) -> int:
    """``hf-unlearn run RECIPE --output-dir OUT --cpu EXTRA...`` in this process; the exit code."""
    from hf_unlearn.cli import main

    return main(["run", str(write_recipe(folder, recipe)), "--output-dir", str(out), "--cpu", *extra])


# --------------------------------------------------------------------------------------------- datasets
class TensorItems(Dataset):
    """Items ``{"pixel_values": x[i], "labels": y[i]}`` (0-d long); records every index it hands out.

    A test spy, not a second `hf_unlearn.data.TensorImageDataset` (which the benchmarks use): it fetches item by
    item, records ``accessed`` (which samples a trainer read), and exposes no ``labels`` tensor, so trainers see
    its labels only batch by batch (tests/test_labels.py relies on that)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        assert len(x) == len(y)
        self.x = x
        self.y = y.long()
        self.accessed: list[int] = []

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        index = int(index)
        self.accessed.append(index)
        return {"pixel_values": self.x[index].clone(), "labels": self.y[index].clone()}

    def subset(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """The stacked (pixel_values, labels) of ``indices`` (repeats allowed)."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self.x[idx], self.y[idx]


def make_dataset(n: int, seed: int, shape: tuple[int, ...] = (6,), num_labels: int = 3) -> TensorItems:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((n, *shape), generator=g)
    y = torch.randint(num_labels, (n,), generator=g)
    return TensorItems(x, y)


# -------------------------------------------------------------------------------------------- arguments
def make_args(output_dir: str | Path, **overrides: Any):
    """`UnlearnArguments` for exact single-step math: plain SGD, constant lr 0.1, no decay, CPU, quiet."""
    from hf_unlearn.args import UnlearnArguments

    kwargs: dict[str, Any] = dict(
        output_dir=str(output_dir),
        use_cpu=True,
        report_to="none",
        disable_tqdm=True,
        save_strategy="no",
        logging_strategy="no",
        optim="sgd",
        optim_args="momentum=0",
        weight_decay=0.0,
        lr_scheduler_type="constant",
        learning_rate=0.1,
        max_grad_norm=0.0,
        max_steps=1,
        gradient_accumulation_steps=1,
        dataloader_num_workers=0,
        seed=0,
    )
    kwargs.update(overrides)
    return UnlearnArguments(**kwargs)


@pytest.fixture
def args_factory(tmp_path: Path):
    """``args_factory(**overrides)`` -> `UnlearnArguments` writing under this test's tmp dir."""

    def factory(**overrides: Any):
        return make_args(tmp_path / "out", **overrides)

    return factory


@pytest.fixture
def tiny_model() -> TinyClassifier:
    return make_model(seed=0)


@pytest.fixture
def tiny_bn_model() -> TinyClassifier:
    return make_model(seed=0, batchnorm=True)


@pytest.fixture
def retain_dataset() -> TensorItems:
    return make_dataset(8, seed=1)


@pytest.fixture
def forget_dataset() -> TensorItems:
    return make_dataset(4, seed=2)


# ------------------------------------------------------------------------ independent hand computations
# These re-derive the SAM math from method-spec.md A with torch.autograd on a functional copy of the
# model; they never call hf_unlearn, so they can serve as the expected values of the tests.
def weights_of(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def loss_and_grad(model: nn.Module, weights: dict[str, torch.Tensor], loss_fn) -> tuple[torch.Tensor, dict]:
    """Loss and gradient of ``loss_fn(logits_fn)`` at ``weights``; ``logits_fn(x)`` runs the model with them.

    The model's buffers are used (and, in train mode, updated): pass a copy when that matters.
    """
    w = {n: t.detach().clone().requires_grad_(True) for n, t in weights.items()}

    def logits_fn(x: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(model, w, args=(), kwargs={"pixel_values": x}).logits

    loss = loss_fn(logits_fn)
    grads = torch.autograd.grad(loss, list(w.values()))
    return loss.detach(), dict(zip(w, grads, strict=True))


def hand_branch(
    model: nn.Module,
    weights: dict[str, torch.Tensor],
    loss_fn,
    kind: str,
    rho: float,
    direction: str = "min",
    lam: float = 1.0,
    mask: dict[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """One branch's final gradient, by the formulas of method-spec.md A / design.md:

    g0 = grad L(w); eps = rho * T^2 * g0 / ||T * g0|| over the partition (T = |w| for ASAM, else 1);
    g1 = grad L(w + eps); final = (g0 + sign * lam * (g1 - g0)) restricted to the partition.
    """
    m = {n: torch.ones_like(w) if mask is None else mask[n].to(w.dtype) for n, w in weights.items()}
    _, g0 = loss_and_grad(model, weights, loss_fn)
    if kind == "none":
        return {n: g0[n] * m[n] for n in weights}
    t = {n: weights[n].abs() if kind == "asam" else torch.ones_like(weights[n]) for n in weights}
    norm = torch.sqrt(sum(((t[n] * g0[n] * m[n]) ** 2).sum() for n in weights))
    eps = {n: rho * t[n] ** 2 * g0[n] * m[n] / norm for n in weights}
    _, g1 = loss_and_grad(model, {n: weights[n] + eps[n] for n in weights}, loss_fn)
    sign = 1.0 if direction == "min" else -1.0
    return {n: (g0[n] + sign * lam * (g1[n] - g0[n])) * m[n] for n in weights}


def hand_lookahead(
    model: nn.Module, weights: dict[str, torch.Tensor], loss_fn, rho: float, mask: dict[str, torch.Tensor] | None = None
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """What a full SAM step keeps for the cheap SAM: ``d = m (g1 - g0)`` and ``n0 = ||m g0||``, in float64 from
    `hand_branch`'s g0 and g1."""
    m = {n: torch.ones_like(w) if mask is None else mask[n].to(w.dtype) for n, w in weights.items()}
    _, g0 = loss_and_grad(model, weights, loss_fn)
    g1 = hand_branch(model, weights, loss_fn, "sam", rho, "min", 1.0, mask)  # m * g1
    g0m = {n: (g0[n] * m[n]).double() for n in weights}
    d = {n: g1[n].double() - g0m[n] for n in weights}
    return d, torch.sqrt(sum((g0m[n] ** 2).sum() for n in weights))


def hand_cheap_step(
    model: nn.Module,
    weights: dict[str, torch.Tensor],
    loss_fn,
    kept: tuple[dict[str, torch.Tensor], torch.Tensor],
    sign: float,
    mask: dict[str, torch.Tensor] | None = None,
    lam: float = 1.0,
) -> dict[str, torch.Tensor]:
    """The cheap SAM's one-pass gradient: ``g + sign * lam * ||g|| / max(n0, ||d||) * d`` with ``g = m grad L(w)``."""
    d, n0 = kept
    denominator = torch.maximum(n0, torch.sqrt(sum((t.double() ** 2).sum() for t in d.values())))
    m = {n: torch.ones_like(w) if mask is None else mask[n].to(w.dtype) for n, w in weights.items()}
    _, g0 = loss_and_grad(model, weights, loss_fn)
    g = {n: (g0[n] * m[n]).double() for n in weights}
    norm = torch.sqrt(sum((g[n] ** 2).sum() for n in weights))
    return {n: (g[n] + sign * lam * (norm / denominator) * d[n]).to(weights[n].dtype) for n in weights}


def ce_on(x: torch.Tensor, y: torch.Tensor, weight: float = 1.0):
    """``loss_fn`` for `loss_and_grad` / `hand_branch`: ``weight * mean CE`` on (x, y)."""
    import torch.nn.functional as F

    return lambda logits_fn: weight * F.cross_entropy(logits_fn(x).float(), y)


def hand_saliency(model: nn.Module, forget: TensorItems) -> dict[str, torch.Tensor]:
    """|sum over forget samples of grad CE(sample)|, one sample at a time, in eval mode (SalUn's saliency)."""
    import copy

    model = copy.deepcopy(model).eval()
    w = weights_of(model)
    total = {n: torch.zeros_like(t) for n, t in w.items()}
    for i in range(len(forget)):
        _, g = loss_and_grad(model, w, ce_on(forget.x[i : i + 1], forget.y[i : i + 1]))
        for n in total:
            total[n] += g[n]
    return {n: t.abs() for n, t in total.items()}


# ------------------------------------------------------------------------------------ shared end-to-end runs
# Built once per session and shared by test_integrity, test_reliability and test_steps. Each test gets the shared
# folder through a function-scoped wrapper that fails the test if it changed anything there: a test that writes
# (reruns, edits, deletes) works on `copy_of` it.
def copy_of(run: Path, tmp_path: Path) -> Path:
    """A copy of a shared run folder at ``tmp_path / "out"``, for a test that writes into it."""
    out = tmp_path / "out"
    shutil.copytree(run, out)
    return out


def _listing(folder: Path) -> dict[str, tuple[int, int] | None]:
    """Every path under ``folder`` with (size, mtime) for files: what a test may not change in a shared run."""
    return {
        p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else None
        for p in folder.rglob("*")
    }


def _read_only(folder: Path):
    before = _listing(folder)
    yield folder
    if _listing(folder) != before:
        pytest.fail(f"the test changed the shared run {folder}: give it copy_of(...) instead", pytrace=False)


@pytest.fixture(scope="session")
def baseline_run(tmp_path_factory) -> Path:
    """One uninterrupted ``hf-unlearn run`` of `TINY_RECIPE` (in-process): original, retrain and neggrad_sam."""
    folder = tmp_path_factory.mktemp("baseline")
    assert run_cli(folder, TINY_RECIPE, folder / "out") == 0
    return folder / "out"


@pytest.fixture
def baseline(baseline_run: Path):
    """The shared `baseline_run`, read-only."""
    yield from _read_only(baseline_run)


def all_methods_recipe() -> dict[str, Any]:
    """TINY with every run of recipes/digits-all-methods.yaml (plus the official Sharp MinMax), 2 epochs each.

    SCRUB gets ``msteps: 1`` and 4 epochs: its epochs then take 5, 4, 4 and 4 steps, and resuming from the third
    checkpoint (step 13) is where the Trainer's own arithmetic (13 // 5 = epoch 2, 3 batches in) goes wrong."""
    from hf_unlearn.recipe import load_recipe

    path = Path(__file__).resolve().parents[1] / "recipes" / "digits-all-methods.yaml"
    runs = load_recipe(str(path))["unlearn"]["runs"]
    runs = [{**run, "msteps": 1, "epochs": 4} if run["method"] == "scrub" else run for run in runs]
    runs.append({"method": "sharp_minmax", "name": "sharp_minmax_official", "official": True, "mask_ratio": 0.5})
    return tiny_recipe(**{"unlearn.runs": runs, "unlearn.defaults.epochs": 2})


@pytest.fixture(scope="session")
def all_methods_run(baseline_run: Path, tmp_path_factory) -> Path:
    """`all_methods_recipe` run uninterrupted on a copy of `baseline_run` (original and retrain are reused: their
    fingerprints do not depend on the unlearning runs): the reference weights of the resume tests."""
    folder = tmp_path_factory.mktemp("all_methods")
    out = folder / "out"
    shutil.copytree(baseline_run, out)
    assert run_cli(folder, all_methods_recipe(), out) == 0
    return out


@pytest.fixture
def all_methods_reference(all_methods_run: Path):
    """The shared `all_methods_run`, read-only."""
    yield from _read_only(all_methods_run)


# Fixtures that train end to end (a whole recipe, model folders, a two-process launch): every test that uses one is
# `slow`, so ``-m "not slow"`` never builds them. Tests that run a recipe themselves carry the marker.
END_TO_END_FIXTURES = frozenset(
    {
        "all_methods_reference",
        "all_methods_run",
        "baseline",
        "baseline_run",
        "ddp",
        "no_reference_run",
        "pushed_run",
        "study",
        "tiny_run",
        "two_seeds",
        "user_files",
    }
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if END_TO_END_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """One intra-op thread for the whole session. Tiny models gain nothing from more, and on a busy 2-core machine
    OpenMP's spinning barriers made a tiny recipe run 6x slower in wall time (4.0 s on one thread, 24.6 s on two,
    measured while other jobs ran). Bit-identical comparisons between runs also need one thread count everywhere.
    A test that needs another count sets it and restores it (test_memorization)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
