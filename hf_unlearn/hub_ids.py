"""Names on the Hugging Face Hub: repository ids (checked with huggingface_hub's own validator), license ids, and
the public name of a data source (a local path never leaves the machine).

Imports nothing heavy at module level: the recipe checks use it before anything trains.
"""

from __future__ import annotations

from pathlib import Path

from .errors import did_you_mean

# The license identifiers the Hub accepts in a card's ``license:`` (https://huggingface.co/docs/hub/repositories-licenses).
# ``other`` is for any license not listed: the Hub then expects its text in a LICENSE file of the repository.
HUB_LICENSES = (
    "apache-2.0",
    "mit",
    "openrail",
    "bigscience-openrail-m",
    "creativeml-openrail-m",
    "bigscience-bloom-rail-1.0",
    "bigcode-openrail-m",
    "afl-3.0",
    "artistic-2.0",
    "bsl-1.0",
    "bsd",
    "bsd-2-clause",
    "bsd-3-clause",
    "bsd-3-clause-clear",
    "c-uda",
    "cc",
    "cc0-1.0",
    "cc-by-2.0",
    "cc-by-2.5",
    "cc-by-3.0",
    "cc-by-4.0",
    "cc-by-sa-3.0",
    "cc-by-sa-4.0",
    "cc-by-nc-2.0",
    "cc-by-nc-3.0",
    "cc-by-nc-4.0",
    "cc-by-nd-4.0",
    "cc-by-nc-nd-3.0",
    "cc-by-nc-nd-4.0",
    "cc-by-nc-sa-2.0",
    "cc-by-nc-sa-3.0",
    "cc-by-nc-sa-4.0",
    "cdla-sharing-1.0",
    "cdla-permissive-1.0",
    "cdla-permissive-2.0",
    "wtfpl",
    "ecl-2.0",
    "epl-1.0",
    "epl-2.0",
    "etalab-2.0",
    "eupl-1.1",
    "eupl-1.2",
    "agpl-3.0",
    "gfdl",
    "gpl",
    "gpl-2.0",
    "gpl-3.0",
    "lgpl",
    "lgpl-2.1",
    "lgpl-3.0",
    "isc",
    "lppl-1.3c",
    "ms-pl",
    "mpl-2.0",
    "odc-by",
    "odbl",
    "openrail++",
    "osl-3.0",
    "postgresql",
    "ofl-1.1",
    "ncsa",
    "unlicense",
    "zlib",
    "pddl",
    "lgpl-lr",
    "deepfloyd-if-license",
    "llama2",
    "llama3",
    "llama3.1",
    "llama3.2",
    "llama3.3",
    "llama4",
    "gemma",
    "unknown",
    "other",
)


def repo_id_problem(repo_id: object) -> str | None:
    """Why ``repo_id`` cannot name a model repository to push to (None when it can): huggingface_hub's
    `validate_repo_id` decides the characters and length; a push also needs the owner (``OWNER/NAME``)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if not isinstance(repo_id, str) or not repo_id:
        return "none given (e.g. my-user/resnet18-unlearned)"
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        return f"{repo_id!r} is not a Hub repo id ({str(error).splitlines()[0]})"
    if "/" not in repo_id:
        return f"{repo_id!r} has no owner: use OWNER/NAME, e.g. my-user/{repo_id}"
    return None


def license_problem(license_id: object) -> str | None:
    """Why ``license_id`` is not a license identifier of the Hub (None when it is)."""
    if isinstance(license_id, str) and license_id in HUB_LICENSES:
        return None
    return (
        f"{license_id!r} is not a Hub license id (e.g. apache-2.0, mit, cc-by-4.0, or other with the text in a "
        "LICENSE file; the list: https://huggingface.co/docs/hub/repositories-licenses)."
        + did_you_mean(license_id, HUB_LICENSES)
    )


def _looks_local(name: str) -> bool:
    return name.startswith(("local:", "imagefolder:", ".", "/", "~")) or Path(name).expanduser().exists()


def is_hub_id(name: str | None) -> bool:
    """A model or data set id on the Hub (``owner/name``, or a canonical ``name``), not a local folder."""
    if not name or _looks_local(name):
        return False
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def is_hub_dataset_id(name: str | None) -> bool:
    """A data set on the Hub, as a card's ``datasets:`` and model-index name it: ``owner/name``. A bare name is one
    of hf_unlearn's own sources (``digits``) or a local name, never claimed to be a Hub data set."""
    return is_hub_id(name) and "/" in str(name)


def public_name(source: str | None) -> str | None:
    """A Hub id or registered source as is; a local path reduced to ``local:<last part>`` (no path leaves)."""
    if source is None:
        return None
    path = Path(source.removeprefix("imagefolder:")).expanduser()
    if source.startswith(("imagefolder:", ".", "/", "~")) or ("/" in source and path.exists()):
        return f"local:{path.resolve().name}"
    return source
