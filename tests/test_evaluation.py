"""The batched evaluator equals the per-model loop (load_state_dict + forward) for every layer type.

Results of different code paths (batched vs loop, chunkings, affine vs direct) agree to float32 rounding
(:mod:`rounding`); results at different thread counts with the same chunks are equal bit for bit, which the
evaluator guarantees by running every chunk on single-threaded kernels. Marked ``kernels``: ``make test`` runs these
again under ``ATEN_CPU_CAPABILITY=default``."""

from __future__ import annotations

import threading

import pytest
import torch
from rounding import assert_accuracy_close, assert_rounding_close, network_terms

from wslviz.core.arch import ACTIVATIONS, Architecture, ArchitectureError, mlp_spec
from wslviz.core.batched import BANDED_MAX_WIDTH_RATIO, forward
from wslviz.core.evaluation import evaluate, evaluate_affine, evaluate_per_model, model_outputs
from wslviz.core.protocol import from_module
from wslviz.core.seq_eval import MIN_CHUNK_BYTES, default_chunk_size
from wslviz.core.training import DIGITS_CNN as BUNDLED_DIGITS_CNN
from wslviz.core.training import init_weights

DIGITS_CNN = {"input_shape": [1, 8, 8], "layers": [
    {"type": "conv2d", "in_channels": 1, "out_channels": 8, "kernel_size": 3}, {"type": "relu"},
    {"type": "conv2d", "in_channels": 8, "out_channels": 8, "kernel_size": 3}, {"type": "relu"},
    {"type": "dropout", "p": 0.1}, {"type": "flatten"}, {"type": "linear", "in_features": 128, "out_features": 10}]}
POOL_BN_LN = {"input_shape": [1, 8, 8], "layers": [
    {"type": "conv2d", "in_channels": 1, "out_channels": 4, "kernel_size": 3, "padding": 1},
    {"type": "batchnorm", "num_features": 4}, {"type": "tanh"}, {"type": "maxpool2d", "kernel_size": 2},
    {"type": "conv2d", "in_channels": 4, "out_channels": 6, "kernel_size": 2, "stride": 2}, {"type": "gelu"},
    {"type": "avgpool2d", "kernel_size": 2}, {"type": "flatten"}, {"type": "layernorm", "normalized_shape": 6},
    {"type": "linear", "in_features": 6, "out_features": 10}]}
GAP = {"input_shape": [1, 8, 8], "layers": [
    {"type": "conv2d", "in_channels": 1, "out_channels": 5, "kernel_size": 3}, {"type": "sigmoid"},
    {"type": "conv2d", "in_channels": 5, "out_channels": 7, "kernel_size": 3, "bias": False},
    {"type": "leaky_relu", "negative_slope": 0.1}, {"type": "global_avg_pool"},
    {"type": "linear", "in_features": 7, "out_features": 10}]}
# kernel 1 and stride 2 with padding: the image is too wide for the banded matmul -> grouped conv path
WIDE = {"input_shape": [1, 8, 8], "layers": [
    {"type": "conv2d", "in_channels": 1, "out_channels": 3, "kernel_size": 1}, {"type": "sin", "w0": 2.0},
    {"type": "conv2d", "in_channels": 3, "out_channels": 4, "kernel_size": 2, "stride": 2, "padding": 1},
    {"type": "relu"}, {"type": "flatten"}, {"type": "batchnorm", "num_features": 100},
    {"type": "linear", "in_features": 100, "out_features": 10}]}
# banded convs without bias, the second one's row-major output read by a wide (>= 16 outputs) linear without bias
ROWS = {"input_shape": [1, 8, 8], "layers": [
    {"type": "conv2d", "in_channels": 1, "out_channels": 4, "kernel_size": 3, "padding": 1, "bias": False},
    {"type": "relu"},
    {"type": "conv2d", "in_channels": 4, "out_channels": 4, "kernel_size": 3, "bias": False}, {"type": "relu"},
    {"type": "flatten"}, {"type": "dropout", "p": 0.0}, {"type": "tanh"},
    {"type": "linear", "in_features": 144, "out_features": 20, "bias": False}, {"type": "relu"},
    {"type": "linear", "in_features": 20, "out_features": 10}]}
# a strided, padded first conv whose output columns are grouped (see wslviz.core.batched._column_group)
STRIDED = {"input_shape": [1, 8, 8], "layers": [
    {"type": "conv2d", "in_channels": 1, "out_channels": 8, "kernel_size": 3, "stride": 2, "padding": 1},
    {"type": "relu"}, {"type": "conv2d", "in_channels": 8, "out_channels": 6, "kernel_size": 2}, {"type": "relu"},
    {"type": "flatten"}, {"type": "linear", "in_features": 54, "out_features": 10}]}
MLP_NORM = {"input_shape": [2], "layers": [
    {"type": "linear", "in_features": 2, "out_features": 12}, {"type": "batchnorm", "num_features": 12},
    {"type": "relu"}, {"type": "linear", "in_features": 12, "out_features": 9, "bias": False},
    {"type": "layernorm", "normalized_shape": 9}, {"type": "tanh"}, {"type": "dropout", "p": 0.5},
    {"type": "linear", "in_features": 9, "out_features": 2}]}

CNNS = {"digits": DIGITS_CNN, "pool_bn_ln": POOL_BN_LN, "gap": GAP, "wide": WIDE, "rows": ROWS, "strided": STRIDED}


def _weights(arch: Architecture, n: int, seed: int = 0, scale: float = 0.4) -> torch.Tensor:
    w = torch.randn(n, arch.n_params, generator=torch.Generator().manual_seed(seed)) * scale
    for info in arch.layout:  # BatchNorm running variances must be positive
        if info.role == "running_var":
            w[:, info.slice] = w[:, info.slice].abs() + 0.5
    return w


def _assert_same(arch, task, w, split="test", chunk_size=None):
    got = evaluate(arch, task, w, split=split, chunk_size=chunk_size)
    ref = evaluate_per_model(arch, task, w, split=split)
    _assert_results_close(arch, task, w, split, got, ref)


def _assert_results_close(arch, task, w, split, got, ref):
    """Loss to float32 rounding; accuracy equal but for predictions whose logits tie to rounding."""
    x = task.split(split)[0]
    terms = network_terms(arch, len(x))
    assert_rounding_close(got["loss"], ref["loss"], terms)
    assert_accuracy_close(got["accuracy"], ref["accuracy"], model_outputs(arch, w, x), terms)


def test_wide_spec_uses_the_grouped_path():
    arch = Architecture(WIDE)
    assert 8 > BANDED_MAX_WIDTH_RATIO * arch.layers[0]["kernel_size"]


@pytest.mark.kernels
@pytest.mark.parametrize("name", list(CNNS))
@pytest.mark.parametrize("split", ["train", "test"])
@pytest.mark.parametrize("chunk", [1, 7, None])
def test_cnn_evaluator_equals_per_model_loop(digits_task, name, split, chunk, threads):
    arch = Architecture(CNNS[name])
    _assert_same(arch, digits_task, _weights(arch, 9), split, chunk)


@pytest.mark.kernels
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("chunk", [1, 7, None])
def test_mlp_evaluator_equals_loop_for_every_activation(moons_task, activation, chunk):
    kw = {"leaky_relu": {"negative_slope": 0.2}, "sin": {"w0": 1.5}}.get(activation, {})
    arch = Architecture(mlp_spec([2, 16, 16, 2], activation, **kw))
    _assert_same(arch, moons_task, _weights(arch, 11, scale=1.0), "test", chunk)


@pytest.mark.kernels
@pytest.mark.parametrize("split", ["train", "test"])
def test_mlp_with_batchnorm_layernorm_dropout_in_eval_mode(moons_task, split):
    arch = Architecture(MLP_NORM)
    _assert_same(arch, moons_task, _weights(arch, 10), split, 4)


@pytest.mark.kernels
def test_single_vector_and_empty_batch(mlp_arch, moons_task):
    w = _weights(mlp_arch, 3)
    batch = evaluate(mlp_arch, moons_task, w)
    one = evaluate(mlp_arch, moons_task, w[1])
    assert one["loss"].dim() == 0
    assert_rounding_close(one["loss"], batch["loss"][1], network_terms(mlp_arch, len(moons_task.x_test)))
    empty = evaluate(mlp_arch, moons_task, w[:0])
    assert empty["loss"].shape == (0,) and empty["accuracy"].shape == (0,)
    assert model_outputs(mlp_arch, w[1], moons_task.x_test).shape == (len(moons_task.x_test), 2)


@pytest.mark.kernels
def test_model_outputs_and_progress(digits_task):
    arch = Architecture(POOL_BN_LN)
    w = _weights(arch, 5)
    calls = []
    out = model_outputs(arch, w, digits_task.x_test[:20], chunk_size=2,
                        progress=lambda d, t: calls.append((d, t, threading.get_ident())))
    # one call per chunk, in the calling thread, counting finished models (chunks may finish out of order)
    assert [t for _, t, _ in calls] == [5, 5, 5] and {i for _, _, i in calls} == {threading.get_ident()}
    done = [d for d, _, _ in calls]
    assert done == sorted(done) and done[-1] == 5 and set(done) <= {1, 2, 3, 4, 5}
    for i in range(5):
        assert torch.allclose(out[i], arch.build(w[i])(digits_task.x_test[:20]), atol=1e-5)


@pytest.mark.kernels
def test_per_model_inputs_equal_shared_inputs(digits_task):
    arch = Architecture(DIGITS_CNN)
    w, x = _weights(arch, 3), digits_task.x_test[:10]
    shared = forward(arch, w, x)[0]
    per_model = forward(arch, w, x.expand(3, *x.shape).clone())[0]
    assert torch.allclose(shared, per_model, atol=1e-6)


@pytest.mark.kernels
@pytest.mark.parametrize("name", list(CNNS))
def test_captured_activations_equal_module_activations(digits_task, name):
    arch = Architecture(CNNS[name])
    w, x = _weights(arch, 2), digits_task.x_test[:6]
    capture = set(range(len(arch.layers)))
    for grad in (True, False):  # without autograd, activations run in place: captures must not change
        with torch.set_grad_enabled(grad):
            _, captured = forward(arch, w, x, capture=capture)
        for b in range(2):
            h = x
            for i, module in enumerate(arch.build(w[b])):
                h = module(h)
                assert captured[i].shape == (2, *h.shape)
                assert torch.allclose(captured[i][b], h, atol=1e-5), (name, i)


def test_evaluate_does_not_modify_inputs(moons_task, mlp_arch):
    x = moons_task.x_test.clone()
    w = _weights(mlp_arch, 4)
    w0 = w.clone()
    relu_first = Architecture({"input_shape": [2], "layers": [{"type": "relu"}, *mlp_arch.spec["layers"]]})
    with torch.no_grad():
        forward(relu_first, w, x.expand(4, *x.shape).contiguous())
        forward(mlp_arch, w, x)
    assert torch.equal(x, moons_task.x_test) and torch.equal(w, w0)


@pytest.mark.kernels
@pytest.mark.parametrize("spec", [DIGITS_CNN, POOL_BN_LN, WIDE, ROWS, MLP_NORM])
def test_train_mode_gradients_equal_per_model_autograd(digits_task, moons_task, spec):
    # float64 on both sides, so any difference beyond rounding is a wrong gradient (in float32, BatchNorm over
    # 16 samples amplifies rounding to ~1e-4)
    arch = Architecture(spec)
    task = digits_task if len(arch.input_shape) == 3 else moons_task
    x, y = task.x_train[:16].double(), task.y_train[:16]
    w = _weights(arch, 3).double().requires_grad_(True)
    # no dropout (rate 0) so batched and per-model passes are the same function; BatchNorm uses batch stats
    out, _ = forward(arch, w, x, train=True, dropout=torch.zeros(3))
    task.loss(out, y).sum().backward()
    for b in range(3):
        model = arch.build().double()
        model.load_state_dict(arch.unflatten(w[b].detach()), strict=False)
        model.train()
        for m in model:
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
        ref = model(x)
        torch.nn.functional.cross_entropy(ref, y).backward()
        grads = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
        trainable = torch.cat([w.grad[b, p.slice] for p in arch.layout if p.trainable])
        assert torch.allclose(trainable, grads, atol=1e-10)
        assert torch.allclose(out[b], ref, atol=1e-10)
        assert grads.abs().max() > 1e-3  # the check is not vacuous


def test_dropout_rates_per_model():
    arch = Architecture({"input_shape": [4], "layers": [{"type": "dropout", "p": 0.5}]})
    x = torch.ones(2000, 4)
    torch.manual_seed(0)
    out, _ = forward(arch, torch.zeros(2, 0), x, train=True, dropout=torch.tensor([0.0, 0.75]))
    assert torch.equal(out[0], x)
    kept = out[1] != 0
    assert abs(kept.float().mean().item() - 0.25) < 0.02
    assert torch.allclose(out[1][kept], torch.full_like(out[1][kept], 4.0))
    assert torch.equal(forward(arch, torch.zeros(2, 0), x)[0][1], x)  # eval mode: identity


def test_task_errors_and_chunk_size(mlp_arch, cnn_arch, moons_task):
    with pytest.raises(ValueError, match="no task"):
        evaluate(mlp_arch, None, torch.zeros(1, mlp_arch.n_params))
    with pytest.raises(ValueError, match="expects"):
        evaluate(cnn_arch, moons_task, torch.zeros(1, cnn_arch.n_params))
    assert default_chunk_size(cnn_arch, 540) >= 1
    assert default_chunk_size(mlp_arch, 10) > default_chunk_size(mlp_arch, 10_000)
    # given the number of models, chunks are small enough for 4 per stream (at least 2 streams), of equal
    # size, but not smaller than MIN_CHUNK_BYTES of activations: a small batch stays in one piece
    per_model = 4 * 10_000 * max(mlp_arch.shapes[i][0] for i in range(len(mlp_arch.shapes)))
    whole = default_chunk_size(mlp_arch, 10_000)
    n = 4 * whole + 1
    capped = default_chunk_size(mlp_arch, 10_000, n_models=n)
    assert -(-n // capped) >= 8 and capped * per_model >= MIN_CHUNK_BYTES
    assert -(-n // capped) * capped - n < -(-n // capped)  # chunks differ by at most one model
    assert default_chunk_size(mlp_arch, 10, n_models=3) == 3


@pytest.mark.kernels
@pytest.mark.parametrize("name", ["digits", "pool_bn_ln", "wide", "rows", "mlp_norm"])
def test_affine_grid_equals_direct_evaluation(digits_task, moons_task, name, threads):
    """A plane of models evaluated through precomputed first-layer products equals evaluating the points."""
    spec, task = (MLP_NORM, moons_task) if name == "mlp_norm" else (CNNS[name], digits_task)
    arch = Architecture(spec)
    origin, directions = _weights(arch, 3, seed=5)[0], _weights(arch, 2, seed=6, scale=0.2)
    directions[:, [i for p in arch.layout if p.role == "running_var" for i in range(p.slice.start, p.slice.stop)]] = 0
    coords = torch.linspace(-1.5, 1.5, 7, dtype=torch.float64)
    grid = torch.cartesian_prod(coords, coords.flip(0))
    points = (origin.double() + grid @ directions.double()).float()
    got = evaluate_affine(arch, task, origin, directions, grid, chunk_size=5)
    ref = evaluate_per_model(arch, task, points)
    _assert_results_close(arch, task, points, "test", got, ref)
    with pytest.raises(ValueError, match="coords"):
        evaluate_affine(arch, task, origin, directions, grid[:, :1])


@pytest.mark.kernels
def test_loss_and_correct_equal_loss_and_argmax_with_ties(digits_task):
    """The fused loss/accuracy equals ``loss`` (to rounding) and ``argmax == y`` exactly, also when logits tie: both
    compare the same logits with their maximum, which involves no rounding."""
    out = torch.randn(6, len(digits_task.y_test), 10)
    out[0] = 0.0  # every class ties: argmax picks class 0
    out[1, :, 3:6] = 5.0  # classes 3, 4, 5 tie for the maximum
    loss, right = digits_task.loss_and_correct(out, digits_task.y_test)
    assert_rounding_close(loss, digits_task.loss(out, digits_task.y_test), 10 + len(digits_task.y_test))
    assert torch.equal(right, digits_task.correct(out, digits_task.y_test))
    assert right[0] == (digits_task.y_test == 0).sum() and right[1] == (digits_task.y_test == 3).sum()


@pytest.mark.kernels
@pytest.mark.parametrize("n_models, chunk", [(1, None), (23, 1), (23, 3), (23, 7), (23, 16), (23, 40), (16, 16)])
def test_parallel_streams_equal_the_serial_path_and_the_loop(digits_task, n_models, chunk, threads):
    """At 2 torch threads the chunks run in parallel streams (one intra-op thread each), a single chunk in the calling
    thread with one intra-op thread: either way the numbers are exactly those of the 1-thread serial path, whatever
    the chunk size (odd, not dividing B, larger than B; the default is the same at 1 and 2 threads), because every
    chunk runs on single-threaded kernels. They equal the per-model loop to rounding; the caller's thread count and
    grad mode are left as they were."""
    arch = Architecture(BUNDLED_DIGITS_CNN)
    w = _weights(arch, n_models, seed=3)
    torch.set_num_threads(1)
    serial = evaluate(arch, digits_task, w, chunk_size=chunk)
    serial_out = model_outputs(arch, w, digits_task.x_test, chunk_size=chunk)
    torch.set_num_threads(threads)
    got = evaluate(arch, digits_task, w, chunk_size=chunk)
    got_out = model_outputs(arch, w, digits_task.x_test, chunk_size=chunk)
    assert torch.get_num_threads() == threads and torch.is_grad_enabled()
    assert torch.equal(serial["loss"], got["loss"]) and torch.equal(serial["accuracy"], got["accuracy"])
    assert torch.equal(serial_out, got_out)
    _assert_results_close(arch, digits_task, w, "test", got, evaluate_per_model(arch, digits_task, w))


@pytest.mark.kernels
def test_affine_plane_is_independent_of_the_thread_count(digits_task):
    """evaluate_affine's first-layer products are computed on one intra-op thread like every chunk: a plane's
    numbers are the same at 1 and 2 threads, bit for bit."""
    arch = Architecture(BUNDLED_DIGITS_CNN)
    origin, directions = _weights(arch, 1, seed=5)[0], _weights(arch, 2, seed=6, scale=0.2)
    grid = torch.cartesian_prod(*[torch.linspace(-1.0, 1.0, 5, dtype=torch.float64)] * 2)
    before = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2):
            torch.set_num_threads(n)
            results.append(evaluate_affine(arch, digits_task, origin, directions, grid, chunk_size=4))
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(results[0][k], results[1][k]) for k in ("loss", "accuracy"))


def test_an_error_in_a_stream_reaches_the_caller(digits_task):
    arch = Architecture(BUNDLED_DIGITS_CNN)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with pytest.raises(ArchitectureError, match="parameters per model"):
            evaluate(arch, digits_task, torch.zeros(10, arch.n_params + 1), chunk_size=3)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_tie_test_is_not_fooled_by_rows_without_a_finite_maximum(digits_task):
    """One row whose maximum is +inf (no logit equals it after the shift) and one row with a two-way tie have,
    together, as many maxima as rows: the tie must still be found (argmax picks the earlier class)."""
    y = digits_task.y_test
    out = torch.randn(2, len(y), 10)
    row = int(torch.nonzero(y > 0)[0])  # a row whose class has an earlier class to tie with
    out[0, (row + 1) % len(y), 4] = float("inf")
    out[0, row, [0, int(y[row])]] = 9.0
    _, right = digits_task.loss_and_correct(out, y)
    assert torch.equal(right, digits_task.correct(out, y))


def test_sequential_and_module_evaluators_take_the_same_device_argument(digits_task):
    """``device=None`` and ``"cpu"`` keep the CPU path (the sequential evaluator's own kernels, bit for bit); the
    module evaluator and the per-model reference take the same argument; CUDA where there is none is refused with
    one clear message (the CUDA path itself runs only where a device exists)."""
    arch = Architecture(BUNDLED_DIGITS_CNN)
    w = init_weights(arch, [0, 1, 2])
    as_module = from_module(arch.build(), input_shape=arch.input_shape)  # the same network as a module architecture
    for device in (None, "cpu", torch.device("cpu")):
        assert torch.equal(evaluate(arch, digits_task, w, device=device)["loss"],
                           evaluate(arch, digits_task, w)["loss"])
        assert torch.equal(evaluate(as_module, digits_task, w, device=device)["loss"],
                           evaluate(as_module, digits_task, w)["loss"])
    reference = evaluate_per_model(arch, digits_task, w, device="cpu")
    _assert_results_close(arch, digits_task, w, "test", evaluate(arch, digits_task, w), reference)
    with pytest.raises(ValueError, match="not a device"):
        evaluate(arch, digits_task, w, device="gpu-please")
    if torch.cuda.is_available():
        _assert_results_close(arch, digits_task, w, "test", evaluate(arch, digits_task, w, device="cuda"), reference)
    else:
        for a in (arch, as_module):
            with pytest.raises(ValueError, match="no CUDA device"):
                evaluate(a, digits_task, w, device="cuda")
