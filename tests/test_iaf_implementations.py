"""One integrate-and-fire semantics, three implementations: the compiled CPU kernels, plain torch
operations (MPS, meta, ...) and the fused Triton kernels (CUDA). They agree bit for bit, forward
and backward, for every option; the Triton kernels run in Triton's interpreter on CPU tensors
here (``TRITON_INTERPRET=1``) and compiled on a CUDA device where one is present. Also: every
layer on the ``meta`` device and in bfloat16, and errors that name the device or dtype."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from snnlib import (
    SURROGATE_SHAPES,
    IAFParameters,
    Img2SpikeLayer,
    Sig2SpikeLayer,
    SpikingLayer,
    SpikingMaxPooling2dLayer,
    TensorTypeError,
    integrate_and_fire,
    surrogate_gradient,
    threshold_reset,
    threshold_subtract,
)
from snnlib import _iaf_kernels, _iaf_torch, _iaf_triton, functional

CUDA = pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(),
                                                                          reason="no CUDA device")])
TRITON_DEVICES = ["cpu", CUDA]  # the Triton kernels: interpreted on CPU tensors, compiled on CUDA
needs_triton = pytest.mark.skipif(not _iaf_triton.available(), reason="triton is not installed")


def run(impl, device, x, v0, params):
    """Spikes, final membrane, input gradient (for the loss sum(spikes * weights)) and the last
    step's membrane before its spikes left of ``impl`` on ``device``, returned on the CPU."""
    x = x.detach().to(device).clone().requires_grad_(True)  # a leaf of its own: x.grad is not shared between runs
    state = v0.to(device).clone()
    membrane = torch.empty_like(state)
    weights = torch.linspace(-1.0, 2.0, x.numel(), dtype=x.dtype).reshape(x.shape).to(device)
    original = functional.implementation
    functional.implementation = lambda _device: impl
    try:
        spikes = integrate_and_fire(x, state, params, membrane=membrane)
        (spikes * weights).sum().backward()
    finally:
        functional.implementation = original
    return [t.detach().cpu() for t in (spikes, state, x.grad, membrane)]


def assert_same(expected, got, params):
    names = ("spikes", "state", "gradient", "membrane")
    for name, a, b in zip(names, expected, got):
        if name == "gradient" and params.surrogate == "gaussian":  # exp() differs by rounding
            torch.testing.assert_close(b, a, rtol=1e-6 if a.dtype == torch.float32 else 1e-14, atol=1e-30)
        else:
            assert torch.equal(a, b) and torch.equal(a.signbit(), b.signbit()), name


iaf_cases = st.fixed_dictionaries({
    "shape": st.tuples(st.integers(1, 2), st.integers(1, 6), st.sampled_from([1, 5, 33, 257])),
    "threshold": st.sampled_from([1.0, 2.0, 3.0, 0.1, 0.7, 255.0]),
    "low": st.sampled_from([None, -1.0, -3.0, -0.35]),
    "subtract": st.sampled_from([None, 1.0, 0.5, 7.0]),
    "mode": st.sampled_from(["subtract", "reset", "negative"]),
    "saturate": st.booleans(),
    "surrogate": st.sampled_from(SURROGATE_SHAPES),
    "window": st.sampled_from([1.0, 0.5]),
    "dtype": st.sampled_from([torch.float32, torch.float64]),
    "integers": st.booleans(),
    "seed": st.integers(0, 2**16),
})


def make_case(case):
    """Parameters, input (integers, or floats at and between multiples of the threshold) and
    initial membrane for one drawn case."""
    low, threshold = case["low"], case["threshold"]
    low = None if low is None else min(low, -threshold)
    params = IAFParameters(threshold, low, case["subtract"], membrane_reset=case["mode"] == "reset",
                           negative_spikes=case["mode"] == "negative", saturate_int16=case["saturate"],
                           surrogate=case["surrogate"], surrogate_window=case["window"])
    generator = torch.Generator().manual_seed(case["seed"])
    scale = 40000.0 if case["saturate"] else 4 * threshold
    x = (torch.rand(case["shape"], generator=generator, dtype=torch.float64) * 2 - 1) * scale
    if case["integers"]:
        x = x.round()
    else:  # a third of the values exact multiples of the threshold, where the count is decided
        multiples = torch.randint(-4, 5, case["shape"], generator=generator) * threshold
        x = torch.where(torch.rand(case["shape"], generator=generator) < 0.3, multiples, x)
    v0 = torch.rand(case["shape"][0], case["shape"][2], generator=generator, dtype=torch.float64) * threshold
    return params, x.to(case["dtype"]), v0.to(case["dtype"])


@settings(max_examples=40, deadline=None)
@given(case=iaf_cases)
def test_torch_operations_equal_the_compiled_kernels_bit_for_bit(case):
    params, x, v0 = make_case(case)
    assert_same(run(_iaf_kernels, "cpu", x, v0, params), run(_iaf_torch, "cpu", x, v0, params), params)


@pytest.mark.parametrize("mode", ["subtract", "reset", "negative"])
def test_layers_wider_than_a_work_block_equal_the_torch_operations(mode):
    """The compiled loops split each batch row into blocks of BLOCK neurons: 2 rows of 2 blocks
    and a remainder, every neuron different, forward and backward."""
    case = dict(shape=(2, 4, 2 * _iaf_kernels.BLOCK + 5), threshold=0.7, low=-1.0, subtract=None, mode=mode,
                saturate=False, surrogate="triangle", window=1.0, dtype=torch.float64, integers=False, seed=11)
    params, x, v0 = make_case(case)
    expected, got = run(_iaf_torch, "cpu", x, v0, params), run(_iaf_kernels, "cpu", x, v0, params)
    assert_same(expected, got, params)
    assert expected[0][:, :, -5:].abs().sum() > 0 and expected[2][1, 0, -5:].abs().sum() > 0


@needs_triton
@pytest.mark.parametrize("device", TRITON_DEVICES)
def test_triton_kernels_equal_the_compiled_kernels_bit_for_bit(device, monkeypatch):
    if device == "cpu":
        monkeypatch.setenv("TRITON_INTERPRET", "1")

    @settings(max_examples=25, deadline=None)
    @given(case=iaf_cases)
    def check(case):
        params, x, v0 = make_case(case)
        assert_same(run(_iaf_kernels, "cpu", x, v0, params), run(_iaf_triton, device, x, v0, params), params)

    check()


@pytest.mark.parametrize("shape", SURROGATE_SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_surrogate_gradient_off_the_cpu_equals_the_compiled_one(shape, dtype):
    """surrogate_gradient on a non-CPU tensor computes with _iaf_torch.surrogate in float64."""
    w = (torch.linspace(-3.0, 5.0, 641, dtype=torch.float64) * 0.7).to(dtype)
    compiled = surrogate_gradient(w, 0.7, shape, 0.6, 1 / 0.7)
    ours = _iaf_torch.surrogate(w.double(), 0.7, SURROGATE_SHAPES.index(shape), 0.6, 1 / 0.7, torch.float64)
    if shape == "gaussian":
        torch.testing.assert_close(ours.to(dtype), compiled, rtol=1e-14, atol=0)
    else:
        assert torch.equal(ours.to(dtype), compiled)


def test_implementation_follows_the_device():
    assert functional.implementation(torch.device("cpu")) is _iaf_kernels
    assert functional.implementation(torch.device("meta")) is _iaf_torch
    assert functional.implementation(torch.device("mps")) is _iaf_torch
    expected = _iaf_triton if _iaf_triton.available() else _iaf_torch
    assert functional.implementation(torch.device("cuda")) is expected


def conv_snn(dtype=torch.float32):
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, padding=1), SpikingLayer(threshold=0.5), SpikingMaxPooling2dLayer(2),
        torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 3), SpikingLayer(membrane_reset=True, surrogate="triangle"),
    ).to(dtype)


def test_every_layer_runs_forward_and_backward_on_the_meta_device():
    model = conv_snn().to("meta")
    spikes = Img2SpikeLayer((2, 8, 8), tw=5, seed=1)(torch.full((2, 8, 8), 128.0, device="meta"))
    assert spikes.device.type == "meta" and spikes.shape == (5, 2, 8, 8)
    x = spikes.requires_grad_(True)
    out = model(x)
    assert out.shape == (5, 3) and out.device.type == "meta"
    out.sum().backward()
    assert x.grad.shape == x.shape and model[0].weight.grad.device.type == "meta"
    for function in (threshold_subtract, threshold_reset):
        v = torch.empty(7, device="meta", requires_grad=True)
        function(v).sum().backward()
        assert v.grad.device.type == "meta"
    assert surrogate_gradient(torch.empty(7, device="meta"), shape="gaussian").device.type == "meta"
    assert Sig2SpikeLayer(3, tw=2, seed=0)(torch.empty(3, 4, device="meta")).shape == (8, 3)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_dtypes_compute_in_float32_and_round_the_results(dtype):
    torch.manual_seed(3)
    x = torch.randint(-24, 40, (2 * 30, 3, 4)) / 8  # multiples of 1/8: exact in every dtype
    weights = torch.randint(0, 8, x.shape).float()
    results = {}
    for dtype_ in (dtype, torch.float32):
        layer = SpikingLayer(threshold=1.5, batch_size=2, surrogate="triangle")
        inputs = x.to(dtype_).requires_grad_(True)
        out = layer(inputs)
        (out * weights.to(dtype_)).sum().backward()
        results[dtype_] = (out, inputs.grad, layer.state)
    (out16, grad16, state16), (out32, grad32, state32) = results[dtype], results[torch.float32]
    assert out16.dtype == grad16.dtype == state16.dtype == dtype and out32.sum() > 0
    assert torch.equal(out16.float(), out32) and torch.equal(state16.float(), state32)
    assert torch.equal(grad16, grad32.to(dtype))


def test_layers_under_autocast_take_bfloat16_currents():
    model, x = conv_snn(), torch.rand(6, 2, 8, 8, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert x.grad.dtype == torch.float32 and model[0].weight.grad is not None


def test_spiking_max_pooling_counts_exactly_past_256_in_bfloat16():
    torch.manual_seed(4)
    x = (torch.rand(600, 2, 6, 6) < 0.5).float()
    expected = SpikingMaxPooling2dLayer(2)(x)
    assert torch.equal(SpikingMaxPooling2dLayer(2)(x.to(torch.bfloat16)).float(), expected)


def test_half_dtypes_keep_the_membrane_between_calls_in_their_dtype():
    x = torch.tensor([[[0.75], [0.75], [0.5]]], dtype=torch.float16)
    state = torch.zeros(1, 1, dtype=torch.float16)
    spikes = integrate_and_fire(x, state, IAFParameters(threshold=1.0))
    assert spikes.dtype == torch.float16 and spikes.flatten().tolist() == [0, 1, 1]
    assert state.item() == 0.0


@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_spiking_layer_on_a_device_equals_the_cpu(device):
    torch.manual_seed(5)
    x = torch.randint(-2, 4, (2 * 9, 3, 5)).float()
    outputs = []
    for where in ("cpu", device):
        layer = SpikingLayer(threshold=2.0, batch_size=2).to(where)
        inputs = x.clone().to(where).requires_grad_(True)  # a leaf per run, on its device
        out = layer(inputs)
        (out * torch.arange(out.numel(), device=where).reshape(out.shape)).sum().backward()
        outputs.append((out.cpu(), inputs.grad.cpu(), layer.state.cpu()))
    for a, b in zip(*outputs):
        assert torch.equal(a, b)


def test_device_and_dtype_problems_say_device_or_dtype():
    with pytest.raises(TensorTypeError, match="x: dtype torch.int64; expected a tensor of dtype float32"):
        integrate_and_fire(torch.zeros(1, 2, 3, dtype=torch.int64), torch.zeros(1, 3))
    with pytest.raises(TensorTypeError, match="state: on device meta; expected device cpu"):
        integrate_and_fire(torch.zeros(1, 2, 3), torch.zeros(1, 3, device="meta"))
    with pytest.raises(TensorTypeError, match="state: dtype torch.float64; expected dtype torch.float32"):
        integrate_and_fire(torch.zeros(1, 2, 3), torch.zeros(1, 3, dtype=torch.float64))
    with pytest.raises(TensorTypeError, match="out: on device meta"):
        integrate_and_fire(torch.zeros(1, 2, 3), torch.zeros(1, 3), out=torch.zeros(1, 2, 3, device="meta"))


@needs_triton
def test_triton_kernels_compile_for_a_gpu_without_fused_multiply_adds():
    """The compiled path (not the interpreter): PTX for sm_90 builds without a GPU, every float
    division IEEE-rounded and no multiply-add fused (the gaussian's exp() has its own)."""
    import re

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    def ptx(kernel, pointers, constexprs, dtype):
        signature = {name: f"*{dtype}" for name in pointers}
        constexprs = {**constexprs, "BLOCK": 256}
        signature.update({"n_steps": "i32", "n_neurons": "i32"}, **{name: "constexpr" for name in constexprs})
        source = ASTSource(triton.JITFunction(kernel), signature, constexprs=constexprs)
        compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32), options={"enable_fp_fusion": False})
        return set(re.findall(r"\b(fma\.\w+\.f\d+|div\.\w+\.f\d+)", compiled.asm["ptx"]))

    forward_pointers = ("x_ptr", "v_ptr", "out_ptr", "u_ptr", "m_ptr", "k_ptr")
    backward_pointers = ("g_ptr", "u_ptr", "s_ptr", "gx_ptr", "k_ptr")
    for dtype, reset in (("fp32", False), ("fp64", True)):
        assert ptx(_iaf_triton._forward_kernel, forward_pointers,
                   {"SAVE": True, "RESET": reset, "NEGATIVE": not reset}, dtype) == set()
    for dtype in ("fp32", "fp64"):
        for shape, divisions in (("box", {f"div.rn.f{dtype[2:]}"}), ("fast_sigmoid", {f"div.rn.f{dtype[2:]}", "div.rn.f64"})):
            constexprs = {"RESET": False, "NEGATIVE": True, "SHAPE": SURROGATE_SHAPES.index(shape)}
            assert ptx(_iaf_triton._backward_kernel, backward_pointers, constexprs, dtype) == divisions
