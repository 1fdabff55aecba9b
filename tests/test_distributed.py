"""Distributed semantics (design.md "Distributed and precision rules"), checked with 2 gloo processes on CPU.

One launch (`torchrun --standalone --nproc_per_node 2 tests/ddp_worker.py OUT`) runs every multi-process job
(startup costs ~10 s); the tests read the JSON it writes. Checked for neggrad (SAM), sharp_minmax (ASAM),
SCRUB (SAM, when registered) and finetune (none / SAM):

* after every optimizer step, every parameter *and buffer* is bit-identical on both processes;
* exactly one all-reduce (hf_unlearn's, of the composed gradient) per optimizer step;
* 2 processes x batch 4 equal 1 process x batch 4 with gradient accumulation 2 (sharpness none and SAM:
  each process perturbs with its own gradient, like each micro-batch does), which differs from a
  whole-batch SAM step;
* SCRUB's teacher is not wrapped in DDP and does not change;
* a whole recipe (`Pipeline.run`, as `accelerate launch -m hf_unlearn.cli run` runs it) finishes in 2 processes,
  which agree on the report, and only the main process writes the stages.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import ddp_worker
import pytest
import torch
from conftest import make_args, make_dataset, make_model

from hf_unlearn.trainers import get_trainer_class

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
CONFIGS = REPO / "accelerate_configs"

EXPECTED_JOBS = {"neggrad_sam", "sharp_minmax_asam", "scrub_sam", *ddp_worker.COMPARED}
# (plus "pipeline": a whole recipe, and "mask_broadcast", checked separately)


@pytest.fixture(scope="module")
def ddp(tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS)])}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(TESTS / "ddp_worker.py"),
        str(out),
    ]
    proc = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"2-process launch failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    with open(out / "results.json", encoding="utf-8") as handle:
        return json.load(handle), out


def test_two_gloo_processes_ran_every_job_under_ddp(ddp) -> None:
    results, _ = ddp
    assert results["world_size"] == 2
    assert set(results["jobs"]) == EXPECTED_JOBS | {"pipeline", "mask_broadcast", "evaluation"}
    for name in EXPECTED_JOBS:
        job = results["jobs"][name]
        assert job["wrapped"] == "DistributedDataParallel", name
        assert job["distributed_type"] == "DistributedType.MULTI_CPU" and job["num_processes"] == 2, name
        assert len(job["steps"]) == ddp_worker.STEPS, name
        assert job["moved"] > 1e-3, f"{name}: the weights did not move"
        if job["retain_seen"] == [[], []]:
            continue  # DataLoader workers fetched the items: the main process saw none
        # The two processes trained on different samples (else identical weights would prove nothing).
        first_batches = [seen[:4] for seen in job["retain_seen"]]
        assert not set(first_batches[0]) & set(first_batches[1]), name


@pytest.mark.parametrize("job", sorted(EXPECTED_JOBS))
def test_replicas_are_bit_identical_after_every_step(ddp, job: str) -> None:
    steps = ddp[0]["jobs"][job]["steps"]
    for step in steps:
        assert step["identical"], f"{job}: parameters or buffers differ across processes after step {step['step']}"
        assert step["max_abs_diff"] == 0.0


@pytest.mark.parametrize("job", sorted(EXPECTED_JOBS))
def test_one_gradient_all_reduce_per_optimizer_step(ddp, job: str) -> None:
    assert [s["all_reduces"] for s in ddp[0]["jobs"][job]["steps"]] == [1] * ddp_worker.STEPS


def _one_process_with_accumulation(tmp_path, job: str, **extra):
    method, seed, overrides = ddp_worker.COMPARED[job]
    retain, forget = ddp_worker.datasets(ddp_worker.TINY_SHAPE)
    model = ddp_worker.compared_model(seed, overrides)
    overrides = {k: v for k, v in overrides.items() if k != "unused_parameter"}
    settings = {**ddp_worker.COMMON, **overrides, **extra}
    settings.setdefault("gradient_accumulation_steps", 2)
    args = make_args(tmp_path / job, method=method, **settings)
    get_trainer_class(method)(model=model, args=args, retain_dataset=retain, forget_dataset=forget).train()
    return model, retain.accessed


@pytest.mark.parametrize("job", sorted(ddp_worker.COMPARED))
def test_two_processes_equal_one_process_with_gradient_accumulation_2(ddp, tmp_path, job: str) -> None:
    results, out = ddp
    model, accessed = _one_process_with_accumulation(tmp_path, job)
    if job.startswith("finetune"):
        # Same samples per step: micro-batch 2k is process 0's k-th batch, micro-batch 2k+1 process 1's.
        seen = results["jobs"][job]["retain_seen"]
        for step in range(ddp_worker.STEPS):
            assert accessed[8 * step : 8 * step + 4] == seen[0][4 * step : 4 * step + 4]
            assert accessed[8 * step + 4 : 8 * step + 8] == seen[1][4 * step : 4 * step + 4]
    two_process = torch.load(out / f"{job}.pt")
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), two_process[name], rtol=1e-5, atol=1e-6)


def test_processes_draw_different_forget_partners(ddp) -> None:
    """Forget partners come from per-item (seed, epoch) draws, not torch's global generator (the same stream, so the
    same draws, on every process): the two processes' first forget batches differ."""
    for job in ("neggrad_w0", "sharp_minmax_w0"):
        seen = ddp[0]["jobs"][job]["forget_seen"]
        if job.startswith("sharp_minmax"):  # the saliency mask reads the whole forget set first, in order
            seen = [s[len(ddp_worker.datasets(ddp_worker.TINY_SHAPE)[1]) :] for s in seen]
        assert seen[0][:4] != seen[1][:4], job


def test_a_parameter_without_gradient_stays_put_under_ddp(ddp) -> None:
    """grad None on every process, as in one process: weight decay 0.5 and momentum leave it alone."""
    final = torch.load(ddp[1] / "finetune_unused.pt")
    assert torch.equal(final["unused"], torch.ones(3))


def test_evaluation_on_two_processes_equals_one(ddp) -> None:
    """Each process predicts half of the samples; both get the whole result, equal to one process's."""
    from hf_unlearn.metrics import predict_probabilities

    job = ddp[0]["jobs"]["evaluation"]
    seen = job["seen"]  # the samples each process read
    assert sorted(seen[0] + seen[1]) == list(range(ddp_worker.EVAL_SIZE)) and not set(seen[0]) & set(seen[1])
    model = ddp_worker.tiny_resnet(0)
    model.load_state_dict(torch.load(ddp[1] / "evaluation_model.pt"))
    data = make_dataset(ddp_worker.EVAL_SIZE, seed=9, shape=(1, 8, 8))
    probs, labels = predict_probabilities(model, data, batch_size=4)
    for (per_workers,) in job["results"]:
        for workers in ("0", "2"):
            assert per_workers[workers]["labels"] == labels.tolist()
            torch.testing.assert_close(
                torch.tensor(per_workers[workers]["probs"], dtype=torch.float64), torch.from_numpy(probs)
            )


def test_masks_are_broadcast_from_process_0(ddp) -> None:
    (first,), (second,) = ddp[0]["jobs"]["mask_broadcast"]["masks"]
    assert first == second
    assert first["b"] == [True]  # process 0's, not process 1's


def test_sam_perturbs_per_process_not_with_the_averaged_gradient(ddp, tmp_path) -> None:
    """A whole-batch SAM step (eps from the gradient averaged over both halves) ends elsewhere."""
    _, out = ddp
    whole, _ = _one_process_with_accumulation(
        tmp_path, "finetune_sam", per_device_train_batch_size=8, gradient_accumulation_steps=1
    )
    two_process = torch.load(out / "finetune_sam.pt")
    diff = max(float((p.detach() - two_process[n]).abs().max()) for n, p in whole.named_parameters())
    assert diff > 1e-4


def test_scrub_teacher_is_not_wrapped_and_stays_frozen(ddp) -> None:
    modules = ddp[0]["jobs"]["scrub_sam"]["extra_modules"]
    assert modules, "SCRUB holds no teacher module"
    for name, info in modules.items():
        assert not info["ddp_wrapped"], f"{name} was wrapped in DDP"
        assert info["unchanged"] and not info["trainable"], f"{name} changed during unlearning"


def test_a_whole_recipe_runs_under_ddp(ddp) -> None:
    """`hf-unlearn run` in 2 processes: both get the same report; only the main process wrote the stages."""
    job = ddp[0]["jobs"]["pipeline"]
    assert job["runs"] == ["neggrad_sam", "original", "retrain"]
    assert (
        len({digest for (digest,) in job["reports"]}) == 1
    )  # same splits, same weights, same metrics on both processes
    out = Path(job["output_dir"])
    assert (out / "report.json").is_file() and (out / "manifest.json").is_file()
    for stage in job["runs"]:
        assert (out / "models" / stage / "stage.json").is_file(), stage
    assert not [p.name for p in (out / "models").iterdir() if p.name.startswith(".")]  # no half-written stage


# ------------------------------------------------------------------------------ DeepSpeed and FSDP
@pytest.mark.parametrize("distributed", ["DEEPSPEED", "FSDP"])
@pytest.mark.parametrize("method, sharpness", [("neggrad", "sam"), ("sharp_minmax", "none"), ("finetune", "none")])
def test_deepspeed_and_fsdp_are_refused_at_start_up(tmp_path, distributed: str, method: str, sharpness: str) -> None:
    from accelerate import Accelerator
    from accelerate.utils import DistributedType

    kind = getattr(DistributedType, distributed)
    args = make_args(tmp_path, method=method, sharpness=sharpness)
    with (
        mock.patch.object(Accelerator, "distributed_type", new=property(lambda self: kind)),
        pytest.raises(ValueError) as info,
    ):
        get_trainer_class(method)(
            model=make_model(), args=args, retain_dataset=make_dataset(8, 1), forget_dataset=make_dataset(4, 2)
        )
    message = str(info.value)
    assert ("DeepSpeed" if distributed == "DEEPSPEED" else "FSDP") in message
    assert "accelerate_configs/multi_gpu.yaml" in message  # what to use instead
    if sharpness != "none" or method == "sharp_minmax":
        assert "backward passes" in message  # why


# ------------------------------------------------------------------------------ accelerate configs
def test_accelerate_configs_load_and_say_what_they_are() -> None:
    from accelerate.commands.config.config_args import ClusterConfig

    names = {p.name for p in CONFIGS.glob("*.yaml")}
    assert {"single_gpu.yaml", "multi_gpu.yaml", "multi_node.yaml", "fsdp.yaml", "cpu.yaml"} <= names
    configs = {name: ClusterConfig.from_yaml_file(CONFIGS / name) for name in names}  # accelerate's own loader
    assert configs["multi_gpu.yaml"].distributed_type == "MULTI_GPU"
    assert configs["multi_gpu.yaml"].mixed_precision == "bf16" and configs["multi_gpu.yaml"].num_processes > 1
    assert configs["single_gpu.yaml"].distributed_type == "NO" and configs["single_gpu.yaml"].num_processes == 1
    assert configs["cpu.yaml"].use_cpu and configs["cpu.yaml"].mixed_precision == "no"
    node = configs["multi_node.yaml"]
    assert node.distributed_type == "MULTI_GPU" and node.num_machines > 1
    assert node.main_process_ip and node.main_process_port
    assert configs["fsdp.yaml"].distributed_type == "FSDP"
    assert "not supported" in (CONFIGS / "fsdp.yaml").read_text().lower()
