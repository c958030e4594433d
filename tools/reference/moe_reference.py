#!/usr/bin/env python3
"""NumPy reference semantics of `moe.layer` and its decomposed parts.

Each function implements one op of the `moe` dialect exactly as its
description in include/moe/Dialect/MoE/IR/MoEOps.td states it:

    router      moe.router       steps 1-3 of moe.layer: scores, selection, weights
    dispatch    moe.dispatch     token permute, grouped by expert (dropless or capacity)
    expert_ffn  moe.expert_ffn   every expert's FFN over its group of rows
    combine     moe.combine      weighted unpermute back to tokens
    ffn         moe.ffn          one dense FFN (shared experts)
    layer       moe.layer        the whole layer, computed per (token, slot) pair

`decomposed_layer` chains the parts the way `moe-decompose-layers` does;
`self_check` (run this file) asserts it equals `layer` over many random
configurations.

Conventions:
  * weights are [in, out] (`x @ W`): router [hidden, experts], gate and up
    [experts, hidden, inter], down [experts, inter, hidden]; shared expert
    weights drop the leading expert dimension; shared_expert_gate is
    [hidden, 1];
  * top-k ties go to the lower expert index;
  * `f64=True` computes (and returns) everything in float64; otherwise the
    input's float type is used throughout.

Choices where MoEOps.td is not explicit (kept in one place, here):
  * group rating uses the selection scores (score + correction_bias), as
    DeepSeek-V3 and onnxruntime's MoEGroupRouter do; groups of one expert are
    rated by that expert alone;
  * `gelu` and `geglu` use the exact erf GELU, `gelu_tanh` the tanh
    approximation;
  * with a capacity, routing weights are computed before dropping: a dropped
    pair contributes 0 and the kept weights are not renormalised;
  * expert_ffn leaves capacity padding rows (source -1) at 0.
"""

import math

import numpy as np

ACTIVATIONS = ("relu", "gelu", "gelu_tanh", "silu", "swiglu", "geglu", "identity")
GATED = ("swiglu", "geglu")

_erf = np.vectorize(math.erf, otypes=[np.float64])


def _sigmoid(x):
    # exp(-log(1 + exp(-x))) never overflows, unlike 1 / (1 + exp(-x)).
    return np.exp(-np.logaddexp(0, -x))


def _softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _gelu(x):
    return (0.5 * x * (1 + _erf(x / math.sqrt(2)))).astype(x.dtype)


def _gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def _silu(x):
    return x * _sigmoid(x)


# The non-linearity of each activation; gated ones apply it to the gate
# projection only.
_ACT = {
    "relu": lambda x: np.maximum(x, 0),
    "gelu": _gelu,
    "gelu_tanh": _gelu_tanh,
    "silu": _silu,
    "swiglu": _silu,
    "geglu": _gelu,
    "identity": lambda x: x,
}


def _dtype(x, f64):
    return np.float64 if f64 else np.asarray(x).dtype


def _cast(a, dtype):
    return None if a is None else np.asarray(a, dtype=dtype)


def capacity_for(capacity_factor, tokens, top_k, experts):
    """Per-expert capacity: ceil(capacity_factor * tokens * top_k / experts)."""
    return int(math.ceil(capacity_factor * tokens * top_k / experts))


def _ffn_rows(x, activation, up, down, gate=None, gate_bias=None, up_bias=None,
              down_bias=None):
    """Step 4 of moe.layer for one expert (2-D weights) on rows x."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}")
    if (activation in GATED) != (gate is not None):
        raise ValueError(f"activation {activation} and gate weight disagree")
    u = x @ up
    if up_bias is not None:
        u = u + up_bias
    if gate is not None:
        g = x @ gate
        if gate_bias is not None:
            g = g + gate_bias
        h = _ACT[activation](g) * u
    else:
        h = _ACT[activation](u)
    y = h @ down
    if down_bias is not None:
        y = y + down_bias
    return y


def _ffn_weights(dt, up, down, gate, gate_bias, up_bias, down_bias):
    """The FFN operands cast to dt, in _ffn_rows' order."""
    return [_cast(a, dt) for a in (up, down, gate, gate_bias, up_bias, down_bias)]


def _of_expert(weights, e):
    """Expert e's slice of each grouped FFN operand."""
    return [None if a is None else a[e] for a in weights]


def router(input, router_weight, *, top_k, score, normalize=False,
           router_bias=None, correction_bias=None, num_groups=1,
           top_k_groups=1, routed_scaling_factor=1.0, f64=False):
    """moe.router: per token, the routing weights [T, k] and the selected
    experts [T, k] (int64), best first."""
    dt = _dtype(input, f64)
    x, wr = _cast(input, dt), _cast(router_weight, dt)
    tokens, experts = x.shape[0], wr.shape[1]

    logits = x @ wr
    if router_bias is not None:
        logits = logits + _cast(router_bias, dt)
    if score == "softmax":
        scores = _softmax(logits)
    elif score == "sigmoid":
        scores = _sigmoid(logits)
    else:
        raise ValueError(f"unknown score function {score!r}")

    # correction_bias steers selection only; weights use the plain scores.
    choice = scores if correction_bias is None else scores + _cast(correction_bias, dt)

    if num_groups > 1:
        group_size = experts // num_groups
        grouped = choice.reshape(tokens, num_groups, group_size)
        best = -np.sort(-grouped, axis=-1)[..., : min(2, group_size)]
        rating = best.sum(-1)
        kept_groups = np.argsort(-rating, axis=-1, kind="stable")[:, :top_k_groups]
        allowed = np.zeros((tokens, num_groups), bool)
        np.put_along_axis(allowed, kept_groups, True, axis=-1)
        choice = np.where(np.repeat(allowed, group_size, axis=-1), choice, -np.inf)

    # A stable sort of the negated scores puts equal scores in index order.
    selected = np.argsort(-choice, axis=-1, kind="stable")[:, :top_k].astype(np.int64)
    weights = np.take_along_axis(scores, selected, axis=-1)
    if normalize:
        weights = weights / weights.sum(-1, keepdims=True)
    weights = weights * routed_scaling_factor
    return weights, selected


def dispatch(input, experts, *, num_experts, capacity=None):
    """moe.dispatch: (rows, counts, sources).

    Rows are the (token, slot) pairs grouped by expert in ascending order, by
    token within an expert; sources[r] = token * top_k + slot. With a
    capacity C, expert e owns rows [e*C, (e+1)*C), pairs past C are dropped
    (earliest tokens kept) and unused rows are 0 with source -1.
    """
    x = np.asarray(input)
    tokens, top_k = experts.shape
    flat = experts.reshape(-1)  # index = token * top_k + slot
    groups = [np.nonzero(flat == e)[0] for e in range(num_experts)]
    if capacity is None:
        sources = np.concatenate(groups).astype(np.int64)
        counts = np.array([len(g) for g in groups], np.int64)
        return x[sources // top_k], counts, sources
    rows = np.zeros((num_experts * capacity, x.shape[1]), x.dtype)
    sources = np.full(num_experts * capacity, -1, np.int64)
    counts = np.zeros(num_experts, np.int64)
    for e, group in enumerate(groups):
        kept = group[:capacity]
        start = e * capacity
        sources[start : start + len(kept)] = kept
        rows[start : start + len(kept)] = x[kept // top_k]
        counts[e] = len(kept)
    return rows, counts, sources


def expert_ffn(rows, counts, up_weight, down_weight, *, activation,
               gate_weight=None, gate_bias=None, up_bias=None, down_bias=None,
               capacity=None, f64=False):
    """moe.expert_ffn: expert e's FFN over its group of rows; groups are
    contiguous (dropless) or `capacity` rows apart."""
    dt = _dtype(rows, f64)
    r = _cast(rows, dt)
    w = _ffn_weights(dt, up_weight, down_weight, gate_weight, gate_bias, up_bias, down_bias)
    out = np.zeros((r.shape[0], w[1].shape[-1]), dt)
    start = 0
    for e, count in enumerate(counts):
        if capacity is not None:
            start = e * capacity
        out[start : start + count] = _ffn_rows(r[start : start + count], activation, *_of_expert(w, e))
        start += count
    return out


def combine(expert_out, sources, weights):
    """moe.combine: result[t] = sum_j weights[t, j] * expert_out[r] over the
    rows r with sources[r] = t * top_k + j; rows with source -1 are ignored."""
    tokens, top_k = weights.shape
    out = np.zeros((tokens, expert_out.shape[1]), np.result_type(expert_out, weights))
    for r, src in enumerate(sources):
        if src >= 0:
            out[src // top_k] += weights[src // top_k, src % top_k] * expert_out[r]
    return out


def ffn(input, up_weight, down_weight, *, activation, gate_weight=None,
        gate_bias=None, up_bias=None, down_bias=None, f64=False):
    """moe.ffn: one dense FFN over every row of input ([..., hidden])."""
    dt = _dtype(input, f64)
    x = _cast(input, dt)
    w = _ffn_weights(dt, up_weight, down_weight, gate_weight, gate_bias, up_bias, down_bias)
    y = _ffn_rows(x.reshape(-1, x.shape[-1]), activation, *w)
    return y.reshape(*x.shape[:-1], y.shape[-1])


def _shared(x, activation, shared_gate_weight, shared_up_weight,
            shared_down_weight, shared_expert_gate_weight):
    """Step 6 of moe.layer: the shared expert, optionally sigmoid-gated
    (x is already in the computation type)."""
    s = ffn(x, shared_up_weight, shared_down_weight, activation=activation,
            gate_weight=shared_gate_weight)
    if shared_expert_gate_weight is not None:
        s = s * _sigmoid(x @ _cast(shared_expert_gate_weight, x.dtype))
    return s


def layer(input, router_weight, up_weight, down_weight, *, top_k, score,
          activation, normalize=False, router_bias=None, correction_bias=None,
          gate_weight=None, gate_bias=None, up_bias=None, down_bias=None,
          shared_gate_weight=None, shared_up_weight=None,
          shared_down_weight=None, shared_expert_gate_weight=None,
          num_groups=1, top_k_groups=1, routed_scaling_factor=1.0,
          capacity_factor=None, f64=False):
    """moe.layer on input [tokens, hidden]; returns [tokens, hidden]."""
    dt = _dtype(input, f64)
    x = _cast(input, dt)
    tokens = x.shape[0]
    experts = router_weight.shape[1]
    weights, selected = router(
        x, router_weight, top_k=top_k, score=score, normalize=normalize,
        router_bias=router_bias, correction_bias=correction_bias,
        num_groups=num_groups, top_k_groups=top_k_groups,
        routed_scaling_factor=routed_scaling_factor, f64=f64)
    capacity = (None if capacity_factor is None
                else capacity_for(capacity_factor, tokens, top_k, experts))

    w = _ffn_weights(dt, up_weight, down_weight, gate_weight, gate_bias, up_bias, down_bias)
    y = np.zeros_like(x)
    for e in range(experts):
        # The pairs routed to e in (token, slot) order; a capacity keeps the
        # earliest.
        tok, slot = np.nonzero(selected == e)
        if capacity is not None:
            tok, slot = tok[:capacity], slot[:capacity]
        if len(tok) == 0:
            continue
        out = _ffn_rows(x[tok], activation, *_of_expert(w, e))
        np.add.at(y, tok, weights[tok, slot][:, None] * out)

    if shared_up_weight is not None:
        y = y + _shared(x, activation, shared_gate_weight, shared_up_weight,
                        shared_down_weight, shared_expert_gate_weight)
    return y


def decomposed_layer(input, router_weight, up_weight, down_weight, *, top_k,
                     score, activation, normalize=False, router_bias=None,
                     correction_bias=None, gate_weight=None, gate_bias=None,
                     up_bias=None, down_bias=None, shared_gate_weight=None,
                     shared_up_weight=None, shared_down_weight=None,
                     shared_expert_gate_weight=None, num_groups=1,
                     top_k_groups=1, routed_scaling_factor=1.0,
                     capacity_factor=None, f64=False):
    """moe.layer as moe-decompose-layers rewrites it:
    combine(expert_ffn(dispatch(router))) + ffn for the shared expert."""
    dt = _dtype(input, f64)
    x = _cast(input, dt)
    experts = router_weight.shape[1]
    capacity = (None if capacity_factor is None
                else capacity_for(capacity_factor, x.shape[0], top_k, experts))
    weights, selected = router(
        x, router_weight, top_k=top_k, score=score, normalize=normalize,
        router_bias=router_bias, correction_bias=correction_bias,
        num_groups=num_groups, top_k_groups=top_k_groups,
        routed_scaling_factor=routed_scaling_factor, f64=f64)
    rows, counts, sources = dispatch(x, selected, num_experts=experts, capacity=capacity)
    out = expert_ffn(rows, counts, up_weight, down_weight, activation=activation,
                     gate_weight=gate_weight, gate_bias=gate_bias, up_bias=up_bias,
                     down_bias=down_bias, capacity=capacity, f64=f64)
    y = combine(out, sources, weights)
    if shared_up_weight is not None:
        y = y + _shared(x, activation, shared_gate_weight, shared_up_weight,
                        shared_down_weight, shared_expert_gate_weight)
    return y


def random_layer_args(rng, *, tokens, hidden, inter, experts, activation,
                      biases=False, shared_inter=None, shared_gated=False,
                      dtype=np.float32):
    """Random operands for `layer` with the given shapes (weights scaled so
    activations stay O(1))."""
    def w(*shape, scale):
        return (rng.standard_normal(shape) * scale).astype(dtype)

    gated = activation in GATED
    args = {
        "input": w(tokens, hidden, scale=1.0),
        "router_weight": w(hidden, experts, scale=hidden**-0.5),
        "up_weight": w(experts, hidden, inter, scale=hidden**-0.5),
        "down_weight": w(experts, inter, hidden, scale=inter**-0.5),
    }
    if gated:
        args["gate_weight"] = w(experts, hidden, inter, scale=hidden**-0.5)
    if biases:
        args["router_bias"] = w(experts, scale=0.5)
        args["up_bias"] = w(experts, inter, scale=0.1)
        args["down_bias"] = w(experts, hidden, scale=0.1)
        if gated:
            args["gate_bias"] = w(experts, inter, scale=0.1)
    if shared_inter:
        args["shared_up_weight"] = w(hidden, shared_inter, scale=hidden**-0.5)
        args["shared_down_weight"] = w(shared_inter, hidden, scale=shared_inter**-0.5)
        if gated:
            args["shared_gate_weight"] = w(hidden, shared_inter, scale=hidden**-0.5)
        if shared_gated:
            args["shared_expert_gate_weight"] = w(hidden, 1, scale=hidden**-0.5)
    return args


def _check_hand_cases():
    """Small cases whose answer is known without the code under test."""
    # Ties: equal scores select the lower expert index first.
    x = np.ones((1, 2), np.float32)
    wr = np.zeros((2, 4), np.float32)
    _, sel = router(x, wr, top_k=2, score="softmax")
    assert sel.tolist() == [[0, 1]], sel

    # Capacity 1 per expert: token 1's pair to expert 0 is dropped.
    experts = np.array([[0], [0], [1]])
    rows, counts, sources = dispatch(np.arange(6, dtype=np.float32).reshape(3, 2), experts,
                                     num_experts=2, capacity=1)
    assert counts.tolist() == [1, 1] and sources.tolist() == [0, 2], (counts, sources)
    assert rows.tolist() == [[0, 1], [4, 5]], rows
    assert capacity_for(1.25, 16, 2, 8) == 5

    # Group-limited selection: groups {0,1} and {2,3}; the second group's two
    # best sum higher even though expert 0 has the single best score.
    probs = np.array([[0.40, 0.05, 0.30, 0.25]])
    _, sel = router(np.ones((1, 1)), np.log(probs), top_k=2, score="softmax",
                    num_groups=2, top_k_groups=1)
    assert sel.tolist() == [[2, 3]], sel


def self_check(trials=200, seed=0):
    """layer == decomposed_layer over random configurations; returns the
    number of configurations checked."""
    _check_hand_cases()
    rng = np.random.default_rng(seed)
    for trial in range(trials):
        activation = ACTIVATIONS[trial % len(ACTIVATIONS)]
        experts = int(rng.choice([2, 4, 6, 8]))
        num_groups = int(rng.choice([g for g in (1, 2, experts // 2) if g >= 1 and experts % g == 0]))
        top_k_groups = int(rng.integers(1, num_groups + 1))
        top_k = int(rng.integers(1, top_k_groups * (experts // num_groups) + 1))
        tokens = int(rng.integers(1, 13))
        args = random_layer_args(
            rng, tokens=tokens, hidden=int(rng.integers(2, 9)), inter=int(rng.integers(2, 9)),
            experts=experts, activation=activation, biases=bool(rng.integers(2)),
            shared_inter=int(rng.choice([0, 3, 5])), shared_gated=bool(rng.integers(2)))
        if rng.integers(2):
            args["correction_bias"] = (rng.standard_normal(experts) * 0.1).astype(np.float32)
        attrs = dict(
            top_k=top_k, score=str(rng.choice(["softmax", "sigmoid"])),
            activation=activation, normalize=bool(rng.integers(2)),
            num_groups=num_groups, top_k_groups=top_k_groups,
            routed_scaling_factor=float(rng.choice([1.0, 2.5])),
            capacity_factor=[None, 0.5, 1.0, 1.5][trial % 4],
            f64=bool(rng.integers(2)))
        ref = layer(**args, **attrs)
        dec = decomposed_layer(**args, **attrs)
        tol = 1e-12 if attrs["f64"] else 1e-5
        if not np.allclose(ref, dec, rtol=tol, atol=tol):
            raise AssertionError(f"trial {trial}: layer != decomposed_layer for {attrs}: "
                                 f"max |diff| {np.max(np.abs(ref - dec))}")
    return trials


if __name__ == "__main__":
    n = self_check()
    print(f"moe_reference self-check: layer == combine(expert_ffn(dispatch(router))) "
          f"on {n} random configurations")
