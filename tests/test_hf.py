"""Hugging Face models built from their configs (the hf kind): GPT-2, BERT and Llama from small configs keep their
function under their symmetries, planted permutations are recovered by weight matching, token tasks evaluate, and
folders written by transformers open with their forward."""

from __future__ import annotations

import json

import pytest
import torch

import wslviz as wv
from wslviz.core.layout import ArchitectureError
from wslviz.core.protocol import from_spec
from wslviz.core.tasks import make_task
from wslviz.formats import read_zoo
from wslviz.formats.errors import ZooFormatError
from wslviz.understand.align import weight_matching
from wslviz.understand.symmetry import apply_symmetry, random_symmetry

transformers = pytest.importorskip("transformers")

CONFIGS = {
    "gpt2": (lambda: transformers.GPT2Config(n_layer=2, n_embd=16, n_head=2, n_positions=8, vocab_size=24,
                                             architectures=["GPT2LMHeadModel"]), ("permutation",)),
    "bert": (lambda: transformers.BertConfig(num_hidden_layers=2, hidden_size=16, num_attention_heads=2,
                                             intermediate_size=32, vocab_size=24, max_position_embeddings=8,
                                             num_labels=5, architectures=["BertForSequenceClassification"]),
             ("permutation", "sign")),
    "distilbert": (lambda: transformers.DistilBertConfig(n_layers=2, dim=16, n_heads=2, hidden_dim=32, vocab_size=24,
                                                         max_position_embeddings=8, num_labels=3,
                                                         architectures=["DistilBertForSequenceClassification"]),
                   ("permutation", "scale")),
    "llama": (lambda: transformers.LlamaConfig(num_hidden_layers=2, hidden_size=16, num_attention_heads=4,
                                               num_key_value_heads=2, intermediate_size=32, vocab_size=24,
                                               max_position_embeddings=8, architectures=["LlamaForCausalLM"]),
              ("permutation",)),
}


def _arch(name: str, length: int = 5):
    return from_spec({"kind": "hf", "config": CONFIGS[name][0]().to_dict(), "input_shape": [length]})


def _weights(arch, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = arch.initial_weights()
    return (w + 0.05 * torch.randn(w.shape, generator=g))[None]


@pytest.mark.parametrize("name", list(CONFIGS))
def test_planted_permutation_recovered_and_function_kept(name):
    arch = _arch(name)
    kinds = CONFIGS[name][1]
    spec = arch.perm_spec
    assert any(g.heads > 1 for g in spec.groups) or name == "llama"  # heads move as wholes where they may
    assert "residual stream" in spec.names
    w = _weights(arch)
    x = arch.probe_inputs(6)
    out = arch.forward(w, x)[0]
    planted = apply_symmetry(arch, w.double(), random_symmetry(arch, seed=1, kinds=kinds)).float()
    assert (planted - w).norm() > 0.3 * w.norm()
    moved = arch.forward(planted, x)[0]
    assert float((moved - out).abs().max()) <= 1e-5 * float(out.abs().max()) + 1e-6
    back = weight_matching(arch, w[0], planted[0], kinds=kinds)
    assert torch.allclose(back, w[0], atol=1e-6)  # recovered exactly, up to float rounding of the scales
    other = _weights(arch, seed=3)[0]
    aligned = weight_matching(arch, w[0], other, kinds=kinds)  # an unrelated model keeps its function
    assert torch.allclose(arch.forward(aligned[None], x)[0], arch.forward(other[None], x)[0], atol=1e-5)
    if name == "llama":
        assert any("rotary" in f.reason for f in spec.fixed)


@pytest.mark.parametrize("name", ["gpt2", "bert"])
def test_token_tasks_evaluate_as_the_per_model_loop_does(name):
    config = CONFIGS[name][0]().to_dict()
    if name == "bert":
        config["num_labels"] = 23  # the classes of modular addition
        config.pop("id2label", None), config.pop("label2id", None)
    arch = from_spec({"kind": "hf", "config": config, "input_shape": [3]})
    task = make_task({"name": "modadd", "p": 23})
    w = torch.cat([_weights(arch, s) for s in range(3)])
    batched = wv.evaluate(arch, task, w)
    loop = arch.evaluate_per_model(task, w)
    assert batched["accuracy"].shape == (3,)
    assert torch.allclose(batched["loss"], loop["loss"], atol=1e-5)
    assert torch.equal(batched["accuracy"], loop["accuracy"])


def test_folder_written_by_transformers_opens_with_its_forward(tmp_path):
    config = CONFIGS["gpt2"][0]()
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config).eval()
    for i in range(2):
        with torch.no_grad():
            model.transformer.h[0].mlp.c_fc.bias.add_(0.1 * i)
        model.save_pretrained(tmp_path / f"run{i}")
    zoo = read_zoo(tmp_path)
    assert zoo.arch.kind == "hf" and zoo.n_models == 2 and zoo.arch.knows_symmetries
    assert any("transformers" in n for n in zoo.extra["notes"])
    ids = torch.randint(0, 24, (4, zoo.arch.input_shape[0]))
    with torch.no_grad():
        expected = model(input_ids=ids).logits[:, -1]
    assert torch.allclose(zoo.arch.forward(zoo.weights[1:], ids.float())[0][0], expected, atol=1e-5)


def test_legacy_key_names_and_buffers_map_onto_the_model(tmp_path):
    from safetensors.torch import save_file

    arch = _arch("gpt2")
    w = _weights(arch)[0]
    sd = {k.removeprefix("transformer."): v.clone() for k, v in arch.unflatten(w).items()}  # bare GPT2Model names
    sd["h.0.attn.bias"] = torch.ones(1, 1, 8, 8)  # the causal-mask buffer old checkpoints carry
    folder = tmp_path / "legacy"
    folder.mkdir()
    save_file(sd, folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps(CONFIGS["gpt2"][0]().to_dict()))
    zoo = read_zoo(folder)
    assert torch.equal(zoo.weights[0], w)
    assert any("left out" in n for n in zoo.extra["notes"])


def test_remote_code_is_refused(tmp_path):
    config = {**CONFIGS["gpt2"][0]().to_dict(), "auto_map": {"AutoModel": "modeling_evil.Evil"}}
    with pytest.raises(ArchitectureError, match="remote code"):
        from_spec({"kind": "hf", "config": config})
    folder = tmp_path / "evil"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "modeling_evil.py").write_text("open('MARKER', 'w').write('ran')\n")
    from safetensors.torch import save_file

    save_file({"x.weight": torch.zeros(2, 2)}, folder / "model.safetensors")
    with pytest.raises(ZooFormatError, match="remote code"):
        read_zoo(folder)
    assert not (folder / "MARKER").exists() and not (tmp_path / "MARKER").exists()


def test_bare_models_keep_their_output_order_and_old_layernorm_names_map(tmp_path):
    from safetensors.torch import save_file

    config = transformers.BertConfig(num_hidden_layers=1, hidden_size=16, num_attention_heads=2, intermediate_size=32,
                                     vocab_size=24, max_position_embeddings=8, architectures=["BertForMaskedLM"])
    arch = from_spec({"kind": "hf", "config": config.to_dict(), "input_shape": [5]})
    assert arch.head == "base" and "residual stream" not in arch.perm_spec.names
    assert any("outputs the residual stream" in f.reason for f in arch.perm_spec.fixed)
    w = _weights(arch)
    x = arch.probe_inputs(4)
    planted = apply_symmetry(arch, w.double(), random_symmetry(arch, seed=2, kinds=("permutation",))).float()
    assert torch.allclose(arch.forward(planted, x)[0], arch.forward(w, x)[0], atol=1e-5)
    old = {"bert." + k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
           for k, v in arch.unflatten(w[0]).items()}  # a pre-4.0 BertForMaskedLM checkpoint, its MLM head too
    old["cls.predictions.bias"] = torch.zeros(24)
    folder = tmp_path / "bert"
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in old.items()}, folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps(config.to_dict()))
    assert torch.equal(read_zoo(folder, input_shape=[5]).weights[0], w[0])
