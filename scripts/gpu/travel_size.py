"""What one call to a GPU host would carry to a lent GPU host, against its 64 MiB limit: the tracked
and untracked-not-ignored files of this checkout, plus the ignored paths named to carry.

    python -m scripts.gpu.travel_size .whl .carry      # exit status 1 when it is over the limit

Run it before spending device time: a call over the limit is refused.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

LIMIT = 64 * 2**20


def size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> int:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], capture_output=True, check=True
    ).stdout.split(b"\0")
    files = [Path(f.decode()) for f in listed if f and Path(f.decode()).is_file()]
    folders: Counter[str] = Counter()
    for f in files:
        folders[str(f.parent)] += f.stat().st_size
    tree = sum(folders.values())
    carried = {c: size(Path(c)) for c in sys.argv[1:]}
    total = tree + sum(carried.values())
    mib = 2**20
    print(f"working tree: {tree / mib:.1f} MiB in {len(files)} files; largest folders:")
    for folder, n in folders.most_common(5):
        print(f"  {n / mib:5.1f} MiB  {folder}")
    for c, n in carried.items():
        print(f"carried {c}: {n / mib:.1f} MiB")
    verdict = "fits" if total <= LIMIT else f"OVER by {(total - LIMIT) / mib:.1f} MiB"
    print(f"total {total / mib:.1f} MiB of {LIMIT // mib} MiB: {verdict}")
    return 0 if total <= LIMIT else 1


if __name__ == "__main__":
    sys.exit(main())
