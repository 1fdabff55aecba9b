"""Export an unlearned model with a model card, and push it to the Hugging Face Hub.

``hf-unlearn push RUN_DIR --repo-id ID [--run NAME]`` (or ``hub: {push: true, repo_id: ID}`` in a recipe) uploads
one run of a finished ``hf-unlearn run``:

* the weights in safetensors and ``config.json`` (timm models in timm's layout, which ``timm.create_model(
  "hf-hub:ID", pretrained=True)`` and ``AutoModelForImageClassification.from_pretrained(ID)`` both load);
* the model's code when transformers has no class for it (the CIFAR-stem ResNet: ``configuration_*.py`` and
  ``modeling_*.py``, named by ``auto_map`` in config.json), so ``from_pretrained(ID, trust_remote_code=True)``
  loads it without hf_unlearn;
* the image processor of the run's input transform (``preprocessor_config.json``);
* ``README.md``, the model card (`hf_unlearn.hub_card`).

Nothing else from the run folder is uploaded: never the split manifest (it lists the forgotten samples), the
learning-event scores, checkpoints, or any data. The upload goes through `huggingface_hub.HfApi` (``create_repo``
+ ``upload_folder``) of a folder that holds only the files above; files of those kinds that an earlier push left in
the repository and this export lacks are deleted in the same commit.
"""

from __future__ import annotations

import contextlib
import logging
import re
import tempfile
from pathlib import Path
from typing import Any

from .hub_card import REFERENCE_RUNS, build_model_card, folder_location
from .hub_ids import license_metadata, license_settings_problem, public_name, repo_id_problem
from .models import is_timm_model, load_saved_model, needs_remote_code, save_model
from .paths import SAFE_NAME, inside, read_json
from .processors import save_processor

__all__ = ["HubError", "build_model_card", "export_run", "public_name", "push_run", "select_run"]

logger = logging.getLogger(__name__)

# Files an export may contain; anything else in the folder is a bug (tests check it).
WEIGHT_FILE = re.compile(r"^model(-\d{5}-of-\d{5})?\.safetensors$|^model\.safetensors\.index\.json$")
METADATA_FILES = {"config.json", "preprocessor_config.json", "README.md"}
CODE_FILE = re.compile(r"^(configuration|modeling)_\w+\.py$")  # a model's remote code (auto_map in config.json)
# Repository files of the kinds an export writes (weights, legacy pickled weights too, configs, code, card): a push
# replaces them all, so no file of an earlier export survives beside the new one. Other files (LICENSE ...) stay.
REPLACED_ON_PUSH = [
    "*.safetensors",
    "model.safetensors.index.json",
    "pytorch_model*.bin",
    "pytorch_model.bin.index.json",
    "config.json",
    "preprocessor_config.json",
    "configuration_*.py",
    "modeling_*.py",
    "README.md",
]


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


# ------------------------------------------------------------------------------------------------ export
def export_run(
    run_dir: str | Path,
    out_dir: str | Path,
    run: str | None = None,
    *,
    repo_id: str | None = None,
    base_model: str | None = None,
    license: str | None = None,
    license_name: str | None = None,
    license_link: str | None = None,
) -> Path:
    """Write the upload folder of one run: weights, config, the model's code (remote-code models), image processor
    and README.md. The card loads the model from ``repo_id``, or, without one, from ``out_dir``; ``license``: a Hub
    license id for the card's metadata, with ``license_name`` and ``license_link`` (default ``LICENSE``) when it is
    ``other`` (`hf_unlearn.hub_ids.license_settings_problem`). No LICENSE file is written: its text is the user's."""
    if problem := license_settings_problem(license, license_name, license_link):
        raise HubError(problem)
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
        remote_code=needs_remote_code(model),
        location=repo_id or folder_location(out_dir),
        license=license,
        **license_metadata(license, license_name, license_link),
    )
    card.save(out_dir / "README.md")
    unexpected = [
        p.name
        for p in out_dir.iterdir()
        if p.name not in METADATA_FILES and not WEIGHT_FILE.match(p.name) and not CODE_FILE.match(p.name)
    ]
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
    license: str | None = None,
    license_name: str | None = None,
    license_link: str | None = None,
    revision: str | None = None,
    create_pr: bool = False,
) -> str:
    """Export one run and upload it to ``repo_id`` (created if needed) in one commit, to the branch ``revision``
    (created from main if needed) or as a pull request against main (``create_pr``); files an earlier export left
    there and this one lacks are deleted in the same commit (`REPLACED_ON_PUSH`). Returns the commit (or pull
    request) URL. ``license``, ``license_name``, ``license_link``: as in `export_run`."""
    from huggingface_hub import HfApi

    if problem := repo_id_problem(repo_id):
        raise HubError(f"repo_id: {problem}.")
    if create_pr and revision not in (None, "main"):  # huggingface_hub opens pull requests against main only
        raise HubError("a pull request is opened against main: give --create-pr or --revision BRANCH, not both.")
    with contextlib.ExitStack() as stack:
        if export_dir is None:
            export_dir = stack.enter_context(
                tempfile.TemporaryDirectory(prefix="hf_unlearn_push_", ignore_cleanup_errors=True)
            )
        folder = export_run(
            run_dir,
            export_dir,
            run,
            repo_id=repo_id,
            license=license,
            license_name=license_name,
            license_link=license_link,
        )
        name = select_run(read_report(run_dir), run)
        api = HfApi(token=token, library_name="hf_unlearn")
        try:
            api.create_repo(repo_id=repo_id, repo_type="model", private=private, exist_ok=True)
            if revision not in (None, "main"):
                api.create_branch(repo_id=repo_id, branch=revision, repo_type="model", exist_ok=True)
            info = api.upload_folder(
                repo_id=repo_id,
                repo_type="model",
                folder_path=str(folder),
                commit_message=commit_message or f"Upload {name} (hf_unlearn)",
                revision=revision,
                create_pr=create_pr,
                delete_patterns=REPLACED_ON_PUSH,
            )
        except (OSError, ValueError) as error:  # huggingface_hub's errors: offline, HTTP (auth, missing repo) ...
            raise hub_failure(repo_id, error) from error
        return str(getattr(info, "pr_url", None) or getattr(info, "commit_url", info))


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
