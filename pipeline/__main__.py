"""Command line for scripts: `python -m pipeline generate ...`.

python -m pipeline generate "a red circle above a blue square" --seed 0 --out out.png
python -m pipeline generate --prompts prompts.txt --out-dir DIR --seed 0    # DIR/0000.png, 0001.png, ...
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tqdm.auto import tqdm

from pipeline.presets import DEFAULT_MODEL


def _load(args: argparse.Namespace):
    """The model the options name."""
    from pipeline import load_pipeline

    return load_pipeline(
        args.model,
        generator=args.generator,
        device=args.device,
        offload=args.offload,
        compile=args.compile,
        precision=args.precision,
    )


def _generate(args: argparse.Namespace) -> int:
    from pipeline.recipe import save_png

    if (args.prompt is None) == (args.prompts is None):
        raise ValueError("give either a prompt or --prompts FILE")
    if args.prompts:
        try:
            text = Path(args.prompts).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{args.prompts} is not UTF-8 text; save it as UTF-8, one prompt per line") from None
        prompts = [line.strip() for line in text.splitlines() if line.strip()]
        if not prompts:
            raise ValueError(f"{args.prompts} holds no prompts; write one prompt per line")
        if not args.out_dir:
            raise ValueError("--prompts needs --out-dir")
    else:
        prompts = [args.prompt]
        _check_out(Path(args.out))
    t0 = time.time()
    wb = _load(args)
    print(
        f"loaded {args.model} ({wb.generator.kind}, encoder {wb.encoder_name}) in {time.time() - t0:.1f}s",
        file=sys.stderr,
    )
    if args.prompts:
        out_dir = Path(args.out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        for start in tqdm(range(0, len(prompts), args.batch_size), desc="batches", unit="batch"):
            chunk = prompts[start : start + args.batch_size]
            # Line i of the file gets seed + i, whatever batch it lands in.
            seeds = [args.seed + start + i for i in range(len(chunk))] if args.seed != -1 else [-1] * len(chunk)
            result = wb.text_to_image(
                chunk,
                seed=seeds,
                steps=args.steps,
                guidance=args.guidance,
                lora=args.lora,
                expand=args.expand,
                layout=args.layout,
                understand=args.understand,
            )
            for i, (image, recipe) in enumerate(zip(result.images, result.recipes)):
                save_png(image, recipe, out_dir / f"{start + i:04d}.png")
        print(f"wrote {len(prompts)} images to {out_dir}", file=sys.stderr)
    else:
        result = wb.text_to_image(
            prompts[0],
            seed=args.seed,
            steps=args.steps,
            guidance=args.guidance,
            num_images=args.num_images,
            lora=args.lora,
            expand=args.expand,
            layout=args.layout,
            understand=args.understand,
        )
        out = Path(args.out)
        for j, (image, recipe) in enumerate(zip(result.images, result.recipes)):
            path = out if args.num_images == 1 else out.with_name(f"{out.stem}-{j:02d}{out.suffix}")
            save_png(image, recipe, path)
            print(f"wrote {path} (seed {recipe.seed})", file=sys.stderr)
            if recipe.understood == "rewritten":
                print(f"  understood as: {recipe.encoded_prompt}", file=sys.stderr)
            for note in recipe.not_drawn:
                print(f"  not drawn as asked: {note}", file=sys.stderr)
            if recipe.expanded:
                print(f"  the LM expanded the prompt to: {recipe.encoded_prompt}", file=sys.stderr)
            if recipe.layout:
                print(f"  layout: {recipe.layout}", file=sys.stderr)
    return 0


def _check_out(path: Path) -> None:
    """Refuse an output path that cannot be written before the model loads, not after the images are made."""
    if not path.parent.is_dir():
        raise ValueError(f"the folder {path.parent} does not exist; create it or choose another --out")
    if path.suffix.lower() != ".png":
        raise ValueError(f"{path.name}: results are PNG files (they carry their recipe); name it *.png")


def _edit(args: argparse.Namespace) -> int:
    """style and inpaint: one image in, one image out."""
    from pipeline.recipe import save_png

    _check_out(Path(args.out))
    wb = _load(args)
    knobs = {
        "seed": args.seed,
        "steps": args.steps,
        "guidance": args.guidance,
        "lora": args.lora,
        "expand": args.expand,
        "understand": args.understand,
    }
    if args.command == "style":
        result = wb.style_transfer(args.image, style_prompt=args.prompt, strength=args.strength, **knobs)
    else:
        result = wb.inpaint(args.image, args.mask, prompt=args.prompt, zoom=not args.whole_image, **knobs)
    recipe = result.recipes[0]
    save_png(result.images[0], recipe, args.out)
    print(f"wrote {args.out} (seed {recipe.seed})", file=sys.stderr)
    if recipe.understood == "rewritten" or recipe.described:
        print(f"  understood as: {recipe.encoded_prompt}", file=sys.stderr)
    for note in recipe.not_drawn:
        print(f"  not drawn as asked: {note}", file=sys.stderr)
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model", default=DEFAULT_MODEL, help=f"preset name, model folder or hub id (default: {DEFAULT_MODEL})"
    )
    p.add_argument(
        "--generator", choices=["diffusion", "gan", "diffusers"], default=None, help="default: the model's own"
    )
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the generator's)")
    p.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale")
    p.add_argument("--seed", type=int, default=0, help="-1 for a random seed")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--lora", help="a LoRA to apply: FILE.safetensors[:scale] (diffusion generator)")
    expand = p.add_mutually_exclusive_group()
    expand.add_argument(
        "--expand", action="store_true", default=None, help="rewrite the prompt with the LM expander (SmolLM2) first"
    )
    expand.add_argument("--no-expand", dest="expand", action="store_false", help="do not expand the prompt")
    understand = p.add_mutually_exclusive_group()
    understand.add_argument(
        "--understand",
        action="store_true",
        default=None,
        help="read free phrasing into the world's own words with the prompt reader (default where one is shipped)",
    )
    understand.add_argument(
        "--no-understand", dest="understand", action="store_false", help="use the prompt exactly as written"
    )
    p.add_argument("--offload", action="store_true", help="diffusers models: model CPU offload for small GPUs")
    p.add_argument("--compile", action="store_true", help="diffusers models: torch.compile the denoiser")
    p.add_argument(
        "--precision",
        choices=["auto", "bf16", "fp32"],
        default="auto",
        help="embedded diffusion: bf16 autocast where the hardware has it natively (auto), or force one",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("generate", help="text to image")
    p.add_argument("prompt", nargs="?", help="the prompt (or use --prompts)")
    p.add_argument("--prompts", help="a text file, one prompt per line")
    p.add_argument("--out", default="out.png", help="output PNG for a single prompt")
    p.add_argument("--out-dir", help="output folder for --prompts: 0000.png, 0001.png, ...")
    p.add_argument("--num-images", type=int, default=1, help="images for a single prompt (seed, seed+1, ...)")
    p.add_argument("--batch-size", type=int, default=16, help="prompts per forward pass with --prompts")
    p.add_argument(
        "--no-layout",
        dest="layout",
        action="store_const",
        const=False,
        default=None,
        help="sample two-object prompts without the layout stage's planned boxes (pipeline/layout.py)",
    )
    _common(p)
    p.set_defaults(fn=_generate)

    p = sub.add_parser("style", help="style transfer: redraw an image under a style prompt")
    p.add_argument("--image", required=True)
    p.add_argument("--prompt", required=True, help='e.g. "in outline style" or a full description')
    p.add_argument("--strength", type=float, help="0 keeps the input, 1 ignores it (default: the model's, 0.6 or 1)")
    p.add_argument("--out", default="out.png")
    _common(p)
    p.set_defaults(fn=_edit)

    p = sub.add_parser("inpaint", help="regenerate the white part of a mask")
    p.add_argument("--image", required=True)
    p.add_argument("--mask", required=True, help="white = regenerate, black = keep (any mode, 50%% threshold)")
    p.add_argument("--prompt", required=True)
    p.add_argument("--out", default="out.png")
    p.add_argument(
        "--whole-image",
        action="store_true",
        help="redraw the whole image (default: a small mask's square on the model's whole canvas)",
    )
    _common(p)
    p.set_defaults(fn=_edit)
    args = parser.parse_args(argv)
    try:
        return args.fn(args)
    except (ValueError, OSError) as err:  # bad input, a missing or unreadable file: a line, not a traceback
        message = f"{err.strerror}: {err.filename}" if isinstance(err, OSError) and err.filename else str(err)
        print(f"error: {message}", file=sys.stderr)
        return 2


def generate_main(argv: list[str] | None = None) -> int:
    """The `wordbrush-generate` command: `wordbrush-generate PROMPT --out x.png` is `generate`; a first word of
    "style" or "inpaint" runs that command instead."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in ("generate", "style", "inpaint"):
        argv = ["generate", *argv]
    return main(argv)


if __name__ == "__main__":
    sys.exit(main())
