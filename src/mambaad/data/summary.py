"""Per-class counts and problems of a sample table: what ``mambaad data`` prints.

Errors (missing masks, unreadable files, wrong mask sizes) raise DataError in the readers or in
:func:`check_files`; what is collected here are *warnings*: things that are legal but change what can be
measured, e.g. a label-only class (no pixel metrics) or an anomalous image whose mask is empty (it counts
for image metrics and adds no positive pixels; Magnetic Tile has four such 'uneven' masks).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from mambaad.data.imageio import load_mask, open_image
from mambaad.data.sample import Sample, by_class


@dataclass
class ClassSummary:
    """Counts of one class; ``problems`` are human-readable warnings."""

    train_good: int = 0
    train_anomalous: int = 0
    test_good: int = 0
    test_anomalous: int = 0
    masks: int = 0
    has_masks: bool = False
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        """The ``--json`` form (train_anomalous only when non-zero, to keep the common case short)."""
        out: dict[str, object] = {
            "train_good": self.train_good,
            "test_good": self.test_good,
            "test_anomalous": self.test_anomalous,
            "masks": self.masks,
            "has_masks": self.has_masks,
            "problems": list(self.problems),
        }
        if self.train_anomalous:
            out["train_anomalous"] = self.train_anomalous
        return out


def _names(samples: Sequence[Sample], limit: int = 3) -> str:
    shown = ", ".join(f"{s.defect}/{s.image_path.name}" for s in samples[:limit])
    return shown + (f", ... (+{len(samples) - limit})" if len(samples) > limit else "")


def summarize_class(samples: Sequence[Sample]) -> ClassSummary:
    """Counts and warnings of one class's samples."""
    c = ClassSummary()
    for s in samples:
        if s.split == "train":
            c.train_good += s.label == 0
            c.train_anomalous += s.label == 1
        else:
            c.test_good += s.label == 0
            c.test_anomalous += s.label == 1
            c.masks += s.label == 1 and s.mask_path is not None
    c.has_masks = c.masks > 0
    if c.train_good == 0:
        c.problems.append("no normal training images")
    if c.train_anomalous:
        c.problems.append(f"{c.train_anomalous} anomalous images in train (fully-unsupervised setting?)")
    if c.test_good == 0 and c.test_anomalous == 0:
        c.problems.append("no test images: cannot be evaluated")
    elif c.test_anomalous == 0:
        c.problems.append("no anomalous test images: image AUROC is not defined")
    elif c.test_good == 0:
        c.problems.append("no normal test images: image AUROC is not defined")
    if c.test_anomalous and not c.has_masks:
        c.problems.append("no masks: label-only class, pixel metrics not available")
    elif c.masks < c.test_anomalous:
        missing = [s for s in samples if s.split == "test" and s.label == 1 and s.mask_path is None]
        c.problems.append(f"{len(missing)} anomalous images without a mask: {_names(missing)}")
    return c


def summarize(samples: Sequence[Sample]) -> dict[str, ClassSummary]:
    """Per-class summaries, in class order."""
    return {cls: summarize_class(group) for cls, group in by_class(samples).items()}


def check_files(
    samples: Sequence[Sample],
    summaries: dict[str, ClassSummary] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Decode every image and mask; raise DataError on the first unreadable file or size mismatch.

    Empty masks of anomalous images are added to ``summaries[cls].problems`` as a warning.
    """
    empty: dict[str, list[Sample]] = {}
    for i, s in enumerate(samples):
        img = open_image(s.image_path)
        if s.mask_path is not None:
            if not load_mask(s.mask_path, img.size).any():
                empty.setdefault(s.cls, []).append(s)
        if progress is not None:
            progress(i + 1, len(samples))
    if summaries is not None:
        for cls, group in empty.items():
            summaries[cls].problems.append(
                f"{len(group)} anomalous images with an empty mask (kept; they add no anomalous pixels): {_names(group)}"
            )
