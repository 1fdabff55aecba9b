"""Names on the Hugging Face Hub: repository ids (checked with huggingface_hub's own validator), license ids (and the
``license_name`` / ``license_link`` that go with ``license: other``), and the public name of a data source (a local
path never leaves the machine).

Imports nothing heavy at module level: the recipe checks use it before anything trains.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import NamedTuple
from urllib.parse import urlsplit

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


# ``license: other`` takes two more fields on the Hub (https://huggingface.co/docs/hub/model-cards, the card spec):
# ``license_name``, a short id of the license in the Hub's style (``my-license-1.0``), and ``license_link``, a URL or
# a file of the repository. Without a link, the Hub's expectation: the text in the repository's LICENSE file.
DEFAULT_LICENSE_LINK = "LICENSE"
LICENSE_NAME = re.compile(r"[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?")


class LicenseKeys(NamedTuple):
    """How a caller spells the license settings in its messages: flags, recipe keys or keyword arguments."""

    license: str
    name: str
    link: str
    sep: str  # between a key and its value

    def give(self, key: str, value: str) -> str:
        return f"{key}{self.sep}{value}"


CLI_LICENSE_KEYS = LicenseKeys("--license", "--license-name", "--license-link", " ")
RECIPE_LICENSE_KEYS = LicenseKeys("hub.license", "hub.license_name", "hub.license_link", ": ")
PYTHON_LICENSE_KEYS = LicenseKeys("license", "license_name", "license_link", "=")


def license_settings_problem(
    license_id: object, license_name: object, license_link: object, keys: LicenseKeys = PYTHON_LICENSE_KEYS
) -> str | None:
    """Why a card cannot carry ``license_id`` with ``license_name`` / ``license_link`` (None when it can): the id
    must be a Hub license id; ``other`` needs a name in the Hub's style and takes a link (an http(s) URL or a
    relative path inside the repository); with any other license (or none) the two mean nothing and are refused.
    The message names the settings as ``keys`` spells them."""
    if license_id is not None and (problem := license_problem(license_id)):
        return f"{keys.license}: {problem}"
    given = [key for key, value in ((keys.name, license_name), (keys.link, license_link)) if value is not None]
    if license_id != "other":
        if not given:
            return None
        both, verb = " and ".join(given), "go" if len(given) > 1 else "goes"
        fix = (
            f"with {keys.give(keys.license, str(license_id))} the Hub names the license itself: remove {both}"
            if license_id is not None
            else f"add {keys.give(keys.license, 'other')} or remove {both}"
        )
        return f"{both} only {verb} with {keys.give(keys.license, 'other')} (a license the Hub does not list); {fix}."
    if license_name is None:
        return (
            f"{keys.license}: other needs {keys.name}: the Hub expects license_name (a short id of the license, e.g. "
            "my-license-1.0) and license_link (a URL, or a file of the repository such as LICENSE) with license "
            f"other; give {keys.give(keys.name, 'NAME')} (and {keys.give(keys.link, 'URL_OR_PATH')}, default "
            f"{DEFAULT_LICENSE_LINK})."
        )
    if not isinstance(license_name, str) or not LICENSE_NAME.fullmatch(license_name):
        suggestion = re.sub(r"[^a-z0-9.]+", "-", str(license_name).lower()).strip("-.")
        hint = f" Did you mean {suggestion!r}?" if LICENSE_NAME.fullmatch(suggestion) else ""
        return (
            f"{keys.name}: {license_name!r} is not a license name in the Hub's style: lowercase letters, digits, '-' "
            f"and '.', starting and ending with a letter or digit (e.g. my-license-1.0).{hint}"
        )
    if license_name in HUB_LICENSES and license_name not in ("other", "unknown"):  # the Hub knows it by its id
        return (
            f"{keys.name}: {license_name!r} is a license the Hub lists: give {keys.give(keys.license, license_name)} "
            f"instead of other, without {keys.name} or {keys.link}."
        )
    if license_link is not None and (problem := _license_link_problem(license_link)):
        return f"{keys.link}: {license_link!r} {problem}."
    return None


def _license_link_problem(link: object) -> str | None:
    """Why ``link`` is neither an http(s) URL nor a relative path inside the repository (None when it is one)."""
    if not isinstance(link, str) or not link or link != link.strip() or any(ord(c) < 32 for c in link):
        return "is not a URL or a path (an empty value, surrounding spaces or control characters)"
    parts = urlsplit(link)
    if parts.scheme in ("http", "https"):
        if not parts.netloc or any(c.isspace() for c in link):
            return "is not a valid http(s) URL (a host and no spaces, e.g. https://example.org/license)"
        return None
    if parts.scheme:  # file:, ftp:, a Windows drive (C:) ...: nothing the Hub can show
        return "is neither an http(s) URL nor a relative path inside the repository (e.g. https://... or LICENSE)"
    path = PurePosixPath(link)
    if "\\" in link or path.is_absolute() or ".." in path.parts or not path.parts:
        return (
            "is neither an http(s) URL nor a relative path inside the repository (use '/', no '..', not absolute; "
            "e.g. LICENSE or docs/LICENSE)"
        )
    return None


def license_metadata(license_id: str | None, license_name: str | None, license_link: str | None) -> dict[str, str]:
    """The card's ``license_name`` / ``license_link`` for valid settings: with ``other`` the name and the link
    (default `DEFAULT_LICENSE_LINK`: the Hub then shows the repository's LICENSE file), else none."""
    if license_id != "other" or license_name is None:
        return {}
    return {"license_name": license_name, "license_link": license_link or DEFAULT_LICENSE_LINK}


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
