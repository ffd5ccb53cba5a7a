"""Command line of the training side: `python -m train <command> ...`.

python -m train evaluate --clean                 # the evaluator on exact renders (its ceiling)
python -m train evaluate --images DIR            # images DIR/0000.png ... scored against DIR/manifest.jsonl
python -m train evaluate --export DIR            # write an evaluation set's prompts and manifest
python -m train style-classifier --out DIR       # train the evaluator's style classifier
python -m train world --out grid.png             # a grid of random training scenes with captions
python -m train evaluate --model M --sheet s.png # score a model; its first samples a category, with prompts
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.presets import DEFAULT_MODEL
from pipeline.worlds import WORLDS

ICONS_GAN_SIZES = ("icons",)  # the `train gan --size` values that train the icons world's layout GAN


def _evaluate(args: argparse.Namespace) -> int:
    from PIL import Image

    from pipeline.worlds import world_named
    from pipeline.worlds.shapes import judge as evaluate

    splits = ["combos", "templates"] if args.split == "both" else [args.split]
    if args.export:
        out = Path(args.export)
        out.mkdir(parents=True, exist_ok=True)
        items = evaluate.eval_set(splits[0], per_category=args.per_category)
        evaluate.write_manifest(items, out / "manifest.jsonl")
        (out / "prompts.txt").write_text("".join(it.prompt + "\n" for it in items))
        print(f"wrote {len(items)} items to {out}/manifest.jsonl and {out}/prompts.txt")
        return 0
    columns = {}
    if args.images:
        folder = Path(args.images)
        items = evaluate.read_manifest(folder / "manifest.jsonl")
        images = [Image.open(folder / f"{i:04d}.png") for i in range(len(items))]
        columns[folder.name] = evaluate.score(items, images)
    elif args.model:
        from pipeline import Wordbrush

        wb = Wordbrush.load(args.model, generator=args.generator, precision=args.precision)
        layout = {"auto": None, "on": True, "off": False}[args.layout]
        evaluator = wb.world.judge  # the model's own world's evaluator
        for split in splits:
            items = evaluator.eval_set(split, per_category=args.per_category)
            images = []
            for i in range(0, len(items), 64):
                chunk = items[i : i + 64]
                result = wb.text_to_image(
                    [it.prompt for it in chunk],
                    seed=[it.seed for it in chunk],
                    steps=args.steps,
                    layout=layout,
                    guidance=args.guidance,
                )
                images += result.images
            if args.sheet and split == splits[0]:
                shown = [i for i, it in enumerate(items) if i % args.per_category < args.sheet_per_category]
                sheet = evaluate.sample_sheet([items[i].prompt for i in shown], [images[i] for i in shown])
                sheet.save(args.sheet)
                print(f"wrote {args.sheet}: {len(shown)} samples, {args.sheet_per_category} a category")
            label = f"{args.model} {wb.generator.kind}" + (f" ({args.precision})" if args.precision != "auto" else "")
            label += {"on": ", layout on", "off": ", layout off"}.get(args.layout, "")
            label += f", guidance {args.guidance:g}" if args.guidance is not None else ""
            columns[f"{label}, held-out {split}"] = evaluator.score(items, images)
    elif args.clean:
        evaluator = world_named(args.world).judge
        for split in splits:
            items = evaluator.eval_set(split, per_category=args.per_category)
            columns[f"clean renders, held-out {split}"] = evaluator.score(items, evaluator.clean_images(items))
    else:
        print("nothing to evaluate: pass --model NAME, --clean, --images DIR or --export DIR", file=sys.stderr)
        return 2
    print(evaluate.format_table(columns))
    return 0


def _style_classifier(args: argparse.Namespace) -> int:
    from train.classifiers import train_style_classifier

    train_style_classifier(out=args.out, steps=args.steps, seed=args.seed)
    return 0


def _icons_classifier(args: argparse.Namespace) -> int:
    import torch

    from train.classifiers import train_icon_classifier

    if args.threads:
        torch.set_num_threads(args.threads)
    train_icon_classifier(out=args.out, steps=args.steps, seed=args.seed)
    return 0


def _world(args: argparse.Namespace) -> int:
    import random

    from PIL import Image

    from pipeline.worlds import world_named

    world = world_named(args.world).scenes
    rng = random.Random(args.seed)
    n, tile = args.n, 128
    cols = 8
    grid = Image.new("RGB", (cols * tile, -(-n // cols) * tile), "white")
    for i in range(n):
        ex = world.sample_example(rng)
        image, _ = world.render_scene(ex.scene, ex.seed)
        grid.paste(image.resize((tile, tile), Image.NEAREST), ((i % cols) * tile, (i // cols) * tile))
        print(f"{i:3d}  {ex.caption}")
    grid.save(args.out)
    print(f"wrote {args.out}")
    return 0


def _encoder_and_pool(args: argparse.Namespace):
    """(device, prompt encoder, caption pool) for a training command: threads, CUDA if present, cached states."""
    import torch

    from pipeline.encoders import load_encoder
    from train.diffusion import build_pool

    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = True  # fp32 matmuls (the GAN's) on TF32 tensor cores
    encoder = load_encoder(args.encoder, device=device)
    weights = _kind_weights(getattr(args, "kind_weights", None))
    world_name = getattr(args, "world", "shapes")
    pool = build_pool(encoder, size=args.pool_size, seed=args.seed, kind_weights=weights, world_name=world_name)
    return device, encoder, pool


def _kind_weights(spec: str | None) -> dict[str, float] | None:
    from train.diffusion import parse_kind_weights

    try:
        return parse_kind_weights(spec)
    except ValueError as e:
        raise SystemExit(f"--kind-weights: {e}") from None


def _train_config(args: argparse.Namespace, **overrides):
    """The training loop's settings from a training command's common options, plus its own overrides."""
    from train.loop import TrainConfig

    settings = {
        "out": args.out,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "checkpoint_every": args.checkpoint_every,
        "eval_every": args.eval_every,
        "mixed_precision": getattr(args, "mixed_precision", "auto"),
        "seed": args.seed,
        "max_minutes": args.max_minutes,
    }
    return TrainConfig(**{**settings, **overrides})


def _diffusion(args: argparse.Namespace) -> int:
    import dataclasses
    import platform

    import torch

    from pipeline import diffusion
    from train.diffusion import DiffusionTask
    from train.loop import run_training

    args.world = diffusion.SIZES[args.size].world  # the world whose scenes fill the caption pool
    device, encoder, pool = _encoder_and_pool(args)
    cfg = dataclasses.replace(diffusion.SIZES[args.size], cond_dim=encoder.hidden_size)
    unet, layout_encoder = diffusion.build_unet(cfg), None
    has_checkpoint = (Path(args.out) / "checkpoint" / "state.pt").exists()
    if args.init and not has_checkpoint:  # warm start from shipped weights on a fresh machine
        unet, cfg, _ = diffusion.load(args.init)
        unet, layout_encoder = unet.float().train(), diffusion.load_layout_encoder(args.init, cfg)
        print(f"initialised from {args.init}")
        if diffusion.SIZES[args.size].coords and not diffusion.reads_coords(unet):
            unet, cfg = diffusion.with_coords(unet, std=args.coords_init_std), dataclasses.replace(cfg, coords=True)
            print(f"widened to read coordinate maps (new weights from N(0, {args.coords_init_std}))")
    print(f"UNet: {sum(p.numel() for p in unet.parameters()) / 1e6:.1f}M params, encoder {args.encoder}")
    card = {
        "command": "python -m train " + " ".join(args.argv),
        "hardware": torch.cuda.get_device_name()
        if device == "cuda"
        else f"{platform.processor() or 'cpu'}, {torch.get_num_threads()} threads",
        "encoder": args.encoder,
    }
    options = dict(
        workers=args.workers,
        eval_per_category=args.eval_per_category,
        card=card,
        high_noise=args.high_noise,
        eval_guidance=args.eval_guidance,
        eval_steps=args.eval_steps,
    )
    if cfg.layout:  # the icons model: the UNet and its layout stage's encoder (train/icons_diffusion.py)
        from train.icons_diffusion import IconsDiffusionTask

        task = IconsDiffusionTask(
            unet, cfg, encoder, pool, layout_encoder=layout_encoder, sketch_steps=args.sketch_steps, **options
        )
    else:
        task = DiffusionTask(unet, cfg, encoder, pool, grounding=args.grounding, **options)
    run_training(task, _train_config(args, ema_decay=args.ema_decay))
    return 0


def _inpaint(args: argparse.Namespace) -> int:
    import torch

    from pipeline import diffusion
    from pipeline.core import local_folder
    from pipeline.encoders import load_encoder
    from train.inpaint import InpaintTask
    from train.loop import run_training

    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    base = local_folder(args.init)
    unet, cfg, meta = diffusion.load(base)
    unet = diffusion.inpainting_unet(unet.float()).train()  # checkpoint weights, if any, replace these
    encoder = load_encoder(meta["encoder"], device=device)
    card = {"command": "python -m train " + " ".join(args.argv), "base": str(args.init)}
    task = InpaintTask(unet, cfg, encoder, base=base, workers=args.workers, eval_n=args.eval_n, card=card)
    run_training(task, _train_config(args, warmup=50))
    return 0


def _gan(args: argparse.Namespace) -> int:
    import dataclasses

    from pipeline import gan
    from train.gan import GANTask
    from train.loop import run_training

    icons = args.size in ICONS_GAN_SIZES  # the icons world's layout GAN (train/icons_gan.py)
    args.world = "icons" if icons else "shapes"
    _, encoder, pool = _encoder_and_pool(args)
    if icons:
        generator = gan.LayoutGAN()
    else:
        generator = gan.build_gan(dataclasses.replace(gan.GAN_SIZES[args.size], cond_dim=encoder.hidden_size))
    if args.init and not (Path(args.out) / "checkpoint" / "state.pt").exists():
        generator = gan.load(args.init, device="cpu").float().train()  # the discriminator starts afresh
        print(f"generator initialised from {args.init}")
    print(f"GAN generator: {sum(p.numel() for p in generator.parameters()) / 1e6:.1f}M params, encoder {args.encoder}")
    card = {"command": "python -m train " + " ".join(args.argv), "encoder": args.encoder}
    options = dict(lr=args.lr, workers=args.workers, eval_per_category=args.eval_per_category, card=card)
    if icons:
        from pipeline.worlds.icons.layout import load_layout_encoder
        from train.icons_gan import IconsGANTask

        card["layout_from"] = args.layout_from
        task = IconsGANTask(generator, load_layout_encoder(args.layout_from), encoder, pool, **options)
    else:
        task = GANTask(generator, encoder, pool, **options)
    run_training(task, _train_config(args, warmup=0, betas=(0.0, 0.99), ema_decay=0.999, mixed_precision="no"))
    return 0


# Each embedded world's prompt-reader training: its task, its reader's config and the folder the pipeline loads
READER_TRAINING = {
    "shapes": (
        "train.understanding:UnderstandingTask",
        "pipeline.worlds.shapes.reader:ReaderConfig",
        "assets/understanding",
    ),
    "icons": (
        "train.icons_understanding:IconsUnderstandingTask",
        "pipeline.worlds.icons.reader:ReaderConfig",
        "assets/icons-understanding",
    ),
}


def _understanding(args: argparse.Namespace) -> int:
    import importlib

    from train.loop import run_training

    def named(spec: str):
        module, name = spec.split(":")
        return getattr(importlib.import_module(module), name)

    task_spec, config_spec, folder = READER_TRAINING[args.world]
    cfg = named(config_spec)(backbone=args.backbone, rank=args.rank)
    task = named(task_spec)(cfg, seed=args.seed, command="python -m train " + " ".join(args.argv))
    trainable = sum(p.numel() for p in task.trainable().parameters() if p.requires_grad) / 1e6
    print(f"prompt reader ({args.world}): {args.backbone}, LoRA rank {args.rank}: {trainable:.2f}M trainable")
    run_training(task, _train_config(args, warmup=100, ema_decay=0.0, mixed_precision="no"))
    print(f"the reader is in {Path(args.out) / 'model'}; the pipeline loads {folder}")
    return 0


def _lora(args: argparse.Namespace) -> int:
    import torch

    from train.lora import PRIOR_WEIGHT, train_lora

    if args.threads:
        torch.set_num_threads(args.threads)
    path = train_lora(
        model=args.model,
        data=args.data,
        out=args.out,
        rank=args.rank,
        targets=args.targets,
        steps=args.steps,
        lr=args.lr,
        batch_size=args.batch_size,
        mixed_precision=args.mixed_precision,
        gradient_checkpointing=args.gradient_checkpointing,
        validation_prompts=args.validation_prompts,
        checkpoint_every=args.checkpoint_every,
        allow_empty_captions=args.allow_empty_captions,
        prior_weight=PRIOR_WEIGHT if args.prior_weight is None else args.prior_weight,
        prior_data=args.prior_data,
        seed=args.seed,
        card={"command": "python -m train " + " ".join(args.argv)},
    )
    print(f"LoRA written to {path}")
    return 0


def _lora_demo_data(args: argparse.Namespace) -> int:
    from pipeline.worlds import world_named

    demo = world_named(args.world).lora_demo  # a thing the world's models never saw, drawn by code
    args.out = args.out or f"data/{demo.name}"
    demo.write(Path(args.out), n=args.n, seed=args.seed)
    print(f"wrote {args.n} captioned pictures of the {demo.name} demo to {args.out}")
    return 0


def _evaluate_command(sub) -> None:
    p = sub.add_parser("evaluate", help="score a model (or exact renders) with its world's evaluator")
    p.add_argument("--clean", action="store_true", help="score exact renders of the evaluation set")
    p.add_argument("--world", choices=list(WORLDS), default="shapes", help="the world of --clean")
    p.add_argument("--images", help="folder with NNNN.png and manifest.jsonl (from --export)")
    p.add_argument("--export", help="write the evaluation set's prompts.txt and manifest.jsonl here")
    p.add_argument("--model", help="generate the evaluation set with this model (preset, folder or hub id)")
    p.add_argument("--generator", choices=["diffusion", "gan"], default=None)
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the generator's)")
    p.add_argument("--guidance", type=float, default=None, help="classifier-free guidance (default: the generator's)")
    p.add_argument("--split", choices=["combos", "templates", "both"], default="both")
    p.add_argument("--per-category", type=int, default=100)
    p.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto", help="the diffusion generator's")
    p.add_argument("--sheet", help="with --model: also save a grid of samples with their prompts (PNG) here")
    p.add_argument("--sheet-per-category", type=int, default=4, help="samples a category on the --sheet")
    p.add_argument(
        "--layout",
        choices=["auto", "on", "off"],
        default="auto",
        help="the layout stage for two-object prompts (pipeline/layout.py); auto: on where the generator reads it",
    )
    p.set_defaults(fn=_evaluate)


def _style_classifier_command(sub) -> None:
    p = sub.add_parser("style-classifier", help="train the evaluator's style classifier")
    p.add_argument("--out", default="assets/evaluator/style-classifier")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=_style_classifier)


def _icons_classifier_command(sub) -> None:
    p = sub.add_parser("icons-classifier", help="train the icons world evaluator's icon classifier")
    p.add_argument("--out", default="assets/evaluator/icons-classifier")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=_icons_classifier)


def _world_command(sub) -> None:
    p = sub.add_parser("world", help="draw a grid of random training scenes")
    p.add_argument("--world", choices=list(WORLDS), default="shapes")
    p.add_argument("--out", default="world.png")
    p.add_argument("--n", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=_world)


def _diffusion_command(sub) -> None:
    p = sub.add_parser("diffusion", help="train (or resume) the embedded diffusion model")
    p.add_argument("--out", default="runs/diffusion", help="run folder; an existing checkpoint there is resumed")
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--encoder", default="minilm", help="minilm, smollm2, or a transformers id/folder")
    p.add_argument("--pool-size", type=int, default=20000, help="captions whose states are cached")
    p.add_argument("--workers", type=int, default=0, help="render processes (use several on a GPU host)")
    p.add_argument("--init", help="model folder to start from when the run has no checkpoint yet")
    p.add_argument(
        "--sketch-steps",
        type=int,
        default=1000,
        help="icons model: at most this many steps fit a new sketch painter before the UNet trains",
    )
    p.add_argument(
        "--size",
        choices=["small", "tiny", "icons", "icons-tiny"],
        default="small",
        help="UNet size and world (pipeline/diffusion.py SIZES): small, tiny: shapes; icons, icons-tiny: icons",
    )
    p.add_argument(
        "--coords-init-std",
        type=float,
        default=0.05,
        help="an --init UNet without coordinate inputs gains them, weights from N(0, this)",
    )
    p.add_argument(
        "--high-noise", type=float, default=0.0, help="share of each batch drawn from the noisiest fifth of timesteps"
    )
    p.add_argument("--kind-weights", help='how often each scene kind is drawn, e.g. "relation=2" (others 1)')
    p.add_argument(
        "--grounding",
        type=float,
        default=0.0,
        help="weight of the attention grounding loss (train/grounding.py): each object's words attend to its box",
    )
    p.add_argument("--eval-per-category", type=int, default=20, help="evaluator items per category, per eval")
    p.add_argument("--eval-guidance", type=float, default=3.0, help="classifier-free guidance of the evaluations")
    p.add_argument(
        "--eval-steps",
        type=int,
        default=12,
        help="sampling steps of the evaluations (an icons model keeps these and --eval-guidance as its defaults)",
    )
    p.add_argument("--ema-decay", type=float, default=0.999, help="weight EMA (0.995 suits runs of a few k steps)")
    p.add_argument("--checkpoint-every", type=int, default=250)
    p.add_argument("--eval-every", type=int, default=2000)
    p.add_argument(
        "--mixed-precision",
        choices=["auto", "no", "bf16", "fp16"],
        default="auto",
        help="auto: bf16 on CUDA, fp32 on CPU (bf16 also pays on CPUs with AMX)",
    )
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--max-minutes", type=float, default=0, help="stop after this much wall time (checkpoint, export)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=_diffusion)


def _inpaint_command(sub) -> None:
    p = sub.add_parser("inpaint", help="train (or resume) an inpainting UNet from a diffusion model")
    p.add_argument("--init", default="assets/shapes-diffusion", help="the text-to-image model it starts from")
    p.add_argument("--out", default="runs/inpaint", help="run folder; OUT/model is the base plus inpaint-unet/")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--eval-n", type=int, default=50, help="held-out inpainting cases per evaluation")
    p.add_argument("--checkpoint-every", type=int, default=100)
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--mixed-precision", choices=["auto", "no", "bf16", "fp16"], default="auto")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--max-minutes", type=float, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=_inpaint)


def _gan_command(sub) -> None:
    p = sub.add_parser("gan", help="train (or resume) the one-step GAN generator")
    p.add_argument("--out", default="runs/gan")
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--encoder", default="minilm")
    p.add_argument(
        "--size",
        choices=["small", "tiny", "icons"],
        default="small",
        help="pipeline/gan.py GAN_SIZES (shapes world), or icons: the icons world's layout GAN",
    )
    p.add_argument(
        "--layout-from",
        default="assets/icons-diffusion",
        help="icons: the model folder whose trained layout encoder makes the map the GAN reads (kept frozen)",
    )
    p.add_argument("--init", help="GAN model folder whose generator starts a run that has no checkpoint yet")
    p.add_argument("--pool-size", type=int, default=20000)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--eval-per-category", type=int, default=20)
    p.add_argument("--checkpoint-every", type=int, default=250)
    p.add_argument("--eval-every", type=int, default=2000)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--max-minutes", type=float, default=0, help="stop after this much wall time (checkpoint, export)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=_gan)


def _understanding_command(sub) -> None:
    p = sub.add_parser("understanding", help="train (or resume) the prompt reader that understands free phrasing")
    p.add_argument("--world", choices=list(READER_TRAINING), default="shapes", help="the world whose reader trains")
    p.add_argument("--out", default="runs/understanding")
    p.add_argument("--backbone", default="minilm", help="the language model: minilm, smollm2, or a folder")
    p.add_argument("--rank", type=int, default=16, help="LoRA rank on the language model's linear layers")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--checkpoint-every", type=int, default=200)
    p.add_argument("--eval-every", type=int, default=1000)
    p.add_argument("--max-minutes", type=float, default=0, help="stop after this much wall time (checkpoint, export)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=_understanding)


def _lora_command(sub) -> None:
    p = sub.add_parser("lora", help="LoRA fine-tuning of a diffusion model on a folder of captioned images")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"preset, model folder or hub id (default: {DEFAULT_MODEL})")
    p.add_argument("--data", required=True, help="images + metadata.jsonl, or images with .txt captions")
    p.add_argument("--out", required=True, help="run folder; the LoRA lands in OUT/model/lora.safetensors")
    p.add_argument("--rank", type=int, default=8)
    p.add_argument(
        "--targets",
        choices=["attention", "cross-kv"],
        default="attention",
        help="attention: every attention projection; cross-kv: cross-attention keys and values only",
    )
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="images per step (default: 16 for embedded models; 8 for SD 1.x/2.x, 2 for SDXL)",
    )
    p.add_argument("--mixed-precision", choices=["auto", "no", "bf16", "fp16"], default="auto")
    p.add_argument(
        "--gradient-checkpointing",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="recompute activations in the backward pass (default: on for diffusers checkpoints on CUDA)",
    )
    p.add_argument("--validation-prompts", nargs="*", default=[], help="drawn at every checkpoint export")
    p.add_argument("--checkpoint-every", type=int, default=50)
    p.add_argument(
        "--prior-weight",
        type=float,
        default=None,
        help="embedded models: weight of prior preservation (self-distillation on the base world's captions; "
        "default: train/lora.py PRIOR_WEIGHT); 0 off",
    )
    p.add_argument(
        "--prior-data",
        choices=["world", "base"],
        default="world",
        help="prior preservation images: fresh renders of the base's training world, or the base's own drawings",
    )
    p.add_argument(
        "--allow-empty-captions", action="store_true", help="train images without a caption as unconditional"
    )
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=_lora)


def _lora_demo_data_command(sub) -> None:
    p = sub.add_parser("lora-demo-data", help="write a LoRA demo folder: stars (shapes world) or a kite (icons)")
    p.add_argument("--out", help="default: data/kite (icons) or data/stars (shapes)")
    p.add_argument("--world", choices=list(WORLDS), default="icons", help="which model the demo teaches")
    p.add_argument("--n", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=_lora_demo_data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _evaluate_command(sub)
    _style_classifier_command(sub)
    _icons_classifier_command(sub)
    _world_command(sub)
    _diffusion_command(sub)
    _inpaint_command(sub)
    _gan_command(sub)
    _understanding_command(sub)
    _lora_command(sub)
    _lora_demo_data_command(sub)
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv  # recorded in model cards
    try:
        return args.fn(args)
    except (ValueError, OSError) as err:  # bad data or a model it cannot train: a line, not a traceback
        message = f"{err.strerror}: {err.filename}" if isinstance(err, OSError) and err.filename else str(err)
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
