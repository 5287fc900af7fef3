"""Hugging Face ``transformers`` models as an architecture kind, built from their ``config.json`` alone.

The *hf* kind (``pip install wslviz[hf]``): a ``config.json`` is turned into its model with
``transformers.AutoConfig.for_model`` and ``AutoModelFor...from_config`` — never a download, and a config that
names remote code (``auto_map``) is refused, since building it would run code from the folder. The network is then
a module architecture (:class:`wslviz.core.module_arch.ModuleArchitecture`: state-dict layout, tied embeddings as
aliases, batched ``functional_call``) whose forward feeds token ids as integers and returns the logits (for a causal
language model, those at the last position: the next token) and whose permutation spec is written per family from
the config (:mod:`wslviz.core.hf_families`: GPT-2, BERT, DistilBERT, Llama). The spec is JSON-able::

    {"kind": "hf", "config": {...config.json...}, "head": "causal-lm", "input_shape": [3]}

``head``: ``causal-lm`` (``AutoModelForCausalLM``), ``sequence-classification`` or ``base`` (the hidden states);
``order`` as in module specs (the layout in the order of a folder's ``model.safetensors``, for serving its rows).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cached_property
from typing import Any

import torch
from torch import nn

from wslviz.core.hf_families import family_spec
from wslviz.core.layout import ArchitectureError
from wslviz.core.module_arch import ModuleArchitecture
from wslviz.core.permutation import PermutationSpec

KIND = "hf"
HEADS = {"causal-lm": "AutoModelForCausalLM", "sequence-classification": "AutoModelForSequenceClassification",
         "base": "AutoModel"}
DEFAULT_LENGTH = 8
"""Tokens per probe input when the spec states no ``input_shape``."""


def head_of(config: Mapping[str, Any]) -> str:
    """The head a ``config.json`` asks for, read from its ``architectures`` (``GPT2LMHeadModel`` -> ``causal-lm``,
    ``BertForSequenceClassification`` -> ``sequence-classification``, else ``base``)."""
    names = " ".join(str(a) for a in config.get("architectures") or [])
    if "ForSequenceClassification" in names:
        return "sequence-classification"
    if "LMHead" in names or "ForCausalLM" in names:
        return "causal-lm"
    return "base"


def build_config(config: Mapping[str, Any]) -> Any:
    """``transformers``' config object of a ``config.json`` dict, with caching off; refuses remote code."""
    if not isinstance(config, Mapping) or not isinstance(config.get("model_type"), str):
        raise ArchitectureError("a Hugging Face config needs a 'model_type'")
    if config.get("auto_map") or config.get("trust_remote_code"):
        raise ArchitectureError("this config names remote code (auto_map): building it would run code from the "
                                "folder, which wslviz never does")
    try:
        import transformers
    except ImportError:
        raise ArchitectureError("Hugging Face models need transformers: pip install 'wslviz[hf]'") from None
    fields = {k: v for k, v in config.items() if k not in ("model_type", "transformers_version", "architectures")}
    try:
        cfg = transformers.AutoConfig.for_model(config["model_type"], **fields)
    except (ValueError, KeyError, TypeError) as e:
        raise ArchitectureError(f"transformers cannot build a {config['model_type']!r} config: {e}") from None
    cfg.use_cache = False
    return cfg


def _logits_class(cls: type[nn.Module], last: bool, head: str) -> type[nn.Module]:
    """A subclass of a ``transformers`` model class whose ``forward(x)`` takes token ids (as floats or integers)
    and returns a tensor (logits; the last position's with ``last``), so that its state dict is the model's own."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = cls.forward(self, input_ids=x.long())
        value = out.last_hidden_state if head == "base" else out.logits
        return value[:, -1] if last else value

    return type(f"{cls.__name__}Logits", (cls,), {"forward": forward})


def _model(config: Any, head: str, initialised: bool) -> nn.Module:
    """The model of ``config`` with ``head``, its ``forward`` taking token ids (:func:`_logits_class`). With
    ``initialised``, its weights are ``transformers``' initialisation drawn with seed 0 (the caller's random state
    untouched); else they are left as allocated (``transformers``' ``no_init_weights``; tied weights tied), to be
    replaced by a checkpoint's."""
    import transformers

    make = getattr(transformers, HEADS[head]).from_config
    if initialised:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = make(config)
    else:
        try:
            from transformers.initialization import no_init_weights
        except ImportError:  # transformers 4: initialised (slower, same result)
            return _model(config, head, initialised=True)
        with no_init_weights():
            model = make(config)
        model.tie_weights()
    model.__class__ = _logits_class(type(model), head == "causal-lm", head)
    return model


class HuggingFaceArchitecture(ModuleArchitecture):
    """A ``transformers`` model built from its config (see the module docstring); ``config`` holds the
    ``PretrainedConfig``."""

    kind = KIND

    def __init__(self, spec: Mapping[str, Any], allow_code: bool = False, base: Any = None):
        if not isinstance(spec, Mapping) or spec.get("kind") != KIND or not isinstance(spec.get("config"), Mapping):
            raise ArchitectureError('a Hugging Face spec needs "kind": "hf" and the model\'s "config"')
        head = str(spec.get("head") or head_of(spec["config"]))
        if head not in HEADS:
            raise ArchitectureError(f"unknown head {head!r}; known: {', '.join(HEADS)}")
        self.config = build_config(spec["config"])
        model = _model(self.config, head, initialised=False)
        positions = getattr(self.config, "max_position_embeddings", None) or getattr(self.config, "n_positions", 0)
        shape = spec.get("input_shape") or [min(DEFAULT_LENGTH, positions or DEFAULT_LENGTH)]
        order = {"order": list(spec["order"])} if spec.get("order") else {}
        super().__init__({"kind": "module", "instance": f"transformers.{type(model).__bases__[0].__name__}",
                          "input_shape": list(shape), "input_dtype": "int",
                          "input_high": int(self.config.vocab_size), **order}, module=model)
        self.head = head
        self.spec = {"kind": KIND, "config": dict(spec["config"]), "head": head, "input_shape": list(shape), **order}

    @property
    def name(self) -> str:
        return f"{self.config.model_type} ({self.head})"

    def initial_weights(self) -> torch.Tensor:
        """``transformers``' own initialisation of this model as ``[P]``, drawn with seed 0 (the module this
        architecture holds was built without drawing one: 1.8 s and 0.5 GB saved for GPT-2-small)."""
        return self.flatten(_model(self.config, self.head, initialised=True).state_dict())

    def build(self, weights: torch.Tensor | None = None) -> nn.Module:
        """A fresh copy of the model in eval mode, holding ``weights`` ([P]; default :meth:`initial_weights`)."""
        return super().build(self.initial_weights() if weights is None else weights)

    def _key(self, key: str, names: set[str]) -> str | None:
        """The layout name of a checkpoint key: itself, or with the base model's prefix (``transformer.``,
        ``bert.``, ``model.``) added or removed (checkpoints of the bare model, or of another head)."""
        if key in names:
            return key
        if key.endswith((".gamma", ".beta")):  # LayerNorm names of checkpoints older than transformers 4
            return self._key(key.rsplit(".", 1)[0] + (".weight" if key.endswith(".gamma") else ".bias"), names)
        prefix = getattr(self.module, "base_model_prefix", "") + "."
        if prefix != "." and prefix + key in names:
            return prefix + key
        if prefix != "." and key.startswith(prefix) and key[len(prefix):] in names:
            return key[len(prefix):]
        return None

    def layout_name(self, key: str) -> str | None:
        """The layout name a checkpoint key is read into (:meth:`_key`; a tied alias's own name for its copy),
        None for a tensor this model does not hold."""
        return self._key(key, {p.name for p in self.layout} | set(self.aliases))

    def unused_keys(self, keys: Iterable[str]) -> list[str]:
        """Checkpoint keys this model does not hold (another head's tensors, legacy buffers such as GPT-2's
        ``attn.bias`` causal masks): :meth:`flatten` leaves them out. Names only, so a reader can ask before (or
        without) loading the tensors."""
        names = {p.name for p in self.layout} | set(self.aliases)
        return [k for k in keys if self._key(k, names) is None]

    def flatten(self, state_dict: Mapping[str, torch.Tensor], by_order: bool = False,
                out: torch.Tensor | None = None) -> torch.Tensor:
        """A checkpoint of this model -> float32 ``[P]`` (into ``out`` when given), names mapped by :meth:`_key`;
        tensors this model does
        not hold (:meth:`unused_keys`, and integer buffers such as ``position_ids``) are left out, a missing or
        misshapen one raises ``ArchitectureError``."""
        del by_order
        names = {p.name for p in self.layout} | set(self.aliases)
        mapped = {self._key(k, names): v for k, v in state_dict.items()
                  if torch.is_floating_point(torch.as_tensor(v)) and self._key(k, names) is not None}
        return self.pack(mapped, self.name, also=set(self.aliases), out=out)

    @cached_property
    def perm_spec(self) -> PermutationSpec:
        """Written per family from the config (:func:`wslviz.core.hf_families.family_spec`)."""
        return family_spec(self, self.config)

    @property
    def matches_activations(self) -> bool:
        return False  # the spec is written from names, not traced: no graph nodes to capture units at

    def repair_layers(self) -> list:
        return []

    def batchnorm_folds(self) -> list:
        return []

    def describe(self) -> str:
        c = self.config
        layers = getattr(c, "num_hidden_layers", None) or getattr(c, "n_layer", "?")
        width = getattr(c, "hidden_size", None) or getattr(c, "n_embd", "?")
        return f"{c.model_type} {self.head}, {layers} layers of width {width}, {self.n_params:,} params"
