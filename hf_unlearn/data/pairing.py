"""Training datasets of the unlearning methods, with draws that depend on (seed, epoch, item) only.

* `PairedDataset`: one dataset anchored on retain, so one epoch is one pass over retain, each item with a random
  forget partner (neggrad, sharp_minmax).
* `RelabelledUnion`: relabelled forget items and retain items in one dataset, so one shuffled loader sees each forget
  item once per epoch (random_label, SalUn; method-spec B.4).

Every random draw comes from a generator seeded by ``(seed, epoch, stream)`` and is indexed by the item, never from
torch's global generator: under DDP each process (and each DataLoader worker) sees other items and so other draws,
and 2 processes draw exactly what 1 process with gradient accumulation 2 draws. The Trainer tells the dataset the
epoch (``set_epoch``, called by `UnlearnTrainer` at the start of every epoch).
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset


def stream_generator(seed: int, epoch: int, stream: str) -> torch.Generator:
    """A torch generator for one (run seed, epoch, named stream); different streams never share draws."""
    state = np.random.SeedSequence([int(seed), int(epoch), zlib.crc32(stream.encode())]).generate_state(2)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


class EpochDraws(Dataset):
    """Base of the datasets whose random draws are redrawn per epoch (``set_epoch``) and cached for it."""

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)
        self.epoch = 0
        self._draws: torch.Tensor | None = None

    @property
    def has_draws(self) -> bool:
        """Whether items depend on the epoch (the Trainer must call `set_epoch`)."""
        return True

    def set_epoch(self, epoch: int) -> None:
        if int(epoch) != self.epoch:
            self.epoch = int(epoch)
            self._draws = None

    def draws(self) -> torch.Tensor:
        if self._draws is None:
            stream = f"{type(self).__name__}/{getattr(self, 'stream', '')}"
            self._draws = self.draw(stream_generator(self.seed, self.epoch, stream))
        return self._draws

    def draw(self, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError


class PairedDataset(EpochDraws):
    """Items ``{anchor_key: anchor[i]}``, plus ``{partner_key: partner[j_i]}`` with ``j_i`` uniform, drawn per epoch.

    Forget batches are re-drawn every epoch instead of replaying a cached cycle. The nested items are collated by
    ``torch.utils.data.default_collate``, which recurses into dicts.
    """

    def __init__(
        self,
        anchor: Dataset,
        anchor_key: str = "retain",
        partner: Dataset | None = None,
        partner_key: str = "forget",
        seed: int = 0,
    ) -> None:
        super().__init__(seed)
        if len(anchor) == 0:
            raise ValueError(f"The {anchor_key} set is empty.")
        if partner is not None and len(partner) == 0:
            raise ValueError(f"The {partner_key} set is empty.")
        self.anchor = anchor
        self.anchor_key = anchor_key
        self.partner = partner
        self.partner_key = partner_key

    def __len__(self) -> int:
        return len(self.anchor)

    @property
    def has_draws(self) -> bool:
        return self.partner is not None

    def draw(self, generator: torch.Generator) -> torch.Tensor:
        """The partner of every anchor item in this epoch."""
        return torch.randint(len(self.partner), (len(self.anchor),), generator=generator)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.__getitems__([int(index)])[0]

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        """Batched fetch: the DataLoader calls this, and `datasets.Dataset` formats a whole batch at once."""
        anchors = fetch_items(self.anchor, indices)
        if self.partner is None:
            return [{self.anchor_key: a} for a in anchors]
        partners = fetch_items(self.partner, self.draws()[indices].tolist())
        return [{self.anchor_key: a, self.partner_key: p} for a, p in zip(anchors, partners, strict=True)]


class RelabelledUnion(EpochDraws):
    """``{key: item}`` for the forget items (indices ``0 .. |F|-1``, labels redrawn per epoch), then the retain items.

    A forget item's label is ``(y + U{1..C-1}) mod C`` (never the true class), or with ``keep_true_possible`` uniform
    over all ``C`` classes as in the official code. One shuffled loader over this dataset draws ``|F|`` forget items
    per epoch, a share ``|F| / (|F| + |R|)`` of every batch on average.
    """

    def __init__(
        self,
        forget: Dataset,
        retain: Dataset,
        num_labels: int,
        seed: int = 0,
        key: str = "union",
        keep_true_possible: bool = False,
    ) -> None:
        super().__init__(seed)
        if num_labels < 2:
            raise ValueError("Random relabelling needs at least 2 classes.")
        if len(forget) == 0 or len(retain) == 0:
            raise ValueError("Relabelled training needs a non-empty forget set and a non-empty retain set.")
        self.forget, self.retain = forget, retain
        self.num_labels = int(num_labels)
        self.key = key
        self.keep_true_possible = keep_true_possible

    def __len__(self) -> int:
        return len(self.forget) + len(self.retain)

    def draw(self, generator: torch.Generator) -> torch.Tensor:
        """Per forget item: the class shift (1 .. C-1) or, with ``keep_true_possible``, the new label (0 .. C-1)."""
        low = 0 if self.keep_true_possible else 1
        return torch.randint(low, self.num_labels, (len(self.forget),), generator=generator)

    def relabel(self, index: int, label: Any) -> Any:
        """The epoch's label of forget item ``index`` (true label ``label``), of the same kind (tensor or int)."""
        drawn = self.draws()[index]
        new = drawn if self.keep_true_possible else (torch.as_tensor(label) + drawn) % self.num_labels
        return new.to(label.dtype).reshape(label.shape) if torch.is_tensor(label) else int(new)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.__getitems__([int(index)])[0]

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        n_forget = len(self.forget)
        forget_at = [i for i in indices if i < n_forget]
        forget_items = iter(fetch_items(self.forget, forget_at))
        retain_items = iter(fetch_items(self.retain, [i - n_forget for i in indices if i >= n_forget]))
        out = []
        for i in indices:
            if i < n_forget:
                item = dict(next(forget_items))
                item["labels"] = self.relabel(i, item["labels"])
            else:
                item = next(retain_items)
            out.append({self.key: item})
        return out


def fetch_items(dataset: Dataset, indices: list[int]) -> list[Any]:
    # datasets.Dataset (and other map-style datasets) may offer a batched __getitems__: one formatting call per
    # batch instead of one per row.
    if not indices:
        return []
    getitems = getattr(dataset, "__getitems__", None)
    return list(getitems(indices)) if callable(getitems) else [dataset[i] for i in indices]
