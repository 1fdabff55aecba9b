"""Retain/forget pairing: one dataset anchored on retain, so one epoch is one pass over retain."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset


class PairedDataset(Dataset):
    """Items ``{anchor_key: anchor[i]}``, plus ``{partner_key: partner[j]}`` for a freshly drawn ``j``.

    The partner (forget) item is drawn at random on every access, so forget batches are re-drawn
    each pass instead of replaying a cached cycle. The draw uses torch's global generator, which
    the Trainer seeds (and restores on resume), and the DataLoader's ``seed_worker`` seeds in workers.
    The nested items are collated by ``torch.utils.data.default_collate``, which recurses into dicts.
    """

    def __init__(
        self,
        anchor: Dataset,
        anchor_key: str = "retain",
        partner: Dataset | None = None,
        partner_key: str = "forget",
    ) -> None:
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

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = {self.anchor_key: self.anchor[index]}
        if self.partner is not None:
            j = int(torch.randint(len(self.partner), ()).item())
            item[self.partner_key] = self.partner[j]
        return item

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        """Batched fetch: the DataLoader calls this, and `datasets.Dataset` formats a whole batch at once."""
        anchors = _fetch(self.anchor, indices)
        if self.partner is None:
            return [{self.anchor_key: a} for a in anchors]
        drawn = torch.randint(len(self.partner), (len(indices),)).tolist()
        partners = _fetch(self.partner, drawn)
        return [{self.anchor_key: a, self.partner_key: p} for a, p in zip(anchors, partners, strict=True)]


def _fetch(dataset: Dataset, indices: list[int]) -> list[Any]:
    # datasets.Dataset (and other map-style datasets) may offer a batched __getitems__; it is ~20x faster
    # than formatting rows one by one.
    getitems = getattr(dataset, "__getitems__", None)
    return list(getitems(indices)) if callable(getitems) else [dataset[i] for i in indices]
