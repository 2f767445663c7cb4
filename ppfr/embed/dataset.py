"""Walking a dataset laid out as DATASET_DIR/<person>/<image>."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


class DatasetError(Exception):
    """The dataset folder cannot be used at all (missing, not a folder, no images)."""


@dataclass
class DatasetListing:
    root: Path
    class_names: list[str]                 # sorted person folder names that hold an image file
    images: list[tuple[str, int]]          # (path relative to root, POSIX; label)
    ignored: list[tuple[str, str, str]] = field(default_factory=list)  # (path, reason, detail)


def list_dataset(root) -> DatasetListing:
    """List every image; files the walk cannot use are returned in `ignored` with a reason.

    Hidden entries (names starting with '.') are passed over, as every file manager does.
    """
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"dataset folder {root} does not exist")
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder (expected DATASET_DIR/<person>/<image>.jpg)")

    per_person: dict[str, list[str]] = {}
    ignored = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            ignored.append((entry.name, "not_in_person_folder",
                            "files must sit in a per-person folder: DATASET_DIR/<person>/<image>"))
            continue
        for f in sorted(entry.iterdir()):
            rel = f"{entry.name}/{f.name}"
            if f.name.startswith("."):
                continue
            if f.is_dir():
                ignored.append((rel + "/", "nested_folder", "folders inside a person folder are not walked"))
            elif f.suffix.lower() not in IMAGE_EXTENSIONS:
                ignored.append((rel, "not_an_image",
                                f"extension {f.suffix or '(none)'!r} is not one of {', '.join(IMAGE_EXTENSIONS)}"))
            else:
                per_person.setdefault(entry.name, []).append(rel)

    class_names = sorted(per_person)
    images = [(rel, label) for label, name in enumerate(class_names) for rel in per_person[name]]
    if not images:
        raise DatasetError(
            f"no images in {root}: expected DATASET_DIR/<person>/<image> with extension "
            f"{', '.join(IMAGE_EXTENSIONS)}")
    return DatasetListing(root, class_names, images, ignored)
