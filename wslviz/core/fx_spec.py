"""The permutation spec of any ``nn.Module``, derived from its ``torch.fx`` graph.

Which hidden units of a network can be reordered without changing its function is a property of its
graph. :func:`derive` traces the module (``torch.fx`` symbolic tracing, standard layers kept as leaves),
runs one example input through it to learn every tensor's shape, and gives each axis of each tensor a
*label* saying which units index it:

* every linear/conv output axis (and every embedding dimension) starts a new unit set, whose producer
  tensors are the layer's weight rows and bias;
* elementwise ops, activations, dropout, pooling and per-channel normalisation (BatchNorm, LayerNorm over the
  last axis) carry the labels through; the normalisation's parameters and running statistics join the
  unit set;
* a linear/conv layer *consumes* the unit set on its input axis (that axis of its weight joins the set);
* ops combining tensors elementwise (a residual ``add``, a bias or position-embedding ``add``, a gate
  ``mul``) *merge* the unit sets of aligned axes: one residual stream shares one permutation, as in
  Git Re-Basin's ResNet spec (Ainsworth et al., ICLR 2023, Appendix);
* ``cat`` along a unit axis concatenates unit sets (each keeps its own permutation, at an entry offset);
  ``flatten``/``view``/``reshape`` merging a channel axis with trailing spatial axes maps each unit to a
  block of consecutive entries, the inverse split maps them back;
* attention: a ``view`` splitting a unit axis into ``(heads, head_dim)`` makes the set block-structured;
  ``q @ k^T`` contracting the head dimensions of queries and keys merges their sets (queries and keys share
  one permutation of each head's dimensions), and the head axes aligned in ``q @ k^T`` and ``att @ v`` *tie*
  the query/key and the value sets: heads move as wholes, by one shared head permutation, while values
  (and the output projection's input) have their own per-head dimension permutation. This is the symmetry
  group of multi-head attention used for transformer merging (Imfeld et al., ICLR 2024; Verma & Elbayad 2024);
* tied weights (one tensor used in two places) merge the sets of the places it appears.

Anything that cannot be followed is *fixed*: the network's input and output axes, an embedding's vocabulary,
an op the deriver does not know, a reshape that mixes a unit axis with others, a slice of a unit axis. A
fixed set merged with another fixes that one too, and the spec lists every tensor axis that stayed fixed with
the first reason (:class:`~wslviz.core.permutation.FixedAxis`). What remains are the permutation groups.

Scale symmetries (a ReLU unit's incoming weights times ``s > 0``, outgoing divided by ``s``) and sign
symmetries (odd activations) are derived for the simple case that is certain: a unit set with one linear or
conv producer, only elementwise ops that pass the symmetry (ReLU/LeakyReLU/max-pool for scale; tanh for sign;
average pooling, flatten and dropout for both) and only linear/conv consumers.

This module is long because the pass needs one small handler per kind of operation (leaf layers, elementwise
ops, matmul and attention, indexing, ``cat``), all methods of one pass over the graph; the unit sets and their
label algebra are in :mod:`wslviz.core.fx_units`, tracing in :func:`wslviz.core.fx_graph.trace`.
"""

from __future__ import annotations

from typing import Any

import torch.fx as fx
from torch import nn

from wslviz.core.fx_graph import trace
from wslviz.core.fx_units import Dim, Full, Head, Label, Ref, UnitSets
from wslviz.core.permutation import PASSES, FixedAxis, PermutationSpec

_POOLS = {"max_pool2d", "avg_pool2d", "adaptive_avg_pool2d"}
_BINARY = {"add", "sub", "mul", "truediv", "div", "where", "masked_fill", "maximum", "minimum", "eq", "ne", "lt",
           "le", "gt", "ge", "and_", "or_", "rsub", "floordiv", "pow"}
_REDUCE = {"mean", "sum", "amax", "amin", "logsumexp", "var", "std", "norm"}
_RESHAPE = {"view", "reshape", "flatten", "unflatten", "squeeze", "unsqueeze", "view_as", "reshape_as"}
_FACTORY = {"new_ones", "new_zeros", "new_full", "new_empty", "ones", "zeros", "arange", "full", "ones_like",
            "zeros_like", "full_like", "randn", "rand", "empty"}
_SOFTMAX = {"softmax", "log_softmax"}
_IGNORED = {"size", "dim", "numel", "getattr"}
_ACT_NAMES = {"relu", "leaky_relu", "tanh", "gelu", "sigmoid", "silu"}



class _Deriver(UnitSets):
    """One pass over the traced graph; see the module docstring."""

    def __init__(self, arch: Any, gm: fx.GraphModule):
        super().__init__(arch)
        self.gm = gm
        self.modules = dict(gm.named_modules())
        self.values: dict[fx.Node, Any] = {}

    # ------------------------------------------------------------------ helpers
    def shape(self, node: Any) -> tuple[int, ...] | None:
        if not isinstance(node, fx.Node):
            return None
        meta = node.meta.get("tensor_meta")
        return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None

    def labels(self, arg: Any) -> list[Label] | None:
        if isinstance(arg, fx.Node):
            value = self.values.get(arg)
            if isinstance(value, list) and all(isinstance(x, Full | Head | Dim) for x in value):
                return value
        return None

    def tensor_args(self, node: fx.Node) -> list[fx.Node]:
        out = []
        for a in list(node.args) + list(node.kwargs.values()):
            for x in (a if isinstance(a, list | tuple) else [a]):
                if isinstance(x, fx.Node) and self.labels(x) is not None:
                    out.append(x)
        return out

    def param_name(self, module: str, leaf: str) -> str | None:
        name = f"{module}.{leaf}" if module else leaf
        name = self.arch.aliases.get(name, name)
        return name if name in self.layout else None

    def note_activation(self, lab: Label, op: str, node: fx.Node, axis: int) -> None:
        if op not in _ACT_NAMES or not isinstance(lab, Full) or len(lab.segs) != 1 or lab.segs[0][1] != 1:
            return
        r = self.vars[self.find(lab.segs[0][0])]
        if r.activation is None:
            r.activation, r.capture = op, (node.name, axis)

    def note_capture(self, labs: list[Label], node: fx.Node) -> None:
        for axis, lab in enumerate(labs):
            if axis and isinstance(lab, Full) and len(lab.segs) == 1 and lab.segs[0][1] == 1:
                r = self.vars[self.find(lab.segs[0][0])]
                if r.capture is None:
                    r.capture = (node.name, axis)

    def unknown(self, node: fx.Node, what: str) -> Any:
        reason = f"{what} is not followed by the graph tracer"
        for arg in self.tensor_args(node):
            self.fix_value(self.values[arg], reason)
        shape = self.shape(node)
        return [self.plain(n, reason) for n in shape] if shape is not None else None

    # ------------------------------------------------------------------ the pass
    def run(self) -> None:
        live: set[fx.Node] = set()  # nodes that depend on the input: only they hold activations to capture
        for node in self.gm.graph.nodes:
            self.values[node] = self.visit(node)
            if node.op == "placeholder" or any(a in live for a in node.all_input_nodes):
                live.add(node)
            labs = self.values[node]
            if (node in live and node.op != "placeholder" and isinstance(labs, list) and labs
                    and all(isinstance(x, Full | Head | Dim) for x in labs)):
                self.note_capture(labs, node)

    def visit(self, node: fx.Node) -> Any:
        if node.op == "placeholder":
            shape = self.shape(node)
            return [self.plain(n, "network input") for n in shape] if shape is not None else None
        if node.op == "output":
            self.fix_value([self.values.get(a) for a in _flat(node.args)], "reaches the network output")
            return None
        if node.op == "get_attr":
            return self.get_attr(node)
        if node.op == "call_module":
            return self.call_module(node, self.modules[node.target])
        name = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))
        return self.call(node, name)

    def get_attr(self, node: fx.Node) -> Any:
        shape = self.shape(node)
        if shape is None:
            return None
        name = self.arch.aliases.get(node.target, node.target)
        if name not in self.layout:
            return [self.plain(n, f"constant tensor {node.target}") for n in shape]
        labs = []
        for axis, n in enumerate(shape):
            v = self.new(n)
            self.add_ref(v, Ref(name, axis))
            labs.append(Full(((v, 1),)))
        return labs

    # ------------------------------------------------------------------ leaf modules
    def call_module(self, node: fx.Node, m: nn.Module) -> Any:
        x = self.labels(node.args[0]) if node.args else None
        target = str(node.target)
        if x is None:
            return self.unknown(node, f"module {target} ({type(m).__name__})")
        if isinstance(m, nn.Linear):
            return self.linear(node, x, self.param_name(target, "weight"), self.param_name(target, "bias"), target)
        if isinstance(m, nn.Conv1d | nn.Conv2d):
            return self.conv(node, x, m, target)
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            return self.per_channel(node, x, 1, target, ("weight", "bias", "running_mean", "running_var"))
        if isinstance(m, nn.LayerNorm):
            if len(m.normalized_shape) != 1:
                return self.unknown(node, f"LayerNorm {target} over several axes")
            return self.per_channel(node, x, len(x) - 1, target, ("weight", "bias"))
        if isinstance(m, nn.Embedding):
            return self.embedding(node, x, target)
        if isinstance(m, nn.RNNBase):
            return self.recurrent(node, x, m, target)
        if isinstance(m, nn.Flatten):
            return self.reshape(node, x)
        if isinstance(m, nn.Softmax):
            return self.unary(node, x, "softmax")
        op = {nn.ReLU: "relu", nn.ReLU6: "relu6", nn.Hardtanh: "hardtanh", nn.LeakyReLU: "leaky_relu",
              nn.GELU: "gelu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid",
              nn.SiLU: "silu", nn.Dropout: "dropout", nn.Identity: "identity", nn.MaxPool2d: "max_pool2d",
              nn.AvgPool2d: "avg_pool2d", nn.AdaptiveAvgPool2d: "adaptive_avg_pool2d"}.get(type(m))
        if op is not None:
            return self.pool(node, x, op) if op in _POOLS else self.unary(node, x, op)
        return self.unknown(node, f"module {target} ({type(m).__name__})")

    def linear(self, node: fx.Node, x: list[Label], weight: str | None, bias: str | None, producer: str) -> Any:
        if weight is None:
            return self.unknown(node, f"linear layer {producer} without a weight in the layout")
        self.consume(x[-1], weight, 1, "the input of a linear layer")
        out_n = self.layout[weight].shape[0]
        v = self.new(out_n, kinds={"scale", "sign"})
        self.vars[v].producers.append(producer)
        self.add_ref(v, Ref(weight, 0, power=1, incoming=True))
        if bias is not None:
            self.add_ref(v, Ref(bias, 0, power=1, incoming=True))
        return x[:-1] + [Full(((v, 1),))]

    def consume(self, lab: Label, weight: str, axis: int, what: str) -> None:
        """``lab``'s units are the input axis ``axis`` of ``weight``."""
        if not isinstance(lab, Full):
            self.fix_label(lab, f"split heads feed {what}")
            return
        multi = len(lab.segs) > 1
        offset = 0
        for v, block in lab.segs:
            n = self.seg_size(v, block)
            self.add_ref(v, Ref(weight, axis, block, offset if multi else 0, n if multi else 0, power=-1,
                                 incoming=False))
            offset += n

    def conv(self, node: fx.Node, x: list[Label], m: nn.Conv1d | nn.Conv2d, target: str) -> Any:
        weight, bias = self.param_name(target, "weight"), self.param_name(target, "bias")
        shape = self.shape(node)
        if weight is None or shape is None or len(x) != len(shape):
            return self.unknown(node, f"conv layer {target}")
        spatial = [self.plain(n, "spatial position") for n in shape[2:]]
        if m.groups == 1:
            self.consume(x[1], weight, 1, "the input of a conv layer")
            v = self.new(m.out_channels, kinds={"scale", "sign"})
            self.vars[v].producers.append(target)
            self.add_ref(v, Ref(weight, 0, power=1, incoming=True))
            if bias is not None:
                self.add_ref(v, Ref(bias, 0, power=1, incoming=True))
            return [x[0], Full(((v, 1),))] + spatial
        if m.groups == m.in_channels == m.out_channels and isinstance(x[1], Full) and len(x[1].segs) == 1:
            v = x[1].segs[0][0]  # depthwise: channel c depends on input channel c only
            self.clear_kinds(x[1])
            self.add_ref(v, Ref(weight, 0, power=0, incoming=True))
            if bias is not None:
                self.add_ref(v, Ref(bias, 0, power=0, incoming=True))
            return [x[0], x[1]] + spatial
        return self.unknown(node, f"grouped conv {target}")

    def per_channel(self, node: fx.Node, x: list[Label], axis: int, target: str, roles: tuple[str, ...]) -> Any:
        lab = x[axis]
        if not isinstance(lab, Full):
            return self.unknown(node, f"normalisation {target} over split heads")
        self.clear_kinds(lab)
        offset, multi = 0, len(lab.segs) > 1
        for v, block in lab.segs:
            n = self.seg_size(v, block)
            if block != 1:
                self.fix(v, f"normalisation {target} over a flattened axis")
            for role in roles:
                name = self.param_name(target, role)
                if name is not None:
                    self.add_ref(v, Ref(name, 0, 1, offset if multi else 0, n if multi else 0, power=0,
                                         incoming=True))
            offset += n
        return list(x)

    def recurrent(self, node: fx.Node, x: list[Label], m: nn.RNNBase, target: str) -> Any:
        """``nn.GRU`` / ``nn.LSTM`` / ``nn.RNN``: each layer and direction has its own hidden units, which permute
        the rows of every gate block of ``weight_ih``, ``weight_hh`` and both biases together, the columns of
        ``weight_hh`` (the recurrence) and the next layer's (or the consumer's) input; gates are sigmoid/tanh, so
        permutations only. Returns ``(output, h_n)`` labels (``(output, (h_n, c_n))`` for an LSTM); the final states
        keep their units only for one layer in one direction."""
        gates = {"GRU": 3, "LSTM": 4}.get(m.mode, 1)
        h, dirs = m.hidden_size, 2 if m.bidirectional else 1
        if len(x) != 3 or m.proj_size:
            return self.unknown(node, f"recurrent layer {target} (unbatched input or projections)")
        feature = x[-1]
        for layer in range(m.num_layers):
            units = []
            for d in range(dirs):
                suffix = f"_l{layer}" + ("_reverse" if d else "")
                names = {k: self.param_name(target, k + suffix) for k in ("weight_ih", "weight_hh", "bias_ih",
                                                                          "bias_hh")}
                if names["weight_ih"] is None or names["weight_hh"] is None:
                    return self.unknown(node, f"recurrent layer {target} without its weights in the layout")
                v = self.new(h)
                self.vars[v].producers.append(f"{target}{suffix}")
                for g in range(gates):
                    for role in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                        if names[role] is not None:
                            self.add_ref(v, Ref(names[role], 0, 1, g * h, h, power=0, incoming=True))
                self.add_ref(v, Ref(names["weight_hh"], 1, power=0, incoming=False))
                self.consume(feature, names["weight_ih"], 1, "the input of a recurrent layer")
                units.append(v)
            feature = Full(tuple((v, 1) for v in units))
        batch, time = (x[0], x[1]) if m.batch_first else (x[1], x[0])
        out = ([batch, time] if m.batch_first else [time, batch]) + [feature]
        single = m.num_layers == 1 and dirs == 1
        states = [[self.plain(m.num_layers * dirs, "layer and direction"), batch,
                   Full(((units[0], 1),)) if single else self.plain(h, "final states of several layers or directions")]
                  for _ in range(2 if m.mode == "LSTM" else 1)]
        return (out, tuple(states)) if m.mode == "LSTM" else (out, states[0])

    def embedding(self, node: fx.Node, x: list[Label], target: str) -> Any:
        weight = self.param_name(target, "weight")
        if weight is None:
            return self.unknown(node, f"embedding {target}")
        vocab, dim = self.layout[weight].shape
        vocab_var = self.new(vocab, fixed="vocabulary (indexed by the input tokens)")
        self.add_ref(vocab_var, Ref(weight, 0, power=0, incoming=True))
        v = self.new(dim)
        self.vars[v].producers.append(target)
        self.add_ref(v, Ref(weight, 1, power=1, incoming=True))
        return list(x) + [Full(((v, 1),))]

    # ------------------------------------------------------------------ functions and methods
    def call(self, node: fx.Node, name: str) -> Any:
        args = list(node.args)
        x = self.labels(args[0]) if args else None
        if name in _IGNORED:
            return None
        if name == "getitem" and x is None:
            return self.getitem_tuple(node)
        if name in _FACTORY:
            shape = self.shape(node)
            return [self.plain(n, "a tensor made inside the forward") for n in shape] if shape else None
        if name == "linear" and x is not None:
            return self.functional_linear(node, x)
        if name in ("matmul", "bmm"):
            return self.matmul(node)
        if name == "scaled_dot_product_attention":
            return self.sdpa(node)
        if name in _BINARY:
            return self.binary(node, name)
        if name in ("cat", "concat", "concatenate"):
            return self.cat(node)
        if x is None:
            return self.unknown(node, name)
        if name in _POOLS:
            return self.pool(node, x, name)
        if name in PASSES:
            return self.unary(node, x, name)
        if name in _SOFTMAX:
            return self.unary(node, x, "softmax")
        if name in ("tril", "triu"):
            for lab in x[-2:]:
                self.fix_label(lab, f"{name} mixes positions")
            return list(x)
        if name in _RESHAPE:
            return self.reshape(node, x)
        if name in ("transpose", "swapaxes"):
            return self.transpose(x, args, node.kwargs)
        if name == "permute":
            dims = args[1] if len(args) == 2 and isinstance(args[1], list | tuple) else args[1:]
            return [x[int(d) % len(x)] for d in dims]
        if name in ("t", "mT"):
            return x[:-2] + [x[-1], x[-2]] if len(x) >= 2 else list(x)
        if name in _REDUCE:
            return self.reduce(node, x, args, node.kwargs)
        if name in ("expand", "expand_as"):
            return self.expand(node, x)
        if name == "getitem":
            return self.getitem(node, x)
        if name in ("layer_norm",):
            return self.unknown(node, "functional layer_norm")
        return self.unknown(node, name)

    def getitem_tuple(self, node: fx.Node) -> Any:
        src = node.args[0]
        value = self.values.get(src) if isinstance(src, fx.Node) else None
        if isinstance(value, tuple | list) and isinstance(node.args[1], int) and not (
                value and isinstance(value[0], Full | Head | Dim)):
            return value[node.args[1]]
        return None

    def unary(self, node: fx.Node, x: list[Label], op: str) -> list[Label]:
        for axis, lab in enumerate(x):
            if op == "softmax":
                self.clear_kinds(lab)
            else:
                self.clear_kinds(lab, PASSES.get(op, set()))
                self.note_activation(lab, op, node, axis)
        return list(x)

    def pool(self, node: fx.Node, x: list[Label], op: str) -> Any:
        shape = self.shape(node)
        if shape is None or len(shape) != len(x) or len(x) < 3:
            return self.unknown(node, op)
        for lab in x[2:]:
            if any(not self.is_fixed(v) for v in self.label_vars(lab)):
                self.fix_label(lab, f"{op} over a unit axis")
        self.clear_kinds(x[1], PASSES[op])
        return [x[0], x[1]] + [self.plain(n, "spatial position") for n in shape[2:]]

    def functional_linear(self, node: fx.Node, x: list[Label]) -> Any:
        w = node.args[1] if len(node.args) > 1 else node.kwargs.get("weight")
        b = node.args[2] if len(node.args) > 2 else node.kwargs.get("bias")
        bias_ok = b is None or isinstance(b, fx.Node) and b.op == "get_attr"
        if isinstance(w, fx.Node) and w.op == "get_attr" and bias_ok:
            weight = self.arch.aliases.get(w.target, w.target)
            bias = None if b is None else self.arch.aliases.get(b.target, b.target)
            if weight in self.layout:
                return self.linear(node, x, weight, bias if bias in self.layout else None, weight.rsplit(".", 1)[0])
        return self.unknown(node, "F.linear with computed weights")

    def binary(self, node: fx.Node, name: str) -> Any:
        shape = self.shape(node)
        operands = [a for a in node.args if isinstance(a, fx.Node)]
        labs = [(self.labels(a), self.shape(a)) for a in operands]
        if shape is None:
            return None
        if any(lab is None and shp is not None for lab, shp in labs):
            return self.unknown(node, name)
        out = self.broadcast([(lab, shp) for lab, shp in labs if lab is not None], shape,
                             f"{name} of tensors whose units differ")
        if not (len(operands) == 1 and name in ("mul", "truediv", "div")):  # only x * c keeps unit scales
            for lab in out:
                self.clear_kinds(lab)
        return out

    def matmul(self, node: fx.Node) -> Any:
        a, b = node.args[0], node.args[1]
        la, lb, sa, sb = self.labels(a), self.labels(b), self.shape(a), self.shape(b)
        shape = self.shape(node)
        if la is None or lb is None or sa is None or sb is None or shape is None or len(sa) < 2 or len(sb) < 2:
            return self.unknown(node, "matmul")
        self.finalize_pending(la[-1], False)
        self.finalize_pending(lb[-2], False)
        self.unify(la[-1], lb[-2], "matmul contracting different units")
        batch = self.broadcast([(la[:-2], sa[:-2]), (lb[:-2], sb[:-2])], tuple(shape[:-2]),
                               "matmul over differently ordered batch axes")
        return batch + [la[-2], lb[-1]]

    def sdpa(self, node: fx.Node) -> Any:
        q, k, v = (self.labels(a) for a in node.args[:3])
        if q is None or k is None or v is None or len(q) < 2 or len(node.args) > 3 and node.args[3] is not None:
            return self.unknown(node, "scaled_dot_product_attention")
        self.unify(q[-1], k[-1], "attention contracting different units")
        self.unify(k[-2], v[-2], "attention over different positions")
        batch = self.broadcast([(q[:-2], self.shape(node.args[0])[:-2]), (k[:-2], self.shape(node.args[1])[:-2]),
                                (v[:-2], self.shape(node.args[2])[:-2])], self.shape(node)[:-2],
                               "attention over differently ordered heads")
        return batch + [q[-2], v[-1]]

    def reduce(self, node: fx.Node, x: list[Label], args: list, kwargs: dict) -> Any:
        dim = args[1] if len(args) > 1 else kwargs.get("dim")
        keep = bool(args[2] if len(args) > 2 and isinstance(args[2], bool) else kwargs.get("keepdim", False))
        dims = range(len(x)) if dim is None else [int(d) % len(x) for d in (dim if isinstance(dim, list | tuple)
                                                                             else [dim])]
        for d in dims:
            self.clear_kinds(x[d])
            self.finalize_pending(x[d], True)
        if keep:
            return [self.plain(1, "reduced axis") if i in dims else lab for i, lab in enumerate(x)]
        return [lab for i, lab in enumerate(x) if i not in dims]

    def transpose(self, x: list[Label], args: list, kwargs: dict) -> Any:
        d0 = int(args[1] if len(args) > 1 else kwargs["dim0"]) % len(x)
        d1 = int(args[2] if len(args) > 2 else kwargs["dim1"]) % len(x)
        out = list(x)
        out[d0], out[d1] = out[d1], out[d0]
        return out

    def expand(self, node: fx.Node, x: list[Label]) -> Any:
        shape, src = self.shape(node), self.shape(node.args[0])
        if shape is None or src is None:
            return self.unknown(node, "expand")
        lead = len(shape) - len(src)
        out = [self.plain(n, "expanded axis") for n in shape[:lead]]
        for lab, n_in, n_out in zip(x, src, shape[lead:], strict=True):
            out.append(lab if n_in == n_out else self.plain(n_out, "expanded axis"))
        return out

    def cat(self, node: fx.Node) -> Any:
        tensors = node.args[0] if node.args else node.kwargs.get("tensors", ())
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        if not isinstance(tensors, list | tuple) or not tensors:
            return self.unknown(node, "cat")
        labs = [self.labels(t) for t in tensors]
        shapes = [self.shape(t) for t in tensors]
        if any(lab is None for lab in labs) or any(s is None for s in shapes):
            return self.unknown(node, "cat")
        d = int(dim) % len(labs[0])
        segs: list[tuple[int, int]] = []
        for lab in labs:
            if not isinstance(lab[d], Full):
                return self.unknown(node, "cat of split heads")
            segs += lab[d].segs
        out = []
        for i in range(len(labs[0])):
            if i == d:
                out.append(Full(tuple(segs)))
                continue
            lab = labs[0][i]
            for other in labs[1:]:
                lab = self.unify(lab, other[i], "cat of tensors whose units differ")
            out.append(lab)
        return out

    def getitem(self, node: fx.Node, x: list[Label]) -> Any:
        index = node.args[1]
        src, shape = self.shape(node.args[0]), self.shape(node)
        if src is None or shape is None:
            return self.unknown(node, "indexing")
        items = list(index) if isinstance(index, tuple) else [index]
        if any(isinstance(i, fx.Node) and self.labels(i) is not None for i in items):
            return self.unknown(node, "indexing with a tensor")
        if Ellipsis in items:
            at = items.index(Ellipsis)
            n_real = len([i for i in items if i is not None and i is not Ellipsis])
            items = items[:at] + [slice(None)] * (len(x) - n_real) + items[at + 1:]
        out: list[Label] = []
        axis = 0
        for item in items:
            if item is None:
                out.append(self.plain(1, "new axis"))
                continue
            lab = x[axis]
            if isinstance(item, slice):
                start, stop, step = item.start, item.stop, item.step
                if all(not isinstance(s, fx.Node) for s in (start, stop, step)):
                    full = slice(start, stop, step).indices(src[axis]) == (0, src[axis], 1)
                else:
                    full = False
                kept = len(out) < len(shape) and shape[len(out)] == src[axis]
                if full or kept and step in (None, 1):
                    out.append(lab)
                else:
                    self.fix_label(lab, "a slice of a unit axis")
                    out.append(self.plain(shape[len(out)], "sliced axis"))
            elif any(not self.is_fixed(v) for v in self.label_vars(lab)):
                self.fix_label(lab, "indexing one entry of a unit axis")
            axis += 1
        return out + list(x[axis:])

    def reshape(self, node: fx.Node, x: list[Label]) -> Any:
        src, dst = self.shape(node.args[0]), self.shape(node)
        if src is None or dst is None:
            return self.unknown(node, "reshape")
        return self.map_reshape(x, src, dst)


def _flat(args: Any) -> list[Any]:
    out = []
    for a in args if isinstance(args, list | tuple) else [args]:
        if isinstance(a, list | tuple):
            out += _flat(a)
        elif isinstance(a, dict):
            out += _flat(list(a.values()))
        else:
            out.append(a)
    return out


def derive(arch: Any) -> PermutationSpec:
    """The permutation spec of a module architecture (see the module docstring). A module ``torch.fx``
    cannot trace (data-dependent control flow, say) gets a spec without groups whose fixed axes say why."""
    try:
        gm = trace(arch)
    except Exception as e:  # noqa: BLE001 - fx raises many types; the reason is reported, nothing is permuted
        reason = f"torch.fx could not trace the module ({type(e).__name__}: {str(e).splitlines()[0][:120]})"
        return PermutationSpec((), arch.n_params, tuple(FixedAxis(p.name, 0, reason) for p in arch.layout))
    d = _Deriver(arch, gm)
    d.run()
    return d.spec()

