"""Zip a folder reproducibly: sorted paths, one fixed timestamp, fixed modes (make package)."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

#: Every entry's time: the earliest a zip can hold, so a build does not depend on the clock.
EPOCH = (1980, 1, 1, 0, 0, 0)


def zip_dir(folder: Path, target: Path) -> None:
    """Write every file under `folder` into `target`, byte for byte the same each time."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for path in files:
            info = zipfile.ZipInfo(path.relative_to(folder).as_posix(), date_time=EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes(), compresslevel=9)


if __name__ == "__main__":
    zip_dir(Path(sys.argv[1]), Path(sys.argv[2]))
