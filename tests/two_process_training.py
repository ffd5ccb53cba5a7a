"""A run of the training loop on a toy regression task, for tests/test_training.py's two-process test.

    accelerate launch --multi_gpu --num_processes 2 tests/two_process_training.py OUT BATCH_SIZE
    python tests/two_process_training.py OUT BATCH_SIZE        # one process: the same global batch
    accelerate launch --multi_gpu --num_processes 2 tests/two_process_training.py OUT 2 gan

(`--multi_gpu` is accelerate's multi-process launcher; on a machine without a GPU its processes share the
work over gloo.) Each process draws its shard of a global batch fixed by the step (`batches`), so 2
processes x B and 1 process x 2B train on the same data. Each process writes the examples it saw to
OUT/seen-RANK.json; the main process exports the weights to OUT/model/weights.safetensors. The gan mode
trains the tiny GAN a few steps and writes each process's discriminator to OUT/discriminator-RANK.safetensors.
"""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from train.loop import Shard, TrainConfig, run_training

EXAMPLES = 256


class ToyTask:
    def __init__(self, out: Path):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(EXAMPLES, 8, generator=g)
        self.y = self.x @ torch.randn(8, 1, generator=g) + 0.1 * torch.randn(EXAMPLES, 1, generator=g)
        torch.manual_seed(0)
        self.model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
        self.out, self.seen = out, []

    def trainable(self):
        return self.model

    def batches(self, start_step, batch_size, device, shard: Shard):
        step = start_step
        while True:  # the global batch of this step, then this process's slice of it
            idx = torch.randint(EXAMPLES, (batch_size * shard.count,), generator=torch.Generator().manual_seed(step))
            mine = idx[shard.index * batch_size : (shard.index + 1) * batch_size]
            self.seen.append(mine.tolist())
            self._rank = shard.index
            yield self.x[mine].to(device), self.y[mine].to(device)
            step += 1

    def loss(self, model, batch):
        x, y = batch
        return torch.nn.functional.mse_loss(model(x), y)

    def evaluate(self, model):
        (self.out / f"seen-{self._rank}.json").write_text(json.dumps(self.seen))
        return {}

    def export(self, model, folder, *, step, images_seen, seconds):
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "weights.safetensors")


def gan(out: Path, batch_size: int) -> None:
    from pipeline import gan as gan_lib
    from pipeline.encoders import load_encoder
    from train.diffusion import build_pool
    from train.gan import GANTask

    encoder = load_encoder("minilm")
    torch.manual_seed(0)
    task = GANTask(
        gan_lib.build_gan(gan_lib.GAN_SIZES["tiny"]), encoder, build_pool(encoder, size=16, seed=0), eval_per_category=1
    )
    cfg = TrainConfig(
        out=str(out),
        steps=3,
        batch_size=batch_size,
        warmup=0,
        betas=(0.0, 0.99),
        checkpoint_every=100,
        eval_every=0,
        log_every=1,
        mixed_precision="no",
    )
    run_training(task, cfg)
    weights = {k: v.detach().contiguous() for k, v in task.discriminator.state_dict().items()}
    save_file(weights, out / f"discriminator-{task.accel.process_index}.safetensors")


def main() -> None:
    out, batch_size = Path(sys.argv[1]), int(sys.argv[2])
    if sys.argv[3:] == ["gan"]:
        return gan(out, batch_size)
    task = ToyTask(out)
    cfg = TrainConfig(
        out=str(out),
        steps=20,
        batch_size=batch_size,
        lr=1e-2,
        warmup=0,
        ema_decay=0.0,
        checkpoint_every=100,
        eval_every=0,
        log_every=5,
        mixed_precision="no",
    )
    run_training(task, cfg)
    if task._rank != 0:  # the loop evaluates on the main process only; the others write what they saw here
        (out / f"seen-{task._rank}.json").write_text(json.dumps(task.seen))


if __name__ == "__main__":
    main()
