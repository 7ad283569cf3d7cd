"""Operations of the event engine written directly in LLVM IR, as numba intrinsics.

``update_16`` is rule 1 of ``docs/chip-model.md`` for 16 neighbouring neurons at once. Written
as a numba loop, LLVM vectorizes it only behind a run-time check that the arrays do not overlap
and with 64-bit lanes; as one explicit ``<16 x i16>`` operation it is ~2.5x faster. It must equal
the scalar rule (``snnlib.engine._update``) bit for bit, which the tests check on random input.
``nonzero_16`` and ``lowest_set_bit`` find the spikes it recorded.
"""

from __future__ import annotations

import llvmlite.ir as ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

LANES = 16
_I1, _I16, _I32, _I64 = ir.IntType(1), ir.IntType(16), ir.IntType(32), ir.IntType(64)
_V16, _V64 = ir.VectorType(_I16, LANES), ir.VectorType(_I64, LANES)


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
        (state_a, s_i, add_a, a_i, stride_i, count_i, hi_v, lo_v, rz, wrap_f, reject_f, test_f,
         bits_a, m_i, bit_v) = args
        arg = signature.args
        add_type = ir.VectorType(ir.IntType(arg[2].dtype.bitwidth), LANES)

        def flag(value, value_type):
            return context.cast(builder, value, value_type, types.boolean)

        def u64(value, value_type):
            return context.cast(builder, value, value_type, types.uint64)

        def splat16(value, value_type):
            return _splat(builder, builder.trunc(context.cast(builder, value, value_type, types.int64), _I16))

        hi16, lo16 = splat16(hi_v, arg[6]), splat16(lo_v, arg[7])
        wrap_b, reject_b, test_b, zero_b = flag(wrap_f, arg[9]), flag(reject_f, arg[10]), flag(test_f, arg[11]), flag(rz, arg[8])
        saturating_add = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_V16, [_V16, _V16]), "llvm.sadd.sat.v16i16")
        s0, a0, step, bit0 = u64(s_i, arg[1]), u64(a_i, arg[3]), u64(stride_i, arg[4]), u64(bit_v, arg[14])
        marks = cgutils.alloca_once_value(builder, ir.Constant(_V64, None))
        with cgutils.for_range(builder, u64(count_i, arg[5]), intp=_I64) as loop:
            offset = builder.mul(loop.index, step)
            p_state = _vector_pointer(context, builder, arg[0], state_a, builder.add(s0, offset), _V16)
            p_add = _vector_pointer(context, builder, arg[2], add_a, builder.add(a0, offset), add_type)
            old = builder.load(p_state, align=2)
            w = builder.load(p_add, align=1)
            w = builder.sext(w, _V16) if add_type.element.width < 16 else w
            v = builder.select(wrap_b, builder.add(old, w), builder.call(saturating_add, [old, w]))
            v = builder.select(builder.icmp_signed("<", v, lo16), builder.select(reject_b, old, lo16), v)
            fired = builder.select(test_b, builder.icmp_signed(">=", v, hi16),
                                   ir.Constant(ir.VectorType(_I1, LANES), None))
            reset = builder.select(zero_b, ir.Constant(_V16, None), builder.sub(v, hi16))
            builder.store(builder.select(fired, reset, v), p_state, align=2)
            shift = _splat(builder, builder.add(bit0, loop.index))
            builder.store(builder.or_(builder.load(marks), builder.shl(builder.zext(fired, _V64), shift)), marks)
        p_bits = _vector_pointer(context, builder, arg[12], bits_a, m_i, _V64)
        builder.store(builder.or_(builder.load(p_bits, align=8), builder.load(marks)), p_bits, align=8)
        return context.get_dummy_value()

    sig = types.void(state, s, add, a, stride, count, hi, lo, reset_zero, wrap, reject, test, bits, m, bit)
    return sig, codegen


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
        words = builder.load(_vector_pointer(context, builder, signature.args[0], args[0], args[1], _V64), align=8)
        nonzero = builder.icmp_unsigned("!=", words, ir.Constant(_V64, None))
        return builder.zext(builder.bitcast(nonzero, _I16), _I64)

    return types.uint64(bits, m), codegen
