"""hf_unlearn's own errors: what went wrong, where, and how to fix it (see docs/reliability.md).

* `ValidationError`: bad input (a recipe key or value, the data, the model, the forget set). The message starts
  with where the problem is (``unlearn.runs[1].alpha: ...``, ``data: ...``) and ends with how to fix it.
* `DivergenceError`: a training step produced a non-finite loss. The pipeline records the run as ``diverged`` in
  the report (it keeps the last good checkpoint's weights) instead of stopping the whole recipe.

The CLI prints any `HfUnlearnError` (and any ``ValueError`` from validation) as ``hf-unlearn: error: ...`` and
exits with status 2, without a traceback. This module imports nothing of hf_unlearn, so every layer can use it.
"""

from __future__ import annotations

import contextlib
import difflib
import math
from collections.abc import Iterable, Iterator


def did_you_mean(value: object, choices: Iterable[str]) -> str:
    """``" Did you mean 'neggrad'?"`` for the closest of ``choices`` to a misspelled ``value``, else ``""``: the one
    phrasing of every error that names a bad choice (append it to the sentence that names the problem)."""
    close = difflib.get_close_matches(str(value), list(choices), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


class HfUnlearnError(Exception):
    """Base class of the errors hf_unlearn raises on purpose; the message is meant for the user."""


class ValidationError(HfUnlearnError, ValueError):
    """Input that cannot run: the message names the place (recipe key, data set row, file) and the fix."""


class RecipeError(ValidationError):
    """A recipe that cannot run; the message says which key and how to fix it (a ValueError, as before)."""


class DivergenceError(HfUnlearnError, RuntimeError):
    """Training produced a non-finite loss (or non-finite weights); the weights after this point are unusable."""

    def __init__(
        self, message: str, *, step: int | None = None, epoch: float | None = None, loss: float | None = None
    ) -> None:
        super().__init__(message)
        self.step = step
        self.epoch = epoch
        self.loss = loss

    def record(self) -> dict[str, float | int | str | None]:
        """What the report stores about the divergence (JSON-safe: a non-finite loss becomes its name)."""
        loss = self.loss if self.loss is None or math.isfinite(self.loss) else str(self.loss)  # "nan", "inf"
        return {"step": self.step, "epoch": self.epoch, "loss": loss, "message": str(self)}


@contextlib.contextmanager
def located(where: str) -> Iterator[None]:
    """Turn a ``ValueError`` raised inside the block into a `ValidationError` prefixed with ``where``.

    Used around setup phases only (data, model, forget set), never around training, so a bug inside training
    still surfaces as itself. Errors that are already `HfUnlearnError` pass through unchanged.
    """
    try:
        yield
    except HfUnlearnError:
        raise
    except ValueError as error:
        raise ValidationError(f"{where}: {error}") from error


class PushFailedError(HfUnlearnError):
    """The recipe's ``hub:`` push failed after every stage finished; ``result`` is the finished run's report, so the
    CLI can still print its table (and says how to push again)."""

    def __init__(self, message: str, result: dict) -> None:
        super().__init__(message)
        self.result = result
