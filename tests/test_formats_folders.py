"""Folders of checkpoints as people save them: named stacks, wrapped/Lightning/legacy/GPU/half files, several
architectures, run folders of epochs, metadata from names, weights-only layouts and what they refuse."""

from __future__ import annotations

import zipfile

import numpy as np
import pandas as pd
import pytest
import torch
from fixtures_formats import (
    ActorCritic,
    LeNet,
    TutorialMLP,
    vgg_forward,
    vgg_like,
    write_mixed,
    write_named,
    write_runs,
)
from safetensors.torch import save_file

import wslviz as wv
from wslviz.core.evaluation import evaluate, model_outputs
from wslviz.core.layout import NoForwardError
from wslviz.core.permutation import SymmetryError
from wslviz.core.protocol import from_spec, require_forward
from wslviz.core.stacks import find_stacks, strip_wrappers
from wslviz.core.tasks import make_task
from wslviz.formats import ZooFormatError, save_zoo
from wslviz.formats.names import parse_name
from wslviz.generation import generate
from wslviz.represent.features import FeatureError, available_kinds, compute_features
from wslviz.understand.symmetry import canonicalize, random_symmetry


def rows_of(zoo, written: dict) -> list:
    """The written modules in the zoo's row order."""
    return [written[f] for f in zoo.metadata["file"]]


def close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> None:
    torch.testing.assert_close(a.double(), b.double(), rtol=tol, atol=tol)


def test_tutorial_mlp_without_biases_and_stated_activation(tmp_path):
    written = write_named(tmp_path / "f", "tutorial", n=3)
    zoo = wv.load_zoo(tmp_path / "f", activation="tanh")
    arch = zoo.arch
    assert arch.kind == "sequential" and arch.describe() == "MLP 4-16-3 (tanh), 112 params"
    assert [p.name for p in arch.layout] == ["0.weight", "2.weight"] and arch.source_keys == ("l1.weight", "l2.weight")
    assert "activation" not in arch.assumed  # stated
    assert "activation" in wv.load_zoo(tmp_path / "f").arch.assumed  # else assumed, and recorded as such
    x = torch.randn(7, 4)
    for row, net in enumerate(rows_of(zoo, written)):
        close(model_outputs(arch, zoo.weights[row], x), net(x).detach())
    m = zoo.metadata  # metadata parsed from the names, plus file facts
    assert list(m["file"])[0] == "tutorial_lr=0.001_seed=2.pt" and list(m["lr"]) == [0.001, 0.01, 0.1]
    assert list(m["seed"]) == [2, 1, 0] and (m["file_size"] > 0).all()


def test_lenet_with_task_evaluates_like_the_module(tmp_path):
    """Done-when: a named stack with a stated activation and an attached task evaluates to the module's
    accuracies (to 1e-5), and weight matching between two of its checkpoints keeps the function."""
    torch.manual_seed(0)
    written = {}
    (tmp_path / "lenet").mkdir()
    for i in range(3):
        net = LeNet(activation=torch.tanh).eval()
        torch.save(net.state_dict(), tmp_path / "lenet" / f"lenet_seed={i}.pth")
        written[f"lenet_seed={i}.pth"] = net
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(200, 1, 28, 28, generator=gen)
    with torch.no_grad():  # the labels model 0 predicts: accuracies spread from 1.0 down to chance
        y = written["lenet_seed=0.pth"](x).argmax(1)
    np.savez(tmp_path / "data.npz", x=x.numpy(), y=y.numpy())
    zoo = wv.load_zoo(tmp_path / "lenet", activation="tanh", task=str(tmp_path / "data.npz"))
    assert zoo.arch.input_shape == (1, 28, 28)  # assumed, with the pooling that makes fc1's 128 inputs fit
    assert zoo.arch.assumed["pooling"].startswith("2x2 max-pool after conv1, conv2")
    ours = evaluate(zoo.arch, zoo.task, zoo.weights)["accuracy"]
    x_test, y_test = zoo.task.x_test, zoo.task.y_test
    with torch.no_grad():
        theirs = torch.stack([(net(x_test).argmax(1) == y_test).double().mean() for net in rows_of(zoo, written)])
    close(ours, theirs)
    # weight matching works without any task and keeps the function
    a, b = zoo.weights[0], zoo.weights[1]
    aligned = wv.weight_matching(zoo.arch, a, b)
    close(model_outputs(zoo.arch, aligned, x_test), model_outputs(zoo.arch, b, x_test))
    assert (aligned - a).norm() <= (b - a).norm()
    no_task = wv.load_zoo(tmp_path / "lenet", activation="tanh")
    g = random_symmetry(no_task.arch, seed=3)
    moved = wv.apply_symmetry(no_task.arch, no_task.weights[2], g)
    close(model_outputs(no_task.arch, moved, x_test), model_outputs(no_task.arch, no_task.weights[2], x_test))
    close(model_outputs(no_task.arch, canonicalize(no_task.arch, moved), x_test),
          model_outputs(no_task.arch, moved, x_test))


def test_vgg_features_and_classifier_from_safetensors(tmp_path):
    """safetensors sorts names (classifier before features, features.10 before features.4): the chain is
    found by shapes; BatchNorm statistics are part of the function."""
    (tmp_path / "v").mkdir()
    nets = [vgg_like(), vgg_like()]
    for i, net in enumerate(nets):
        save_file({k: v.contiguous() for k, v in net.state_dict().items() if v.is_floating_point()},
                  str(tmp_path / "v" / f"m{i}.safetensors"))
    zoo = wv.load_zoo(tmp_path / "v", input_shape=[1, 10, 10])
    kinds = [la["type"] for la in zoo.arch.layers]
    assert kinds == ["conv2d", "batchnorm", "relu", "maxpool2d", "conv2d", "batchnorm", "relu", "flatten", "linear",
                     "relu", "linear"]
    # the pooling is what the flatten width asks for (recorded as assumed), the image size was stated
    assert zoo.arch.assumed["pooling"].startswith("2x2 max-pool after features.0") and "input_shape" not in \
        zoo.arch.assumed
    x = torch.randn(5, 1, 10, 10)
    for row, net in enumerate(nets):
        close(model_outputs(zoo.arch, zoo.weights[row], x), vgg_forward(net, x))


def test_actor_critic_is_weights_only_until_a_stack_is_chosen(tmp_path):
    written = write_named(tmp_path / "ac", "actor_critic", n=2)
    zoo = wv.load_zoo(tmp_path / "ac")
    arch = zoo.arch
    assert arch.kind == "weights-only" and not arch.has_forward and arch.input_shape is None
    assert arch.stacks == ["mlp_extractor.policy_net.0 -> action_net", "mlp_extractor.value_net.0 -> value_net"]
    assert "2 separate stacks" in arch.reason and "log_std" in arch.reason
    nets = rows_of(zoo, written)
    sd = nets[0].state_dict()
    assert [p.name for p in arch.layout] == list(sd)  # the tensors in file order
    close(zoo.weights[0], torch.cat([v.reshape(-1) for v in sd.values()]))
    roles = {p.name: p.role for p in arch.layout}
    assert roles["log_std"] == "other" and roles["action_net.bias"] == "bias"
    # weight-based views work ...
    assert set(available_kinds(zoo)) == {"flat", "stats", "spectral"}
    for kind in ("flat", "stats", "spectral"):
        assert np.isfinite(compute_features(zoo, kind)).any()
    assert generate(zoo, "pca_gaussian", n=3, k=1).shape == (3, arch.n_params)
    assert generate(zoo, "merge", n=2).shape == (2, arch.n_params)
    # ... function-based ones say what is missing and how to supply it
    with pytest.raises(NoForwardError, match="Evaluation needs to run the networks.*weights-only.*state the arch"):
        evaluate(arch, make_task("moons"), zoo.weights)
    with pytest.raises(NoForwardError, match="Running the networks needs"):
        model_outputs(arch, zoo.weights, torch.zeros(2, 8))
    with pytest.raises(NoForwardError, match="A forward pass needs"):
        wv.forward(arch, zoo.weights, torch.zeros(2, 8))
    require_forward(policy_arch := wv.load_zoo(tmp_path / "ac", stack=0).arch, "Evaluation")  # a network: fine
    assert policy_arch.has_forward
    with pytest.raises(NoForwardError, match="attach a task"):
        zoo.with_task({"name": "moons"})
    with pytest.raises(SymmetryError, match="which hidden units may be permuted is unknown"):
        wv.permutation_spec(arch)
    with pytest.raises(FeatureError, match="state the architecture"):
        compute_features(zoo, "aligned")
    # one stack chosen: a network that computes what the policy computes
    policy = wv.load_zoo(tmp_path / "ac", stack="action_net", activation="tanh")
    assert policy.arch.describe() == "MLP 8-32-32-2 (tanh), 1,410 params"
    obs = torch.randn(6, 8)
    for row, net in enumerate(rows_of(policy, written)):
        with torch.no_grad():
            expected = net.action_net(torch.tanh(net.mlp_extractor.policy_net(obs)))
        close(model_outputs(policy.arch, policy.weights[row], obs), expected)
    value = wv.load_zoo(tmp_path / "ac", stack=1, activation="tanh")
    assert value.arch.source_keys[-1] == "value_net.bias"


def test_weights_only_round_trips_through_the_native_format(tmp_path):
    write_named(tmp_path / "ac", "actor_critic", n=2)
    zoo = wv.load_zoo(tmp_path / "ac")
    back = wv.load_zoo(save_zoo(zoo, tmp_path / "native"))
    assert back.arch == zoo.arch and back.arch.stacks == zoo.arch.stacks
    assert torch.equal(back.weights, zoo.weights)
    assert from_spec(zoo.arch.spec) == zoo.arch


@pytest.mark.parametrize("kind", ["nested", "lightning", "legacy", "gpu"])
def test_wrapped_legacy_and_gpu_files_hold_the_same_weights(tmp_path, kind):
    written = write_named(tmp_path / kind, kind, n=2)
    path = tmp_path / kind / next(iter(written))
    if kind == "legacy":
        assert not zipfile.is_zipfile(path)  # the pre-1.6 format, not a zip archive
    if kind == "gpu" and not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):  # the file really says cuda:0
            torch.load(path, weights_only=True)
    zoo = wv.load_zoo(tmp_path / kind, activation="tanh")
    x = torch.randn(4, 4)
    for row, net in enumerate(rows_of(zoo, written)):
        close(model_outputs(zoo.arch, zoo.weights[row], x), net(x).detach())
    if kind == "lightning":
        note = next(iter(zoo.extra["notes"]))
        assert note.startswith("state dict read from 'state_dict' (besides callbacks, epoch, global_step")


def test_half_precision_is_upcast_and_noted(tmp_path):
    written = write_named(tmp_path / "h", "half", n=2)
    zoo = wv.load_zoo(tmp_path / "h", activation="tanh")
    assert zoo.weights.dtype == torch.float32
    assert zoo.extra["notes"] == {"float16 tensors upcast to float32": 1, "bfloat16 tensors upcast to float32": 1}
    x = torch.randn(4, 4)
    for row, net in enumerate(rows_of(zoo, written)):  # the modules hold the half-precision values
        close(model_outputs(zoo.arch, zoo.weights[row], x), net(x).detach())


def test_several_architectures_grouped_and_a_custom_class_read_inertly(tmp_path):
    """The .ckpt that pickles a custom class beside its state dict opens through inert stand-ins (the note names the
    class; nothing from the file ran); the folder's architectures are grouped."""
    write_mixed(tmp_path / "m")
    zoo = wv.load_zoo(tmp_path / "m")
    groups = zoo.extra["groups"]
    assert [(g["files"], g["example"].split("_")[0]) for g in groups] == [(3, "lenet"), (3, "tutorial"),
                                                                          (1, "actor")]
    assert groups[0]["architecture"].startswith("CNN 1x28x28") and groups[2]["architecture"].startswith("weights only")
    assert zoo.n_checkpoints == 3 and zoo.extra["group"] == 0 and not zoo.extra["skipped"]
    assert any("fixtures_formats.Config" in note and "inert stand-ins" in note for note in zoo.extra["notes"])
    assert wv.load_zoo(tmp_path / "m", group=1).arch.describe() == "MLP 4-16-3 (relu), 112 params"
    assert wv.load_zoo(tmp_path / "m", group=2).arch.kind == "weights-only"
    # a stated architecture opens the largest group it fits; the others are listed as not fitting
    spec = wv.load_zoo(tmp_path / "m", group=1).arch.spec
    stated = wv.load_zoo(tmp_path / "m", arch=spec)
    not_fitting = [r for r in stated.extra["skipped"].values() if "does not fit the stated" in r]
    assert stated.n_checkpoints == 3 and len(not_fitting) == 4


def test_run_folders_become_models_with_epochs(tmp_path):
    written = write_runs(tmp_path / "runs", n_runs=3, epochs=(0, 5, 10))
    zoo = wv.load_zoo(tmp_path / "runs", activation="tanh")
    assert wv.formats.detect_format(tmp_path / "runs") == "folder"
    m = zoo.metadata
    assert zoo.n_models == 3 and zoo.n_checkpoints == 9
    assert sorted(m["epoch"].unique()) == [0, 5, 10] and list(m["run"].unique()) == [
        "lr=0.001_seed=2", "lr=0.01_seed=1", "lr=0.1_seed=0"]
    assert dict(zip(m["run"], m["lr"], strict=True))["lr=0.01_seed=1"] == 0.01
    final = m.iloc[zoo.final_index()]
    assert list(final["epoch"]) == [10, 10, 10]
    x = torch.randn(3, 4)
    for row, net in enumerate(rows_of(zoo, written)):
        close(model_outputs(zoo.arch, zoo.weights[row], x), net(x).detach())


def test_metadata_file_wins_over_names(tmp_path):
    write_runs(tmp_path / "r", n_runs=2, epochs=(0, 1))
    pd.DataFrame({"file": ["lr=0.1_seed=0/epoch_0.pt", "lr=0.1_seed=0/epoch_1.pt", "lr=0.01_seed=1/epoch_0.pt",
                           "lr=0.01_seed=1/epoch_1.pt"], "test_acc": [0.1, 0.5, 0.2, 0.6], "model_id": [0, 0, 1, 1],
                  "epoch": [0, 1, 0, 1]}).to_csv(tmp_path / "r" / "metadata.csv", index=False)
    m = wv.load_zoo(tmp_path / "r").metadata
    assert "lr" not in m and list(m.columns[:2]) == ["model_id", "file"] and {"file_size", "modified"} <= set(m)
    assert dict(zip(m["file"], m["test_acc"], strict=True))["lr=0.01_seed=1/epoch_1.pt"] == 0.6


@pytest.mark.parametrize("name, fields", [
    ("lr=0.01_seed=3_epoch=20", {"lr": 0.01, "seed": 3, "epoch": 20}),
    ("epoch=9-step=1000", {"epoch": 9, "step": 1000}),
    ("lr_0.01_seed_3", {"lr": 0.01, "seed": 3}),
    ("epoch10", {"epoch": 10}),
    ("checkpoint-100", {"checkpoint": 100}),
    ("lr=1e-3_opt=adam", {"lr": 0.001, "opt": "adam"}),
    ("model_final", {}),
])
def test_names_give_metadata(name, fields):
    assert parse_name(name) == fields


def test_stack_rules():
    """Wrapper prefixes, bn1 with conv1 in sorted order, index-keyed families, layers.N.linear, bias-free."""
    assert list(strip_wrappers(["module._orig_mod.fc.weight", "module._orig_mod.fc.bias"])) == ["fc.weight", "fc.bias"]
    assert list(strip_wrappers(["model.a", "b"])) == ["model.a", "b"]
    shapes = {"bn1.bias": (4,), "bn1.running_mean": (4,), "bn1.running_var": (4,), "bn1.weight": (4,),
              "conv1.weight": (4, 1, 3, 3), "fc1.weight": (3, 4)}  # sorted: bn1 before conv1
    found = find_stacks(shapes)
    assert found.reason is None and [m.prefix for m in found.stacks[0].modules] == ["conv1", "bn1", "fc1"]
    layers = {f"layers.{i}.linear.weight": (8, 8 if i else 2) for i in range(3)}
    for i in range(3):
        layers.update({f"layers.{i}.norm.weight": (8,), f"layers.{i}.norm.bias": (8,)})
    found = find_stacks(layers)
    assert found.reason is None and len(found.stacks[0].layers) == 3
    assert all(norms and norms[0].kind == "layernorm" for _, norms in found.stacks[0].layers)
    index = {f"net.{i}.weight": (4, 4) for i in (0, 2, 10)}  # numeric order, not text order
    assert [m.prefix for m in find_stacks(index).stacks[0].modules] == ["net.0", "net.2", "net.10"]


def test_named_stack_modules_match_by_order(tmp_path):
    """A stated spec opens named keys by layer order."""
    (tmp_path / "t").mkdir()
    net = TutorialMLP()
    torch.save(net.state_dict(), tmp_path / "t" / "a.pt")
    spec = {"input_shape": [4], "layers": [{"type": "linear", "in_features": 4, "out_features": 16, "bias": False},
                                           {"type": "tanh"},
                                           {"type": "linear", "in_features": 16, "out_features": 3, "bias": False}]}
    zoo = wv.load_zoo(tmp_path / "t", arch=spec)
    x = torch.randn(3, 4)
    close(model_outputs(zoo.arch, zoo.weights[0], x), net(x).detach())
    with pytest.raises(ZooFormatError, match="arch= is neither"):
        wv.load_zoo(tmp_path / "t", arch="nowhere.json")


def test_actor_critic_fixture_is_what_sb3_saves():
    keys = list(ActorCritic().state_dict())
    assert keys[0] == "log_std" and keys[1] == "mlp_extractor.policy_net.0.weight" and keys[-1] == "value_net.bias"


def test_a_cnn_no_common_image_size_fits_opens_weights_only(tmp_path):
    """conv 3x3 (4 channels) into a linear layer of 4 * 25 inputs: 5x5 positions, which no common size reaches
    with a stride-1 conv and 2x2 pooling; the folder still opens (weights only, saying why), and a stated
    image size that does not fit is an error."""
    (tmp_path / "c").mkdir()
    torch.save({"0.weight": torch.randn(4, 1, 3, 3), "2.weight": torch.randn(3, 4 * 25)}, tmp_path / "c" / "a.pt")
    zoo = wv.load_zoo(tmp_path / "c")
    assert zoo.arch.kind == "weights-only" and "no common image size" in zoo.arch.reason
    assert wv.load_zoo(tmp_path / "c", input_shape=[1, 7, 7]).arch.input_shape == (1, 7, 7)  # 7 -> 5: fits
    with pytest.raises(ZooFormatError, match=r"the image size \[1, 8, 8\] cannot give"):
        wv.load_zoo(tmp_path / "c", input_shape=[1, 8, 8])


def test_a_wrapped_state_dict_wins_over_loose_tensors_beside_it(tmp_path):
    (tmp_path / "w").mkdir()
    net = TutorialMLP()
    torch.save({"model": net.state_dict(), "ema_decay": torch.tensor(0.999), "step": torch.tensor(7)},
               tmp_path / "w" / "a.pt")
    zoo = wv.load_zoo(tmp_path / "w", activation="tanh")
    assert zoo.arch.describe() == "MLP 4-16-3 (tanh), 112 params"
    assert next(iter(zoo.extra["notes"])) == "state dict read from 'model' (besides ema_decay, step)"


@pytest.mark.parametrize("names", [
    ["epoch_init", "epoch_1", "epoch_2", "epoch_10", "epoch_112", "epoch_250"],  # unpadded: text order is wrong
    ["init", "epoch_1", "epoch_2", "epoch_10", "epoch_112", "epoch_250"],
    ["epoch=0-step=0", "epoch=1-step=100", "epoch=2-step=200", "epoch=10-step=1000", "epoch=112-step=11200",
     "epoch=250-step=25000"],  # Lightning
])
def test_one_run_saved_every_epoch_is_one_model_in_epoch_order(tmp_path, names):
    """A folder of one training run's checkpoints (the start named ``init`` or epoch 0, unpadded epoch numbers)
    opens as one model whose rows follow the epochs numerically; file facts and checksums are not
    hyper-parameters."""
    from wslviz.plots.zoo import hyperparameter_columns

    gen = torch.Generator().manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 6), torch.nn.ReLU(), torch.nn.Linear(6, 2))
    saved = {}
    for n in reversed(names):  # written in the opposite order, so neither name nor time order is epoch order
        sd = {k: torch.randn(v.shape, generator=gen) for k, v in net.state_dict().items()}
        torch.save(sd, tmp_path / f"{n}.pt")
        saved[n] = sd
    zoo = wv.load_zoo(tmp_path, cache=False)
    assert zoo.n_models == 1 and zoo.metadata["epoch"].tolist() == [0, 1, 2, 10, 112, 250]
    assert zoo.metadata["file"].tolist() == [f"{n}.pt" for n in names]
    for row, n in enumerate(names):  # the weights follow the rows
        assert torch.equal(zoo.weights[row], zoo.arch.flatten(saved[n], by_order=True))
    assert hyperparameter_columns(zoo.metadata) == []
    # a published folder's checksums differ per file: still not a hyper-parameter, even with one model per file
    meta = zoo.metadata.assign(sha256=[f"{i:064x}" for i in range(len(names))], model_id=range(len(names)))
    assert "sha256" not in hyperparameter_columns(meta)
