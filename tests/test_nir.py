"""NIR interchange: export -> file -> import gives the same model outputs; graphs written by
sinabs import exactly; lossy steps are reported, warned about, or refused with strict=True."""

from __future__ import annotations

import sys
import warnings
from collections import OrderedDict

import nir
import numpy as np
import pytest
import torch

from mapper.nir_interchange import (
    LegalizationWarning,
    LossyImportError,
    NIRExportError,
    NIRImportError,
    export_nir,
    import_nir,
)
from snnlib.ann import SumPool2d
from snnlib.layers import SpikingLayer


def integer_weights(model: torch.nn.Module, seed: int, scale: float = 2.0) -> torch.nn.Module:
    """Integer-valued weights, so every library computes the same exact sums."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in model:
            if isinstance(layer, (torch.nn.Conv2d, torch.nn.Linear)):
                for p in layer.parameters():
                    p.copy_(torch.round(torch.randn(p.shape, generator=gen) * scale))
    return model


def spikes(shape, seed: int, rate: float = 0.3) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=gen) < rate).float()


def reset(model: torch.nn.Module) -> None:
    for layer in model:
        if isinstance(layer, SpikingLayer):
            layer.reset_states()


def chip_like_model() -> torch.nn.Sequential:
    return torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, bias=False),
        SpikingLayer(threshold=2.0, threshold_low=-4.0, layer_name="conv1"),
        SumPool2d(2),
        torch.nn.Conv2d(4, 8, 3, padding=1, stride=1, bias=False),
        SpikingLayer(threshold=3.0, threshold_low=-3.0, membrane_reset=True),
        torch.nn.AvgPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 3 * 3, 10),
        SpikingLayer(threshold=1.5, membrane_subtract=1.0, threshold_low=None),
    )


def test_round_trip_through_a_nir_file_gives_the_same_outputs(tmp_path):
    model = integer_weights(chip_like_model(), seed=1)
    graph = export_nir(model, (2, 14, 14))
    assert [type(graph.nodes[n]).__name__ for n in ("input", "0", "1", "2", "5", "6", "7", "output")] == [
        "Input", "Conv2d", "IF", "SumPool2d", "AvgPool2d", "Flatten", "Affine", "Output"
    ]
    assert graph.edges[0] == ("input", "0") and graph.edges[-1] == ("8", "output")
    nir.write(tmp_path / "model.nir", graph)
    imported, report = import_nir(tmp_path / "model.nir")

    x = spikes((25, 2, 14, 14), seed=2)
    expected = model(x)
    assert expected.sum() > 20  # the comparison is not between two silent networks
    assert torch.equal(imported(x), expected)
    assert report.lossless
    assert [n.severity for n in report.notes] == ["info", "chip"]  # AvgPool2d, Linear bias
    restored = imported[4]
    assert (restored.threshold, restored.threshold_low, restored.membrane_reset) == (3.0, -3.0, True)
    assert imported[1].layer_name == "conv1" and imported[8].membrane_subtract == 1.0


def test_round_trip_in_memory_of_a_dense_model():
    model = integer_weights(torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(32, 16, bias=False), SpikingLayer(threshold=3.0),
        torch.nn.Linear(16, 4, bias=False), SpikingLayer(threshold=2.0),
    ), seed=3)
    graph = export_nir(model, (2, 4, 4))
    assert isinstance(graph.nodes["1"], nir.Linear)
    imported, report = import_nir(graph)
    x = spikes((40, 2, 4, 4), seed=4, rate=0.5)
    expected = model(x)
    assert expected.sum() > 10
    assert torch.equal(imported(x), expected)
    assert report.notes == []
    assert str(report) == "NIR import: exact, nothing to report"


@pytest.mark.filterwarnings("ignore:nirtorch.extract_nir_graph is being deprecated:DeprecationWarning")
def test_import_of_a_graph_exported_by_sinabs_matches_sinabs():
    import sinabs  # a dev dependency; it must not pull in samna (a stub that downloads)
    import sinabs.layers as sl

    assert "samna" not in sys.modules

    net = integer_weights(torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, bias=False),
        sl.IAFSqueeze(batch_size=1, spike_threshold=2.0),
        sl.SumPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 3 * 3, 5, bias=False),
        sl.IAFSqueeze(batch_size=1),
    ), seed=5)
    graph = sinabs.to_nir(net, torch.zeros(1, 2, 8, 8))
    imported, report = import_nir(graph)

    x = spikes((30, 2, 8, 8), seed=6)
    expected = net(x)
    assert expected.sum() > 100
    assert torch.equal(imported(x), expected)
    assert report.lossless
    assert [(n.node, n.severity) for n in report.notes] == [("1", "info"), ("5", "info")]
    assert "floor(v / threshold)" in report.notes[0].message
    assert isinstance(imported[1], SpikingLayer) and imported[1].threshold == 2.0
    assert imported[1].threshold_low is None


def foreign_graph(per_neuron_thresholds: np.ndarray) -> nir.NIRGraph:
    """A graph as snnTorch writes it: Affine -> LIF with tau = dt / (1 - beta), r = tau / dt."""
    dt, beta = 1e-4, 0.9
    tau = np.full(3, dt / (1 - beta))
    return nir.NIRGraph.from_list(
        nir.Affine(weight=np.eye(3) * 2.0, bias=np.array([0.0, 0.5, 0.0])),
        nir.LIF(tau=tau, r=tau / dt, v_leak=np.zeros(3), v_threshold=per_neuron_thresholds),
    )


def test_lossy_steps_are_reported_and_warned():
    graph = foreign_graph(np.array([1.0, 2.0, 3.0]))
    with pytest.warns(LegalizationWarning) as caught:
        model, report = import_nir(graph)
    messages = [str(w.message) for w in caught]
    assert any("collapsed to their mean 2" in m for m in messages)
    assert any("LIF imported as IF" in m and "x0.9 per 0.0001 s step" in m for m in messages)
    assert not report.lossless
    assert {(n.node, n.severity) for n in report.notes} >= {("affine", "chip"), ("lif", "lossy")}
    assert isinstance(model[1], SpikingLayer)
    assert model[1].threshold == pytest.approx(2.0)  # snnTorch's r = tau / dt gives unit gain
    assert model[0].bias.tolist() == [0.0, 0.5, 0.0]
    assert "lossy" in str(report) and "lif" in str(report)


def test_strict_import_refuses_every_lossy_step_at_once():
    with pytest.raises(LossyImportError, match=r"(?s)collapsed to their mean.*LIF imported as IF"):
        import_nir(foreign_graph(np.array([1.0, 2.0, 3.0])), strict=True)


def test_uniform_thresholds_and_if_gain_are_exact():
    graph = nir.NIRGraph.from_list(
        nir.Linear(weight=np.ones((2, 2))),
        nir.IF(r=np.full(2, 2.0), v_threshold=np.full(2, 3.0)),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", LegalizationWarning)
        model, report = import_nir(graph)
    assert model[1].threshold == 1.5  # v_threshold / r
    assert report.lossless


def test_chip_limits_are_reported_without_changing_the_model():
    conv = nir.Conv2d(input_shape=(8, 8), weight=np.ones((4, 1, 3, 3)), stride=1, padding=0,
                      dilation=2, groups=2, bias=np.zeros(4))
    pool = nir.SumPool2d(kernel_size=np.array([3, 3]), stride=np.array([1, 1]), padding=np.array([0, 0]))
    model, report = import_nir(nir.NIRGraph.from_list(conv, pool))
    chip = [n.message for n in report.of("chip")]
    assert any("groups=2" in m for m in chip) and any("dilation (2, 2)" in m for m in chip)
    assert any("pooling kernel (3, 3) stride (1, 1)" in m for m in chip)
    assert model[0].groups == 2 and model[0].dilation == (2, 2)
    assert report.lossless


def test_export_lists_every_unsupported_layer():
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3), torch.nn.MaxPool2d(2), torch.nn.Dropout(), SumPool2d(2, ceil_mode=True),
    )
    with pytest.raises(NIRExportError, match=r"(?s)1 \(MaxPool2d\).*2 \(Dropout\).*3 \(SumPool2d\): ceil_mode"):
        export_nir(model, (1, 9, 9))
    named = torch.nn.Sequential(OrderedDict(input=torch.nn.Flatten(), fc=torch.nn.Linear(4, 2)))
    with pytest.raises(NIRExportError, match=r"input \(Flatten\): the names 'input' and 'output'"):
        export_nir(named, (1, 2, 2))
    with pytest.raises(NIRExportError, match="expected a non-empty torch.nn.Sequential"):
        export_nir(torch.nn.Conv2d(1, 2, 3), (1, 9, 9))
    with pytest.raises(NIRExportError, match=r"input_shape=\(1, 0, 9\)"):
        export_nir(torch.nn.Sequential(torch.nn.Flatten()), (1, 0, 9))
    with pytest.raises(NIRExportError, match=r"layer 0 \(Conv2d\) cannot take input of shape \(3, 9, 9\)"):
        export_nir(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3)), (3, 9, 9))


def test_import_lists_every_unsupported_node_and_refuses_bad_graphs(tmp_path):
    graph = nir.NIRGraph.from_list(
        nir.LI(tau=np.ones(2), r=np.ones(2), v_leak=np.zeros(2)),
        nir.Scale(scale=np.ones(2)),
        nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([1, 1])),
    )
    with pytest.raises(NIRImportError, match=r"(?s)li \(LI\).*scale \(Scale\).*sumpool2d \(SumPool2d\): padding"):
        import_nir(graph)
    lin = nir.Linear(weight=np.ones((2, 2)))
    branching = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([2])), "a": lin, "b": nir.Linear(weight=np.ones((2, 2))),
               "output": nir.Output(np.array([2]))},
        edges=[("input", "a"), ("input", "b"), ("a", "output"), ("b", "output")],
    )
    with pytest.raises(NIRImportError, match="node 'input' has 0 inputs and 2 outputs; only chains"):
        import_nir(branching)
    with pytest.raises(NIRImportError, match="expected a nir.NIRGraph"):
        import_nir(lin)
    with pytest.raises(NIRImportError, match="no such file"):
        import_nir(tmp_path / "absent.nir")
    (tmp_path / "junk.nir").write_bytes(b"not hdf5")
    with pytest.raises(NIRImportError, match="not a readable NIR file"):
        import_nir(tmp_path / "junk.nir")
    with pytest.raises(NIRImportError, match="dt=0"):
        import_nir(foreign_graph(np.ones(3)), dt=0)
    negative = nir.NIRGraph.from_list(nir.IF(r=np.ones(2), v_threshold=np.array([1.0, -1.0])))
    with pytest.raises(NIRImportError, match=r"thresholds -1..1; expected finite values > 0"):
        import_nir(negative)
