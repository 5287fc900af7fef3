"""Writers of tiny zoos in exactly each external layout (see the reader modules' docstrings), plus
the original networks' arithmetic written out by hand, so tests can check that a converted model
computes the same function as the layout it came from."""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import save_file
from torch import nn

# ----------------------------------------------------------------------------------------- Model Zoos
CNN_S = [("conv", 8, 5, True), ("conv", 6, 5, True), ("conv", 4, 2, False), ("flatten",), ("linear", 36, 20),
         ("linear", 20, 10)]
CNN_L = [("conv", 16, 3, True), ("conv", 32, 3, True), ("conv", 15, 3, True), ("flatten",), ("linear", 60, 20),
         ("linear", 20, 10)]
NLIN = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "leakyrelu": nn.LeakyReLU, "gelu": nn.GELU}


def modelzoos_module_list(model_type: str, channels: int, nlin: str, dropout: float) -> nn.ModuleList:
    """The Model Zoos CNN as its authors build it: a ``module_list`` with pooling before the
    activation and a dropout after each activation when ``dropout > 0`` (which shifts the indices)."""
    layers = nn.ModuleList()
    c = channels
    plan = CNN_S if model_type == "CNN" else CNN_L
    for step in plan:
        if step[0] == "conv":
            _, out, k, pooled = step
            layers.append(nn.Conv2d(c, out, k))
            if pooled:
                layers.append(nn.MaxPool2d(2, 2))
            layers.append(NLIN[nlin]())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            c = out
        elif step[0] == "flatten":
            layers.append(nn.Flatten())
        else:
            _, fin, fout = step
            layers.append(nn.Linear(fin, fout))
            if fout != 10:
                layers.append(NLIN[nlin]())
                if dropout > 0:
                    layers.append(nn.Dropout(dropout))
    return layers.eval()


def modelzoos_forward(module_list: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
    """The original forward pass: every module of the list in turn."""
    with torch.no_grad():
        for m in module_list:
            x = m(x)
    return x


def write_modelzoos(root: Path, n_trials: int = 2, epochs=(0, 1, 2), model_type: str = "CNN", channels: int = 1,
                    nlin: str | list[str] = "relu", dropout: float = 0.0, seed: int = 0) -> dict:
    """Ray Tune trial folders with params.json, result.json (lines for training_iteration 1..E) and
    checkpoint folders alternating the ``checkpoint_{e}`` / ``checkpoint_{e:06d}`` spellings.
    Returns {(trial index, epoch): module_list} for checking functions."""
    root.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    nlins = nlin if isinstance(nlin, list) else [nlin] * n_trials
    out = {}
    for t in range(n_trials):
        trial = root / f"NN_tune_trainable_{t:05d}_{t}_seed={seed + t}_2022-01-01_00-00-00"
        trial.mkdir()
        params = {"seed": seed + t, "model::type": model_type, "model::nlin": nlins[t], "model::dropout": dropout,
                  "model::i_dim": channels, "model::init_type": "kaiming_uniform", "optim::optimizer": "adam",
                  "optim::lr": [1e-3, 1e-4][t % 2], "optim::wd": 0.0, "training::batchsize": 32,
                  "training::epochs_train": max(epochs), "cuda": False}
        (trial / "params.json").write_text(json.dumps(params))
        lines = []
        for e in epochs:
            if e == 0:
                continue
            lines.append(json.dumps({"train_loss": 1.0 / e, "train_acc": 0.5 + 0.1 * e + 0.01 * t,
                                     "test_loss": 1.1 / e, "test_acc": 0.45 + 0.1 * e + 0.02 * t,
                                     "training_iteration": e, "time_this_iter_s": 1.5, "trial_id": f"t{t}",
                                     "config": params, "timestamp": 1600000000 + e}))
        (trial / "result.json").write_text("\n".join(lines) + "\n")
        for e in epochs:
            ml = modelzoos_module_list(model_type, channels, nlins[t], dropout)
            folder = trial / (f"checkpoint_{e:06d}" if e % 2 == 0 else f"checkpoint_{e}")
            folder.mkdir()
            torch.save({f"module_list.{k}": v for k, v in ml.state_dict().items()}, folder / "checkpoints")
            out[(t, e)] = ml
    return out


# ------------------------------------------------------------------------------------- Small CNN Zoo
def cnnzoo_layer_shapes(channels: int = 1) -> list[tuple[str, tuple[int, ...]]]:
    """(layer name, TensorFlow kernel shape) of the Small CNN Zoo CNN."""
    return [("sequential/conv2d", (3, 3, channels, 16)), ("sequential/conv2d_1", (3, 3, 16, 16)),
            ("sequential/conv2d_2", (3, 3, 16, 16)), ("sequential/dense", (16, 10))]


def tf_flat(params: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Flatten TF (kernel, bias) pairs as the zoo does: per layer bias first, then the kernel."""
    return np.concatenate([np.concatenate([b.ravel(), k.ravel()]) for k, b in params])


def cnnzoo_forward(params: list[tuple[np.ndarray, np.ndarray]], x_nhwc: np.ndarray, activation: str) -> np.ndarray:
    """The TensorFlow network by hand in float64: Conv2D(3x3, stride 2, valid) on NHWC with HWIO
    kernels, activation, three times; global average pool; Dense with an [in, out] kernel."""
    act = {"relu": lambda v: np.maximum(v, 0.0), "tanh": np.tanh}[activation]
    h = x_nhwc.astype(np.float64)
    for kernel, bias in params[:-1]:
        kh, kw, _, cout = kernel.shape
        n, hh, ww, _ = h.shape
        oh, ow = (hh - kh) // 2 + 1, (ww - kw) // 2 + 1
        out = np.zeros((n, oh, ow, cout))
        for i in range(oh):
            for j in range(ow):
                patch = h[:, 2 * i:2 * i + kh, 2 * j:2 * j + kw, :]
                out[:, i, j, :] = np.einsum("nhwc,hwco->no", patch, kernel)
        h = act(out + bias)
    pooled = h.mean(axis=(1, 2))
    kernel, bias = params[-1]
    return pooled @ kernel + bias


def write_cnnzoo(root: Path, n_models: int = 3, steps=(0, 100), activations=("relu",), seed: int = 0,
                 gz: bool = True) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """weights.npy (float32 [N, 4970]), metrics.csv.gz and layout.csv. Returns the TF parameters per row."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shapes = cnnzoo_layer_shapes()
    rows, flat, params_per_row = [], [], []
    for m in range(n_models):
        act = activations[m % len(activations)]
        for s in steps:
            params = [(rng.normal(0, 0.3, k).astype(np.float32), rng.normal(0, 0.1, k[-1]).astype(np.float32))
                      for _, k in shapes]
            params_per_row.append(params)
            flat.append(tf_flat(params))
            rows.append({"config.activation": act, "config.b_init": "zeros", "config.dropout": 0.1 * m,
                         "config.init_std": 0.05, "config.l2reg": 1e-4, "config.learning_rate": 1e-3 * (m + 1),
                         "config.optimizer": "adam", "config.random_seed": 100 + m, "config.train_fraction": 1.0,
                         "config.w_init": "xavier", "modeldir": f"run/{m}", "step": s,
                         "test_accuracy": 0.3 + 0.1 * m + s / 1000, "test_loss": 2.0 - s / 100,
                         "train_accuracy": 0.35 + 0.1 * m + s / 1000, "train_loss": 1.9 - s / 100,
                         "laststep": max(steps)})
    np.save(root / "weights.npy", np.stack(flat).astype(np.float32))
    df = pd.DataFrame(rows)
    if gz:
        with gzip.open(root / "metrics.csv.gz", "wt") as f:
            df.to_csv(f, index=False)
    else:
        df.to_csv(root / "metrics.csv", index=False)
    layout, pos = [], 0
    for name, k in shapes:
        for role, shape in (("bias", (k[-1],)), ("kernel", k)):
            n = int(np.prod(shape))
            layout.append({"varname": f"{name}/{role}:0", "start_idx": pos, "end_idx": pos + n, "shape": str(shape)})
            pos += n
    pd.DataFrame(layout).to_csv(root / "layout.csv", index=False)
    return params_per_row


# -------------------------------------------------------------------------------------------- INRs
def siren_state_dict(gen: torch.Generator, hidden: int = 32, out: int = 1) -> dict[str, torch.Tensor]:
    """DWSNets' INR: seq.0 / seq.1 Siren layers (weight, bias) and seq.2 a Linear."""
    return {"seq.0.weight": torch.rand(hidden, 2, generator=gen) - 0.5,
            "seq.0.bias": torch.randn(hidden, generator=gen) * 0.1,
            "seq.1.weight": (torch.rand(hidden, hidden, generator=gen) - 0.5) * 0.1,
            "seq.1.bias": torch.randn(hidden, generator=gen) * 0.1,
            "seq.2.weight": (torch.rand(out, hidden, generator=gen) - 0.5) * 0.1, "seq.2.bias": torch.zeros(out)}


def siren_forward(sd: dict[str, torch.Tensor], coords: torch.Tensor, w0: float = 30.0) -> torch.Tensor:
    """Siren(x) = sin(w0 * (W x + b)) for seq.0 and seq.1, then the linear seq.2 (float64)."""
    h = coords.double()
    for i in (0, 1):
        h = torch.sin(w0 * (h @ sd[f"seq.{i}.weight"].double().T + sd[f"seq.{i}.bias"].double()))
    return h @ sd["seq.2.weight"].double().T + sd["seq.2.bias"].double()


def write_inr(root: Path, labels=(3, 7, 3, 1), splits: bool = False, seed: int = 0) -> dict[str, dict]:
    """``mnist_png_<split>_<label>_<i>/checkpoints/model_final.pth`` per INR (and splits.json).
    Returns {relative path: state dict}."""
    root.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    out = {}
    listing: dict[str, dict[str, list]] = {"train": {"path": [], "label": []}, "test": {"path": [], "label": []}}
    for i, label in enumerate(labels):
        split = "training" if i % 2 == 0 else "testing"
        rel = f"mnist_png_{split}_{label}_{i}/checkpoints/model_final.pth"
        (root / rel).parent.mkdir(parents=True)
        sd = siren_state_dict(gen)
        torch.save(sd, root / rel)
        out[rel] = sd
        key = "train" if split == "training" else "test"
        # the writer's machine had another root: only the tail of the path matches ours
        listing[key]["path"].append(f"/home/someone/dataset/mnist-inrs/{rel}")
        listing[key]["label"].append(label)
    if splits:
        (root / "splits.json").write_text(json.dumps(listing))
    return out


# ----------------------------------------------------------------------- p-diff, folders, Hugging Face
def mlp_state_dict(gen: torch.Generator, widths=(2, 16, 3), prefix: str = "net") -> dict[str, torch.Tensor]:
    """An MLP state dict with gaps in the indices (activations take indices too): net.0, net.2, ..."""
    sd = {}
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        sd[f"{prefix}.{2 * i}.weight"] = torch.randn(b, a, generator=gen)
        sd[f"{prefix}.{2 * i}.bias"] = torch.randn(b, generator=gen)
    return sd


def mlp_forward(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """ReLU MLP by hand over the state dict in key order."""
    keys = sorted({k.rsplit(".", 1)[0] for k in sd}, key=lambda k: int(k.rsplit(".", 1)[1]))
    h = x.double()
    for j, k in enumerate(keys):
        h = h @ sd[f"{k}.weight"].double().T + sd[f"{k}.bias"].double()
        if j < len(keys) - 1:
            h = torch.relu(h)
    return h


def write_pdiff(root: Path, n: int = 3, seed: int = 0) -> list[tuple[float, int, dict]]:
    """``checkpoint/{i:04d}_acc{acc:.4f}_seed{seed:04d}_{tag}.pth``. Returns (acc, seed, state dict) per i."""
    (root / "checkpoint").mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        acc, s = 0.9 + i / 1000, 17 + i
        sd = mlp_state_dict(gen)
        torch.save(sd, root / "checkpoint" / f"{i:04d}_acc{acc:.4f}_seed{s:04d}_resnet18.pth")
        out.append((acc, s, sd))
    return out


def write_folder(root: Path, suffixes=(".safetensors", ".pt", ".pth", ".bin"), metadata: str | None = "csv",
                 seed: int = 0) -> dict[str, dict]:
    """One MLP state dict per suffix, with metadata.csv / metadata.json keyed by file name."""
    root.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for i, suffix in enumerate(suffixes):
        name = f"model_{i}{suffix}"
        sd = mlp_state_dict(gen)
        if suffix == ".safetensors":
            save_file(sd, str(root / name))
        else:
            torch.save(sd, root / name)
        out[name] = sd
    rows = [{"file": name, "test_acc": 0.5 + 0.1 * i, "lr": 10.0 ** -i} for i, name in enumerate(out)]
    if metadata == "csv":
        pd.DataFrame(rows).iloc[::-1].to_csv(root / "metadata.csv", index=False)
    elif metadata == "json":
        (root / "metadata.json").write_text(json.dumps({r["file"]: {"test_acc": r["test_acc"], "lr": r["lr"]}
                                                        for r in rows}))
    return out


def write_hf(root: Path, sharded: bool = False, seed: int = 0) -> dict[str, torch.Tensor]:
    """A Hugging Face folder: model.safetensors, or two shards and model.safetensors.index.json."""
    root.mkdir(parents=True, exist_ok=True)
    sd = mlp_state_dict(torch.Generator().manual_seed(seed), widths=(4, 8, 8, 2), prefix="classifier")
    (root / "config.json").write_text(json.dumps({"hidden_act": "relu", "model_type": "mlp"}))
    if not sharded:
        save_file(sd, str(root / "model.safetensors"))
        return sd
    keys = list(sd)
    parts = {"model-00001-of-00002.safetensors": keys[:3], "model-00002-of-00002.safetensors": keys[3:]}
    for shard, ks in parts.items():
        save_file({k: sd[k] for k in ks}, str(root / shard))
    index = {"metadata": {"total_size": 0}, "weight_map": {k: s for s, ks in parts.items() for k in ks}}
    (root / "model.safetensors.index.json").write_text(json.dumps(index))
    return sd


WRITERS = {
    "modelzoos": lambda p: write_modelzoos(p, n_trials=2, epochs=(0, 1)),
    "cnnzoo": lambda p: write_cnnzoo(p, n_models=2, steps=(0, 10)),
    "inr": lambda p: write_inr(p, labels=(3, 7), splits=True),
    "pdiff": lambda p: write_pdiff(p, n=2),
    "folder": lambda p: write_folder(p, suffixes=(".safetensors", ".pt")),
    "huggingface": lambda p: write_hf(p, sharded=True),
}


# ----------------------------------------------------------------- checkpoints as people save them
class TutorialMLP(nn.Module):
    """The tutorial MLP: ``l1``/``l2`` without biases, tanh between."""

    def __init__(self, n_in: int = 4, hidden: int = 16, n_out: int = 3):
        super().__init__()
        self.l1 = nn.Linear(n_in, hidden, bias=False)
        self.l2 = nn.Linear(hidden, n_out, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.l2(torch.tanh(self.l1(x)))


class LeNet(nn.Module):
    """LeNet-5 as written in tutorials (``conv1``, ``conv2``, ``fc1``-``fc3``; max-pool after each conv's ReLU),
    for 1 x 28 x 28 inputs; ``activation`` is what the state dict cannot record."""

    def __init__(self, activation=torch.relu):
        super().__init__()
        self.act = activation
        self.conv1, self.conv2 = nn.Conv2d(1, 4, 5), nn.Conv2d(4, 8, 5)
        self.fc1, self.fc2, self.fc3 = nn.Linear(8 * 4 * 4, 24), nn.Linear(24, 16), nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.max_pool2d(self.act(self.conv1(x)), 2)
        x = nn.functional.max_pool2d(self.act(self.conv2(x)), 2)
        x = self.act(self.fc1(x.flatten(1)))
        return self.fc3(self.act(self.fc2(x)))


class ActorCritic(nn.Module):
    """A Stable-Baselines3 ``ActorCriticPolicy``'s tensors: ``log_std``, ``mlp_extractor.policy_net`` /
    ``value_net`` (Linear, Tanh, Linear), ``action_net``, ``value_net``."""

    def __init__(self, obs: int = 8, hidden: int = 32, actions: int = 2):
        super().__init__()
        self.log_std = nn.Parameter(torch.zeros(actions))
        self.mlp_extractor = nn.Module()
        self.mlp_extractor.policy_net = nn.Sequential(nn.Linear(obs, hidden), nn.Tanh(), nn.Linear(hidden, hidden))
        self.mlp_extractor.value_net = nn.Sequential(nn.Linear(obs, hidden), nn.Tanh(), nn.Linear(hidden, hidden))
        self.action_net = nn.Linear(hidden, actions)
        self.value_net = nn.Linear(hidden, 1)


def vgg_like() -> nn.Module:
    """``features.*`` (conv, BatchNorm, ReLU, pool, conv, BatchNorm, ReLU) then ``classifier.*`` (Dropout,
    Linear, ReLU, Linear) for 1 x 10 x 10 inputs; BatchNorm statistics set away from 0/1."""
    net = nn.Module()
    net.features = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Conv2d(4, 6, 3), nn.BatchNorm2d(6), nn.ReLU())
    net.classifier = nn.Sequential(nn.Dropout(0.5), nn.Linear(6 * 2 * 2, 12), nn.ReLU(), nn.Linear(12, 5))
    with torch.no_grad():
        for m in net.features:
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
    return net.eval()


def vgg_forward(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return net.classifier(net.features(x).flatten(1))


class Config:
    """A custom class such as an OmegaConf config, pickled inside a Lightning ``.ckpt``."""

    def __init__(self, lr: float = 0.01):
        self.lr = lr


def lightning_checkpoint(state_dict: dict[str, torch.Tensor], epoch: int, hparams=None) -> dict:
    """What ``Trainer.save_checkpoint`` writes: the LightningModule's state dict (keys ``model.*`` when the
    network is an attribute ``model``) beside loop state and hyper-parameters."""
    return {"epoch": epoch, "global_step": 10 * epoch, "pytorch-lightning_version": "2.1.0",
            "state_dict": {f"model.{k}": v for k, v in state_dict.items()},
            "loops": {"fit_loop": {"epoch_progress": {"current": {"completed": epoch}}}},
            "callbacks": {}, "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.01, "params": [0]}]}],
            "lr_schedulers": [], "hparams_name": "kwargs",
            "hyper_parameters": hparams if hparams is not None else {"lr": 0.01, "hidden": 16}}


def save_as_if_on_gpu(obj, path: Path) -> None:
    """``torch.save`` recording every storage's location as ``cuda:0``, as a file saved on a GPU does (loading it
    without ``map_location`` on a machine without CUDA fails)."""
    import torch.serialization as ser

    original = ser.location_tag
    ser.location_tag = lambda storage: "cuda:0"
    try:
        torch.save(obj, path)
    finally:
        ser.location_tag = original


def _seeded(make, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return make()


def write_named(root: Path, kind: str, n: int = 3, seed: int = 0) -> dict[str, nn.Module]:
    """A folder of ``n`` checkpoints of one kind people save; returns {file name: the module}.

    ``tutorial`` (l1/l2, no biases, .pt), ``lenet`` (.pth), ``vgg`` (features/classifier with BatchNorm,
    .safetensors: names sorted), ``actor_critic`` (SB3 policies, .zip-less .pth), ``nested`` ({"model_state_dict":
    {"module.l1.weight"...}, "epoch", "optimizer"}), ``lightning`` (.ckpt), ``legacy`` (pre-1.6 torch.save),
    ``half`` (float16 and bfloat16 tensors), ``gpu`` (storages tagged cuda:0)."""
    root.mkdir(parents=True, exist_ok=True)
    make = {"tutorial": TutorialMLP, "lenet": LeNet, "vgg": vgg_like, "actor_critic": ActorCritic}.get(kind,
                                                                                                      TutorialMLP)
    out = {}
    for i in range(n):
        net = _seeded(make, seed + i).eval()
        sd = net.state_dict()
        name = f"{kind}_lr={[0.1, 0.01, 0.001][i % 3]}_seed={seed + i}"
        if kind == "vgg":
            save_file({k: v.contiguous() for k, v in sd.items() if v.is_floating_point()},
                      str(root / f"{name}.safetensors"))
            name += ".safetensors"
        elif kind == "nested":
            torch.save({"epoch": 5, "model_state_dict": {f"module.{k}": v for k, v in sd.items()},
                        "optimizer_state_dict": {"state": {}, "param_groups": [{"lr": 0.1}]}, "loss": 0.25},
                       root / f"{name}.pt")
            name += ".pt"
        elif kind == "lightning":
            torch.save(lightning_checkpoint(sd, epoch=i), root / f"{name}.ckpt")
            name += ".ckpt"
        elif kind == "legacy":
            torch.save(sd, root / f"{name}.pth", _use_new_zipfile_serialization=False)
            name += ".pth"
        elif kind == "half":
            dtype = torch.float16 if i % 2 == 0 else torch.bfloat16
            torch.save({k: v.to(dtype) for k, v in sd.items()}, root / f"{name}.bin")
            name += ".bin"
            with torch.no_grad():  # the module the file holds: its weights rounded to half precision
                net.load_state_dict({k: v.to(dtype).float() for k, v in sd.items()})
        elif kind == "gpu":
            save_as_if_on_gpu(sd, root / f"{name}.pt")
            name += ".pt"
        else:
            torch.save(sd, root / f"{name}{'.pth' if kind in ('lenet', 'actor_critic') else '.pt'}")
            name += ".pth" if kind in ("lenet", "actor_critic") else ".pt"
        out[name] = net
    return out


def write_mixed(root: Path, seed: int = 0) -> dict[str, nn.Module]:
    """Three architectures in one folder (3 LeNets, 2 tutorial MLPs, 1 actor-critic), as a folder of face
    detectors has, plus a ``.ckpt`` that pickles a custom class beside its state dict (read through inert
    stand-ins)."""
    out = {**write_named(root, "lenet", 3, seed), **write_named(root, "tutorial", 2, seed + 10),
           **write_named(root, "actor_critic", 1, seed + 20)}
    torch.save(lightning_checkpoint(TutorialMLP().state_dict(), 1, hparams=Config()), root / "with_config.ckpt")
    return out


def write_runs(root: Path, n_runs: int = 3, epochs=(0, 5, 10), seed: int = 0) -> dict[str, nn.Module]:
    """``lr=<lr>_seed=<s>/epoch_<e>.pt`` per run: one model per sub-folder, one checkpoint per epoch."""
    out = {}
    for r in range(n_runs):
        run = root / f"lr={[0.1, 0.01, 0.001][r % 3]}_seed={seed + r}"
        run.mkdir(parents=True)
        for e in epochs:
            net = _seeded(TutorialMLP, 100 * r + e + seed)
            torch.save(net.state_dict(), run / f"epoch_{e}.pt")
            out[f"{run.name}/epoch_{e}.pt"] = net
    return out


NAMED_KINDS = ("tutorial", "lenet", "vgg", "actor_critic", "nested", "lightning", "legacy", "half", "gpu")
class PickledNet(torch.nn.Module):
    """A user's model class, saved whole with ``torch.save(model)`` (the class is never needed to read it back)."""

    def __init__(self):
        super().__init__()
        self.i2h = torch.nn.GRU(4, 6)
        self.head = torch.nn.Linear(6, 3)

    def forward(self, x):
        return self.head(self.i2h(x)[0])


def write_pickled_modules(path: Path, n: int = 2, seed: int = 0) -> list[PickledNet]:
    """``n`` whole-module pickles (zip format) and one legacy-format file holding a module and its optimiser."""
    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    nets = [PickledNet() for _ in range(n + 1)]
    for i, net in enumerate(nets[:n]):
        torch.save(net, path / f"model{i}.pt")
    opt = torch.optim.SGD(nets[n].parameters(), lr=0.1, momentum=0.9)
    nets[n](torch.randn(5, 2, 4)).sum().backward()
    opt.step()
    torch.save({"model": nets[n], "optimizer": opt, "epoch": 4}, path / f"model{n}.pt",
               _use_new_zipfile_serialization=False)
    return nets


FOLDER_WRITERS = {
    **{f"folder-{k}": partial(write_named, kind=k, n=2) for k in ("tutorial", "lenet", "vgg", "actor_critic",
                                                                   "lightning")},
    "folder-legacy-half": lambda p: (write_named(p, "legacy", n=1), write_named(p, "half", n=2, seed=5)),
    "folder-mixed": lambda p: write_mixed(p),
    "folder-runs": lambda p: write_runs(p, n_runs=2, epochs=(0, 5)),
    "folder-pickled-modules": lambda p: write_pickled_modules(p),
}
"""Writers of checkpoint folders as people keep them; all open with the ``folder`` reader."""


def zip_folder(folder: Path, arcroot: str) -> bytes:
    """The files under ``folder`` as a zip archive in memory, each stored under ``arcroot/``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                zf.write(f, f"{arcroot}/{f.relative_to(folder).as_posix()}")
    return buf.getvalue()


def edit_state_dict(path: Path, edit) -> None:
    """Load the state dict saved at ``path``, apply ``edit(sd)`` in place and save it back (to plant a fault)."""
    sd = torch.load(path, weights_only=True)
    edit(sd)
    torch.save(sd, path)
