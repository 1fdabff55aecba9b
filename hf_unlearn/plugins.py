"""Methods from other packages: the ``hf_unlearn.methods`` entry points and ``hf-unlearn ... --plugin MODULE``.

A package ships a method by declaring, in its pyproject.toml::

    [project.entry-points."hf_unlearn.methods"]
    shrink = "my_package.shrink"  # a module whose import calls register_method (or "module:callable", called)

`load_entry_points` imports them all once, the first time the registry is asked for its methods (and the CLI asks
before it reads a recipe), so ``import hf_unlearn`` and ``hf-unlearn --help`` import none of them. Only installed
packages and the command line name code to import: a recipe never does (recipes may come from strangers).
This module imports nothing of hf_unlearn but `errors`, so the registry can call it.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Iterable
from typing import Any

from .errors import HfUnlearnError

GROUP = "hf_unlearn.methods"


class PluginError(HfUnlearnError):
    """A method plugin that could not be imported; the message names it and what to fix."""


_loaded = False  # set while loading too: a plugin's own import reads the registry


def load_entry_points() -> None:
    """Import (or call) every installed ``hf_unlearn.methods`` entry point, once per process."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    from importlib.metadata import entry_points  # scans the installed packages: only when a method is looked up

    try:
        for point in entry_points(group=GROUP):
            _load_entry_point(point)
    except BaseException:
        _loaded = False  # refused again on the next look-up, not skipped
        raise


def _load_entry_point(point: Any) -> None:
    try:
        loaded = point.load()
        if point.attr:  # "module:callable": the callable registers
            loaded()
    except Exception as error:
        package = f" ({point.dist.name})" if getattr(point, "dist", None) is not None else ""
        raise PluginError(
            f"the method plugin {point.name!r} ({point.value}) failed to load: {_describe(error)}. Fix or uninstall "
            f"the package that declares it{package}."
        ) from error


def import_plugins(modules: Iterable[str]) -> None:
    """Import the modules named by ``--plugin``: by module name, from sys.path or else the current folder."""
    for module in modules:
        if module.endswith(".py") or "/" in module or os.sep in module:
            name = os.path.basename(module).removesuffix(".py")
            raise PluginError(f"--plugin {module}: give a module name, not a file (--plugin {name}).")
        if not all(part.isidentifier() for part in module.split(".")):
            raise PluginError(f"--plugin {module}: not a module name (e.g. --plugin my_plugin or my_package.shrink).")
        _find_in_current_folder(module)
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name not in (module, module.partition(".")[0]):  # the module imports one that is missing
                raise _failed(module, error) from error
            raise PluginError(
                f"--plugin {module}: no module {module!r} on the Python path or in the current folder ({os.getcwd()})."
            ) from None
        except Exception as error:
            raise _failed(module, error) from error


def _failed(module: str, error: Exception) -> PluginError:
    return PluginError(f"--plugin {module} failed to load: {_describe(error)}. Fix the module or leave out the flag.")


def _find_in_current_folder(module: str) -> None:
    # `python -m hf_unlearn.cli` searches the current folder first; the `hf-unlearn` script does not (its sys.path
    # starts with its own bin folder). Append the folder, so it shadows no installed module, only when needed.
    if importlib.util.find_spec(module.partition(".")[0]) is None and os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}".rstrip(".")
