"""Allocation: core layers to cores under kernel, neuron and bias memory (``docs/chip-model.md``, "Memory formulas").

A min-cost max-flow over the bipartite graph layer -> fitting core (networkx) finds a complete
assignment whenever one exists; costs give earlier layers lower core ids, so the result is deterministic.
User-pinned layers are checked and kept. When no complete assignment exists the violations
say which layers fit nowhere (and by how much to shrink them), or which layers compete for
which cores (a Hall set found from the maximum matching) and the smallest change that frees a core.
"""

from __future__ import annotations

import networkx as nx

from mapper.checks import Violation
from mapper.chips import ChipSpec
from mapper.memory import MemoryNeed, max_out_channels


def allocate(layers: dict[str, tuple[MemoryNeed, tuple, tuple, bool]], chip: ChipSpec,
             pinned: dict[str, int] | None = None) -> tuple[dict[str, int], list[Violation]]:
    """Assign each layer to a core.

    ``layers``: name -> (need, weight shape ``(f, c, kh, kw)``, output shape ``(f, h, w)``,
    has bias), in topological order. ``pinned``: name -> core id the user chose.
    Returns (name -> core id, violations); the assignment is complete iff no violations.
    """
    pinned = dict(pinned or {})
    violations: list[Violation] = []
    taken: dict[int, str] = {}
    for name, core in pinned.items():
        need = layers[name][0]
        if core not in chip.cores:
            violations.append(Violation(name, "layer2core names a core the chip lacks", core,
                                        f"use one of the cores {sorted(chip.cores)}"))
        elif core in taken:
            violations.append(Violation(name, "layer2core puts two layers on one core",
                                        f"core {core} (also {taken[core]})", "give each layer its own core"))
        elif not need.fits(chip.cores[core]):
            fit = [c for c in chip.cores if need.fits(chip.cores[c])]
            violations.append(Violation(name, f"does not fit core {core}", _need_text(need, chip, core),
                                        f"use a core it fits: {fit}" if fit else "shrink the layer"))
        else:
            taken[core] = name
    free = {c: s for c, s in chip.cores.items() if c not in taken}
    todo = [n for n in layers if n not in pinned]
    candidates = {n: [c for c in free if layers[n][0].fits(free[c])] for n in todo}
    for n in todo:
        if not candidates[n]:
            violations.append(_fits_nowhere(n, layers[n], chip))
    if len(layers) > len(chip.cores):
        violations.append(Violation(", ".join(layers), f"{chip.name} has {len(chip.cores)} cores",
                                    f"{len(layers)} core layers",
                                    f"remove {len(layers) - len(chip.cores)} layer(s) or merge consecutive ones"))
    matching = _match(todo, candidates)
    assignment = {**{n: c for c, n in taken.items()}, **matching}
    unmatched = [n for n in todo if n not in matching and candidates[n]]
    if unmatched and len(layers) <= len(chip.cores):
        violations.append(_competition(unmatched[0], candidates, matching, layers, free))
    return ({n: assignment[n] for n in layers if n in assignment} if not violations else assignment,
            violations)


def _match(todo: list[str], candidates: dict[str, list[int]]) -> dict[str, int]:
    g = nx.DiGraph()
    g.add_node("s")
    for i, n in enumerate(todo):  # weights (L - i) * core: earlier layers get lower cores
        g.add_edge("s", ("layer", n), capacity=1, weight=0)
        for c in candidates[n]:
            g.add_edge(("layer", n), ("core", c), capacity=1, weight=(len(todo) - i) * c)
            g.add_edge(("core", c), "t", capacity=1, weight=0)
    if "t" not in g:
        return {}
    flow = nx.max_flow_min_cost(g, "s", "t")
    return {n: c for n in todo for (_, c), f in flow[("layer", n)].items() if f}


def _need_text(need: MemoryNeed, chip: ChipSpec, core: int) -> str:
    have = chip.cores[core]
    return (f"kernel {need.kernel}/{have.kernel_words}, neuron {need.neuron}/{have.neuron_words}, "
            f"bias {need.bias}/{have.bias_words} words")


def _shrink_fix(name, info, cores: dict) -> tuple[float, str] | None:
    """The smallest out_channels reduction that makes ``name`` fit one of ``cores``."""
    need, wshape, oshape, has_bias = info
    f = wshape[0]
    best = None
    for cid, spec in cores.items():
        fmax = max_out_channels(wshape, oshape, has_bias, spec)
        if 0 < fmax < f and (best is None or fmax > best[1]):
            best = (cid, fmax)
    if best is None:
        return None
    return (f - best[1]) / f, f"reduce out_channels of {name} from {f} to <= {best[1]} (then it fits core {best[0]})"


def _fits_nowhere(name, info, chip: ChipSpec) -> Violation:
    need = info[0]
    best = max(chip.cores, key=lambda c: (min(chip.cores[c].kernel_words / max(need.kernel, 1),
                                                chip.cores[c].neuron_words / max(need.neuron, 1)), -c))
    fixes = []
    shrink = _shrink_fix(name, info, chip.cores)
    if shrink:
        fixes.append(shrink[1])
    if any(need.neuron > s.neuron_words for s in chip.cores.values()):
        fixes.append("or halve its output map (stride 2, or 2x2 pooling before it)")
    if not fixes:
        fixes.append("reduce its input channels or kernel size")
    return Violation(name, "fits no core's memory",
                     f"needs {_need_text(need, chip, best)} on the closest core {best}", "; ".join(fixes))


def _competition(start, candidates, matching, layers, free) -> Violation:
    """A set of layers with fewer candidate cores than members (reached from an unmatched layer
    by alternating paths), and the cheapest change that gives one of them another core."""
    owner = {c: n for n, c in matching.items()}
    group, cores, frontier = {start}, set(), [start]
    while frontier:
        n = frontier.pop()
        for c in candidates[n]:
            if c not in cores:
                cores.add(c)
                if c in owner and owner[c] not in group:
                    group.add(owner[c])
                    frontier.append(owner[c])
    names = [n for n in layers if n in group]
    others = {c: s for c, s in free.items() if c not in cores}
    fixes = [f for f in (_shrink_fix(n, layers[n], others) for n in names) if f]
    fix = min(fixes)[1] if fixes else "remove one of these layers, or make one of them smaller"
    return Violation(", ".join(names), f"{len(names)} layers compete for {len(cores)} cores",
                     f"they fit only cores {sorted(cores)}", fix)
