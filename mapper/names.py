"""Names users recognise: one display name per core layer, used by the fit report (memory
table, quantization) and by runs and comparisons.

A core layer is called by its conv / linear module's qualified name (``conv1``,
``block.conv``) when that name says something; a module named by a ``Sequential`` index
(``0``, ``features.3``) gets a derived name instead: ``conv1``, ``conv2``, ... and ``fc1``,
``fc2``, ... for layers whose kernel covers their whole input map (a Linear), numbered in
model order. The same rule runs on the mapper's core plans and on a :class:`ChipConfig`'s
cores (both carry ``layer_names``, ``weights``, ``input_shape`` and ``padding``), so a name
is the same in the report, the saved configuration and every run.
"""

from __future__ import annotations

from typing import Hashable, Mapping


def display_names(cores: Mapping[Hashable, object]) -> dict:
    """``{key: display name}`` for core layers ``{key: CorePlan or CoreConfig}``; a core
    without ``layer_names`` is called ``core<key>``."""
    heads = {key: core.layer_names[0] for key, core in cores.items() if core.layer_names}
    names = {key: head for key, head in heads.items() if not head.split(".")[-1].isdigit()}
    taken = set(names.values())
    counters = {"conv": 0, "fc": 0}
    for key in sorted(set(heads) - set(names), key=lambda k: _model_order(heads[k])):
        prefix = "fc" if _is_dense(cores[key]) else "conv"
        while True:
            counters[prefix] += 1
            name = f"{prefix}{counters[prefix]}"
            if name not in taken:
                break
        names[key] = name
        taken.add(name)
    names.update({key: f"core{key}" for key in cores if key not in heads})
    return {key: names[key] for key in cores}


def _model_order(qualified_name: str) -> tuple:
    """Sort key of a module's qualified name: numeric parts compare as numbers."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in qualified_name.split("."))


def _is_dense(core) -> bool:
    """True when the kernel covers the whole (unpadded) input map, as a Linear layer's does."""
    return tuple(core.weights.shape[2:]) == tuple(core.input_shape[1:]) and tuple(core.padding) == (0, 0)
