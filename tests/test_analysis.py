"""Analysis metrics (entanglement, loss landscape, penultimate features) on cases with known answers; plots."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import make_dataset, make_model

from hf_unlearn import plots
from hf_unlearn.metrics import (
    LossLandscape,
    basin_ratio,
    classwise_entanglement_score,
    classwise_entanglement_scores,
    entanglement_score,
    landscape_directions,
    landscape_stats,
    loss_landscape,
    penultimate_features,
)
from hf_unlearn.metrics.landscape import grid_coordinates

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Two clusters in 2-D: R = {(-1, 0), (1, 0)} around (0, 0), F = {(4, 1), (4, -1)} around (4, 0).
# Within-set spread: mean ||x - mu_R||^2 = 1 and mean ||x - mu_F||^2 = 1, so the numerator is 2.
R_POINTS = np.array([[-1.0, 0.0], [1.0, 0.0]])
F_POINTS = np.array([[4.0, 1.0], [4.0, -1.0]])


# ------------------------------------------------------------------------------------ entanglement
def test_entanglement_two_clusters_equal_sizes():
    # Pooled mean (2, 0): ||mu_R - mu||^2 = 4 = ||mu_F - mu||^2 -> denominator 0.5 * (4 + 4) = 4 -> ES = 2 / 4.
    assert entanglement_score(R_POINTS, F_POINTS) == pytest.approx(0.5)


def test_entanglement_pooled_mean_is_weighted_by_set_size():
    retain = np.repeat(R_POINTS, 3, axis=0)  # 6 retain points, same spread 1
    # Pooled mean = (6 * (0, 0) + 2 * (4, 0)) / 8 = (1, 0): ||mu_R - mu||^2 = 1, ||mu_F - mu||^2 = 9
    # -> denominator 0.5 * (1 + 9) = 5 -> ES = 2 / 5.
    assert entanglement_score(retain, F_POINTS) == pytest.approx(0.4)


def test_entanglement_is_raw_ratio_invariant_to_shift_and_scale():
    rng = np.random.default_rng(0)
    retain, forget = rng.normal(size=(30, 5)), rng.normal(loc=0.7, size=(10, 5))
    base = entanglement_score(retain, forget)
    assert entanglement_score(3.0 * retain + 2.0, 3.0 * forget + 2.0) == pytest.approx(base)
    # Farther apart -> less entangled; no 1300 scaling and no clipping to [0, 1].
    assert entanglement_score(retain, forget + 5.0) < base
    assert entanglement_score(retain, forget) > 1.0


def test_entanglement_rejects_bad_shapes():
    with pytest.raises(ValueError, match="retain"):
        entanglement_score(np.zeros((0, 2)), F_POINTS)
    with pytest.raises(ValueError, match="dimensions"):
        entanglement_score(R_POINTS, np.zeros((2, 3)))


def test_classwise_entanglement_is_weighted_by_class_size():
    # Class 0: the equal-size example (ES 0.5, 2 + 2 samples); class 1: the 6-vs-2 example shifted (ES 0.4,
    # 6 + 2 samples); class 2 has no forget samples and is left out.
    shift = np.array([0.0, 10.0])
    retain = np.concatenate([R_POINTS, np.repeat(R_POINTS, 3, axis=0) + shift, [[7.0, 7.0]]])
    retain_labels = np.array([0, 0] + [1] * 6 + [2])
    forget = np.concatenate([F_POINTS, F_POINTS + shift])
    forget_labels = np.array([0, 0, 1, 1])
    per_class = classwise_entanglement_scores(retain, retain_labels, forget, forget_labels)
    assert set(per_class) == {0, 1}
    assert per_class[0] == (pytest.approx(0.5), 4)
    assert per_class[1] == (pytest.approx(0.4), 8)
    expected = (0.5 * 4 + 0.4 * 8) / 12
    assert classwise_entanglement_score(retain, retain_labels, forget, forget_labels) == pytest.approx(expected)
    # min_per_set = 3 excludes both classes (2 forget samples each): no class qualifies.
    assert math.isnan(classwise_entanglement_score(retain, retain_labels, forget, forget_labels, min_per_set=3))


# ---------------------------------------------------------------------------------------- basin ratio
def test_basin_ratio_only_center_inside():
    # Center 0, ring of 1s: std = sqrt(8/81) ~ 0.314, half of it ~ 0.157 < 1 -> only the center: 1 / 9.
    grid = np.ones((3, 3))
    grid[1, 1] = 0.0
    assert basin_ratio(grid, 0.0) == pytest.approx(100.0 / 9.0)


def test_basin_ratio_three_levels():
    # 25 points: center 0, 20 points at 0.1, 4 points at 10.
    # mean = (20 * 0.1 + 4 * 10) / 25 = 1.68; E[L^2] = (20 * 0.01 + 4 * 100) / 25 = 16.008
    # std = sqrt(16.008 - 1.68^2) = sqrt(13.1856) ~ 3.631 -> threshold ~ 1.816: center + the 20 near points.
    grid = np.full((5, 5), 0.1)
    grid[2, 2] = 0.0
    grid[0, :4] = 10.0
    assert basin_ratio(grid, 0.0) == pytest.approx(84.0)


def test_basin_ratio_flat_and_non_finite():
    assert basin_ratio(np.full((4, 4), 2.5), 2.5) == pytest.approx(100.0)
    grid = np.full((2, 2), 1.0)
    grid[0, 0] = np.inf  # a diverged point is outside the basin and left out of the std
    assert basin_ratio(grid, 1.0) == pytest.approx(75.0)


def test_landscape_stats_on_known_grids():
    alphas = np.array([-1.0, 0.0, 1.0])
    betas = np.array([-0.5, 0.0, 0.5])
    plane = 2.0 * alphas[:, None] + 3.0 * betas[None, :]  # grad = (2, 3) everywhere
    stats = landscape_stats(plane, 0.0, alphas, betas)
    assert stats["grad_norm"] == pytest.approx(math.sqrt(13.0))
    assert stats["variability"] == pytest.approx(np.std(plane))
    # Stability: within 10 / 25 / 50 / 75 % of L_center = 1.
    grid = np.array([[1.0, 1.05, 1.2], [1.4, 1.7, 3.0]])
    profile = landscape_stats(grid, 1.0)["stability"]
    assert profile == {
        "10": pytest.approx(100 * 2 / 6),
        "25": pytest.approx(100 * 3 / 6),
        "50": pytest.approx(100 * 4 / 6),
        "75": pytest.approx(100 * 5 / 6),
    }


def test_grid_coordinates_have_an_exact_center():
    coords = grid_coordinates(25, 1.0)
    assert coords[12] == 0.0 and coords[0] == -1.0 and coords[-1] == 1.0 and len(coords) == 25
    assert np.allclose(np.diff(grid_coordinates(4, 2.0)), 4.0 / 3.0)


# ------------------------------------------------------------------------------------ landscape scan
def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_directions_are_seeded_and_layer_normalised():
    model = make_model(seed=0, batchnorm=True)
    weights = _weights(model)
    d1, d2 = landscape_directions(model, seed=7)
    e1, e2 = landscape_directions(model, seed=7)
    f1, _ = landscape_directions(model, seed=8)
    for name, w in weights.items():
        assert torch.equal(d1[name], e1[name]) and torch.equal(d2[name], e2[name])
        if w.dim() >= 2:
            assert not torch.equal(d1[name], f1[name])
            for d in (d1, d2):  # per-layer normalisation: each direction tensor has its parameter's norm
                assert torch.linalg.vector_norm(d[name]).item() == pytest.approx(torch.linalg.vector_norm(w).item())
            assert torch.dot(d1[name].reshape(-1), d2[name].reshape(-1)).item() == pytest.approx(0.0, abs=1e-5)
        else:  # 1-d (biases, BatchNorm): not moved by default
            assert not d1[name].any() and not d2[name].any()
    assert torch.linalg.vector_norm(torch.cat([d1[n].reshape(-1) for n in weights])).item() > 0


def test_directions_one_d_options():
    model = make_model(seed=0, batchnorm=True)
    weights = _weights(model)
    layer1, layer2 = landscape_directions(model, seed=3, one_d="layer")
    official1, _ = landscape_directions(model, seed=3, one_d="official")
    zero1, _ = landscape_directions(model, seed=3, one_d="zero")
    one_d = [n for n, w in weights.items() if w.dim() < 2]
    assert one_d  # biases and BatchNorm affine parameters
    share = 0.0
    for name in one_d:
        norm = torch.linalg.vector_norm(weights[name]).item()
        assert torch.linalg.vector_norm(layer1[name]).item() == pytest.approx(norm)
        assert torch.dot(layer1[name], layer2[name]).item() == pytest.approx(0.0, abs=1e-5)
        assert official1[name].any()
        share += torch.linalg.vector_norm(official1[name]).item() ** 2
    assert share < 1.0  # the official 1-d parameters keep their share of a unit-norm vector
    for name, w in weights.items():  # >= 2-d tensors are the same in every mode
        if w.dim() >= 2:
            assert torch.allclose(layer1[name], official1[name]) and torch.allclose(zero1[name], official1[name])
    with pytest.raises(ValueError, match="one_d"):
        landscape_directions(model, one_d="bias")


def test_loss_landscape_values_and_exact_restore():
    model = make_model(seed=0, batchnorm=True)
    data = make_dataset(10, seed=4)
    with torch.no_grad():  # non-trivial BatchNorm statistics
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 1.5)
    model.train()
    model.fc1.eval()  # a mixed train/eval state that must survive
    state = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]

    land = loss_landscape(model, data, steps=5, span=0.5, seed=11, batch_size=4)

    after = model.state_dict()
    assert all(torch.equal(state[k], after[k]) for k in state)  # bit-exact, buffers included
    assert [m.training for m in model.modules()] == modes
    assert isinstance(land, LossLandscape) and land.losses.shape == (5, 5)
    assert land.alphas.tolist() == [-0.5, -0.25, 0.0, 0.25, 0.5]

    # Independent evaluation at a few grid points: eval-mode mean CE at w + a * d1 + b * d2.
    d1, d2 = landscape_directions(model, seed=11)
    x, y = data.x, data.y
    reference = make_model(seed=0, batchnorm=True)
    reference.load_state_dict(state)
    reference.eval()
    for i, j in [(2, 2), (0, 4), (3, 1)]:
        a, b = land.alphas[i], land.betas[j]
        moved = {n: w + a * d1[n] + b * d2[n] for n, w in _weights(reference).items()}
        with torch.no_grad():
            logits = torch.func.functional_call(reference, moved, args=(), kwargs={"pixel_values": x}).logits
        assert land.losses[i, j] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
    assert land.center_loss == land.losses[2, 2]
    # Seeded: the same scan again gives the same grid; subsampling is seeded too.
    again = loss_landscape(model, data, steps=5, span=0.5, seed=11, batch_size=4)
    assert np.array_equal(land.losses, again.losses)
    sub1 = loss_landscape(model, (x, y), steps=3, max_samples=6, sample_seed=1)
    sub2 = loss_landscape(model, (x, y), steps=3, max_samples=6, sample_seed=1)
    assert np.array_equal(sub1.losses, sub2.losses) and sub1.settings["num_samples"] == 6
    assert 0.0 < land.basin_ratio <= 100.0 and land.stats()["basin_ratio"] == land.basin_ratio


# ------------------------------------------------------------------------------------------- features
def _check_features(features: np.ndarray, n: int, dim: int) -> None:
    assert features.shape == (n, dim) and features.dtype == np.float32
    assert np.allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-5)


def _hf_model(model_type: str, **settings):
    from transformers import AutoConfig, AutoModelForImageClassification

    torch.manual_seed(0)
    config = AutoConfig.for_model(model_type, num_labels=3, **settings)
    return AutoModelForImageClassification.from_config(config)


def test_features_hf_resnet_match_the_pooler():
    model = _hf_model(
        "resnet", num_channels=1, embedding_size=8, hidden_sizes=[8, 12], depths=[1, 1], layer_type="basic"
    )
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    data = make_dataset(7, seed=0, shape=(1, 16, 16))
    features, labels = penultimate_features(model, data, batch_size=3)
    _check_features(features, 7, 12)
    assert np.array_equal(labels, data.y.numpy())
    pooled, _ = penultimate_features(model, data, module="resnet.pooler")  # the official avgpool choice
    assert np.allclose(features, pooled, atol=1e-6)
    assert model.training and all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    raw, none = penultimate_features(model, data.x, normalize=False)
    assert none is None and np.allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), features, atol=1e-5)


def test_features_hf_vit_is_the_classifier_input():
    model = _hf_model(
        "vit",
        image_size=16,
        patch_size=8,
        num_channels=1,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
    )
    x = make_dataset(5, seed=1, shape=(1, 16, 16)).x
    features, _ = penultimate_features(model, x)
    _check_features(features, 5, 16)
    model.eval()
    with torch.no_grad():  # the layer-normed CLS token is what ViT's classifier reads
        cls = model.vit(pixel_values=x).last_hidden_state[:, 0]
        assert torch.allclose(model.classifier(cls), model(pixel_values=x).logits, atol=1e-5)
    assert np.allclose(features, F.normalize(cls, dim=1).numpy(), atol=1e-5)


def test_features_timm_models():
    import timm
    from transformers import TimmWrapperConfig, TimmWrapperForImageClassification

    torch.manual_seed(0)
    wrapped = TimmWrapperForImageClassification(
        TimmWrapperConfig(architecture="test_resnet", num_labels=3, model_args={"in_chans": 1})
    )
    x = make_dataset(4, seed=2, shape=(1, 32, 32)).x
    pre_logits, _ = penultimate_features(wrapped, x)
    hooked, _ = penultimate_features(wrapped, x, strategy="hook")
    dim = wrapped.timm_model.num_features
    _check_features(pre_logits, 4, dim)
    assert np.allclose(pre_logits, hooked, atol=1e-5)  # timm's pre-logits are the input of its final Linear
    plain = timm.create_model("test_resnet", pretrained=False, num_classes=3, in_chans=1)  # called as model(x)
    features, _ = penultimate_features(plain, x, strategy="hook")
    _check_features(features, 4, plain.num_features)
    with pytest.raises(ValueError, match="not a timm model"):
        penultimate_features(make_model(), torch.zeros(2, 6), strategy="timm")


def test_features_generic_module_uses_final_linear_input():
    model = make_model(seed=0)  # fc1 -> tanh -> fc2 (3 outputs): features = tanh(fc1(x))
    x = torch.randn(6, 6)
    features, _ = penultimate_features(model, x)
    with torch.no_grad():
        expected = F.normalize(torch.tanh(model.fc1(x)), dim=1).numpy()
    assert np.allclose(features, expected, atol=1e-6)


# ----------------------------------------------------------------------------------------------- plots
def _assert_png(path, folder) -> None:
    assert path.is_file() and path.read_bytes()[:8] == PNG_SIGNATURE
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_summarize_t_interval():
    mean, half = plots.summarize([1.0, 2.0, 3.0])
    assert mean == pytest.approx(2.0)
    assert half == pytest.approx(4.302652729911275 / math.sqrt(3.0))  # t_{0.975, 2} * s / sqrt(n), s = 1
    assert plots.summarize([0.5]) == (0.5, 0.0)
    assert plots.summarize([1.0, 3.0], error="std")[1] == pytest.approx(math.sqrt(2.0))


def test_plots_write_png_files(tmp_path):
    tow = {"finetune": [0.90, 0.92, 0.91], "neggrad": [0.95], "sharp_minmax": [0.97, 0.96, 0.975]}
    _assert_png(plots.plot_tow(tow, tmp_path / "tow.png"), tmp_path)
    accuracies = {
        "neggrad": {"retain": [0.99, 0.98], "forget": [0.8, 0.7], "test": 0.9},
        "retrain": {"retain": 1.0, "forget": 0.75, "test": 0.91},
    }
    _assert_png(plots.plot_accuracy_triplets(accuracies, tmp_path / "accuracy.png"), tmp_path)
    alphas = grid_coordinates(5)
    bowl = alphas[:, None] ** 2 + alphas[None, :] ** 2
    landscapes = {
        name: LossLandscape(alphas, alphas.copy(), scale * bowl + 0.1, 0.1)
        for name, scale in (("test", 1.0), ("forget", 3.0))
    }
    _assert_png(plots.plot_loss_landscapes(landscapes, tmp_path / "landscape.png"), tmp_path)


def test_feature_embedding_plot(tmp_path):
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    retain = rng.normal(size=(30, 8))
    forget = rng.normal(loc=1.0, size=(10, 8))
    with threadpool_limits(1):  # t-SNE's OpenMP threads crawl on a loaded machine; the sizes here are tiny
        path = plots.plot_feature_embedding(
            retain,
            forget,
            tmp_path / "sub" / "embedding.png",
            retain_labels=rng.integers(0, 3, 30),
            forget_labels=rng.integers(0, 3, 10),
            method="tsne",
            max_retain=20,
            max_forget=6,
        )
        coords, used = plots.embed_2d(retain[:12], method="tsne", seed=1)
        again, _ = plots.embed_2d(retain[:12], method="tsne", seed=1)
    _assert_png(path, tmp_path / "sub")
    assert coords.shape == (12, 2) and used == "t-SNE" and np.allclose(coords, again)
