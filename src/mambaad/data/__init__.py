"""Data sets: readers for the common AD layouts, the torch Dataset, and the synthetic defect data.

Readers are pure functions ``root -> list[Sample]``; pick one by name from :data:`READERS` or let
:func:`detect_format` choose.
"""

from mambaad.data.folder import read_folder, read_mvtec
from mambaad.data.formats import READERS, detect_format, list_formats, read_dataset, read_datasets
from mambaad.data.imageio import load_mask, load_rgb
from mambaad.data.meta import read_coco, read_medical, read_meta
from mambaad.data.mvtec3d import read_mvtec3d
from mambaad.data.realiad import read_realiad
from mambaad.data.sample import Sample, by_class, class_has_masks, combine, select
from mambaad.data.summary import ClassSummary, check_files, summarize
from mambaad.data.synth import make_synthetic_dataset
from mambaad.data.visa import read_visa


def __getattr__(name: str) -> object:
    # The Dataset needs torch; importing it lazily keeps `mambaad data` / `mambaad synth` quick to start.
    if name == "AnomalyDataset":
        from mambaad.data.dataset import AnomalyDataset

        return AnomalyDataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "READERS",
    "AnomalyDataset",
    "ClassSummary",
    "Sample",
    "by_class",
    "check_files",
    "class_has_masks",
    "combine",
    "detect_format",
    "list_formats",
    "load_mask",
    "load_rgb",
    "make_synthetic_dataset",
    "read_coco",
    "read_dataset",
    "read_datasets",
    "read_folder",
    "read_medical",
    "read_meta",
    "read_mvtec",
    "read_mvtec3d",
    "read_realiad",
    "read_visa",
    "select",
    "summarize",
]
