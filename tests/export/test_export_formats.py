"""`forge export` of a tiny trained run in each format: the adapter folder, a merged from_pretrained folder whose
logits equal base + adapter, and a GGUF file that the `gguf` reader and transformers' GGUF loader read back to
the merged model's logits within the tolerance of its weight type; every folder with its model card."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from export_support import PROBE, card_header, fake_run, logits, reference_model, relative_error, resolved_text
from forge.cli import main

pytestmark = pytest.mark.slow

# largest logit error relative to the largest logit, per GGUF weight type (measured: f32 0, fp16 ~3e-4,
# bf16 ~3e-3, q8_0 ~1e-2); a wrong rotary permutation or tensor name gives errors of order 1
GGUF_TOLERANCE = {"f32": 1e-5, "fp16": 3e-3, "bf16": 3e-2, "q8_0": 5e-2}


def export(run_dir: Path, out: Path, fmt: str, *extra: str) -> Path:
    assert main(["export", str(run_dir), "--format", fmt, "--out", str(out), *extra]) == 0
    return out


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def test_adapter_folder_and_its_card(exported_run: Path, tmp_path: Path, tiny_llama_dir: Path) -> None:
    from safetensors.torch import load_file

    out = export(exported_run, tmp_path / "adapter", "adapter")
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "README.md"} <= {
        p.name for p in out.iterdir()}
    assert not (out / "training_args.bin").exists()  # the trainer's pickle stays behind
    exported = load_file(out / "adapter_model.safetensors")
    trained = load_file(exported_run / "adapter" / "adapter_model.safetensors")
    assert exported.keys() == trained.keys() and all((exported[k] == trained[k]).all() for k in trained)

    header = card_header(out)
    run = summary(exported_run)
    assert header["base_model"] == str(tiny_llama_dir) and header["library_name"] == "peft"
    assert {"forge", "lora"} <= set(header["tags"]) and header["datasets"] == ["texts.json"]
    assert header["metrics"] == ["validation_loss"]
    text = (out / "README.md").read_text()
    (path, digest), = run["data"]["sources_sha256"].items()
    assert f"| `{path}` | `{digest}` |" in text  # the data the run trained on, by hash
    assert f"{run['eval']['loss']:.4f} at the end" in text and "name: quick" in text  # results, recipe


def test_merged_folder_gives_base_plus_adapter_logits(exported_run: Path, tmp_path: Path, tiny_llama_dir: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    import forge.export.merge

    monkeypatch.setattr(forge.export.merge, "MAX_SHARD_SIZE", "100KB")  # a tiny model in several shards
    out = export(exported_run, tmp_path / "merged", "merged", "--dtype", "f32")
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = set(index["weight_map"].values())
    assert len(shards) > 1 and all((out / s).is_file() for s in shards)
    assert not any("lora" in name for name in index["weight_map"])  # merged, not wrapped

    merged = AutoModelForCausalLM.from_pretrained(str(out))
    expected = logits(reference_model(tiny_llama_dir, exported_run / "adapter"))
    base = logits(AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir), dtype=torch.float32))
    got = logits(merged)
    assert relative_error(expected, got) < 1e-5
    assert relative_error(expected, base) > 1e-2  # the adapter changed the model, so the check has teeth

    tokenizer = AutoTokenizer.from_pretrained(str(out))
    original = AutoTokenizer.from_pretrained(str(exported_run / "adapter"))
    assert tokenizer.chat_template == original.chat_template and tokenizer.chat_template
    generation = GenerationConfig.from_pretrained(str(out))
    assert generation.eos_token_id == original.eos_token_id and generation.pad_token_id == original.pad_token_id
    header = card_header(out)
    assert header["library_name"] == "transformers" and header["base_model"] == str(tiny_llama_dir)


def test_merged_bf16(exported_run: Path, tmp_path: Path, tiny_llama_dir: Path) -> None:
    import torch
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    out = export(exported_run, tmp_path / "bf16", "merged", "--dtype", "bf16")
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.bfloat16}
    merged = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32)
    expected = logits(reference_model(tiny_llama_dir, exported_run / "adapter"))
    assert 0 < relative_error(expected, logits(merged)) < 3e-2


@pytest.fixture(scope="module")
def merged_f32(exported_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export(exported_run, tmp_path_factory.mktemp("merged") / "m", "merged", "--dtype", "f32")


def hf_from_gguf_reader(path: Path, config_dir: Path) -> object:
    """A LlamaForCausalLM whose weights come from the file through the `gguf` reader alone: each tensor
    dequantized, llama.cpp's names mapped back and q/k rows permuted back to Hugging Face's order."""
    import gguf
    import numpy as np
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from forge.export.gguf_llama import permute_rotary

    config = AutoConfig.from_pretrained(str(config_dir))
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    to_gguf = {hf: names.get_name(hf, try_suffixes=(".weight",)) for hf in model.state_dict()}
    tensors = {t.name: t for t in gguf.GGUFReader(str(path)).tensors}
    state = {}
    for hf, name in to_gguf.items():
        t = tensors[name]
        array = gguf.quants.dequantize(t.data, t.tensor_type).reshape([int(d) for d in reversed(t.shape)])
        if hf.endswith(("q_proj.weight", "k_proj.weight")):  # the permutation swaps pairs back: its own inverse
            heads = config.num_attention_heads if "q_proj" in hf else config.num_key_value_heads
            array = unpermute(array, heads)
        state[hf] = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    model.load_state_dict(state)
    assert not np.allclose(permute_rotary(state["model.layers.0.self_attn.q_proj.weight"].numpy(),
                                          config.num_attention_heads),
                           state["model.layers.0.self_attn.q_proj.weight"].numpy())  # the permutation moves rows
    return model


def unpermute(array: object, heads: int) -> object:
    w = array  # llama.cpp's pair order back to Hugging Face's halves (transformers' reverse permutation)
    dim = w.shape[0] // heads // 2
    return w.reshape(heads, dim, 2, *w.shape[1:]).swapaxes(2, 1).reshape(w.shape)


@pytest.mark.parametrize("dtype", ["f32", "fp16", "bf16", "q8_0"])
def test_gguf_reads_back_to_the_merged_logits(dtype: str, exported_run: Path, merged_f32: Path,
                                              tmp_path: Path) -> None:
    import gguf
    from transformers import AutoModelForCausalLM

    out = export(exported_run, tmp_path / "gguf", "gguf", "--dtype", dtype)
    path = out / "model.gguf"
    reader = gguf.GGUFReader(str(path))
    fields = reader.fields

    def value(key: str) -> object:
        return fields[key].contents()

    merged = AutoModelForCausalLM.from_pretrained(str(merged_f32))
    config = merged.config
    assert value("general.architecture") == "llama"
    assert value("llama.block_count") == config.num_hidden_layers
    assert value("llama.embedding_length") == config.hidden_size
    assert value("llama.attention.head_count") == config.num_attention_heads
    assert value("llama.rope.dimension_count") == config.hidden_size // config.num_attention_heads
    assert value("tokenizer.ggml.model") == "gpt2" and value("tokenizer.ggml.pre") == "gpt-2"
    assert len(value("tokenizer.ggml.tokens")) == config.vocab_size
    assert value("tokenizer.ggml.bos_token_id") == config.bos_token_id
    assert value("tokenizer.ggml.eos_token_id") == config.eos_token_id
    assert value("tokenizer.ggml.add_bos_token") is True and value("tokenizer.chat_template")
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    expected_names = {"token_embd.weight", "output_norm.weight", "output.weight"} | {
        f"blk.{i}.{n}.weight" for i in range(config.num_hidden_layers)
        for n in ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up",
                  "ffn_down")}
    assert set(types) == expected_names
    assert types["output_norm.weight"] == "F32" and types["blk.0.attn_norm.weight"] == "F32"
    assert types["blk.0.attn_q.weight"] == {"f32": "F32", "fp16": "F16", "bf16": "BF16", "q8_0": "Q8_0"}[dtype]

    expected = logits(merged)
    through_reader = logits(hf_from_gguf_reader(path, merged_f32))
    through_transformers = logits(AutoModelForCausalLM.from_pretrained(str(out), gguf_file="model.gguf"))
    tolerance = GGUF_TOLERANCE[dtype]
    assert relative_error(expected, through_reader) < tolerance
    assert relative_error(expected, through_transformers) < tolerance
    assert header_library(out) == "gguf"


def header_library(folder: Path) -> str:
    return card_header(folder)["library_name"]


def test_the_gguf_tokenizer_is_the_runs(exported_run: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    out = export(exported_run, tmp_path / "gguf", "gguf")  # default type: fp16 for a float32 base
    assert card_header(out)["tags"][-1] == "gguf"
    original = AutoTokenizer.from_pretrained(str(exported_run / "adapter"))
    loaded = AutoTokenizer.from_pretrained(str(out), gguf_file="model.gguf")
    for text in ["BRCA1 regulates DNA repair in breast cells.", "TP53  and\nKRAS: 12 mutations (p<0.05)",
                 "<|user|>\nList the genes.</s>"]:
        assert loaded(text)["input_ids"] == original(text)["input_ids"], text
    assert loaded.chat_template == original.chat_template
    assert (loaded.bos_token, loaded.eos_token) == (original.bos_token, original.eos_token)
    assert PROBE[0][0] == original.bos_token_id


def test_default_types_follow_the_base(exported_run: Path, tiny_llama_dir: Path, tmp_path: Path) -> None:
    """Without --dtype, merged keeps the base's saved dtype and gguf writes fp16, or bf16 for a bf16 base."""
    import gguf
    import torch
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM, AutoTokenizer

    bf16_base = tmp_path / "bf16-base"
    AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir), dtype=torch.bfloat16).save_pretrained(str(bf16_base))
    AutoTokenizer.from_pretrained(str(tiny_llama_dir)).save_pretrained(str(bf16_base))
    run = fake_run(tmp_path / "run", resolved_text(exported_run, f"model.name_or_path={bf16_base}"),
                   exported_run / "adapter")
    assert main(["export", str(run), "--format", "merged", "--out", str(tmp_path / "merged")]) == 0
    with safe_open(str(tmp_path / "merged" / "model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.bfloat16}
    assert main(["export", str(run), "--format", "gguf", "--out", str(tmp_path / "gguf")]) == 0
    reader = gguf.GGUFReader(str(tmp_path / "gguf" / "model.gguf"))
    assert {t.tensor_type.name for t in reader.tensors} == {"BF16", "F32"}
    assert main(["export", str(exported_run), "--format", "merged", "--out", str(tmp_path / "f32")]) == 0
    with safe_open(str(tmp_path / "f32" / "model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float32}


def test_domain_tokens_survive_the_export(tiny_llama_dir: Path, genomics_examples: list[str], tmp_path: Path) -> None:
    """A run that added domain tokens (embeddings resized, the new rows trained through PEFT's trainable tokens):
    the merged folder and the GGUF hold the resized vocabulary, the new tokens stay whole, and a text that uses
    them gives base + adapter's logits."""
    import harness
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import forge.train.run

    recipe = harness.write_recipe(tmp_path, genomics_examples, tiny_llama_dir, name="domain")
    resolved, plan = harness.prepare(recipe, "training.max_steps=4", "data.domain_tokens=[BRCA1x,TP53x]",
                                     "lora.modules_to_save=[]")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(forge.train.run, "load_data", harness.fake_bundle)
        assert forge.train.run.run_recipe(resolved, plan, resume="never", progress=False)["status"] == "completed"
    run_dir = Path(plan.run_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(run_dir / "adapter"))
    ids = tokenizer("BRCA1x binds TP53x in breast cells")["input_ids"]
    new = tokenizer.convert_tokens_to_ids(["BRCA1x", "TP53x"])
    assert set(new) <= set(ids)

    base = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir), dtype=torch.float32)
    base.resize_token_embeddings(len(tokenizer))
    reference = PeftModel.from_pretrained(base, str(run_dir / "adapter")).eval()
    with torch.no_grad():
        expected = reference(input_ids=torch.tensor([ids])).logits
    export(run_dir, tmp_path / "merged", "merged", "--dtype", "f32")
    export(run_dir, tmp_path / "gguf", "gguf", "--dtype", "f32")
    merged = AutoModelForCausalLM.from_pretrained(str(tmp_path / "merged")).eval()
    from_gguf = AutoModelForCausalLM.from_pretrained(str(tmp_path / "gguf"), gguf_file="model.gguf").eval()
    assert merged.config.vocab_size == len(tokenizer) == from_gguf.config.vocab_size
    with torch.no_grad():
        for model in (merged, from_gguf):
            assert relative_error(expected, model(input_ids=torch.tensor([ids])).logits) < 1e-5
    gguf_tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / "gguf"), gguf_file="model.gguf")
    assert gguf_tokenizer("BRCA1x binds TP53x in breast cells")["input_ids"] == ids
