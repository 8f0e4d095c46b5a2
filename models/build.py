"""Builds models/autotune.onnx (44.1 kHz) and models/autotune-48k.onnx from reference.py.

Every step below mirrors a step of `reference.Reference.process`; test_model.py checks that the
two agree over a long streamed signal. The output is deterministic: same bytes on every run.

    python3 models/build.py            # writes both models next to this file
"""

import argparse
import pathlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import reference as R

OPSET = 17
VERSION = "1.1.0"
HERE = pathlib.Path(__file__).resolve().parent
MODELS = {"autotune.onnx": 44100, "autotune-48k.onnx": 48000}


class Graph:
    """A small ONNX graph writer: each method adds one node and returns its output's name."""

    def __init__(self):
        self.nodes, self.inits, self.count = [], [], 0

    def name(self, hint):
        self.count += 1
        return f"{hint}_{self.count}"

    def const(self, value, dtype=np.float32):
        name = self.name("c")
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def ints(self, *values):
        return self.const(list(values), np.int64)

    def op(self, op_type, *inputs, hint=None, **attrs):
        out = self.name(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def ops(self, op_type, inputs, count, **attrs):
        outs = [self.name(op_type.lower()) for _ in range(count)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, **attrs))
        return outs

    def __getattr__(self, op_type):
        return lambda *inputs, **attrs: self.op(op_type, *inputs, **attrs)

    def slice(self, x, start, end, axis=1):
        return self.Slice(x, self.ints(start), self.ints(end), self.ints(axis))

    def pick(self, x, index):
        """x[:, index] for a [1, k] tensor, keeping the [1, 1] shape."""
        return self.slice(x, index, index + 1)

    def f(self, value):
        return self.const(np.float32(value))

    def where(self, cond, a, b, hint=None):
        return self.op("Where", cond, a, b, hint=hint)

    def clip(self, x, low, high):
        return self.Clip(x, self.f(low), self.f(high))


def build(sample_rate):
    c = R.Constants(sample_rate)
    g = Graph()
    N, H, K = R.BLOCK, R.HISTORY, c.tau_max
    one, zero, half = g.f(1.0), g.f(0.0), g.f(0.5)
    n = g.const(np.arange(N, dtype=np.float32).reshape(1, N))
    n1 = g.const(np.arange(1, N + 1, dtype=np.float32).reshape(1, N))

    def col(name):  # a [1, 1] state entry
        return g.pick("state", name)

    # Controls, clipped to what the reference accepts.
    strength = g.clip("correction_strength", 0.0, 1.0)
    tuning = g.clip("tuning_hz", 300.0, 600.0)
    retune = g.clip("retune_ms", 0.0, 5000.0)
    transpose = g.clip("transpose", -24.0, 24.0)
    mask = "scale_mask"

    # 1. buf = [history | block]
    buf = g.Concat("history", "audio_buffer", axis=1, hint="buf")

    # 2. YIN: one grouped Conv gives the cross term and the lagged energy for lags tau_max..0.
    seg = g.slice(buf, H - K, H + N)
    seg2 = g.Mul(seg, seg)
    conv_in = g.Unsqueeze(g.Concat(seg, seg2, axis=0), g.ints(0))           # [1, 2, K+N]
    block = "audio_buffer"
    kernels = g.Unsqueeze(g.Concat(block, g.const(np.ones((1, N), np.float32)), axis=0),
                          g.ints(1))                                         # [2, 1, N]
    conv = g.Conv(conv_in, kernels, group=2)                                 # [1, 2, K+1]
    rev = g.Slice(conv, g.ints(K), g.ints(-K - 2), g.ints(2), g.ints(-1))    # lags 0..K
    cross = g.Squeeze(g.slice(rev, 0, 1, axis=1), g.ints(1))                 # [1, K+1]
    energy = g.Squeeze(g.slice(rev, 1, 2, axis=1), g.ints(1))
    e0 = g.ReduceSum(g.Mul(block, block), g.ints(1), keepdims=1)             # [1, 1]
    diff = g.Max(g.Sub(g.Add(e0, energy), g.Mul(g.f(2.0), cross)), zero)
    diff = g.slice(diff, 1, K + 1)                                           # lags 1..K
    taus = g.const(np.arange(1, K + 1, dtype=np.float32).reshape(1, K))
    cmnd = g.Div(g.Mul(diff, taus), g.Max(g.CumSum(diff, g.const(1, np.int64)), g.f(1e-12)))
    count = K - c.tau_min
    left = g.slice(cmnd, c.tau_min - 2, K - 2)
    mid = g.slice(cmnd, c.tau_min - 1, K - 1)
    right = g.slice(cmnd, c.tau_min, K)
    dip = g.And(g.And(g.Less(mid, left), g.LessOrEqual(mid, right)), g.Less(mid, g.f(R.YIN_THRESHOLD)))
    rank = g.const((count - np.arange(count, dtype=np.float32)).reshape(1, count))
    score = g.where(dip, rank, zero)
    first = g.ArgMax(score, axis=1, keepdims=1)
    has_dip = g.Greater(g.ReduceMax(score, axes=[1], keepdims=1), zero)
    i = g.where(has_dip, first, g.ArgMin(mid, axis=1, keepdims=1))           # [1, 1] int64
    a, b, r = (g.GatherElements(x, i, axis=1) for x in (left, mid, right))
    den = g.Add(g.Sub(a, g.Mul(g.f(2.0), b)), r)
    shift = g.clip(g.Div(g.Mul(half, g.Sub(a, r)), g.Max(den, g.f(1e-9))), -1.0, 1.0)
    shift = g.where(g.Greater(den, g.f(1e-9)), shift, zero)
    est = g.Add(g.Add(g.Cast(i, to=TensorProto.FLOAT), g.f(c.tau_min)), shift, hint="est")

    # voicing from aperiodicity and level
    periodic = g.clip(g.Add(g.Div(g.Sub(g.f(R.VOICING_AP), b), g.f(R.VOICING_RAMP)), half), 0.0, 1.0)
    level_db = g.Mul(g.f(10.0 / np.log(10.0)), g.Log(g.Add(g.Div(e0, g.f(N)), g.f(1e-12))))
    loud = g.clip(g.Div(g.Sub(level_db, g.f(R.GATE_DB)), g.f(R.GATE_RANGE_DB)), 0.0, 1.0)
    v_blk = g.Mul(periodic, loud, hint="voicing")
    voiced = g.GreaterOrEqual(v_blk, half)

    # 3. period track: read-rate period and continuous head spacing (see the reference)
    prev_est = col(R.S_EST)
    log_ratio = g.Abs(g.Log(g.Div(est, g.Max(prev_est, g.f(1e-6)))))
    agree = g.And(g.And(voiced, g.Greater(prev_est, zero)),
                  g.Less(log_ratio, g.f(R.AGREE_CENTS / np.float32(1200.0) * R.LOG2)))
    head_pos = g.Div(g.Sub(g.Add(n, g.f(0.5 + N / 2 - R.DMIN)), g.Mul(half, est)), g.f(N))
    spacing_prev = g.where(g.Greater(col(R.S_SPACING), zero), col(R.S_SPACING), g.f(c.default_period))
    trend = g.Add(prev_est, g.Mul(g.Sub(est, prev_est), head_pos))
    step = g.Expand(g.where(voiced, est, spacing_prev), g.ints(1, N))
    rate_period = g.where(agree, trend, step, hint="rate_period")
    ramp = g.const((np.arange(1, N + 1, dtype=np.float32) / np.float32(N)).reshape(1, N))
    period = g.Add(spacing_prev, g.Mul(g.Sub(g.slice(rate_period, N - 1, N), spacing_prev), ramp),
                   hint="period")

    # target note
    ln2_12 = g.f(12.0 / np.log(2.0))

    def midi(freq):
        return g.Add(g.f(69.0), g.Mul(ln2_12, g.Log(g.Div(freq, tuning))))

    m_in = midi(g.Div(g.f(c.sr), est))
    manual = g.Greater("target_pitch", zero)
    any_allowed = g.Greater(g.ReduceSum(mask, g.ints(1), keepdims=1), half)
    classes = g.const(np.arange(12, dtype=np.float32).reshape(1, 12))
    twelve = g.f(12.0)
    candidates = g.Add(classes, g.Mul(twelve, g.Round(g.Div(g.Sub(m_in, classes), twelve))))
    dist = g.Add(g.Abs(g.Sub(m_in, candidates)), g.Mul(g.Sub(one, mask), g.f(1000.0)))
    best = g.ArgMin(dist, axis=1, keepdims=1)
    best_note, best_dist = g.GatherElements(candidates, best, axis=1), g.GatherElements(dist, best, axis=1)
    current = col(R.S_NOTE)
    current_class = g.Cast(g.Sub(current, g.Mul(twelve, g.Floor(g.Div(current, twelve)))),
                           to=TensorProto.INT64)
    current_allowed = g.Greater(g.GatherElements(mask, current_class, axis=1), half)
    keep = g.And(g.And(g.Greater(current, zero), current_allowed),
                 g.Less(g.Abs(g.Sub(m_in, current)), g.Add(best_dist, g.f(R.HYSTERESIS_ST))))
    auto_note = g.where(keep, current, best_note)
    update_note = g.And(g.And(voiced, g.Not(manual)), any_allowed)
    note = g.where(update_note, auto_note, current, hint="note")
    m_manual = midi(g.clip("target_pitch", 20.0, 5000.0))
    m_voiced = g.where(any_allowed, note, m_in)
    m_target = g.where(manual, g.Add(m_manual, transpose), g.where(voiced, g.Add(m_voiced, transpose), col(R.S_TARGET)))

    # retune glide
    v_prev = col(R.S_VOICING)
    start = col(R.S_TARGET)
    onset = g.And(voiced, g.Or(g.Less(v_prev, half), g.LessOrEqual(start, zero)))
    start = g.where(onset, m_in, start)
    start = g.where(g.LessOrEqual(start, zero), m_target, start)
    glide_tau = g.Max(g.Mul(retune, g.f(c.sr / np.float32(3000.0))), g.f(1e-3))
    glide = g.Exp(g.Div(g.Neg(n1), glide_tau))
    m_smooth = g.Add(m_target, g.Mul(g.Sub(start, m_target), glide), hint="m_smooth")

    # 4. read rate
    v = g.Add(v_prev, g.Mul(g.Sub(v_blk, v_prev), ramp))
    target_freq = g.Mul(tuning, g.Exp(g.Mul(g.Sub(m_smooth, g.f(69.0)), g.f(R.LOG2 / np.float32(12.0)))))
    target_period = g.Div(g.f(c.sr), target_freq)
    log_limit = float(np.float32(np.log(R.RHO_LIMIT)))
    exponent = g.clip(g.Mul(g.Mul(strength, v), g.Log(g.Div(rate_period, target_period))), -log_limit, log_limit)

    # 5. two-head resampler, head delay in float64 (see the reference)
    d0 = col(R.S_DELAY)
    p0 = g.slice(period, 0, 1)
    phi0 = g.clip(g.Div(g.Sub(d0, g.f(R.DMIN)), p0), 0.0, 1.0)
    up = g.GreaterOrEqual(phi0, half)
    edge_dist = g.where(up, g.Mul(g.Sub(one, phi0), p0), g.Mul(phi0, p0))
    drift = g.Min(g.Mul(g.Mul(g.f(R.DRIFT_RATE), g.Sub(one, v_blk)), n1), edge_dist)
    drift = g.where(up, drift, g.Neg(drift))

    def double(x):
        return g.Cast(x, to=TensorProto.DOUBLE)

    def d(value):
        return g.const(np.float64(value), np.float64)

    rho = g.Exp(double(exponent), hint="rho")
    delay = g.Add(g.Add(double(d0), g.CumSum(g.Sub(d(1.0), rho), g.const(1, np.int64))), double(drift))
    period_d = double(period)
    wrapped = g.Sub(delay, d(R.DMIN))
    delay = g.Add(d(R.DMIN), g.Sub(wrapped, g.Mul(period_d, g.Floor(g.Div(wrapped, period_d)))),
                  hint="delay")
    phi = g.Cast(g.Div(g.Sub(delay, d(R.DMIN)), period_d), to=TensorProto.FLOAT)
    now = g.const((np.arange(N, dtype=np.float64) + H).reshape(1, N), np.float64)

    def cubic(pos):
        floor = g.Floor(pos)
        t = g.Cast(g.Sub(pos, floor), to=TensorProto.FLOAT)
        base = g.Cast(floor, to=TensorProto.INT64)
        taps = g.Add(g.Unsqueeze(base, g.ints(2)), g.ints(-1, 0, 1, 2))
        vals = g.Gather(g.Squeeze(buf, g.ints(0)), taps)                    # [1, N, 4]
        y0, y1, y2, y3 = (g.Squeeze(v_, g.ints(2)) for v_ in g.ops("Split", [vals], 4, axis=2))
        inner = g.Add(g.Sub(g.Add(g.Sub(g.Mul(g.f(2.0), y0), g.Mul(g.f(5.0), y1)),
                                  g.Mul(g.f(4.0), y2)), y3),
                      g.Mul(t, g.Sub(g.Add(g.Mul(g.f(3.0), g.Sub(y1, y2)), y3), y0)))
        return g.Add(y1, g.Mul(g.Mul(half, t), g.Add(g.Sub(y2, y0), g.Mul(t, inner))))

    head1 = cubic(g.Sub(now, delay))
    head2 = cubic(g.Sub(g.Sub(now, delay), period_d))
    young = g.Sin(g.Mul(g.f(np.pi / 2), phi))
    out = g.Add(g.Mul(young, head1), g.Mul(g.Sub(one, young), head2))
    g.nodes.append(helper.make_node("Where", [g.Greater(col(R.S_UNFED), half), block, out],
                                    ["corrected_audio"]))

    # outputs and state
    g.nodes.append(helper.make_node("Identity", [v_blk], ["confidence"]))
    g.nodes.append(helper.make_node("Where", [voiced, g.Div(g.f(c.sr), est), zero], ["detected_pitch"]))
    g.nodes.append(helper.make_node("Where", [g.Or(voiced, manual), g.slice(target_freq, N - 1, N), zero],
                                    ["applied_target_hz"]))
    g.nodes.append(helper.make_node("Slice", [buf, g.ints(N), g.ints(N + H), g.ints(1)],
                                    ["history_out"]))
    last_delay = g.Cast(g.slice(delay, N - 1, N), to=TensorProto.FLOAT)
    last = [g.slice(x, N - 1, N) for x in (m_smooth, period)]
    g.nodes.append(helper.make_node(
        "Concat", [last_delay, g.where(voiced, est, zero), v_blk, note, last[0], last[1], g.const(np.zeros((1, 1), np.float32))],
        ["state_out"], axis=1))

    f32 = TensorProto.FLOAT
    inputs = [
        helper.make_tensor_value_info("audio_buffer", f32, [1, N]),
        helper.make_tensor_value_info("target_pitch", f32, [1, 1]),
        helper.make_tensor_value_info("correction_strength", f32, [1, 1]),
        helper.make_tensor_value_info("scale_mask", f32, [1, 12]),
        helper.make_tensor_value_info("tuning_hz", f32, [1, 1]),
        helper.make_tensor_value_info("retune_ms", f32, [1, 1]),
        helper.make_tensor_value_info("transpose", f32, [1, 1]),
        helper.make_tensor_value_info("history", f32, [1, H]),
        helper.make_tensor_value_info("state", f32, [1, R.STATE_LEN]),
    ]
    outputs = [
        helper.make_tensor_value_info("corrected_audio", f32, [1, N]),
        helper.make_tensor_value_info("confidence", f32, [1, 1]),
        helper.make_tensor_value_info("detected_pitch", f32, [1, 1]),
        helper.make_tensor_value_info("applied_target_hz", f32, [1, 1]),
        helper.make_tensor_value_info("history_out", f32, [1, H]),
        helper.make_tensor_value_info("state_out", f32, [1, R.STATE_LEN]),
    ]
    # Defaults for everything past the base contract, so a caller that feeds only the base inputs
    # still runs. ONNX Runtime lists these as overridable initializers, not inputs; autotuned reads
    # both lists.
    unfed = np.zeros((1, R.STATE_LEN), np.float32)
    unfed[0, R.S_UNFED] = 1.0
    defaults = {"scale_mask": np.ones((1, 12), np.float32), "tuning_hz": np.full((1, 1), 440.0, np.float32),
                "retune_ms": np.zeros((1, 1), np.float32), "transpose": np.zeros((1, 1), np.float32),
                "history": np.zeros((1, H), np.float32),
                "state": unfed}
    g.inits.extend(numpy_helper.from_array(value, name) for name, value in defaults.items())
    graph = helper.make_graph(g.nodes, "autotune", inputs, outputs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="autotuned models/build.py", producer_version=VERSION)
    model.ir_version = 8
    meta = {"sample_rate": str(sample_rate), "block_size": str(N),
            "latency_samples": str(c.latency_samples), "name": "autotune-yin-2head", "version": VERSION}
    helper.set_model_props(model, meta)
    onnx.checker.check_model(model, full_check=True)
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=pathlib.Path, default=HERE)
    args = parser.parse_args()
    for filename, rate in MODELS.items():
        path = args.out_dir / filename
        path.write_bytes(build(rate).SerializeToString(deterministic=True))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
