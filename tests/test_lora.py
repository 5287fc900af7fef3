"""LoRA adapters: the PEFT reader on folders PEFT itself writes, the LoRA kind, and its GL(r) symmetry."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from conftest import sample_zoo
from safetensors.torch import save_file
from torch import nn

import wslviz as wv
from wslviz.core.arch import Architecture, mlp_spec
from wslviz.core.layout import NoForwardError
from wslviz.core.lora import GL_KINDS, LoraArchitecture, linear_targets, lora_spec
from wslviz.core.training import init_weights
from wslviz.formats import read_zoo, save_zoo
from wslviz.formats.errors import ZooFormatError
from wslviz.understand.align import weight_matching
from wslviz.understand.symmetry import apply_symmetry, random_symmetry

peft = pytest.importorskip("peft")


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


class Mixed(nn.Module):
    """Every kind of layer PEFT adapts: an embedding, a linear layer, a convolution, and a head to save."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(20, 8)
        self.fc = nn.Linear(8, 16)
        self.conv = nn.Conv2d(3, 4, 3)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        return self.head(torch.relu(self.fc(self.emb(x)))).mean(1)


def _peft_deltas(model: nn.Module, config) -> tuple[dict[str, torch.Tensor], nn.Module]:
    """PEFT's own answer: merge_and_unload()'s weights minus the base's, per adapted weight."""
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    wrapped = peft.get_peft_model(copy.deepcopy(model), config)
    return wrapped, before


def _merged_minus_base(wrapped, before) -> dict[str, torch.Tensor]:
    merged = copy.deepcopy(wrapped).merge_and_unload()
    return {k: v.detach() - before[k] for k, v in merged.state_dict().items() if k in before}


@pytest.mark.parametrize("safe", [True, False])
def test_peft_folder_opens_with_its_rank_alpha_targets_and_delta(tmp_path, safe):
    torch.manual_seed(0)
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["fc", "emb", "conv"], modules_to_save=["head"],
                             rank_pattern={"fc": 2}, alpha_pattern={"fc": 3}, use_rslora=True, init_lora_weights=False)
    wrapped, before = _peft_deltas(Mixed(), config)
    with torch.no_grad():
        wrapped.base_model.model.head.modules_to_save["default"].weight.add_(1.0)  # the saved head differs from base
    wrapped.save_pretrained(tmp_path / "a", safe_serialization=safe)
    zoo = read_zoo(tmp_path / "a")
    assert zoo.format == "peft" and zoo.n_models == 1
    row = zoo.metadata.iloc[0]
    assert (row["rank"], row["alpha"], row["module_ranks"], row["target_modules"]) == (4, 8.0, "2/4", "conv, emb, fc")
    assert bool(row["use_rslora"])
    arch = zoo.arch
    assert {m["name"]: m["a_shape"][0] for m in arch.modules} == {"conv": 4, "emb": 4, "fc": 2}
    expected = _merged_minus_base(wrapped, before)
    deltas = arch.deltas(zoo.weights)
    for m in arch.modules:
        assert _relative(deltas[m["name"]][0], expected[m["target"]]) < 1e-5, m["name"]
    head = arch.unflatten(zoo.weights[0])["head.weight"]
    assert torch.allclose(head, before["head.weight"] + 1.0)


def test_gpt2_conv1d_fan_in_fan_out_and_dora_match_peft_merge(tmp_path):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(n_layer=2, n_embd=16, n_head=2, n_positions=16, vocab_size=50, use_cache=False)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    for dora in (False, True):
        config = peft.LoraConfig(r=4, lora_alpha=16, target_modules=["c_attn", "c_fc"], fan_in_fan_out=True,
                                 use_dora=dora, init_lora_weights=False)
        wrapped, before = _peft_deltas(model, config)
        wrapped.save_pretrained(tmp_path / f"gpt2-{dora}")
        zoo = read_zoo(tmp_path / f"gpt2-{dora}")
        assert all(m["transpose"] for m in zoo.arch.modules) and len(zoo.arch.modules) == 4
        expected = _merged_minus_base(wrapped, before)
        if not dora:
            deltas = zoo.arch.deltas(zoo.weights)
            for m in zoo.arch.modules:
                assert _relative(deltas[m["name"]][0], expected[m["target"]]) < 1e-5
        else:  # DoRA's update needs the base: merged through the base weights it must equal PEFT's merge
            base = wv.from_module(model, [8], input_dtype="int", input_high=50)
            base_w = base.flatten(model.state_dict())
            arch = LoraArchitecture.with_base(zoo.arch.spec, base, base_w)
            merged = base.unflatten(arch.merged(zoo.weights)[0])
            for m in arch.modules:
                assert _relative(merged[m["target"]] - before[m["target"]], expected[m["target"]]) < 1e-5


def _mlp_adapters(tmp_path, n: int = 3, ranks=(2, 4, 4), dora: bool = False):
    base = Architecture(mlp_spec([12, 16, 5]))
    base_w = init_weights(base, [0])[0]
    for i in range(n):
        torch.manual_seed(i)
        config = peft.LoraConfig(r=ranks[i % len(ranks)], lora_alpha=4, target_modules=["0", "2"],
                                 init_lora_weights=False, use_dora=dora, base_model_name_or_path="mlp")
        wrapped = peft.get_peft_model(base.build(base_w), config)
        wrapped.save_pretrained(tmp_path / f"adapter{i}")
    return base, base_w


def test_adapters_of_several_ranks_form_one_zoo_and_run_on_the_base(tmp_path):
    base, base_w = _mlp_adapters(tmp_path)
    zoo = read_zoo(tmp_path, base=(base, base_w))
    assert zoo.n_models == 3 and list(zoo.metadata["rank"]) == [2, 4, 4]
    assert [m["a_shape"][0] for m in zoo.arch.modules] == [4, 4]
    x = torch.randn(9, 12)
    for i in range(3):
        torch.manual_seed(i)
        config = peft.LoraConfig(r=[2, 4, 4][i], lora_alpha=4, target_modules=["0", "2"], init_lora_weights=False)
        wrapped = peft.get_peft_model(base.build(base_w), config)
        with torch.no_grad():
            assert torch.allclose(zoo.arch.forward(zoo.weights[i:i + 1], x)[0][0], wrapped(x), atol=1e-5)
    again = read_zoo(save_zoo(zoo, tmp_path / "native"))  # the base travels with the zoo
    assert again.arch == zoo.arch and again.arch.has_forward
    assert torch.equal(again.arch.merged(again.weights), zoo.arch.merged(zoo.weights))
    without = read_zoo(tmp_path)
    assert not without.arch.has_forward
    with pytest.raises(NoForwardError, match="base model"):
        without.arch.forward(without.weights, x)


def test_key_variants_and_documented_layout_without_peft(tmp_path, monkeypatch):
    """Adapter names in the keys, no prefix, modules_to_save copies, a .bin file; config read as JSON."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 6, generator=g), torch.randn(5, 3, generator=g)
    folder = tmp_path / "variant"
    folder.mkdir()
    config = {"peft_type": "LORA", "r": 3, "lora_alpha": 6, "target_modules": ["proj"], "base_model_name_or_path": "x"}
    (folder / "adapter_config.json").write_text(json.dumps(config))
    save_file({"model.proj.lora_A.default.weight": a, "model.proj.lora_B.default.weight": b,
               "cls.modules_to_save.default.weight": torch.ones(2, 5),
               "cls.original_module.weight": torch.zeros(2, 5)}, folder / "adapter_model.safetensors")
    monkeypatch.setitem(__import__("sys").modules, "peft", None)  # `import peft` fails: the documented layout
    zoo = read_zoo(folder)
    assert [m["name"] for m in zoo.arch.modules] == ["model.proj"]
    assert torch.allclose(zoo.arch.deltas(zoo.weights)["model.proj"][0], (2.0 * b @ a).double(), rtol=1e-6)
    assert [p.name for p in zoo.arch.layout][-1] == "cls.weight"
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "IA3"}))
    with pytest.raises(ZooFormatError, match="IA3 is not LoRA"):
        read_zoo(folder)


def test_other_modules_are_listed_not_dropped(tmp_path):
    base, base_w = _mlp_adapters(tmp_path, n=2)
    config = peft.LoraConfig(r=2, target_modules=["0"], init_lora_weights=False)
    peft.get_peft_model(base.build(base_w), config).save_pretrained(tmp_path / "only-first")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "adapter_config.json").write_text("{")
    zoo = read_zoo(tmp_path)
    assert zoo.n_models == 2
    assert set(zoo.extra["skipped"]) == {"only-first", "broken"}
    assert "other modules" in zoo.extra["skipped"]["only-first"]


@pytest.fixture()
def lora_weights():
    base = Architecture(mlp_spec([12, 16, 5]))
    arch = LoraArchitecture.with_base(lora_spec(linear_targets(base, ["0", "2"], 4)), base,
                                      init_weights(base, [0])[0])
    return arch, torch.randn(6, arch.n_params, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("kind", GL_KINDS)
def test_gl_elements_keep_delta_and_invariants_and_move_the_factors(lora_weights, kind):
    arch, w = lora_weights
    moved = arch.apply_gl(w, arch.random_gl(kind, seed=1))
    for name, d in arch.deltas(w).items():
        assert _relative(arch.deltas(moved)[name], d) < 1e-5
    f, g = arch.invariant_features(w), arch.invariant_features(moved)
    assert np.abs(f - g).max() / np.abs(f).max() < 1e-5
    assert _relative(arch.canonical(moved), arch.canonical(w)) < 1e-5
    x = torch.randn(7, 12)
    assert _relative(arch.forward(moved, x)[0], arch.forward(w, x)[0]) < 1e-5
    if kind != "permutation":
        assert _relative(moved, w) > 0.1
    assert not torch.equal(moved, w)


def test_canonical_factors_are_an_svd_of_delta(lora_weights):
    arch, w = lora_weights
    c = arch.canonical(w)
    for name, (b, a) in arch.factors(c.double()).items():
        d = arch.deltas(w, oriented=True)[name]
        assert _relative(b @ a, d) < 1e-6
        assert torch.allclose(b.transpose(1, 2) @ b, a @ a.transpose(1, 2), atol=1e-4)  # balanced: both sqrt(S)^2


def test_permutation_subgroup_recovered_by_weight_matching(lora_weights):
    arch, w = lora_weights
    g = random_symmetry(arch, seed=4, kinds=("permutation",))
    planted = apply_symmetry(arch, w[:1].double(), g).float()
    assert not torch.equal(planted, w[:1])
    back = weight_matching(arch, w[0], planted[0])
    assert torch.allclose(back, w[0], atol=1e-6)


def test_merges_combine_delta_not_factors(lora_weights):
    from wslviz.generation.lora_merge import LORA_METHODS, factor_average, merge_adapters

    arch, w = lora_weights
    same = arch.apply_gl(w[:1], arch.random_gl("general", seed=2))
    pair = torch.cat([w[:1], same])  # one update in two GL(r) coordinate systems
    merged = merge_adapters(arch, pair, "average")
    assert _relative(arch.flat_deltas(merged.weights[None])[0], arch.flat_deltas(w[:1])[0]) < 1e-5
    assert max(merged.errors.values()) < 1e-6  # the mean of one rank-4 update has rank 4: nothing truncated
    naive = arch.flat_deltas(factor_average(arch, pair)[None])[0]
    assert _relative(naive, arch.flat_deltas(w[:1])[0]) > 0.1  # the wrong way changes the update
    summed = merge_adapters(arch, w[:3], "task_arithmetic")
    full = arch.flat_deltas(w[:3]).sum(0)
    assert torch.allclose(torch.cat([d.reshape(-1) for d in summed.deltas.values()]), full)
    assert all(0 < e < 1 for e in summed.errors.values())  # rank 12 truncated to 4: the error is reported
    for method in LORA_METHODS:
        assert merge_adapters(arch, w, method).weights.shape == (arch.n_params,)
    with pytest.raises(ValueError, match="unknown adapter merge"):
        merge_adapters(arch, w, "slerp")


def test_sample_lora_zoo_invariant_features():
    from wslviz.represent.features import available_kinds, feature_set

    zoo = sample_zoo("digits-lora")
    assert zoo.n_models == 108 and zoo.arch.has_forward
    assert set(zoo.metadata["rank"]) == {2, 4, 8} and set(zoo.metadata["n_train"]) == {50, 200, 800}
    assert "invariant" in available_kinds(zoo)
    sub = zoo.subset(range(6))
    moved = sub.arch.apply_gl(sub.weights, sub.arch.random_gl("general", seed=0))
    f = feature_set(sub, "invariant")
    g = sub.arch.invariant_features(moved)
    assert f.values.shape == g.shape == (6, len(f.names))
    assert np.abs(f.values - g).max() <= 1e-5 * np.abs(f.values).max()
    again = wv.evaluate(sub.arch, sub.task, sub.weights)  # what make-zoo recorded, up to a few tied predictions
    n_test = len(sub.task.split("test")[1])
    assert np.allclose(again["accuracy"].numpy(), sub.metadata["test_acc"].to_numpy(), atol=3 / n_test)
    assert (zoo.metadata.groupby("n_train")["task_acc"].median().diff().dropna() > 0).all()  # more data, better


def test_adapters_of_a_hugging_face_gpt2_run_on_its_folder(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, n_positions=8, vocab_size=24, use_cache=False,
                                     architectures=["GPT2LMHeadModel"])
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config).eval()
    model.save_pretrained(tmp_path / "base")
    lora = peft.LoraConfig(r=2, lora_alpha=4, target_modules=["c_attn", "c_fc"], fan_in_fan_out=True,
                           init_lora_weights=False)
    wrapped = peft.get_peft_model(model, lora).eval()
    wrapped.save_pretrained(tmp_path / "adapters" / "a0")
    zoo = read_zoo(tmp_path / "adapters", base=tmp_path / "base")
    assert zoo.arch.has_forward and zoo.arch.base_arch.kind == "hf"
    ids = torch.randint(0, 24, (5, zoo.arch.input_shape[0]))
    with torch.no_grad():
        expected = wrapped(input_ids=ids).logits[:, -1]
    assert torch.allclose(zoo.arch.forward(zoo.weights, ids.float())[0][0], expected, atol=1e-5)
    assert zoo.arch.spec["base"]["checkpoint"] == str((tmp_path / "base").resolve())  # referenced, not inlined
    again = read_zoo(save_zoo(zoo, tmp_path / "saved"))
    assert torch.equal(again.arch.merged(again.weights), zoo.arch.merged(zoo.weights))


def test_broken_adapter_folders_say_what_is_wrong(tmp_path):
    def folder(name: str, config: object, tensors: dict | None) -> str:
        f = tmp_path / name
        f.mkdir()
        (f / "adapter_config.json").write_text(config if isinstance(config, str) else json.dumps(config))
        if tensors is not None:
            save_file(tensors, f / "adapter_model.safetensors")
        return str(f)

    ok = {"peft_type": "LORA", "r": 2, "lora_alpha": 2}
    a, b = torch.ones(2, 4), torch.ones(3, 2)
    cases = {
        "not json": (folder("c1", "{", {"m.lora_A.weight": a, "m.lora_B.weight": b}), "not valid JSON"),
        "no weights": (folder("c2", ok, None), "adapter_model.safetensors or adapter_model.bin"),
        "no factors": (folder("c3", ok, {"m.weight": a}), "no lora_A / lora_B"),
        "half a pair": (folder("c4", ok, {"m.lora_A.weight": a}), "lora_A and lora_B must both"),
        "ranks differ": (folder("c5", ok, {"m.lora_A.weight": a, "m.lora_B.weight": torch.ones(3, 5)}),
                         "does not fit"),
        "two adapters": (folder("c6", ok, {"m.lora_A.x.weight": a, "m.lora_B.x.weight": b,
                                           "n.lora_A.y.weight": a.clone(), "n.lora_B.y.weight": b.clone()}),
                         "several adapters"),
        "lora bias": (folder("c7", ok, {"m.lora_A.weight": a, "m.lora_B.weight": b, "m.lora_B.bias": torch.ones(3)}),
                      "lora_bias"),
    }
    for path, message in cases.values():
        with pytest.raises(ZooFormatError, match=message):
            read_zoo(path)
    bad = folder("nan", ok, {"m.lora_A.weight": a * float("nan"), "m.lora_B.weight": b})
    with pytest.raises(ZooFormatError, match="NaN"):
        read_zoo(bad)
