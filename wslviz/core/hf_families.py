"""Permutation specs of Hugging Face transformer families, written from their configs and parameter names.

For each family the units that may be permuted without changing the function (Hecht-Nielsen 1990; for
transformers, the attention-head and residual-stream symmetries used by Verma & Elbayad, "Merging Text
Transformer Models from Different Initializations", 2024, and Imfeld et al., "Transformer Fusion with Optimal
Transport", ICLR 2024):

- **MLP hidden units** of every block (the rows of the up projection(s) with their bias, the inputs of the down
  projection). GELU/SiLU allow no rescaling, so permutations only.
- **Attention heads** as wholes, with the units inside each head: the query/key pair moves by one permutation (their
  dot product is unchanged) and the value/output pair by one (the head's output is summed by the output projection);
  both pairs share the order of the heads (a *tie*). GPT-2 fuses q, k and v in one ``Conv1D`` (``[in, out]``,
  three slices of its output axis).
- **The residual stream**: one permutation of the model dimension across every block, moving the embeddings'
  columns, every LayerNorm/RMSNorm's weight and bias, the inputs of every projection that reads the stream and the
  outputs of every one that writes it. LayerNorm and RMSNorm commute with permutations of their features (their
  mean and variance are sums over features), so the stream may be permuted; they forbid per-unit rescaling, which is
  why no scale symmetry is offered. A tied output embedding moves with the input embedding.
- BERT's pooler units (tanh: permutations and sign flips) feeding the classifier; DistilBERT's pre-classifier
  units (ReLU: permutations and positive rescalings).

Llama-family models (RMSNorm, gated MLP, rotary positions): MLP units, the residual stream and the value/output
units inside each key-value head; the query/key units stay fixed, because rotary position embeddings rotate pairs
of dimensions inside each head, which a permutation would separate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from wslviz.core.permutation import AxisRef, FixedAxis, PermGroup, PermutationSpec, SymmetryError

BASE_PREFIXES = ("transformer", "bert", "distilbert", "model")
"""The attribute under which each family's head classes hold the bare model."""


class _Builder:
    """Collects groups against an architecture's layout (each ref checked to name a tensor of the right size)."""

    def __init__(self, arch: Any):
        self.arch = arch
        self.shapes = {p.name: p.shape for p in arch.layout}
        self.layers = {p.name: p.layer for p in arch.layout}
        self.groups: list[PermGroup] = []
        self.fixed: list[FixedAxis] = []

    def ref(self, name: str, axis: int, incoming: bool = True, start: int = 0, length: int = 0) -> AxisRef | None:
        if name not in self.shapes:  # the bare model (GPT2Model, BertModel): the head class's prefix is absent
            bare = name.split(".", 1)[1] if "." in name and name.split(".", 1)[0] in BASE_PREFIXES else None
            if bare not in self.shapes:
                return None
            name = bare
        # power: how a unit scale acts (a sign flip, where allowed, multiplies the incoming side and undoes itself
        # on the outgoing side)
        return AxisRef(name, axis, power=1 if incoming else -1, incoming=incoming, start=start, length=length)

    def add(self, name: str, size: int, refs: list[AxisRef | None], kinds: tuple[str, ...] = ("permutation",),
            activation: str | None = None, heads: int = 1, tie: str = "") -> None:
        refs = [r for r in refs if r is not None]
        if not refs:
            return  # this model has none of the tensors (another head)
        for r in refs:
            extent = r.length or self.shapes[r.name][r.axis] - r.start
            if extent != size:
                raise SymmetryError(f"{name}: {r.name} axis {r.axis} holds {extent} units, the group {size}")
        first = next((r.name for r in refs if r.incoming), refs[0].name)
        self.groups.append(PermGroup(name=name, layer=self.layers[first], size=size, refs=tuple(refs),
                                     kinds=kinds, activation=activation, capture=(name, 0), heads=heads, tie=tie))

    def spec(self) -> PermutationSpec:
        return PermutationSpec(tuple(self.groups), self.arch.n_params, tuple(self.fixed))


def _gpt2(arch: Any, c: Any) -> PermutationSpec:
    b, d, heads = _Builder(arch), c.n_embd, c.n_head
    inner = c.n_inner or 4 * d
    stream = [b.ref("transformer.wte.weight", 1), b.ref("transformer.wpe.weight", 1),
              b.ref("transformer.ln_f.weight", 0), b.ref("transformer.ln_f.bias", 0)]
    for i in range(c.n_layer):
        h = f"transformer.h.{i}."
        b.add(f"block {i} MLP", inner, [b.ref(h + "mlp.c_fc.weight", 1), b.ref(h + "mlp.c_fc.bias", 0),
                                        b.ref(h + "mlp.c_proj.weight", 0, incoming=False)], activation="gelu")
        qk = [b.ref(h + "attn.c_attn.weight", 1, start=s, length=d) for s in (0, d)]
        qk += [b.ref(h + "attn.c_attn.bias", 0, start=s, length=d) for s in (0, d)]
        b.add(f"block {i} query/key", d, qk, heads=heads, tie=f"block {i} heads")
        b.add(f"block {i} value/output", d, [b.ref(h + "attn.c_attn.weight", 1, start=2 * d, length=d),
                                             b.ref(h + "attn.c_attn.bias", 0, start=2 * d, length=d),
                                             b.ref(h + "attn.c_proj.weight", 0, incoming=False)],
              heads=heads, tie=f"block {i} heads")
        stream += [b.ref(h + n, 0) for n in ("ln_1.weight", "ln_1.bias", "ln_2.weight", "ln_2.bias",
                                             "attn.c_proj.bias", "mlp.c_proj.bias")]
        stream += [b.ref(h + "attn.c_attn.weight", 0, incoming=False), b.ref(h + "attn.c_proj.weight", 1),
                   b.ref(h + "mlp.c_fc.weight", 0, incoming=False), b.ref(h + "mlp.c_proj.weight", 1)]
    stream.append(b.ref("lm_head.weight", 1, incoming=False))  # untied heads; a tied one is the embedding
    b.add("residual stream", d, stream)
    return b.spec()


def _bert(arch: Any, c: Any) -> PermutationSpec:
    b, d, heads = _Builder(arch), c.hidden_size, c.num_attention_heads
    prefix = "bert." if any(p.name.startswith("bert.") for p in arch.layout) else ""
    e = prefix + "embeddings."
    stream = [b.ref(e + n, 1) for n in ("word_embeddings.weight", "position_embeddings.weight",
                                         "token_type_embeddings.weight")]
    stream += [b.ref(e + "LayerNorm.weight", 0), b.ref(e + "LayerNorm.bias", 0)]
    for i in range(c.num_hidden_layers):
        h = f"{prefix}encoder.layer.{i}."
        a = h + "attention."
        b.add(f"layer {i} MLP", c.intermediate_size,
              [b.ref(h + "intermediate.dense.weight", 0), b.ref(h + "intermediate.dense.bias", 0),
               b.ref(h + "output.dense.weight", 1, incoming=False)], activation="gelu")
        b.add(f"layer {i} query/key", d, [b.ref(a + f"self.{n}", 0) for n in
                                          ("query.weight", "query.bias", "key.weight", "key.bias")],
              heads=heads, tie=f"layer {i} heads")
        b.add(f"layer {i} value/output", d, [b.ref(a + "self.value.weight", 0), b.ref(a + "self.value.bias", 0),
                                             b.ref(a + "output.dense.weight", 1, incoming=False)],
              heads=heads, tie=f"layer {i} heads")
        stream += [b.ref(a + f"self.{n}.weight", 1, incoming=False) for n in ("query", "key", "value")]
        stream += [b.ref(a + "output.dense.weight", 0), b.ref(a + "output.dense.bias", 0),
                   b.ref(a + "output.LayerNorm.weight", 0), b.ref(a + "output.LayerNorm.bias", 0),
                   b.ref(h + "intermediate.dense.weight", 1, incoming=False), b.ref(h + "output.dense.weight", 0),
                   b.ref(h + "output.dense.bias", 0), b.ref(h + "output.LayerNorm.weight", 0),
                   b.ref(h + "output.LayerNorm.bias", 0)]
    stream.append(b.ref(prefix + "pooler.dense.weight", 1, incoming=False))
    b.add("residual stream", d, stream)
    if b.ref(prefix + "pooler.dense.weight", 0) is not None and b.ref("classifier.weight", 1) is not None:
        b.add("pooler", d, [b.ref(prefix + "pooler.dense.weight", 0), b.ref(prefix + "pooler.dense.bias", 0),
                            b.ref("classifier.weight", 1, incoming=False)], kinds=("permutation", "sign"),
              activation="tanh")
    return b.spec()


def _distilbert(arch: Any, c: Any) -> PermutationSpec:
    b, d, heads = _Builder(arch), c.dim, c.n_heads
    e = "distilbert.embeddings."
    stream = [b.ref(e + "word_embeddings.weight", 1), b.ref(e + "position_embeddings.weight", 1),
              b.ref(e + "LayerNorm.weight", 0), b.ref(e + "LayerNorm.bias", 0)]
    for i in range(c.n_layers):
        h = f"distilbert.transformer.layer.{i}."
        a = h + "attention."
        b.add(f"layer {i} MLP", c.hidden_dim, [b.ref(h + "ffn.lin1.weight", 0), b.ref(h + "ffn.lin1.bias", 0),
                                               b.ref(h + "ffn.lin2.weight", 1, incoming=False)], activation="gelu")
        b.add(f"layer {i} query/key", d, [b.ref(a + n, 0) for n in ("q_lin.weight", "q_lin.bias", "k_lin.weight",
                                                                    "k_lin.bias")],
              heads=heads, tie=f"layer {i} heads")
        b.add(f"layer {i} value/output", d, [b.ref(a + "v_lin.weight", 0), b.ref(a + "v_lin.bias", 0),
                                             b.ref(a + "out_lin.weight", 1, incoming=False)],
              heads=heads, tie=f"layer {i} heads")
        stream += [b.ref(a + f"{n}_lin.weight", 1, incoming=False) for n in ("q", "k", "v")]
        stream += [b.ref(a + "out_lin.weight", 0), b.ref(a + "out_lin.bias", 0), b.ref(h + "ffn.lin2.weight", 0),
                   b.ref(h + "ffn.lin2.bias", 0), b.ref(h + "ffn.lin1.weight", 1, incoming=False)]
        stream += [b.ref(h + f"{n}.{p}", 0) for n in ("sa_layer_norm", "output_layer_norm") for p in ("weight", "bias")]
    stream.append(b.ref("pre_classifier.weight", 1, incoming=False))
    b.add("residual stream", d, stream)
    if b.ref("pre_classifier.weight", 0) is not None and b.ref("classifier.weight", 1) is not None:
        b.add("pre-classifier", d, [b.ref("pre_classifier.weight", 0), b.ref("pre_classifier.bias", 0),
                                    b.ref("classifier.weight", 1, incoming=False)], kinds=("permutation", "scale"),
              activation="relu")
    return b.spec()


def _llama(arch: Any, c: Any) -> PermutationSpec:
    b, d = _Builder(arch), c.hidden_size
    heads = c.num_attention_heads
    kv = getattr(c, "num_key_value_heads", None) or heads
    hd = getattr(c, "head_dim", None) or d // heads
    stream = [b.ref("model.embed_tokens.weight", 1), b.ref("model.norm.weight", 0),
              b.ref("lm_head.weight", 1, incoming=False)]
    for i in range(c.num_hidden_layers):
        h = f"model.layers.{i}."
        b.add(f"layer {i} MLP", c.intermediate_size,
              [b.ref(h + "mlp.gate_proj.weight", 0), b.ref(h + "mlp.up_proj.weight", 0),
               b.ref(h + "mlp.down_proj.weight", 1, incoming=False)], activation="silu")
        group = heads // kv  # query heads reading each key-value head
        for j in range(kv):
            outs = [b.ref(h + "self_attn.o_proj.weight", 1, incoming=False, start=(j * group + q) * hd, length=hd)
                    for q in range(group)]
            b.add(f"layer {i} value/output, kv head {j}", hd,
                  [b.ref(h + "self_attn.v_proj.weight", 0, start=j * hd, length=hd),
                   b.ref(h + "self_attn.v_proj.bias", 0, start=j * hd, length=hd), *outs])
        for n in ("q_proj", "k_proj"):
            b.fixed.append(FixedAxis(h + f"self_attn.{n}.weight", 0, "rotary position embeddings rotate pairs of "
                                     "dimensions inside each head: a permutation would separate them"))
        stream += [b.ref(h + "input_layernorm.weight", 0), b.ref(h + "post_attention_layernorm.weight", 0),
                   b.ref(h + "self_attn.o_proj.weight", 0), b.ref(h + "mlp.down_proj.weight", 0),
                   b.ref(h + "self_attn.o_proj.bias", 0), b.ref(h + "mlp.down_proj.bias", 0)]
        stream += [b.ref(h + f"self_attn.{n}.weight", 1, incoming=False) for n in ("q_proj", "k_proj", "v_proj")]
        stream += [b.ref(h + f"mlp.{n}.weight", 1, incoming=False) for n in ("gate_proj", "up_proj")]
    b.add("residual stream", d, stream)
    return b.spec()


FAMILIES: dict[str, Callable[[Any, Any], PermutationSpec]] = {"gpt2": _gpt2, "bert": _bert, "distilbert": _distilbert,
                                                              "llama": _llama}
"""``config.model_type`` -> the function writing that family's permutation spec."""


def family_spec(arch: Any, config: Any) -> PermutationSpec:
    """The permutation spec of a Hugging Face model (``arch`` its module architecture, ``config`` its
    ``PretrainedConfig``); :class:`SymmetryError` for a family not in :data:`FAMILIES`."""
    make = FAMILIES.get(getattr(config, "model_type", ""))
    if make is None:
        raise SymmetryError(f"the symmetries of {config.model_type!r} models are not written yet (known: "
                            f"{', '.join(FAMILIES)})")
    spec = make(arch, config)
    if getattr(arch, "head", "") != "base":
        return spec
    # the bare model's outputs are the residual stream itself: permuting it would permute the outputs
    stream = [g for g in spec.groups if g.name == "residual stream"]
    fixed = [FixedAxis(r.name, r.axis, "the bare model outputs the residual stream, so it stays in its order")
             for g in stream for r in g.refs]
    return PermutationSpec(tuple(g for g in spec.groups if g.name != "residual stream"), spec.n_params,
                           spec.fixed + tuple(fixed))
