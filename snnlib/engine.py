"""The event-exact simulator: the chip's integer semantics, one event at a time, compiled.

The rules are those of ``docs/chip-model.md`` (its rules 1-7): one synaptic update is
``v + w`` saturated to int16, bounded below by ``threshold_low``, then at most one spike with
subtract or return-to-zero reset; targets of one event are updated in (f, y, x) order, their
spikes are delivered depth-first to destination 0 then 1; pooling divides coordinates and
drops (and counts) what falls outside; leak ticks at P, 2P, ... come before any event at or
after their time. Rules a real chip might do differently are :class:`ChipModelOptions`.

The network is packed once into flat arrays; the whole event loop, the fan-out and the leak
run in numba. Layers are addressed by *source index*: core layers in ascending id order are
0..L-1 and the DVS stage is L. Internally states are stored (y, x, f) and weights
(c, ky, k-1-kx, f), features innermost and kx reversed, so that the targets of one input in a
kernel row and their taps are both contiguous (for stride 1) and their update vectorizes; the
public API speaks (f, y, x) and (f, c, ky, kx).
"""

from __future__ import annotations

from dataclasses import dataclass

import llvmlite.ir as ir
import numpy as np
from numba import njit, types
from numba.core import cgutils, config
from numba.core.codegen import get_host_cpu_features
from numba.extending import intrinsic

from snnlib.events import EVENT_DTYPE, InvalidEventsError, check_events
from snnlib.network import DVS_LAYER_ID, CoreLayer, IntegerNetwork, InvalidNetworkError, Problem
from snnlib.readout import ReadoutState

OVERFLOW_MODES = ("saturate", "wrap")
LOWER_BOUND_MODES = ("clamp", "reject")
COUNTER_NAMES = ("events_in", "synaptic_updates", "spikes_out", "dropped")
#: initial size of a simulator's output buffer (events); the compiled loop cannot allocate, so
#: it returns when the buffer may overflow and ``run`` grows it and resumes (see ``_run``)
OUTPUT_CAPACITY = 1024
EVENTS_IN, SYNAPTIC_UPDATES, SPIKES_OUT, DROPPED = range(4)

# columns of the per-layer parameter table
(C_IN, H_IN, W_IN, F_OUT, H_OUT, W_OUT, KERNEL, STRIDE_Y, STRIDE_X, PAD_Y, PAD_X, RESET_ZERO,
 LEAK, W_OFFSET, S_OFFSET, B_OFFSET, MONITOR, LAYER_ID, WINDOW_SHIFT, MAP_SHIFT) = range(N_LAYER_PARAMS := 20)
# columns of the DVS parameter vector
(DVS_MERGE, DVS_ON, DVS_OFF, DVS_POOL_Y, DVS_POOL_X, DVS_ORIGIN_Y, DVS_ORIGIN_X, DVS_CUT_Y,
 DVS_CUT_X, DVS_MIRROR_X, DVS_MIRROR_Y, DVS_DIAGONAL, DVS_MONITOR) = range(N_DVS_PARAMS := 13)
# destination table: [source, slot, field]
DEST_LAYER, DEST_POOL, DEST_SHIFT = range(3)
# clock vector: next tick time, tick period (0 = no ticks), time of the last input event; then where
# an interrupted _run resumes: deliveries pending on the stack, their time, the next layer of a tick
# in progress (-1: none); then 1 while the network is at rest (the last tick changed no state and
# fired nothing, and no input came since: every tick until the next input is the same no-op)
NEXT_TICK, PERIOD, LAST_T, PENDING, PENDING_T, TICK_LAYER, REST = range(7)
#: a watched tick copies and compares the leaking states (about 4x a tick's own cost); after one
#: that was not at rest the next 1, 3, 7, ... up to this many ticks go unwatched, so a network
#: that never rests pays at most a few % and one that does is found within twice its settling time
MAX_UNWATCHED_TICKS = 127


@dataclass(frozen=True)
class ChipModelOptions:
    """Rules that a real chip could implement differently; the defaults are the settled rules of ``docs/chip-model.md``.

    ``overflow``: ``"saturate"`` (default) clips ``v + w`` to [-32768, 32767]; ``"wrap"`` wraps
    around as 16-bit two's complement. ``lower_bound``: ``"clamp"`` (default) sets
    ``v = max(v, threshold_low)``; ``"reject"`` keeps the old ``v`` when ``v + w`` would fall
    below ``threshold_low``. ``leak_can_fire``: whether a leak tick applies the threshold test.
    """

    overflow: str = "saturate"
    lower_bound: str = "clamp"
    leak_can_fire: bool = True

    def __post_init__(self):
        if self.overflow not in OVERFLOW_MODES:
            raise ValueError(f"overflow={self.overflow!r}: expected one of {OVERFLOW_MODES}")
        if self.lower_bound not in LOWER_BOUND_MODES:
            raise ValueError(f"lower_bound={self.lower_bound!r}: expected one of {LOWER_BOUND_MODES}")
        if not isinstance(self.leak_can_fire, bool):
            raise ValueError(f"leak_can_fire={self.leak_can_fire!r}: expected True or False")

    def as_array(self) -> np.ndarray:
        """The options as the int64 vector the compiled loop reads: (wrap, reject, leak fires)."""
        return np.array([self.overflow == "wrap", self.lower_bound == "reject", self.leak_can_fire],
                        dtype=np.int64)


# ----------------------------------------------------------------------------- LLVM IR operations

# Written directly in LLVM IR as numba intrinsics. They live in this file because numba's cache
# of ``_run`` is keyed on this file only: in another module a change would not reach it.
# ``update_16`` is rule 1 for 16 neighbouring neurons at once. Written as a numba loop, LLVM
# vectorized it only behind a run-time check that the arrays do not overlap, with 64-bit lanes;
# as one explicit ``<16 x i16>`` operation it is ~2.5x faster. It must equal ``_update`` bit for
# bit, which the tests check on random input. ``nonzero_16`` and ``lowest_set_bit`` find the
# spikes it recorded. ``update_window_16`` does the whole window of a 16-feature layer and puts
# its spikes in order with byte compress instructions, where the CPU has them.

LANES = 16
#: length (bytes) of ``update_window_16``'s scratch ``order``, the spike indices of one pass
#: (its docstring says why it exceeds the 256 neurons)
ORDER_BYTES = 320
_I1, _I8, _I16, _I32, _I64 = ir.IntType(1), ir.IntType(8), ir.IntType(16), ir.IntType(32), ir.IntType(64)
_V16, _V64 = ir.VectorType(_I16, LANES), ir.VectorType(_I64, LANES)


def _target_features() -> set[str]:
    """The CPU features numba compiles for: its ``NUMBA_CPU_FEATURES`` setting, else the host's."""
    features = config.CPU_FEATURES if config.CPU_FEATURES is not None else get_host_cpu_features()
    return {f[1:] for f in features.split(",") if f.startswith("+")}


#: whether the CPU compresses byte vectors in one instruction (AVX-512 VBMI2), which
#: ``update_window_16`` needs to be fast; elsewhere LLVM emulates it lane by lane (2x slower
#: than the scalar path overall), so windows of 16 features take the scalar path there
BYTE_COMPRESS = "avx512vbmi2" in _target_features()


@intrinsic
def lowest_set_bit(typingctx, mask):
    """The index of the lowest set bit of a non-zero integer (LLVM ``cttz``)."""

    def codegen(context, builder, signature, args):
        return builder.cttz(args[0], ir.Constant(_I1, 1))

    return mask(mask), codegen


@intrinsic
def update_16(typingctx, state, s, add, a, stride, count, hi, lo, reset_zero, wrap, reject, test,
              bits, m, bit):
    """Rule 1 for ``count`` groups of 16 neurons: group k is ``state[s + k * stride + j]``
    (int16) for j < 16, each updated by ``add[a + k * stride + j]`` (int8 or int16): ``v + w``
    saturated (or wrapped if ``wrap``) to int16, raised to ``lo`` (or kept if ``reject``), then
    if ``test`` and ``v >= hi`` a spike and ``v - hi`` (or 0 if ``reset_zero``). A spike of
    neuron j of group k sets bit ``bit + k`` of ``bits[m + j]`` (uint64); the groups' bits are
    gathered in registers and written once. Indices unsigned, ``bit + count <= 64``; no bounds
    checks."""

    def codegen(context, builder, signature, args):
        arg, pairs = signature.args, list(zip(args, signature.args))
        rule = _Rule16(context, builder, *(pairs[i] for i in (0, 2, 6, 7, 8, 9, 10, 11)))
        s0, a0, step, count, bit0 = (context.cast(builder, args[i], arg[i], types.uint64) for i in (1, 3, 4, 5, 14))
        marks = cgutils.alloca_once_value(builder, ir.Constant(_V64, None))
        with cgutils.for_range(builder, count, intp=_I64) as loop:
            offset = builder.mul(loop.index, step)
            fired = rule.apply(builder.add(s0, offset), builder.add(a0, offset))
            position_bit = builder.shl(ir.Constant(_I64, 1), builder.add(bit0, loop.index))
            _set_where(builder, marks, fired, position_bit)
        p_bits = _vector_pointer(context, builder, arg[12], args[12], args[13], _V64)
        builder.store(builder.or_(builder.load(p_bits, align=8), builder.load(marks)), p_bits, align=8)
        return context.get_dummy_value()

    sig = types.void(state, s, add, a, stride, count, hi, lo, reset_zero, wrap, reject, test, bits, m, bit)
    return sig, codegen


@intrinsic
def update_window_16(typingctx, state, s, s_row, add, a, a_row, a_step, hi, lo, reset_zero, wrap,
                     reject, n_rows, width, shift, order):
    """Rule 1 (always tested, as ``update_16``) for the 16-feature neurons of ``n_rows`` rows of
    ``width`` positions: row r, position d is ``state[s + r * s_row + 16 * d + j]`` for j < 16,
    updated by ``add[a + r * a_row + d * a_step + j]``. Position ``(r << shift) + d`` must be
    below 16. The spikes are then ordered with four byte compress operations: the index
    ``16 * j + position`` of each spike goes, ascending (rule 3's order), as a byte to ``order``
    (uint8, at least ``ORDER_BYTES`` long: each quarter of the neurons writes 64 bytes), and the call
    returns how many. Indices non-negative; no bounds checks."""

    def codegen(context, builder, signature, args):
        arg, pairs = signature.args, list(zip(args, signature.args))
        rule = _Rule16(context, builder, *(pairs[i] for i in (0, 3, 7, 8, 9, 10, 11)))
        s0, s_step, a0, a_step_row, a_step, n_rows, width, shift = (
            context.cast(builder, args[i], arg[i], types.int64) for i in (1, 2, 4, 5, 6, 12, 13, 14))
        marks = cgutils.alloca_once_value(builder, ir.Constant(_V16, None))  # bit p of neuron j
        with cgutils.for_range(builder, n_rows, intp=_I64) as row:
            s_r = builder.add(s0, builder.mul(row.index, s_step))
            a_r = builder.add(a0, builder.mul(row.index, a_step_row))
            with cgutils.for_range(builder, width, intp=_I64) as d:
                fired = rule.apply(builder.add(s_r, builder.mul(d.index, ir.Constant(_I64, LANES))),
                                   builder.add(a_r, builder.mul(d.index, a_step)))
                position = builder.add(builder.shl(row.index, shift), d.index)
                _set_where(builder, marks, fired, builder.trunc(builder.shl(ir.Constant(_I64, 1), position), _I16))
        bytes_64, mask_64 = ir.VectorType(_I8, 64), ir.VectorType(_I1, 64)
        compress = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(bytes_64, [bytes_64, mask_64, bytes_64]),
            "llvm.experimental.vector.compress.v64i8")
        popcount = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_I64, [_I64]), "llvm.ctpop.i64")
        quarters = builder.bitcast(builder.load(marks), ir.VectorType(_I64, 4))
        n = ir.Constant(_I64, 0)
        for k in range(4):  # quarter k: neurons 4k .. 4k + 3, bit 16 * (j - 4k) + position
            quarter = builder.extract_element(quarters, ir.Constant(_I32, k))
            indices = ir.Constant(bytes_64, [64 * k + i for i in range(64)])
            packed = builder.call(compress, [indices, builder.bitcast(quarter, mask_64), ir.Constant(bytes_64, None)])
            builder.store(packed, _vector_pointer(context, builder, arg[15], args[15], n, bytes_64), align=1)
            n = builder.add(n, builder.call(popcount, [quarter]))
        return n

    sig = types.int64(state, s, s_row, add, a, a_row, a_step, hi, lo, reset_zero, wrap, reject, n_rows,
                      width, shift, order)
    return sig, codegen


class _Rule16:
    """Emits rule 1 for vectors of 16 neurons of ``state`` (int16) updated by ``add`` (int8 or
    int16), with the thresholds and flags of one intrinsic call; every argument is a pair
    (LLVM value, numba type) and ``test=None`` means always tested."""

    def __init__(self, context, builder, state, add, hi, lo, reset_zero, wrap, reject, test=None):
        self.context, self.builder, self.state, self.add = context, builder, state, add
        self.add_vector = ir.VectorType(ir.IntType(add[1].dtype.bitwidth), LANES)

        def splat16(pair):
            return _splat(builder, builder.trunc(context.cast(builder, *pair, types.int64), _I16))

        def flag(pair):
            return None if pair is None else context.cast(builder, *pair, types.boolean)

        self.hi, self.lo = splat16(hi), splat16(lo)
        self.reset_zero, self.wrap, self.reject, self.test = map(flag, (reset_zero, wrap, reject, test))
        self.saturating_add = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_V16, [_V16, _V16]), "llvm.sadd.sat.v16i16")

    def apply(self, s, a):
        """Update ``state[s:s+16]`` by ``add[a:a+16]`` (int64 indices); return which neurons
        fired (``<16 x i1>``)."""
        builder = self.builder
        p_state = _vector_pointer(self.context, builder, self.state[1], self.state[0], s, _V16)
        p_add = _vector_pointer(self.context, builder, self.add[1], self.add[0], a, self.add_vector)
        old = builder.load(p_state, align=2)
        w = builder.load(p_add, align=1)
        w = builder.sext(w, _V16) if self.add_vector.element.width < 16 else w
        v = builder.select(self.wrap, builder.add(old, w), builder.call(self.saturating_add, [old, w]))
        v = builder.select(builder.icmp_signed("<", v, self.lo), builder.select(self.reject, old, self.lo), v)
        fired = builder.icmp_signed(">=", v, self.hi)
        if self.test is not None:
            fired = builder.select(self.test, fired, ir.Constant(ir.VectorType(_I1, LANES), None))
        reset = builder.select(self.reset_zero, ir.Constant(_V16, None), builder.sub(v, self.hi))
        builder.store(builder.select(fired, reset, v), p_state, align=2)
        return fired


def _set_where(builder, marks, fired, bit):
    """``marks |= bit`` in the lanes that ``fired`` (``marks``: a pointer to a vector)."""
    so_far = builder.load(marks)
    builder.store(builder.select(fired, builder.or_(so_far, _splat(builder, bit)), so_far), marks)


def _vector_pointer(context, builder, array_type, array, index, vector_type):
    """A pointer to ``array[index]`` typed as a pointer to ``vector_type``."""
    ary = context.make_array(array_type)(context, builder, array)
    item = cgutils.get_item_pointer(context, builder, array_type, ary, [index], wraparound=False)
    return builder.bitcast(item, vector_type.as_pointer())


def _splat(builder, value):
    """A vector of ``LANES`` copies of a scalar."""
    vector_type = ir.VectorType(value.type, LANES)
    undef = ir.Constant(vector_type, ir.Undefined)
    one = builder.insert_element(undef, value, ir.Constant(_I32, 0))
    return builder.shuffle_vector(one, undef, ir.Constant(ir.VectorType(_I32, LANES), [0] * LANES))


@intrinsic
def nonzero_16(typingctx, bits, m):
    """A mask with bit j set where ``bits[m + j]`` (uint64) is not 0, for j < 16: one vector
    test instead of 16 compares (``m`` unsigned; no bounds checks)."""

    def codegen(context, builder, signature, args):
        pointer = _vector_pointer(context, builder, signature.args[0], args[0], args[1], _V64)
        words = builder.load(pointer, align=8)
        nonzero = builder.icmp_unsigned("!=", words, ir.Constant(_V64, None))
        return builder.zext(builder.bitcast(nonzero, _I16), _I64)

    return types.uint64(bits, m), codegen


# ----------------------------------------------------------------------------- compiled core

# Divisors (strides, pooling factors, feature counts) are validated >= 1, so numpy's error model
# (no zero-division checks) is safe. Everything is compiled without reference counting (numba's
# atomic inc/dec on every array a helper binds once cost half the time of an input event; the
# price is no allocation in here), and the helpers are inlined by LLVM (``forceinline``): numba's
# own IR inlining (``inline="always"``) deep-copies the IR at every call site, which made the
# loop take 9 s to compile (up to a minute inside the test suite) and run slower. Timings and
# what was tried: benchmarks/README.md.
compiled = njit(cache=True, error_model="numpy", _nrt=False)
inlined = njit(forceinline=True, error_model="numpy", _nrt=False)
#: rare steps (leak ticks, the DVS stage) are called, not inlined: the hot loop stays smaller
called = njit(error_model="numpy", _nrt=False, no_cpython_wrapper=True)


@inlined
def _update(old, w, hi, lo, reset_zero, wrap, reject, test):
    """Rule 1 for one neuron: its new state and whether it spiked (``update_16`` is the same
    for 16 neurons at once)."""
    v = old + w
    v = (((v + 32768) & 0xFFFF) - 32768) if wrap else min(max(v, -32768), 32767)
    v = (old if reject else lo) if v < lo else v
    spiked = (v >= hi) & test
    return ((0 if reset_zero else v - hi) if spiked else v), spiked


@inlined
def _update_run(state, s, add, a, n_pos, hi, lo, reset_zero, wrap, reject, test, n_f, bits, p, one_word):
    """Update the ``n_pos * n_f`` consecutive neurons ``state[s + i]``, each by ``add[a + i]``
    (rule 1). They are the features (innermost) of ``n_pos`` consecutive positions p, p + 1, ...
    of the spike-bit table ``bits`` (see ``_spikes_from_bits``), where a spike sets its bit;
    ``one_word``: the table has one word per feature. Runs are short (a kernel row: 3 positions
    of 16 features): whole feature vectors go in vectors of 16 (``update_16``), other feature
    counts one neuron at a time."""
    sb, ab, pb = np.uint64(s), np.uint64(a), np.uint64(p)
    f, nf, six = np.uint64(0), np.uint64(n_f), np.uint64(6)
    if n_f % 16 == 0:  # by groups of 16 features, each over the positions (distinct neurons: any order)
        n_pos = np.uint64(n_pos)
        for g in range(np.uint64(0), nf, np.uint64(16)):
            done = np.uint64(0)
            while done < n_pos:  # as many positions as share the table's 64-bit words
                q = pb + done
                count = n_pos - done if one_word else min(n_pos - done, np.uint64(64) - (q & np.uint64(63)))
                word = np.uint64(0) if one_word else q >> six
                update_16(state, sb + done * nf + g, add, ab + done * nf + g, nf, count, hi, lo,
                          reset_zero, wrap, reject, test, bits, word * nf + g, q & np.uint64(63))
                done += count
    else:
        for i in range(np.uint64(n_pos) * nf):
            v, spiked = _update(state[sb + i], add[ab + i], hi, lo, reset_zero, wrap, reject, test)
            state[sb + i] = v
            bits[(pb >> six) * nf + f] |= np.uint64(spiked) << (pb & np.uint64(63))
            f += np.uint64(1)
            if f == nf:
                f, pb = np.uint64(0), pb + np.uint64(1)


@inlined
def _floor_div(a, b):
    """``a // b`` without a division instruction in the common case ``b == 1``."""
    return a if b == 1 else a // b


@inlined
def _put(n, f, y, x, direct, spikes, out, n_out, t, layer_id):
    """Record spike number ``n`` of a pass, neuron (f, y, x): as the output event ``out[n_out + n]``
    if ``direct`` (a monitored layer without destinations: nothing else needs it), else as the
    row ``spikes[n]``, which the caller emits and routes."""
    if direct:
        e = out[n_out + n]
        e.t, e.layer, e.channel, e.y, e.x = t, layer_id, f, y, x
    else:
        spikes[n, 0], spikes[n, 1], spikes[n, 2] = f, y, x


@inlined
def _spikes_from_bits(bits, n_words, shift, n_f, y0, x0, direct, spikes, out, n_out, t, layer_id):
    """Read and clear the spike-bit table of one update pass (``n_words`` words per feature)
    whose first position is neuron (y0, x0); record its spikes with ``_put`` in (f, y, x) order
    (rule 3) and return how many. Neuron (f, y0 + r, x0 + d) is bit ``p % 64`` of word
    ``(p // 64) * n_f + f`` with position ``p = r << shift | d``: a feature's words list its
    neurons in (y, x) order, so reading the table feature by feature gives rule 3's order
    without sorting, and a 3 x 3 window is one word per feature. Which features spiked is
    gathered without branching first, so that only they are visited (a branch per feature
    mispredicted on most spikes)."""
    n, x_mask = 0, (1 << shift) - 1
    for f0 in range(0, n_f, 64):
        spiked, first = np.uint64(0), np.uint64(f0)  # bit f - f0: feature f spiked
        for word in range(np.uint64(n_words)):
            row = word * np.uint64(n_f)  # unsigned indices: contiguous loads, not gathers
            if n_f % 16 == 0:
                for g in range(first, np.uint64(min(f0 + 64, n_f)), np.uint64(16)):
                    spiked |= nonzero_16(bits, row + g) << (g - first)
            else:
                for f in range(first, np.uint64(min(f0 + 64, n_f))):
                    spiked |= np.uint64(bits[row + f] != 0) << (f - first)
        while spiked:
            f = f0 + lowest_set_bit(spiked)
            spiked &= spiked - np.uint64(1)
            for word in range(n_words):
                m = bits[word * n_f + f]
                bits[word * n_f + f] = 0
                while m:
                    p = (word << 6) + lowest_set_bit(m)
                    _put(n, f, y0 + (p >> shift), x0 + (p & x_mask), direct, spikes, out, n_out, t, layer_id)
                    n += 1
                    m &= m - np.uint64(1)
    return n


@inlined
def _ordered_spikes(order, n, shift, y0, x0, direct, spikes, out, n_out, t, layer_id):
    """Record (``_put``) the ``n`` spikes listed in ``order`` by ``update_window_16`` (bytes
    ``16 * f + position``, in rule 3's order) of a pass whose first position is (y0, x0)."""
    x_mask = (1 << shift) - 1
    for i in range(n):
        p = order[i] & 15
        _put(i, order[i] >> 4, y0 + (p >> shift), x0 + (p & x_mask), direct, spikes, out, n_out, t, layer_id)
    return n


@inlined
def _window_pass(n_f, n_words, small, li, c, ty, tx, y0, y1, x0, x1, lp, thr, weights, state, wrap,
                 reject, bits, order, direct, spikes, out, n_out, t):
    """Update the targets of input channel ``c`` at padded position (ty, tx): output rows
    y0..y1, columns x0..x1 of layer ``li`` (``n_f`` features, ``n_words`` table words per
    feature; ``small``: 16 features and at most 16 positions, done by ``update_window_16``);
    record their spikes and return how many."""
    k, sy, sx, w_out = lp[li, KERNEL], lp[li, STRIDE_Y], lp[li, STRIDE_X], lp[li, W_OUT]
    hi, lo, rz, shift = thr[li, 0], thr[li, 1], lp[li, RESET_ZERO], lp[li, WINDOW_SHIFT]
    w_off, s_off = lp[li, W_OFFSET] + c * k * k * n_f, lp[li, S_OFFSET]
    if small:
        n = update_window_16(state, s_off + (y0 * w_out + x0) * n_f, w_out * n_f, weights,
                             w_off + ((ty - y0 * sy) * k + k - 1 - tx + x0 * sx) * n_f, -sy * k * n_f,
                             sx * n_f, hi, lo, rz, wrap, reject, y1 - y0 + 1, x1 - x0 + 1, shift, order)
        return _ordered_spikes(order, n, shift, y0, x0, direct, spikes, out, n_out, t, lp[li, LAYER_ID])
    for yo in range(y0, y1 + 1):
        w_row = w_off + ((ty - yo * sy) * k + k - 1 - tx) * n_f  # + xo * sx * n_f: the tap for xo
        s_row, p_row = s_off + yo * w_out * n_f, (yo - y0) << shift
        if sx == 1:  # the row's targets and their taps are contiguous: one run of positions
            _update_run(state, s_row + x0 * n_f, weights, w_row + x0 * n_f, x1 - x0 + 1,
                        hi, lo, rz, wrap, reject, True, n_f, bits, p_row, n_words == 1)
        else:
            for xo in range(x0, x1 + 1):
                _update_run(state, s_row + xo * n_f, weights, w_row + xo * sx * n_f, 1,
                            hi, lo, rz, wrap, reject, True, n_f, bits, p_row + xo - x0, n_words == 1)
    return _spikes_from_bits(bits, n_words, shift, n_f, y0, x0, direct, spikes, out, n_out, t,
                             lp[li, LAYER_ID])


@inlined
def _integrate(li, c, y, x, lp, thr, weights, state, wrap, reject, counters, bits, order, direct,
               spikes, out, n_out, t):
    """Update every neuron of layer ``li`` that input (c, y, x) reaches; record its spikes in
    (f, y, x) order, as output events from ``out[n_out]`` if ``direct``, else as ``spikes``
    rows, and return how many."""
    k, sy, sx = lp[li, KERNEL], lp[li, STRIDE_Y], lp[li, STRIDE_X]
    ty, tx = y + lp[li, PAD_Y], x + lp[li, PAD_X]
    y0, y1 = max(0, -_floor_div(k - 1 - ty, sy)), min(lp[li, H_OUT] - 1, _floor_div(ty, sy))
    x0, x1 = max(0, -_floor_div(k - 1 - tx, sx)), min(lp[li, W_OUT] - 1, _floor_div(tx, sx))
    if y1 < y0 or x1 < x0:
        return 0
    n_f, positions = lp[li, F_OUT], (y1 - y0 + 1) << lp[li, WINDOW_SHIFT]
    counters[li, SYNAPTIC_UPDATES] += n_f * (y1 - y0 + 1) * (x1 - x0 + 1)
    if n_f == 16 and positions <= (16 if BYTE_COMPRESS else 64):  # the usual case, compiled for it
        return _window_pass(16, 1, BYTE_COMPRESS, li, c, ty, tx, y0, y1, x0, x1, lp, thr, weights,
                            state, wrap, reject, bits, order, direct, spikes, out, n_out, t)
    return _window_pass(n_f, (positions + 63) >> 6, False, li, c, ty, tx, y0, y1, x0, x1, lp, thr,
                        weights, state, wrap, reject, bits, order, direct, spikes, out, n_out, t)


@called
def _leak(li, lp, thr, bias, state, wrap, reject, leak_fires, bits, direct, spikes, out, n_out, t):
    """Add ``bias[f]`` to every neuron of layer ``li``; record its spikes as ``_integrate``
    does and return how many."""
    n_f, h_out, w_out = lp[li, F_OUT], lp[li, H_OUT], lp[li, W_OUT]
    hi, lo, rz = thr[li, 0], thr[li, 1], lp[li, RESET_ZERO]
    s_off, b_off = lp[li, S_OFFSET], lp[li, B_OFFSET]
    shift = lp[li, MAP_SHIFT]
    for yo in range(h_out):
        for xo in range(w_out):
            _update_run(state, s_off + (yo * w_out + xo) * n_f, bias, b_off, 1, hi, lo, rz,
                        wrap, reject, leak_fires, n_f, bits, yo << shift | xo, False)
    n_words = ((h_out << shift) + 63) >> 6
    return _spikes_from_bits(bits, n_words, shift, n_f, 0, 0, direct, spikes, out, n_out, t, lp[li, LAYER_ID])


@called
def _preprocess(dvs, c, y, x, spikes):
    """The DVS stage for one sensor event: 1 (written to ``spikes[0]``) if it passes, else 0."""
    if (c == 1 and not dvs[DVS_ON]) or (c == 0 and not dvs[DVS_OFF]):
        return 0
    if dvs[DVS_MERGE]:
        c = 0
    y, x = y // dvs[DVS_POOL_Y], x // dvs[DVS_POOL_X]
    if y < dvs[DVS_ORIGIN_Y] or y > dvs[DVS_CUT_Y] or x < dvs[DVS_ORIGIN_X] or x > dvs[DVS_CUT_X]:
        return 0
    y, x = y - dvs[DVS_ORIGIN_Y], x - dvs[DVS_ORIGIN_X]
    if dvs[DVS_MIRROR_Y]:
        y = dvs[DVS_CUT_Y] - dvs[DVS_ORIGIN_Y] - y
    if dvs[DVS_MIRROR_X]:
        x = dvs[DVS_CUT_X] - dvs[DVS_ORIGIN_X] - x
    if dvs[DVS_DIAGONAL]:
        y, x = x, y
    spikes[0, 0], spikes[0, 1], spikes[0, 2] = c, y, x
    return 1


@inlined
def _emit(n, spikes, t, out_id, out, n_out):
    """Append ``n`` spikes of the layer with id ``out_id`` to the monitor output (events); the
    caller has checked that they fit."""
    for i in range(n):
        e = out[n_out]
        e.t, e.layer, e.channel, e.y, e.x = t, out_id, spikes[i, 0], spikes[i, 1], spikes[i, 2]
        n_out += 1
    return n_out


@inlined
def _push_routes(src, n, spikes, dest, lp, counters, stack, sp):
    """Push the deliveries of ``n`` spikes of ``src`` so that they pop in (spike, slot) order;
    pooled coordinates outside the destination are dropped and counted there. Returns the new
    stack pointer (the stack is sized for the deepest cascade of a feed-forward network)."""
    for i in range(n - 1, -1, -1):
        for slot in range(dest.shape[1] - 1, -1, -1):
            d = dest[src, slot, DEST_LAYER]
            if d < 0:
                continue
            p = dest[src, slot, DEST_POOL]
            y, x = spikes[i, 1] // p, spikes[i, 2] // p
            if y >= lp[d, H_IN] or x >= lp[d, W_IN]:
                counters[d, DROPPED] += 1
                continue
            stack[sp, 0], stack[sp, 1] = d, spikes[i, 0] + dest[src, slot, DEST_SHIFT]
            stack[sp, 2], stack[sp, 3] = y, x
            sp += 1
    return sp


@inlined
def _room(li, lp, out, n_out):
    """The output room that one update pass over layer ``li`` may need but lacks (0 if it fits):
    a pass spikes each neuron at most once."""
    need = lp[li, F_OUT] * lp[li, H_OUT] * lp[li, W_OUT] if lp[li, MONITOR] else 0
    return need if n_out + need > out.shape[0] else 0


@compiled
def _run(i, events, source_of, until_us, lp, thr, weights, bias, dest, dvs, rules, state, counters,
         clock, spikes, bits, order, stack, out, n_out, before_tick):
    """Process the (validated) input ``events`` from index ``i`` on (``source_of`` maps a layer
    id to its source index), appending the output to ``out``
    from ``n_out``; return ``(i, n_out, room)``. ``out`` cannot grow in here: before a step that
    might overflow it, return early with the ``room`` it needs (> 0) and every pending step kept
    in ``clock`` and ``stack``, to be resumed by a call with a larger buffer. Steps: pending
    deliveries depth-first, then a tick in progress (layer by layer), then a due leak tick, then
    the next input event, then the ticks up to ``until_us``. A watched tick in an idle gap
    (another tick is due before the next input; see MAX_UNWATCHED_TICKS) that changes no
    state and fires nothing puts the network at rest: the ticks up to the next input are skipped, as they would change nothing either
    (``before_tick`` holds the leaking layers' states at the start of such a tick)."""
    n_layers = lp.shape[0]
    wrap, reject, leak_fires = rules[0] != 0, rules[1] != 0, rules[2] != 0
    # the clock lives in locals while running: in ``clock`` it would be reloaded after every
    # store to the other arrays, which LLVM must assume could alias it
    sp, t_now, last_t = clock[PENDING], clock[PENDING_T], clock[LAST_T]
    next_tick, period, tick_layer = clock[NEXT_TICK], clock[PERIOD], clock[TICK_LAYER]
    rest, watched, fired = clock[REST] != 0, False, 0  # a tick resumed mid-way is not watched
    backoff = countdown = 0  # ticks left unwatched after a watched one that was not at rest
    room = 0
    while True:
        # find the next update pass: a pending delivery, a layer's leak tick or an input event
        if sp > 0:
            sp -= 1
            li, c, y, x = stack[sp, 0], stack[sp, 1], stack[sp, 2], stack[sp, 3]
        elif tick_layer == n_layers:
            tick_layer = -1
            rest = watched and fired == 0 and not _take_leaking_states(lp, state, before_tick)
            if watched and not rest:
                backoff = countdown = min(2 * backoff + 1, MAX_UNWATCHED_TICKS)
            next_tick += period
            continue
        elif tick_layer >= 0:  # leak ticks: ascending layer, then (f, y, x)
            li = tick_layer
            tick_layer += 1
            if not lp[li, LEAK]:
                continue
            c = -1  # marks a leak pass
        elif period > 0 and next_tick <= (events[i].t if i < events.size else until_us):
            target = events[i].t if i < events.size else until_us
            if rest:  # every tick up to the next input is a no-op: go past them
                next_tick += ((target - next_tick) // period + 1) * period
                continue
            tick_layer, t_now = 0, next_tick
            watched, fired = next_tick + period <= target and countdown == 0, 0
            countdown = max(countdown - 1, 0)
            if watched:
                _take_leaking_states(lp, state, before_tick)
            continue
        elif i < events.size:
            e = events[i]
            t, li, c, y, x = e.t, source_of[e.layer], np.int64(e.channel), np.int64(e.y), np.int64(e.x)
            if li == n_layers:  # the DVS stage passes the event on (or drops it)
                room = 1 if dvs[DVS_MONITOR] and n_out == out.shape[0] else 0
                if room:
                    break
                counters[li, EVENTS_IN] += 1
                n = _preprocess(dvs, c, y, x, spikes)
                counters[li, SPIKES_OUT] += n
                counters[li, DROPPED] += 1 - n
                if dvs[DVS_MONITOR]:
                    n_out = _emit(n, spikes, t, DVS_LAYER_ID, out, n_out)
                sp = _push_routes(li, n, spikes, dest, lp, counters, stack, 0)
                last_t = t_now = t
                i += 1
                rest = False
                continue
            last_t = t_now = t
            i += 1
            rest = False
        else:
            last_t = until_us
            break
        # the update pass of layer li: a delivery of (c, y, x), or a leak tick if c < 0
        room = _room(li, lp, out, n_out)
        if room:  # keep the pass for the call that resumes with a larger buffer
            if c < 0:
                tick_layer = li
            else:
                stack[sp, 0], stack[sp, 1], stack[sp, 2], stack[sp, 3] = li, c, y, x
                sp += 1
            break
        direct = lp[li, MONITOR] != 0 and dest[li, 0, DEST_LAYER] < 0
        if c < 0:
            n = _leak(li, lp, thr, bias, state, wrap, reject, leak_fires, bits, direct, spikes, out, n_out, t_now)
            fired += n
        else:
            counters[li, EVENTS_IN] += 1
            n = _integrate(li, c, y, x, lp, thr, weights, state, wrap, reject, counters, bits, order,
                           direct, spikes, out, n_out, t_now)
        counters[li, SPIKES_OUT] += n
        if direct:
            n_out += n
        elif n:
            if lp[li, MONITOR]:
                n_out = _emit(n, spikes, t_now, lp[li, LAYER_ID], out, n_out)
            if dest[li, 0, DEST_LAYER] >= 0:
                sp = _push_routes(li, n, spikes, dest, lp, counters, stack, sp)
    clock[PENDING], clock[PENDING_T], clock[LAST_T] = sp, t_now, last_t
    clock[NEXT_TICK], clock[TICK_LAYER], clock[REST] = next_tick, tick_layer, rest
    return i, n_out, room


@called
def _take_leaking_states(lp, state, saved):
    """Whether the leak-enabled layers' states differ from ``saved`` (same offsets); ``saved``
    takes them."""
    changed = False
    for li in range(lp.shape[0]):
        if lp[li, LEAK]:
            start = lp[li, S_OFFSET]
            for k in range(start, start + lp[li, F_OUT] * lp[li, H_OUT] * lp[li, W_OUT]):
                if state[k] != saved[k]:
                    changed = True
                    saved[k] = state[k]
    return changed


# ----------------------------------------------------------------------------- Python API


@dataclass
class SimulationResult:
    """``events``: monitored output (:data:`EVENT_DTYPE`) in production order; ``states``:
    int16 ``(f, h, w)`` per layer id; ``counters``: per layer id (DVS under ``DVS_LAYER_ID``)."""

    events: np.ndarray
    states: dict[int, np.ndarray]
    counters: dict[int, dict[str, int]]


class EventSimulator:
    """Runs an :class:`IntegerNetwork` event by event with the chip's integer semantics.

    Neuron states, the leak clock and the counters persist across :meth:`run` calls, so the
    input of consecutive calls must continue in time; :meth:`reset` starts over.
    """

    def __init__(self, network: IntegerNetwork, options: ChipModelOptions | None = None):
        if not isinstance(network, IntegerNetwork):
            raise TypeError(f"network: got {type(network).__name__}; expected an snnlib.IntegerNetwork")
        options = ChipModelOptions() if options is None else options
        if not isinstance(options, ChipModelOptions):
            raise TypeError(f"options: got {type(options).__name__}; expected ChipModelOptions or None")
        network.validate()
        if not network.layers and network.dvs is None:
            raise InvalidNetworkError([Problem("layers", "no layers and no DVS stage; nothing to simulate")])
        _check_acyclic(network)
        self.network, self.options = network, options
        self._ids = sorted(network.layers)
        self._index = {lid: i for i, lid in enumerate(self._ids)}
        self._pack()
        self.reset()

    def _pack(self) -> None:
        net, ids = self.network, self._ids
        lp = np.zeros((len(ids), N_LAYER_PARAMS), dtype=np.int64)
        thr = np.zeros((len(ids), 2), dtype=np.int16)  # (high, low): int16 loads keep the update narrow
        weights, bias, initial = [], [], []
        w_off = s_off = b_off = 0
        for i, lid in enumerate(ids):
            layer = net.layers[lid]
            w = np.asarray(layer.weights).astype(np.int8)
            f, h_out, w_out = layer.output_shape
            lp[i, [C_IN, H_IN, W_IN]] = layer.input_shape
            lp[i, [F_OUT, H_OUT, W_OUT]] = f, h_out, w_out
            lp[i, [KERNEL, STRIDE_Y, STRIDE_X, PAD_Y, PAD_X]] = w.shape[2], *layer.stride, *layer.padding
            thr[i] = layer.threshold_high, layer.threshold_low
            lp[i, RESET_ZERO] = layer.reset == "zero"
            lp[i, [LEAK, MONITOR, LAYER_ID]] = layer.leak_enable and layer.bias is not None, layer.monitor, lid
            lp[i, [W_OFFSET, S_OFFSET, B_OFFSET]] = w_off, s_off, b_off
            # spike-bit table row strides (see _spikes_from_bits): the widest row of targets of one
            # input (never wider than the layer, so a leak pass over the layer is the largest pass)
            window = min(-(-w.shape[2] // layer.stride[1]), w_out)
            lp[i, [WINDOW_SHIFT, MAP_SHIFT]] = _bits_for(window), _bits_for(w_out)
            weights.append(w[..., ::-1].transpose(1, 2, 3, 0).ravel())  # (c, ky, k-1-kx, f)
            bias.append(np.zeros(f, np.int16) if layer.bias is None else np.asarray(layer.bias).astype(np.int16))
            initial.append(np.zeros(f * h_out * w_out, np.int16) if layer.initial_state is None
                           else np.asarray(layer.initial_state).astype(np.int16).transpose(1, 2, 0).ravel())
            w_off, s_off, b_off = w_off + w.size, s_off + f * h_out * w_out, b_off + f
        dest = np.full((len(ids) + 1, 2, 3), -1, dtype=np.int64)
        sources = [net.layers[lid].destinations for lid in ids] + [net.dvs.destinations if net.dvs else []]
        for s, dests in enumerate(sources):
            for slot, d in enumerate(d for d in dests if d.layer in self._index):  # not the readout
                dest[s, slot] = self._index[d.layer], d.pooling, d.feature_shift
        # the readout's source is monitored inside; run() keeps its events only if asked for
        self._readout_source = net.readout_source() if net.readout is not None else None
        if self._readout_source is not None:
            lp[self._index[self._readout_source], MONITOR] = 1
        self._lp, self._thr, self._dest = lp, thr, dest
        self._weights = np.concatenate(weights) if weights else np.zeros(0, np.int8)
        self._bias = np.concatenate(bias) if bias else np.zeros(0, np.int16)
        self._initial = np.concatenate(initial) if initial else np.zeros(0, np.int16)
        self._dvs = _pack_dvs(net)
        self._rules = self.options.as_array()
        largest = int(max([lp[i, F_OUT] * lp[i, H_OUT] * lp[i, W_OUT] for i in range(len(ids))], default=1))
        self._spikes = np.empty((max(largest, 1), 3), dtype=np.int64)
        # spike-bit table of one update pass (see _spikes_from_bits), zero between passes; a leak
        # pass over a whole layer needs the most words
        self._bits = np.zeros(max([lp[i, F_OUT] * -(-(lp[i, H_OUT] << lp[i, MAP_SHIFT]) // 64)
                                   for i in range(len(ids))], default=1), dtype=np.uint64)
        self._order = np.zeros(ORDER_BYTES, dtype=np.uint8)  # scratch of update_window_16
        # pending deliveries: at most 2 per spike of one delivery, per level of a feed-forward cascade
        self._stack = np.empty((2 * len(self._spikes) * (len(ids) + 1) + 1, 4), dtype=np.int64)
        self._out = np.empty(OUTPUT_CAPACITY, dtype=EVENT_DTYPE)  # grown on demand (see _hand_over)
        self._shapes = {lid: net.layers[lid].input_shape for lid in ids}
        if net.dvs is not None:
            self._shapes[DVS_LAYER_ID] = net.dvs.input_shape
        self._source_of = np.full(max(self._shapes) + 1, -1, dtype=np.int64)
        for lid in ids:
            self._source_of[lid] = self._index[lid]
        if net.dvs is not None:
            self._source_of[DVS_LAYER_ID] = len(ids)

    def reset(self) -> None:
        """States back to the initial state, leak clock to 0, counters to 0. Without a
        leak-enabled layer a tick changes nothing, so none is stepped (idle time costs nothing)."""
        self._state = self._initial.copy()
        self._counters = np.zeros((len(self._ids) + 1, len(COUNTER_NAMES)), dtype=np.int64)
        period = (self.network.slow_clock_period_us or 0) if self._lp[:, LEAK].any() else 0
        self._clock = np.array([period, period, np.iinfo(np.int64).min, 0, 0, -1, 0], dtype=np.int64)
        self._before_tick = np.empty_like(self._state)
        self._readout = (None if self._readout_source is None
                         else ReadoutState(self.network.readout, self.network.slow_clock_period_us))

    def run(self, events: np.ndarray, until_us: int | None = None) -> np.ndarray:
        """Process ``events`` (:data:`EVENT_DTYPE`, sorted by t, continuing after the previous
        call) and return the events of monitored layers in production order (an array the
        simulator never touches again). ``until_us``: also apply the leak ticks up to this time
        (µs) after the last event."""
        check_events(events, self._shapes)
        events = np.ascontiguousarray(events)  # one compiled loop for every input (no copy if it is)
        last = int(self._clock[LAST_T])
        if events.size and events["t"][0] < last:
            raise InvalidEventsError(
                f"events[0].t = {int(events['t'][0])} is earlier than the last event of the previous "
                f"run (t = {last}); time continues across run() calls: call reset() to start over",
                "t", int(events["t"][0]), 0,
            )
        latest = int(events["t"][-1]) if events.size else last
        if until_us is None:
            until_us = latest
        elif isinstance(until_us, bool) or not isinstance(until_us, (int, np.integer)) or until_us < latest:
            raise InvalidEventsError(
                f"until_us={until_us!r}: expected an integer time (µs) at or after the last event "
                f"(t = {latest})", "until_us", until_us,
            )
        i = n_out = 0
        while True:
            i, n_out, room = _run(
                i, events, self._source_of, np.int64(until_us), self._lp, self._thr, self._weights,
                self._bias, self._dest, self._dvs, self._rules, self._state, self._counters,
                self._clock, self._spikes, self._bits, self._order, self._stack, self._out, n_out,
                self._before_tick,
            )
            if not room:
                out = self._hand_over(n_out)
                return out if self._readout is None else self._with_readout(out, until_us)
            grown = np.empty(max(2 * len(self._out), n_out + room), dtype=EVENT_DTYPE)
            grown[:n_out] = self._out[:n_out]
            self._out = grown

    def _with_readout(self, out: np.ndarray, until_us: int) -> np.ndarray:
        """``out`` with the readout's events merged in time order (each before the events at
        or after its tick), and the readout source's own events only if it is monitored."""
        source = out["layer"] == self._readout_source
        ticks = self._readout.advance(out[source], until_us)
        if not self.network.layers[self._readout_source].monitor:
            out = out[~source]
        return np.insert(out, np.searchsorted(out["t"], ticks["t"], side="left"), ticks)

    def _hand_over(self, n_out: int) -> np.ndarray:
        """The first ``n_out`` output events. A buffer at least half full is handed over as it
        is (no copy; the next run writes a fresh one), a smaller part is copied out."""
        out = self._out[:n_out]
        if 2 * n_out < len(self._out):
            return out.copy()
        self._out = np.empty(len(self._out), dtype=EVENT_DTYPE)
        return out

    @property
    def last_t(self) -> int:
        """Time (µs) of the last input event processed since the last reset (the next run's
        events may not be earlier); the minimum int64 when there was none."""
        return int(self._clock[LAST_T])

    @property
    def leak_ticks(self) -> tuple[int, int]:
        """``(next tick time, period)`` in µs of the leak clock; period 0: no tick is stepped."""
        return int(self._clock[NEXT_TICK]), int(self._clock[PERIOD])

    @property
    def at_rest(self) -> bool:
        """Whether the leak ticks until the next input event change nothing (the last one in an
        idle gap changed no state and fired nothing), so the next run skips them."""
        return bool(self._clock[REST])

    @property
    def states(self) -> dict[int, np.ndarray]:
        """Copies of the membrane states, int16 ``(f, h, w)`` per layer id."""
        return {lid: self._state_view(lid).transpose(2, 0, 1).copy() for lid in self._ids}

    def set_state(self, layer: int, state: np.ndarray) -> None:
        """Overwrite the membrane state of ``layer`` with an int16-range ``(f, h, w)`` array."""
        if layer not in self._index:
            raise KeyError(f"layer={layer!r}: not a layer of the network (layers: {self._ids})")
        view = self._state_view(layer).transpose(2, 0, 1)
        s = np.asarray(state)
        if s.shape != view.shape:
            raise ValueError(f"state for layer {layer}: shape {s.shape}; expected {view.shape}")
        bad = (s < -32768) | (s > 32767) | (np.mod(s, 1) != 0)
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"state for layer {layer}: state{list(idx)} = {s[idx]} is not an int16 value")
        view[...] = s
        self._clock[REST] = 0  # a tick may change the new state

    def _state_view(self, lid: int) -> np.ndarray:
        row = self._lp[self._index[lid]]
        size = row[F_OUT] * row[H_OUT] * row[W_OUT]
        return self._state[row[S_OFFSET]: row[S_OFFSET] + size].reshape(row[H_OUT], row[W_OUT], row[F_OUT])

    @property
    def counters(self) -> dict[int, dict[str, int]]:
        """Per layer id (the DVS stage under ``DVS_LAYER_ID``): events_in, synaptic_updates,
        spikes_out (events passed on, for the DVS stage) and dropped."""
        ids = self._ids + ([DVS_LAYER_ID] if self.network.dvs is not None else [])
        return {lid: dict(zip(COUNTER_NAMES, map(int, self._counters[i]))) for i, lid in enumerate(ids)}


def simulate(network: IntegerNetwork, events: np.ndarray, options: ChipModelOptions | None = None,
             until_us: int | None = None) -> SimulationResult:
    """Run ``events`` through a fresh :class:`EventSimulator` and return everything it reports."""
    sim = EventSimulator(network, options)
    out = sim.run(events, until_us)
    return SimulationResult(out, sim.states, sim.counters)


def compile_ahead() -> None:
    """Compile the event loop now (or load it from numba's cache: well under a second), so
    that a device's first run does not spend its deadline compiling, which takes seconds on
    a fresh install and tens of seconds on a loaded machine."""
    neuron = CoreLayer(np.ones((1, 1, 1, 1), np.int8), (1, 1, 1), 1, -1, monitor=True)
    simulate(IntegerNetwork({0: neuron}), np.zeros(1, dtype=EVENT_DTYPE))


def _bits_for(n: int) -> int:
    """The number of bits that index ``n`` positions (0 for 1)."""
    return max(int(n) - 1, 0).bit_length()


def _pack_dvs(net: IntegerNetwork) -> np.ndarray:
    dvs = np.zeros(N_DVS_PARAMS, dtype=np.int64)
    if net.dvs is None:
        return dvs
    d = net.dvs
    cut = d.cut if d.cut is not None else tuple(n - 1 for n in d.pooled_shape)
    dvs[[DVS_MERGE, DVS_ON, DVS_OFF]] = d.merge_polarities, d.on_channel, d.off_channel
    dvs[[DVS_POOL_Y, DVS_POOL_X, DVS_ORIGIN_Y, DVS_ORIGIN_X]] = *d.pooling, *d.origin
    dvs[[DVS_CUT_Y, DVS_CUT_X]] = cut
    dvs[[DVS_MIRROR_X, DVS_MIRROR_Y, DVS_DIAGONAL, DVS_MONITOR]] = d.mirror_x, d.mirror_y, d.mirror_diagonal, d.monitor
    return dvs


def _check_acyclic(network: IntegerNetwork) -> None:
    """Depth-first delivery needs a feed-forward network: raise naming a cycle if there is one."""
    state: dict[int, int] = {}  # 1 = on the current path, 2 = done

    def visit(lid: int, path: list[int]) -> None:
        state[lid] = 1
        for d in network.layers[lid].destinations:
            if d.layer not in network.layers:  # the readout layer, a sink
                continue
            if state.get(d.layer) == 1:
                full = path + [lid]
                cycle = full[full.index(d.layer):] + [d.layer]
                raise InvalidNetworkError([Problem(
                    f"layers[{lid}].destinations", "layers " + " -> ".join(map(str, cycle)) +
                    " form a cycle; the event-exact engine supports feed-forward networks "
                    "(branches and merges, no recurrence)")])
            if d.layer not in state:
                visit(d.layer, path + [lid])
        state[lid] = 2

    for lid in sorted(network.layers):
        if lid not in state:
            visit(lid, [])
