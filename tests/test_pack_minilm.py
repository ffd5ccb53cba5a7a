"""scripts/gpu/pack_minilm.py's int8 transport: what the GPU host unpacks is the fp16 model to within a scale step."""

import tarfile

import torch
from safetensors.torch import load_file, save_file

from scripts.gpu import pack_minilm


def test_int8_pack_unpacks_to_the_fp16_weights_within_half_a_scale_step(tmp_path):
    torch.manual_seed(0)
    weights = {
        "layer.dense.weight": torch.randn(48, 64).half(),
        "embeddings.word_embeddings.weight": torch.cat([torch.randn(3, 32), torch.zeros(5, 32)]).half(),
        "layer.dense.bias": torch.randn(48).half(),  # 1-D: travels as is
        "odd.weight": torch.randn(4, 30).half(),  # rows not a multiple of the group: travels as is
    }
    folder = tmp_path / "minilm"
    folder.mkdir()
    save_file(weights, folder / pack_minilm.WEIGHTS)
    (folder / "config.json").write_text("{}")
    pack_minilm.quantize(folder)
    packed = load_file(folder / pack_minilm.PACKED)
    assert packed["layer.dense.weight"].dtype == torch.int8 and packed["layer.dense.bias"].dtype == torch.float16
    assert not (folder / pack_minilm.WEIGHTS).exists()
    archive = tmp_path / "minilm.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="minilm")

    pack_minilm.unpack(archive, tmp_path / "there" / "minilm")
    got = load_file(tmp_path / "there" / "minilm" / pack_minilm.WEIGHTS)
    assert (tmp_path / "there" / "minilm" / "config.json").exists()
    assert set(got) == set(weights) and all(
        got[k].shape == w.shape and got[k].dtype == w.dtype for k, w in weights.items()
    )
    for name in ("layer.dense.bias", "odd.weight"):
        assert torch.equal(got[name], weights[name])
    for name in ("layer.dense.weight", "embeddings.word_embeddings.weight"):
        w = weights[name].float().reshape(w_rows := weights[name].shape[0], -1, pack_minilm.GROUP)
        step = w.abs().amax(-1, keepdim=True) / 127  # one int8 step of each group
        err = (got[name].float().reshape(w_rows, -1, pack_minilm.GROUP) - w).abs()
        assert (err <= step * 0.51 + 1e-3).all()
    assert not got["embeddings.word_embeddings.weight"][3:].any()  # zeroed rows stay zero
