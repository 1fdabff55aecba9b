"""The transformers internals hf_unlearn still relies on, checked against the installed transformers.

hf_unlearn extends the Trainer through public hooks where transformers offers them (callbacks, ``train``,
``create_optimizer``, ``get_train_dataloader``, ...). What remains private, and why:

* ``Trainer._init_training_state``, overridden by `ScrubTrainer`: the epoch and the position a resumed run restarts
  from are locals of the Trainer's loop, computed there for epochs of equal length; SCRUB's are not.
* ``Trainer._prepare_inputs``, called by `UnlearnTrainer.training_step` / ``prediction_step`` (device placement of
  nested batches, as the Trainer's own steps do).
* ``Trainer._train_batch_size``, read by `ScrubTrainer.get_train_dataloader` (the per-device batch size the
  Trainer's own dataloader uses, which ``auto_find_batch_size`` changes).
* ``PreTrainedModel.post_init`` initialising only modules not yet initialised, which
  `CifarResNetForImageClassification` (hf_unlearn.remote_code) relies on to give its new stem convolution the ResNet's
  own init without redrawing the rest.

``Trainer.set_initial_training_values`` is public but returns a bare 7-tuple; `ScrubTrainer` reads it by name
(`TrainingValues`), checked here against the names the Trainer itself unpacks.

Each test fails with a message naming the hook and what to re-check, instead of a run silently training on the
wrong schedule or resuming in the wrong place.
"""

from __future__ import annotations

import ast
import copy
import importlib
import inspect
import pkgutil
import textwrap

import torch
from conftest import make_args, make_dataset, make_model, weights_of
from transformers import Trainer, TrainerCallback

import hf_unlearn.trainers
from hf_unlearn.checkpoints import StageCheckpoints, train_resumable
from hf_unlearn.trainers.scrub import ScrubTrainer, TrainingValues
from hf_unlearn.trainers.sharp_minmax import RETAIN_OPTIMIZER_NAME, SharpMinMaxTrainer

# The private Trainer methods hf_unlearn's trainers may override, each guarded by a test below.
GUARDED_OVERRIDES = {"_init_training_state"}


def _parameters(function) -> list[str]:
    return list(inspect.signature(function).parameters)


def _calls_in_trainer(method: str) -> list[ast.Assign]:
    """Every ``<names> = self.<method>(...)`` in the Trainer's source."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(Trainer)))
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Call)
        and isinstance(node.value.func, ast.Attribute)
        and node.value.func.attr == method
        and isinstance(node.value.func.value, ast.Name)
        and node.value.func.value.id == "self"
    ]


def _target_names(assign: ast.Assign) -> list[str]:
    target = assign.targets[0]
    elements = target.elts if isinstance(target, ast.Tuple) else [target]
    return [e.id if isinstance(e, ast.Name) else ast.unparse(e) for e in elements]


def test_set_initial_training_values_returns_the_names_scrub_reads() -> None:
    recheck = "re-check hf_unlearn.trainers.scrub.TrainingValues and ScrubTrainer.set_initial_training_values"
    assert _parameters(Trainer.set_initial_training_values) == ["self", "args", "dataloader"], (
        f"transformers changed the signature of Trainer.set_initial_training_values: {recheck}."
    )
    calls = _calls_in_trainer("set_initial_training_values")
    assert calls, f"the Trainer no longer calls self.set_initial_training_values(...): {recheck} (SCRUB's schedule)."
    for call in calls:
        assert _target_names(call) == list(TrainingValues._fields), (
            f"the Trainer now unpacks set_initial_training_values as {_target_names(call)}, not "
            f"{list(TrainingValues._fields)}: {recheck}."
        )


def test_init_training_state_is_the_hook_scrub_overrides() -> None:
    recheck = "re-check ScrubTrainer._init_training_state (where a resumed SCRUB run restarts)"
    expected = [
        "self",
        "max_steps",
        "num_update_steps_per_epoch",
        "num_train_epochs",
        "resume_from_checkpoint",
        "trial",
    ]
    assert hasattr(Trainer, "_init_training_state"), f"Trainer._init_training_state is gone: {recheck}."
    assert _parameters(Trainer._init_training_state) == expected, (
        f"transformers changed Trainer._init_training_state's signature to {_parameters(Trainer._init_training_state)}: "
        f"{recheck}."
    )
    assert _parameters(ScrubTrainer._init_training_state) == expected
    calls = _calls_in_trainer("_init_training_state")
    assert calls, f"the Trainer no longer calls self._init_training_state(...), so the override is dead: {recheck}."
    for call in calls:
        assert _target_names(call) == ["epochs_trained", "steps_trained_in_current_epoch"], (
            f"the Trainer now reads _init_training_state's result as {_target_names(call)}: {recheck}."
        )
        assert [ast.unparse(a) for a in call.value.args] == expected[1:] and not call.value.keywords, (
            f"the Trainer now calls _init_training_state({ast.unparse(call.value)[len('self._init_training_state(') :]}"
            f": {recheck}."
        )


def test_prepare_inputs_takes_the_batch() -> None:
    assert _parameters(Trainer._prepare_inputs) == ["self", "inputs"], (
        "transformers changed Trainer._prepare_inputs: re-check UnlearnTrainer.training_step and prediction_step "
        "(hf_unlearn.trainers.base), which call it to move a (nested) batch to the device."
    )


def test_train_batch_size_is_what_the_trainer_builds_its_dataloader_with() -> None:
    assert "self._train_batch_size" in inspect.getsource(Trainer.get_train_dataloader), (
        "Trainer.get_train_dataloader no longer uses self._train_batch_size: re-check "
        "ScrubTrainer.get_train_dataloader (hf_unlearn.trainers.scrub), which reads it for its phase batches."
    )


def test_a_second_post_init_initialises_only_new_modules() -> None:
    """The CIFAR-stem ResNet swaps the stem convolution after the ResNet is built and calls post_init again: the
    new convolution gets the ResNet's Kaiming init and every other weight stays what the seed drew."""
    from transformers import ResNetConfig, ResNetForImageClassification

    from hf_unlearn.remote_code.configuration_cifar_resnet import CifarResNetConfig
    from hf_unlearn.remote_code.modeling_cifar_resnet import CifarResNetForImageClassification

    settings = {"num_channels": 3, "embedding_size": 8, "hidden_sizes": [8, 16], "depths": [1, 1], "num_labels": 3}
    torch.manual_seed(0)
    plain = ResNetForImageClassification(ResNetConfig(**settings))
    torch.manual_seed(0)
    cifar = CifarResNetForImageClassification(CifarResNetConfig(**settings))
    stem = "resnet.embedder.embedder.convolution.weight"
    recheck = "re-check hf_unlearn/remote_code/modeling_cifar_resnet.py (its second post_init)"
    for name, value in plain.state_dict().items():
        if name != stem:
            assert torch.equal(value, cifar.state_dict()[name]), f"post_init redrew {name}: {recheck}."
    conv = cifar.state_dict()[stem]
    assert conv.shape == (8, 3, 3, 3) and 0.7 < float(conv.std()) / (2 / (8 * 9)) ** 0.5 < 1.3, (
        f"the new stem convolution no longer gets the ResNet's Kaiming fan-out init: {recheck}."
    )


def test_no_trainer_overrides_an_unguarded_private_trainer_method() -> None:
    """A new override of a private Trainer method needs a public alternative, or a guard here."""
    for info in pkgutil.iter_modules(hf_unlearn.trainers.__path__, "hf_unlearn.trainers."):
        module = importlib.import_module(info.name)
        for cls in vars(module).values():
            if not (inspect.isclass(cls) and issubclass(cls, Trainer)):
                continue
            for base in cls.__mro__:
                if not base.__module__.startswith("hf_unlearn"):
                    continue
                private = {
                    name
                    for name in vars(base)
                    if name.startswith("_") and not name.startswith("__") and hasattr(Trainer, name)
                }
                assert private <= GUARDED_OVERRIDES, (
                    f"{base.__qualname__} overrides private Trainer methods {sorted(private - GUARDED_OVERRIDES)}: "
                    "use a public hook (a callback, a public method), or add a signature test to "
                    "tests/test_trainer_hooks.py and the name to GUARDED_OVERRIDES."
                )


# ------------------------------------------------- the official Sharp MinMax's retain optimizer, through callbacks
def _official(output_dir, model_seed: int, **overrides) -> SharpMinMaxTrainer:
    args = make_args(
        output_dir,
        method="sharp_minmax",
        official=True,
        mask_ratio=0.3,
        alpha=0.6,
        optim_args="momentum=0.9",  # the retain optimizer then has state to save
        per_device_train_batch_size=4,
        save_strategy="steps",
        save_steps=1,
        max_steps=3,
        **overrides,
    )
    return SharpMinMaxTrainer(
        model=make_model(seed=model_seed),
        args=args,
        retain_dataset=make_dataset(4, seed=71),
        forget_dataset=make_dataset(2, seed=72),
    )


def _momenta(state: dict) -> list[torch.Tensor]:
    return [state["state"][k]["momentum_buffer"] for k in sorted(state["state"])]


def test_official_sharp_minmax_saves_its_retain_optimizer_and_resumes_exactly(tmp_path) -> None:
    out = tmp_path / "out"
    trainer = _official(out, model_seed=70)
    checkpoints = StageCheckpoints(out, "sharp_minmax", "fingerprint")
    assert train_resumable(trainer, checkpoints) is None
    # A checkpoint without the file (killed between the Trainer's save and the callback's) is incomplete.
    assert RETAIN_OPTIMIZER_NAME in checkpoints.extra_files
    last = out / "checkpoint-3"
    saved = torch.load(last / RETAIN_OPTIMIZER_NAME, weights_only=True)
    for a, b in zip(_momenta(saved), _momenta(trainer.retain_optimizer.state_dict()), strict=True):
        assert torch.equal(a, b)
    assert checkpoints.is_complete(last)
    (last / RETAIN_OPTIMIZER_NAME).rename(tmp_path / "moved.pt")
    assert not checkpoints.is_complete(last)

    # Resumed from step 1 by a new trainer: the retain optimizer is checkpoint-1's before the first step, and
    # the weights end bit-identical to the uninterrupted run's.
    resumed = _official(out, model_seed=70)  # the same model: the same saliency mask
    seen: list[dict] = []

    class RetainStateAtStart(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            seen.append(copy.deepcopy(resumed.retain_optimizer.state_dict()))  # SGD updates in place

    resumed.add_callback(RetainStateAtStart())
    resumed.train(resume_from_checkpoint=str(out / "checkpoint-1"))
    at_step_1 = torch.load(out / "checkpoint-1" / RETAIN_OPTIMIZER_NAME, weights_only=True)
    assert len(seen) == 1 and len(_momenta(seen[0])) == len(_momenta(at_step_1)) > 0
    for a, b in zip(_momenta(seen[0]), _momenta(at_step_1), strict=True):
        assert torch.equal(a, b)
    expected, got = weights_of(trainer.model), weights_of(resumed.model)
    assert all(torch.equal(expected[n], got[n]) for n in expected)
    assert resumed.resumed_from is None  # only while training
