"""A :class:`Case`: named image channels with an optional label and metadata."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from medsight.core.image import Image


@dataclass(frozen=True, eq=False)
class Case:
    """One sample of a dataset.

    Attributes:
        case_id: identifier, unique in its dataset.
        image: all channels stacked ``(C, *spatial)`` with geometry.
        channel_names: one name per channel (``("T2",)``, ``("R", "G", "B")``).
        label: a label map (``Image`` with one channel of integer class values), a class index (int),
            a multi-label vector (tuple of 0/1), or ``None`` when unlabelled.
        mask: an optional region-of-interest mask (e.g. DRIVE's field of view), one channel.
        meta: small string facts (source files, split, synthetic flag); no patient identifiers.
    """

    case_id: str
    image: Image
    channel_names: tuple[str, ...] = ()
    label: Image | int | tuple[int, ...] | None = None
    mask: Image | None = None
    meta: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = self.channel_names or tuple(f"ch{i}" for i in range(self.image.num_channels))
        if len(names) != self.image.num_channels:
            raise ValueError(
                f"Expected {self.image.num_channels} channel names for case {self.case_id}, got {list(names)}"
            )
        object.__setattr__(self, "channel_names", tuple(names))

    @property
    def label_map(self) -> Image | None:
        """The label as an Image when it is a mask, else ``None``."""
        return self.label if isinstance(self.label, Image) else None

    @property
    def label_array(self) -> np.ndarray | None:
        """The label map's spatial array ``(*spatial)`` as int64, or ``None``."""
        lm = self.label_map
        return None if lm is None else np.asarray(lm.array[0]).astype(np.int64)
