"""Export an unlearned model with a model card, and push it to the Hugging Face Hub.

``hf-unlearn push RUN_DIR --repo-id ID [--run NAME]`` (or ``hub: {push: true, repo_id: ID}`` in a recipe) uploads
one run of a finished ``hf-unlearn run``:

* the weights in safetensors and ``config.json`` (timm models in timm's layout, which ``timm.create_model(
  "hf-hub:ID", pretrained=True)`` and ``AutoModelForImageClassification.from_pretrained(ID)`` both load);
* the base model's image processor, when it has one (``preprocessor_config.json``);
* ``README.md``, a model card built with `huggingface_hub.ModelCard` / `ModelCardData` / `EvalResult`: base model,
  data set, method and hyperparameters, retain / forget / test accuracy, ToW, MIA, and the forget set's kind,
  size and commitment (an HMAC of the forget set under a key that stays in the private manifest).

Nothing else from the run folder is uploaded: never the split manifest (it lists the forgotten samples), the
learning-event scores, checkpoints, or any data. The upload goes through `huggingface_hub.HfApi`
(``create_repo`` + ``upload_folder``) of a folder that holds only the files above.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import tempfile
from pathlib import Path
from typing import Any

from .models import is_timm_model, load_saved_model, save_model
from .paths import SAFE_NAME, inside, read_json
from .processors import save_processor

logger = logging.getLogger(__name__)

REFERENCE_RUNS = ("original", "retrain")
# Files an export may contain; anything else in the folder is a bug (tests check it).
WEIGHT_FILE = re.compile(r"^model(-\d{5}-of-\d{5})?\.safetensors$|^model\.safetensors\.index\.json$")
METADATA_FILES = {"config.json", "preprocessor_config.json", "README.md"}
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$|^[A-Za-z0-9][\w.-]*$")
ACCURACY_NAMES = {"retain": "Retain accuracy", "forget": "Forget accuracy", "test": "Test accuracy"}


class HubError(ValueError):
    """A push that cannot go ahead; the message says why and what to do."""


# ------------------------------------------------------------------------------------------- run folder
def read_report(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / "report.json"
    if not path.is_file():
        raise HubError(f"{path} not found: give the output folder of a finished `hf-unlearn run`.")
    return read_json(path)


def unlearning_runs(report: dict[str, Any]) -> list[str]:
    return [name for name in report["models"] if name not in REFERENCE_RUNS]


def select_run(report: dict[str, Any], run: str | None) -> str:
    """The run to push: ``run`` if given (any model of the report), else the only unlearning run."""
    names = list(report["models"])
    if run is not None:
        if run not in report["models"]:
            raise HubError(f"Run {run!r} is not in the report; its models are: {', '.join(names)}.")
        return run
    candidates = unlearning_runs(report)
    if len(candidates) == 1:
        return candidates[0]
    raise HubError(
        f"The report has {len(candidates)} unlearning runs ({', '.join(candidates)}); name the one to push "
        "with --run NAME (or hub.run in the recipe)."
    )


def public_name(source: str | None) -> str | None:
    """A Hub id or registered source as is; a local path reduced to ``local:<last part>`` (no path leaves)."""
    if source is None:
        return None
    path = Path(source.removeprefix("imagefolder:")).expanduser()
    if source.startswith(("imagefolder:", ".", "/", "~")) or ("/" in source and path.exists()):
        return f"local:{path.resolve().name}"
    return source


def _is_hub_id(name: str | None) -> bool:
    """A Hub repo id (``owner/name`` or a canonical ``name``), not a local folder."""
    return bool(name) and not Path(name).exists() and bool(_REPO_ID.match(name))


# ------------------------------------------------------------------------------------------- model card
def build_model_card(
    report: dict[str, Any],
    run: str,
    *,
    model_name: str,
    base_model: str | None = None,
    library_name: str = "transformers",
    stem: str | None = None,
):
    """A `huggingface_hub.ModelCard` for one run of ``report`` (design.md "Evaluation and report").

    ``stem="cifar"`` (the model's ``config.stem``) makes the usage section load it with hf_unlearn's loader:
    transformers builds a ResNet's ImageNet stem and would refuse the weights."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    entry = report["models"][run]
    dataset = public_name(str(report["dataset"]))  # never a local path
    forget_set = report["forget_set"]

    def result(metric_type: str, value: float, name: str, split: str | None, config: str | None = None):
        return EvalResult(
            task_type="image-classification",
            task_name="Image Classification (machine unlearning)",
            dataset_type=dataset,
            dataset_name=dataset,
            dataset_split=split,
            metric_type=metric_type,
            metric_value=float(value),
            metric_name=name,
            metric_config=config,
        )

    eval_results = [
        result("accuracy", entry["accuracy"][split], ACCURACY_NAMES[split], split)
        for split in ("retain", "forget", "test")
    ]
    if entry.get("tow") is not None:
        eval_results.append(result("tow", entry["tow"], "ToW (tug of war vs the retrained model)", None))
    for attack, value in (entry.get("mia") or {}).items():
        if value is not None:
            eval_results.append(result("mia_efficacy", value, f"MIA-efficacy ({attack})", "forget", attack))

    hub_base = base_model if _is_hub_id(base_model) else None
    tags = ["hf_unlearn", "machine-unlearning", "image-classification", f"unlearning-{entry['method']}"]
    if entry.get("sharpness", "none") != "none":
        tags.append("sharpness-aware-minimization")
    if library_name == "timm":
        tags += ["timm", "transformers"]
    references = {
        name: {"accuracy": report["models"][name]["accuracy"], "tow": report["models"][name].get("tow")}
        for name in REFERENCE_RUNS
        if name in report["models"]
    }
    card_data = ModelCardData(
        model_name=model_name,
        base_model=hub_base,
        datasets=[dataset] if _is_hub_id(dataset) and "/" in dataset else None,
        library_name=library_name,
        pipeline_tag="image-classification",
        metrics=["accuracy"],
        tags=tags,
        eval_results=eval_results,
        hf_unlearn={
            "run": run,
            "method": entry["method"],
            "sharpness": entry.get("sharpness"),
            "hyperparameters": _own_hyperparameters(entry),
            "dataset": dataset,
            "seed": report.get("seed"),
            # kind, size, commitment (and band / name ...): scalars only, so never a list of indices.
            "forget_set": {k: v for k, v in forget_set.items() if v is None or isinstance(v, (str, int, float, bool))},
            "accuracy": entry["accuracy"],
            "tow": entry.get("tow"),
            "mia": entry.get("mia"),
            "references": references,
        },
    )
    body = _card_body(report, run, model_name=model_name, base_model=base_model, library_name=library_name, stem=stem)
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n{body}")


def _fmt(value: Any) -> str:
    return "—" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def _own_hyperparameters(entry: dict[str, Any]) -> dict[str, Any]:
    from .registry import own_settings

    return own_settings(entry["method"], entry.get("hyperparameters") or {}, entry.get("sharpness", "none"))


def _card_body(
    report: dict[str, Any],
    run: str,
    *,
    model_name: str,
    base_model: str | None,
    library_name: str,
    stem: str | None = None,
) -> str:
    entry = report["models"][run]
    forget = report["forget_set"]
    dataset = public_name(str(report["dataset"]))
    if base_model is None:
        origin = "trained from scratch"
    elif _is_hub_id(base_model):
        origin = f"fine-tuned from [{base_model}](https://huggingface.co/{base_model})"
    else:
        origin = f"fine-tuned from a model loaded from a local folder (`{Path(base_model).name}`)"
    sharpness = entry.get("sharpness", "none")
    lines = [
        f"# {model_name}",
        "",
        f"An image classifier {origin} on `{dataset}` and then made to forget "
        f"{forget['size']} of its training samples with hf_unlearn: method `{entry['method']}`"
        + (f" with sharpness-aware updates (`{sharpness}`)." if sharpness != "none" else "."),
        "",
        "## Results",
        "",
        "Accuracy on the retained training samples, on the forgotten ones and on the test split; ToW (tug of war: the "
        "product of 1 - |accuracy difference| against a model retrained without the forget set, 1 = as if never "
        "trained on it); MIA-efficacy (the fraction of forget samples a membership-inference attack calls "
        "non-members)."
        + (
            " No reference model was used, so there is no ToW."
            if (report.get("reference") or {}).get("kind") == "none"
            else ""
        ),
        "",
        "| model | retain acc | forget acc | test acc | ToW | "
        + " | ".join(f"MIA ({k})" for k in entry.get("mia", {}))
        + " |",
        "|---|---|---|---|---|" + "---|" * len(entry.get("mia", {})),
    ]
    for name in (run, *[r for r in REFERENCE_RUNS if r in report["models"] and r != run]):
        m = report["models"][name]
        label = f"**{name}** (this model)" if name == run else f"{name} (reference)"
        mia = [_fmt(m.get("mia", {}).get(k)) for k in entry.get("mia", {})]
        acc = m["accuracy"]
        lines.append(
            f"| {label} | {_fmt(acc['retain'])} | {_fmt(acc['forget'])} | {_fmt(acc['test'])} | {_fmt(m.get('tow'))} | "
            + " | ".join(mia)
            + " |"
        )
    hyper = _own_hyperparameters(entry)
    lines += [
        "",
        "## Unlearning",
        "",
        f"- method: `{entry['method']}`, sharpness: `{sharpness}`",
        f"- data set: `{dataset}`, seed {report.get('seed')}",
        "- hyperparameters:",
        "",
        "```json",
        json.dumps(hyper, indent=2, sort_keys=True, default=str),
        "```",
        "",
        "## Forget set",
        "",
        f"- kind: `{forget['kind']}`, size: {forget['size']} samples",
        *(
            [
                f"- commitment: `{forget['commitment']}`",
                "",
                "The commitment binds this model to one forget set without revealing it: it is the HMAC-SHA256 of "
                "the sorted indices of the forgotten training samples (decimal, joined by `,`) under a random 32-byte "
                "key that only the model's publisher holds. Nobody can test a guessed list against it without that "
                "key; the publisher can prove which list it was with `hf-unlearn verify`. The samples, their indices "
                "and the key are not published with this model.",
            ]
            if forget.get("commitment")
            else ["- identifier: not recorded. The samples are not published with this model."]
        ),
        "",
        "## Usage",
        "",
        *(_cifar_stem_usage(model_name) if stem == "cifar" else _transformers_usage(model_name)),
    ]
    if library_name == "timm":
        lines += [
            "",
            "```python",
            "import timm",
            "",
            f'model = timm.create_model("hf-hub:{model_name}", pretrained=True)',
            "```",
        ]
    return "\n".join(lines) + "\n"


def _transformers_usage(model_name: str) -> list[str]:
    return [
        "```python",
        "from transformers import AutoModelForImageClassification",
        "",
        f'model = AutoModelForImageClassification.from_pretrained("{model_name}")',
        "```",
    ]


def _cifar_stem_usage(model_name: str) -> list[str]:
    return [
        'This ResNet has the CIFAR stem (a 3x3 stride-1 convolution and no max-pool; `"stem": "cifar"` in '
        "config.json). transformers builds its ResNets with the ImageNet stem, so "
        "`AutoModelForImageClassification.from_pretrained` refuses these weights (a size mismatch in the stem); "
        "hf_unlearn's loader builds the saved layout:",
        "",
        "```python",
        "from huggingface_hub import snapshot_download",
        "from hf_unlearn.models import load_saved_model",
        "",
        f'model = load_saved_model(snapshot_download("{model_name}"))',
        "```",
    ]


# ------------------------------------------------------------------------------------------------ export
def export_run(
    run_dir: str | Path,
    out_dir: str | Path,
    run: str | None = None,
    *,
    repo_id: str | None = None,
    base_model: str | None = None,
) -> Path:
    """Write the upload folder of one run: weights, config, image processor (if any) and README.md."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    report = read_report(run_dir)
    name = select_run(report, run)
    if report["models"][name].get("status") == "diverged":  # docs/reliability.md
        raise HubError(
            f"Run {name!r} diverged (see its 'divergence' entry in report.json): its weights are those of its last "
            "good checkpoint, not a finished run. Fix its settings (e.g. a lower learning rate) and rerun first."
        )
    if not SAFE_NAME.fullmatch(name):  # a report edited to name a path: never read outside models/
        raise HubError(
            f"Run name {name!r} in {run_dir / 'report.json'} is not a plain folder name; restore the report."
        )
    model_dir = inside(run_dir / "models" / name, run_dir)
    if not (model_dir / "config.json").is_file():
        raise HubError(f"{model_dir} holds no saved model (config.json missing); rerun the recipe.")
    base_model = base_model if base_model is not None else report.get("base_model")
    out_dir.mkdir(parents=True, exist_ok=True)
    if any(out_dir.iterdir()):
        raise HubError(f"{out_dir} is not empty; export into a new folder.")
    model = load_saved_model(str(model_dir))
    save_model(model, out_dir)
    library = "timm" if is_timm_model(model) else "transformers"
    try:  # every export stands on its own: the processor the run used, or one built from its transform
        save_processor(out_dir, report.get("preprocessing"), base_model, timm=library == "timm")
    except ValueError as error:
        raise HubError(str(error)) from error
    card = build_model_card(
        report,
        name,
        model_name=repo_id or f"{report.get('name', 'hf_unlearn')}-{name}",
        base_model=base_model,
        library_name=library,
        stem=getattr(model.config, "stem", None),
    )
    card.save(out_dir / "README.md")
    unexpected = [p.name for p in out_dir.iterdir() if p.name not in METADATA_FILES and not WEIGHT_FILE.match(p.name)]
    if unexpected:  # never upload anything but the model, its configs and the card
        raise HubError(f"Refusing to upload unexpected files {unexpected} from {out_dir}.")
    return out_dir


def push_run(
    run_dir: str | Path,
    repo_id: str,
    run: str | None = None,
    *,
    private: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
    export_dir: str | Path | None = None,
) -> str:
    """Export one run and upload it to ``repo_id`` (created if needed); returns the commit URL."""
    from huggingface_hub import HfApi

    if not _is_hub_id(repo_id) or "/" not in repo_id:
        raise HubError(f"repo_id {repo_id!r} is not a Hub repo id: use OWNER/NAME, e.g. my-user/resnet18-unlearned.")
    with contextlib.ExitStack() as stack:
        if export_dir is None:
            export_dir = stack.enter_context(
                tempfile.TemporaryDirectory(prefix="hf_unlearn_push_", ignore_cleanup_errors=True)
            )
        folder = export_run(run_dir, export_dir, run, repo_id=repo_id)
        name = select_run(read_report(run_dir), run)
        api = HfApi(token=token, library_name="hf_unlearn")
        try:
            api.create_repo(repo_id=repo_id, repo_type="model", private=private, exist_ok=True)
            info = api.upload_folder(
                repo_id=repo_id,
                repo_type="model",
                folder_path=str(folder),
                commit_message=commit_message or f"Upload {name} (hf_unlearn)",
            )
        except (OSError, ValueError) as error:  # huggingface_hub's errors: offline, HTTP (auth, missing repo) ...
            raise hub_failure(repo_id, error) from error
        return str(getattr(info, "commit_url", info))


def hub_failure(repo_id: str, error: BaseException) -> HubError:
    """One line for a failed Hub call: what failed and the likely fix (offline, auth, missing repository)."""
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled, RepositoryNotFoundError

    first = (str(error).strip().splitlines() or [type(error).__name__])[0]
    status = getattr(getattr(error, "response", None), "status_code", None)
    if isinstance(error, (OfflineModeIsEnabled, ConnectionError)):
        fix = "the Hub cannot be reached (HF_HUB_OFFLINE=1 or no network); connect and push again"
    elif isinstance(error, RepositoryNotFoundError) or status == 404:
        fix = f"the repository {repo_id!r} does not exist or your token cannot see it; check the id and the token"
    elif status in (401, 403):
        fix = "the Hub refused the token; log in with `hf auth login` (a token with write access) or pass --token"
    elif isinstance(error, HfHubHTTPError):
        fix = f"the Hub answered HTTP {status}; retry later"
    else:
        fix = "check the repository id, your token and the network"
    return HubError(f"pushing to {repo_id} failed ({type(error).__name__}: {first[:200]}): {fix}.")
