"""Wheels for the GPU host, small enough to travel beside the project (64 MiB a call, in all).

    python -m scripts.gpu.slim_wheels --out .whl-app      # gradio and its missing needs, diffusers: ~9 MiB

Downloads (from the package index, for the host's Python 3.12) the exact versions this checkout's venv
runs, of the packages the host's image lacks (docs/gpu-host.md), and drops
from gradio its browser frontend's scripts and styles, node server and demo media (29 of its 31 MB: a
benchmark over the HTTP API never loads them; the page itself stays, so the server starts) and from
diffusers its hub pipelines (the embedded model needs only its UNet, schedulers and attention code;
`pipeline/hub.py` imports pipelines only for hub checkpoints). Each kept file stays byte for byte;
RECORD lists what is left. Checked here: the app serves `/text_to_image` from the slimmed gradio and
diffusers.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

# Not on the GPU host's image (its package list), needed by gradio, gradio_client or the pipeline.
PACKAGES = [
    "gradio",
    "gradio_client",
    "hf-gradio",
    "fastapi",
    "starlette",
    "uvicorn",
    "pydantic",
    "pydantic_core",
    "annotated_types",
    "typing_inspection",
    "orjson",
    "python-multipart",
    "safehttpx",
    "groovy",
    "semantic_version",
    "tomlkit",
    "pydub",
    "brotli",
    "pytz",
    "diffusers",
    "importlib_metadata",
]
DROP = {
    "gradio": (
        "gradio/templates/frontend/assets/",
        "gradio/templates/frontend/static/",
        "gradio/templates/node/",
        "gradio/media_assets/",
        "gradio/test_data/",
    ),
    "diffusers": ("diffusers/pipelines/",),
}
KEEP = {"diffusers": ("diffusers/pipelines/__init__.py", "diffusers/pipelines/pipeline_utils.py")}
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64"]


def slim(wheel: Path, drop: tuple[str, ...], keep: tuple[str, ...], out: Path) -> None:
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(out / wheel.name, "w", zipfile.ZIP_DEFLATED) as dst:
        kept = [i for i in src.infolist() if not i.filename.startswith(drop) or i.filename in keep]
        names = {i.filename for i in kept}
        for info in kept:
            data = src.read(info)
            if info.filename.endswith(".dist-info/RECORD"):
                lines = data.decode().splitlines()
                data = (
                    "\n".join(ln for ln in lines if ln.split(",")[0] in names or ln.endswith("RECORD,,")) + "\n"
                ).encode()
            dst.writestr(info, data)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path(".whl-app"))
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in PACKAGES]
    with tempfile.TemporaryDirectory() as tmp:
        platforms = [arg for plat in PLATFORMS for arg in ("--platform", plat)]
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--only-binary=:all:",
                "--python-version",
                "3.12",
                "--implementation",
                "cp",
                *platforms,
                "-d",
                tmp,
                *pins,
            ],
            check=True,
        )
        for wheel in sorted(Path(tmp).glob("*.whl")):
            project = wheel.name.split("-")[0].lower()
            slim(wheel, DROP.get(project, ()), KEEP.get(project, ()), args.out)
    total = sum(f.stat().st_size for f in args.out.glob("*.whl"))
    print(f"{len(list(args.out.glob('*.whl')))} wheels, {total / 2**20:.1f} MiB in {args.out}")


if __name__ == "__main__":
    main()
