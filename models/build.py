"""Builds models/autotune.onnx (44.1 kHz) and models/autotune-48k.onnx from reference.py.

Every step below computes what a step of `reference.Reference.process` computes; test_model.py
checks that the two agree over a long streamed signal. The output is deterministic: same bytes on
every run.

    python3 models/build.py            # writes both models next to this file

The graph is laid out for ONNX Runtime's cost model, where every node costs ~0.35 us or more
whatever its size (see models/README.md): YIN's correlation is one MatMul on an 8x decimated
signal, and the per-block decisions (voicing, note choice, targets, the read-rate coefficients)
are packed into a few lane-parallel stages instead of one node per scalar operation:

  * a linear stage is a Gemm over [1, k] vectors of named lanes (`Lanes`), producing every affine
    combination the next step needs;
  * every condition is an AND of up to TERMS margins (> 0 when they hold), so one ReduceMin and
    one Clip evaluate all of them as 0/1 weights;
  * every if/else is a sum of (weight x value) products with exactly one weight of 1 per choice,
    so one Mul evaluates all of them and the next Gemm adds them up.
"""

import argparse
import pathlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import reference as R

OPSET = 17
VERSION = "3.5.0"
HERE = pathlib.Path(__file__).resolve().parent
MODELS = {"autotune.onnx": 44100, "autotune-48k.onnx": 48000}
F = np.float32
BIG = 1e30
# Margin offsets that make "x >= t" and "x < t" exact complements under one strict comparison.
BELOW_HALF = float(np.nextafter(F(0.5), F(0.0)))
ABOVE_HALF = float(np.nextafter(F(0.5), F(1.0)))
BELOW_NO_TARGET = float(np.nextafter(R.NO_TARGET, F(0.0)))
ABOVE_MANUAL = float(np.nextafter(R.MANUAL_HZ, F(1.0)))


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

    def op(self, op_type, *inputs, out=None, **attrs):
        out = out or self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def split(self, x, sizes, axis=1, outs=None):
        outs = outs or [self.name("split") for _ in sizes]
        self.nodes.append(helper.make_node("Split", [x, self.ints(*sizes)], outs, axis=axis))
        return outs

    def __getattr__(self, op_type):
        return lambda *inputs, **attrs: self.op(op_type, *inputs, **attrs)

    def slice(self, x, start, end, axis=1):
        return self.Slice(x, self.ints(start), self.ints(end), self.ints(axis))

    def f(self, value):
        return self.const(np.float32(value))


class Lanes:
    """Named lanes of [1, k] tensors, and Gemm weights that combine them.

    `linear(groups)` adds one Gemm per input tensor (chained through Gemm's C input; the first C is
    the constant terms) and one Split: the outputs are the given groups of affine combinations, each
    a dict lane name -> coefficient, "1" for a constant.
    """

    def __init__(self, g, pieces):
        """pieces: (tensor name, [lane names]) for each input tensor."""
        self.g, self.pieces = g, pieces

    def linear(self, groups, outs=None):
        columns = [col for _, cols in groups for col in cols]
        y = self.g.const(np.array([[col.get("1", 0.0) for col in columns]], np.float32))
        for tensor, lanes in self.pieces:
            index = {name: i for i, name in enumerate(lanes)}
            weights = np.zeros((len(lanes), len(columns)), np.float32)
            for j, col in enumerate(columns):
                for lane, coefficient in col.items():
                    if lane in index:
                        weights[index[lane], j] += coefficient
            y = self.g.Gemm(tensor, self.g.const(weights), y)
        known = {lane for _, lanes in self.pieces for lane in lanes} | {"1"}
        unknown = {lane for col in columns for lane in col} - known
        assert not unknown, f"unknown lanes {unknown}"
        sizes = [len(cols) for _, cols in groups]
        return self.g.split(y, sizes, outs=outs and [o or self.g.name("split") for o in outs])


def plus(*exprs):
    """Sum of affine combinations (dicts lane -> coefficient)."""
    out = {}
    for expr in exprs:
        for lane, coefficient in expr.items():
            out[lane] = out.get(lane, 0.0) + coefficient
    return out


TERMS = 5
# Margins are scaled by a power of two (exact): a margin that is not 0 is at least ~1e-8 here (a
# float ulp near its threshold), so the scaled one clips to exactly 0 or 1.
SCALE = 2.0 ** 66


def binary(margins):
    """Margins scaled so that each clips to exactly 0 or 1: a list weight's terms, or gates in a
    tuple weight whose other terms are continuous."""
    return [{lane: SCALE * k for lane, k in term.items()} for term in margins]


def weight_columns(weights):
    """TERMS groups of columns whose lane-wise minimum, clipped to [0, 1], is each product's weight.

    A weight is a list of up to TERMS linear margins (1 when all are > 0, else 0), or a tuple of
    linear expressions whose least value, clipped to [0, 1], is the weight (a continuous weight).
    """
    never_binding = {"1": BIG}
    groups = [[] for _ in range(TERMS)]
    for weight in weights:
        if isinstance(weight, tuple):
            terms = list(weight)
        else:
            terms = binary(weight)
        terms = terms + [never_binding] * (TERMS - len(terms))
        for group, term in zip(groups, terms):
            group.append(term)
    return groups


def learned_detector(g, c, cmnd, e0):
    """The learned detector (reference.learned_pick): the decimated lag [V, 1] (int64) its lag
    posterior peaks at, and its voicing probability [V, 1]. Its state is the recent peak level and
    the last DETECTOR_CONTEXT - 1 blocks' inputs, newest first."""
    level = g.Log(g.Max(g.Mul(e0, g.f(1.0 / R.DETECTOR_LEVEL_FLOOR)), g.f(1.0)))
    last_peak, older = g.split("detector_state", [1, c.detector_state_len - 1])
    peak = g.Max(level, g.Add(last_peak, g.f(-R.DETECTOR_PEAK_DECAY)))
    x = g.Concat(peak, cmnd, level, older, axis=1)
    g.Slice(x, g.ints(0), g.ints(c.detector_state_len), g.ints(1), out="detector_state_out")
    for k, (w, b) in enumerate(c.layers):
        if k == len(c.layers) - 1:
            x = g.Concat(x, cmnd, axis=1)
        x = g.Gemm(x, g.const(w), g.const(b.reshape(1, -1)))
        if k < len(c.layers) - 1:
            x = g.Relu(x)
    logits, voicing_logit = g.split(x, [c.lags_dec, 1])
    return g.ArgMax(logits, axis=1, keepdims=1), g.Sigmoid(voicing_logit)


def build(sample_rate, detector="learned"):
    c = R.Constants(sample_rate, detector)
    g = Graph()
    N, H, BD, L = R.BLOCK, R.HISTORY, R.BLOCK_DEC, c.lags_dec
    heads, grains = R.HEADS, R.GRAINS
    zero = g.f(0.0)
    ln_sr = float(np.log(c.sr))
    k12 = float(F(12.0) / R.LOG2)
    lag = float(c.latency_samples)

    # 1. buf = [history | block], the block clipped so that every sum below stays finite
    block = g.Clip("audio_buffer", g.f(-R.AUDIO_LIMIT), g.f(R.AUDIO_LIMIT))
    buf = g.Concat("history", block, axis=1)                                  # [V, H + N]
    g.Slice(buf, g.ints(N), g.ints(N + H), g.ints(1), out="history_out")

    # 2. YIN on the time-reversed, 8x decimated signal, where a lag is an index. The cross term
    # is one MatMul with the lagged copies of the signal as a matrix [BD, M + 1], dec[t + lag]: the
    # signal tiled BD + 1 times and read in rows one sample longer than it, so each row starts a
    # sample later (a Conv cannot take a per-voice kernel).
    # Linked voices are analysed on their mix (voice_mix [V, V]; identity: each voice alone), so
    # they take the same decisions; the grains read each voice's own buf. Everything analysed lies
    # in the newest rev_len samples, so only those are mixed.
    analysed = g.MatMul("voice_mix", g.slice(buf, H + N - c.rev_len, H + N))        # [V, rev_len]
    # The decimating filter as a polyphase Conv over time running forwards: phase p of `analysed` is
    # channel p, and channel p's tap m is the reversed filter's tap 8m + p. ONNX Runtime runs it in
    # half the time of a strided Conv, and reversing its 1/8 as many outputs costs less than
    # reversing the input.
    M = c.dec_len
    phases = g.Transpose(g.Reshape(analysed, g.ints(-1, c.rev_len // R.DEC, R.DEC)), perm=[0, 2, 1])
    polyphase_fir = c.fir[::-1].reshape(-1, R.DEC).T.reshape(1, R.DEC, -1)
    dec_forwards = g.Conv(phases, g.const(np.ascontiguousarray(polyphase_fir)))
    dec = g.Slice(dec_forwards, g.ints(M - 1), g.ints(np.iinfo(np.int64).min), g.ints(2), g.ints(-1))  # [V, 1, M]
    tiled = g.slice(g.Tile(dec, g.ints(1, 1, BD + 1)), 0, BD * (M + 1), axis=2)
    lagged_dec = g.Reshape(tiled, g.ints(-1, BD, M + 1))                          # [V, BD, M + 1]
    # -2 C(lag); the lags past L wrap around and are cut from the small product
    cross = g.slice(g.MatMul(g.Mul(g.slice(dec, 0, BD, axis=2), g.f(-2.0)), lagged_dec), 0, L, axis=2)
    # lagged energy: a window sum of the squares = difference of their running sum BD apart
    running = g.CumSum(g.Mul(dec, dec), g.const(2, np.int64))
    window = np.zeros((1, 1, 2), np.float32)
    window[0, 0] = [-1.0, 1.0]
    energy = g.Conv(running, g.const(window), dilations=[BD], pads=[1, 0])      # [V, 1, L]
    e0 = g.slice(energy, 0, 1, axis=2)                                            # the block's own
    # floored: the running sum stays > 0 and every CMNDF finite, even on silence or DC
    diff = g.Reshape(g.Max(g.Add(g.Add(cross, energy), e0), g.f(R.DIFF_FLOOR)), g.ints(-1, L))
    cmnd = g.Div(diff, g.Mul(g.CumSum(diff, g.const(1, np.int64)), g.const(c.inv_tau.reshape(1, L))))

    e0 = g.Reshape(e0, g.ints(-1, 1))
    if c.layers is None:
        # the lag: CMNDF minimum under the octave cost (and out-of-range lags priced out); the
        # aperiodicity (the CMNDF there) sets the voicing ramp
        i = g.ArgMin(g.Add(cmnd, g.const(c.lag_cost.reshape(1, L))), axis=1, keepdims=1)   # [V, 1] int64
        periodicity_lane = g.GatherElements(cmnd, i, axis=1)
    else:
        i, periodicity_lane = learned_detector(g, c, cmnd, e0)

    # full-rate difference at REFINE_LAGS lags around 8 i; parabola through the smallest
    lags = R.REFINE_LAGS
    half_lags = lags // 2
    # In `analysed`, the block's sample n is analysed[rev_len - N + n], the sample `lag` before it
    # analysed[rev_len - N + n - lag]. Every lag reads one segment of N + lags - 1 samples, gathered
    # once; row r of its lagged copies (the tiling trick of YIN's cross term) starts r samples in,
    # which is lag 8 i + half_lags - r. Gathering every copy's samples instead took eight voices
    # 9 % longer.
    seg_len = N + lags - 1
    seg_rows = (c.rev_len - N + half_lags - (lags - 1) + np.arange(seg_len)).reshape(1, seg_len)
    i4 = g.Mul(i, g.const(R.DEC, np.int64))
    segment = g.GatherElements(analysed, g.Sub(g.const(seg_rows, np.int64), i4), axis=1)      # [V, seg_len]
    tiled_seg = g.slice(g.Tile(segment, g.ints(1, lags + 1)), 0, lags * (seg_len + 1))
    lagged = g.slice(g.Reshape(tiled_seg, g.ints(-1, lags, seg_len + 1)), 0, N, axis=2)  # [V, lags, N], lag order reversed
    block_analysed = g.Reshape(g.slice(analysed, c.rev_len - N, c.rev_len), g.ints(-1, 1, N))
    # squares, then their sum: ONNX Runtime's ReduceSumSquare takes about twice as long
    diffs = g.Sub(lagged, block_analysed)
    d = g.ReduceSum(g.Mul(diffs, diffs), g.ints(2), keepdims=0)                 # [V, lags], reversed
    inner = lags - 2
    fit = np.zeros((lags, 3 * inner), np.float32)
    for k in range(inner):
        fit[k + 1, k] = 1.0                                       # d at the centre
        fit[k, inner + k], fit[k + 2, inner + k] = 0.5, -0.5      # (a - r) / 2
        fit[k:k + 3, 2 * inner + k] = [1.0, -2.0, 1.0]            # a - 2b + r
    centre, num, den = g.split(g.Gemm(d, g.const(np.ascontiguousarray(fit[::-1]))), [inner] * 3)
    # the inner lags' weights are symmetric, so the reversed order needs no reversing here
    k = g.ArgMin(g.Mul(centre, g.const(R.refine_weights().reshape(1, inner))), axis=1, keepdims=1)
    shift = g.Clip(g.Div(num, g.Max(den, g.f(1e-9))), g.f(-1.0), g.f(1.0))
    centres = np.arange(inner, dtype=F).reshape(1, inner) + F(1 - half_lags)   # lag of centre k minus 8 i
    offset_shift = g.GatherElements(g.Add(shift, g.const(centres)), k, axis=1)
    est = g.Add(g.Cast(i4, to=TensorProto.FLOAT), offset_shift)

    # 3-4. Per-block decisions. The pack: every scalar they read, clipped per lane; the first
    # LOGGED lanes also go through one Log.
    lo, hi = R.agree_bounds()
    state_lanes = ["pe", "pv", "cn", "pt", "sp", "unfed", "psi0", "dl0", "cen"] + [f"a{h}" for h in range(heads)] + [
        f"s{h}" for h in range(heads)]
    # The grain phase is a fraction: clipped to [0, 1] so that no state can start more grains than
    # the graph has slots for; the delay stays within the history; the spans within the bounds
    # this block's grains get.
    span_bounds = (float(R.MIN_SPAN * R.SPAN_UNIT), float(F(heads / 2) * R.SPAN_UNIT))
    state_bounds = {"psi0": (0.0, 1.0), "dl0": (-lag, float(H)), **{f"s{h}": span_bounds for h in range(heads)}}
    logged = [("e0", 1e-12 * BD, BIG), ("est", 1.0, BIG), ("tun", 300.0, 600.0), ("tpc", 20.0, 5000.0)] + [
        (lane + "_l", 1.0 if lane == "sp" else 1e-6, BIG) for lane in state_lanes]
    pack_lanes = logged + [("ap", -BIG, BIG)] + [(lane, *state_bounds.get(lane, (-BIG, BIG))) for lane in state_lanes] + [
        ("str", 0.0, 1.0), ("ret", c.retune_floor_ms, 5000.0), ("trn", -24.0, 24.0), ("tp", -BIG, BIG),
        ("fkeep", 0.0, 1.0), ("fsh", -float(R.FORMANT_SHIFT_LIMIT), float(R.FORMANT_SHIFT_LIMIT)),
        ("per", 0.0, float(R.SCALE_PERIOD_MAX)), ("perc", 1.0, float(R.SCALE_PERIOD_MAX)),
        ("hys", 0.0, float(R.HYSTERESIS_MAX))]
    pack = g.Concat(e0, est, "tuning_hz", "target_pitch", "state", periodicity_lane, "state",
                    "correction_strength", "retune_ms", "transpose", "target_pitch", "formant_preserve",
                    "formant_shift", "scale_period", "scale_period", "note_hysteresis", axis=1)
    bounds = np.array([[lane[1] for lane in pack_lanes], [lane[2] for lane in pack_lanes]], np.float32)
    clipped = g.Min(g.Max(pack, g.const(bounds[:1])), g.const(bounds[1:]))
    logs = g.Log(g.slice(clipped, 0, len(logged)))
    lanes_a = Lanes(g, [(clipped, [lane[0] for lane in pack_lanes]),
                        (logs, ["ln_" + lane[0].removesuffix("_l") for lane in logged])])

    # MIDI notes from the logs: m = 69 + 12/ln2 (ln f - ln tuning)
    m_in = {"1": 69.0 + k12 * ln_sr, "ln_est": -k12, "ln_tun": -k12}
    m_man_trn = {"1": 69.0, "ln_tpc": k12, "ln_tun": -k12, "trn": 1.0}
    m_in_trn = dict(m_in, trn=1.0)

    # Conditions are ANDs of margins (> 0 when they hold); "not" pairs are exact complements.
    # An if/else is a sum of (weight x value) products with exactly one weight of 1; a condition
    # with "unvoiced" in it is written as (X) - (voiced and X), both ANDs.
    # The periodicity ramp: YIN's in the aperiodicity, the learned detector's in its probability.
    periodic = ({"ap": -1.0 / float(R.VOICING_RAMP), "1": float(R.VOICING_AP / R.VOICING_RAMP + F(0.5))}
                if c.layers is None else
                {"ap": 1.0 / float(R.DETECTOR_VOICING_RAMP), "1": float(F(0.5) - F(0.5) / R.DETECTOR_VOICING_RAMP)})
    ramps = [periodic,
             {"ln_e0": float(F(10.0) / F(np.log(10.0)) / R.GATE_RANGE_DB),
              "1": float((-F(10.0) / F(np.log(10.0)) * F(np.log(BD)) - R.GATE_DB) / R.GATE_RANGE_DB)}]
    voiced = [plus(ramp, {"1": -BELOW_HALF}) for ramp in ramps]  # both ramps >= 0.5
    manual, auto = {"tp": 1.0, "1": -float(R.MANUAL_HZ)}, {"tp": -1.0, "1": ABOVE_MANUAL}
    # a scale allows notes when its period is above 0.5 (0: none)
    allowed, none_allowed = {"per": 1.0, "1": -0.5}, {"per": -1.0, "1": ABOVE_HALF}
    was_voiced, was_unvoiced = {"pv": 1.0, "1": -BELOW_HALF}, {"pv": -1.0, "1": 0.5}
    held, not_held = {"pt": 1.0, "1": -BELOW_NO_TARGET}, {"pt": -1.0, "1": float(R.NO_TARGET)}
    spaced, unspaced = {"sp": 1.0, "1": -0.5}, {"sp": -1.0, "1": ABOVE_HALF}
    agree = voiced + [{"est": 1.0, "pe": -float(lo)}, {"pe": float(hi), "est": -1.0}]
    update = voiced + [auto, allowed]
    always = []
    pt, one = {"pt": 1.0}, {"1": 1.0}
    # the relax back to the latency, rho = exp(lim (up - down)), each of up and down a continuous
    # weight: the delay's distance from the latency, scaled, gated by margins scaled as in a list
    relax_limit = float(R.RELAX_LIMIT)
    per_sample = float(R.RELAX_SHARE / F(N)) / relax_limit
    gate = binary([was_unvoiced, {"sp": 1.0, "1": -float(R.RELAX_MIN_SPACING * F(lag))}])
    relax_up, relax_down = tuple(gate + [{"dl0": per_sample}]), tuple(gate + [{"dl0": -per_sample}])
    voiced_gate = tuple(binary(voiced))
    default, ln_default = {"1": float(c.default_period)}, {"1": float(np.log(c.default_period))}

    early = [  # (name, weight, value): values from the first linear stage
        ("man", [manual], m_man_trn),                      # target: manual
        ("upd_trn", update, {"trn": 1.0}),                 # target: new note + transpose
        ("upd_cn", update, {"cn": 1.0}),                   # note: replaced
        ("v_noscale", voiced + [auto, none_allowed], m_in_trn),  # target: sung pitch
        ("auto_pt", [auto], pt),                           # target: held (minus the voiced part)
        ("v_auto_pt", voiced + [auto], pt),
        ("v_m_in", voiced, m_in),                          # glide start: onset = voiced minus held on
        ("v_kept_m_in", voiced + [was_voiced, held], m_in),
        ("held_pt", [held], pt),                           # glide start: the held target
        ("v_held_pt", voiced + [held], pt),
        ("v_kept_pt", voiced + [was_voiced, held], pt),
        ("none_man", [not_held, manual], m_man_trn),       # glide start: the new manual target
        ("v_none_man", voiced + [not_held, manual], m_man_trn),
        ("none_auto", [not_held, auto], pt),
        ("v_none_auto", voiced + [not_held, auto], pt),
        ("ag_ln_pe", agree, {"ln_pe": 1.0}),               # log rate period: trend between estimates
        ("ag_slope", agree, {"ln_est": 1.0 / N, "ln_pe": -1.0 / N}),
        ("ag_ln_est", agree, {"ln_est": 1.0}),
        ("v_ln_est", voiced, {"ln_est": 1.0}),             # log rate period: this estimate
        ("sp_ln", [spaced], {"ln_sp": 1.0}),               # log rate period unvoiced: last spacing
        ("v_sp_ln", voiced + [spaced], {"ln_sp": 1.0}),
        ("default_ln", [unspaced], ln_default),
        ("v_default_ln", voiced + [unspaced], ln_default),
        ("sp", [spaced], {"sp": 1.0}),                     # spacing at the block start
        ("default", [unspaced], default),
        ("v_est", voiced, {"est": 1.0}),                   # spacing at the block end: estimate
        ("v_sp", voiced + [spaced], {"sp": 1.0}),
        ("v_default", voiced + [unspaced], default),
        ("man_report", [manual], one),                     # applied target reported
        ("v", voiced, one),
        ("v_man", voiced + [manual], one),
        ("cn", always, {"cn": 1.0}),                       # note: kept unless replaced
        ("ln_sr_tun", always, {"ln_tun": -1.0, "1": ln_sr}),
        ("unfed", always, {"unfed": 1.0}),
        ("pv", always, {"pv": 1.0}),                       # voicing ramp, state and formant shift
        ("psi0", always, {"psi0": 1.0}),
        ("dl0", always, {"dl0": 1.0}),
        ("sh_pv", ({"pv": 1.0},), {"fsh": float(R.LOG2 / F(12.0))}),
        ("sh_v", tuple(ramps), {"fsh": float(R.LOG2 / F(12.0))}),
        ("resample", always, {"1": 1.0, "fkeep": -1.0}),  # how much of rho the formants follow
        ("str_pv", ({"str": 1.0},), {"pv": 1.0}),
        ("voicing", tuple(ramps), one),                    # voicing: the lesser ramp, clipped
        ("v_str", tuple(ramps), {"str": 1.0}),
        ("rx_up", relax_up, {"1": relax_limit}),         # relax, in the exponent: unvoiced = all
        ("rx_down", relax_down, {"1": -relax_limit}),    # minus voiced
        ("v_rx_up", voiced_gate + relax_up, {"1": relax_limit}),
        ("v_rx_down", voiced_gate + relax_down, {"1": -relax_limit}),
        ("rxk_up", relax_up, {"fkeep": relax_limit}),    # the formant rate's keep x relax
        ("rxk_down", relax_down, {"fkeep": -relax_limit}),
        ("v_rxk_up", voiced_gate + relax_up, {"fkeep": relax_limit}),
        ("v_rxk_down", voiced_gate + relax_down, {"fkeep": -relax_limit}),
    ]
    late = [("upd_note", update), ("ag_trend", agree), ("inv_tau", always), ("detect", voiced), ("v_dz", voiced)]
    weight_groups = weight_columns([w for _, w, _ in early] + [w for _, w in late])

    keep = float(c.centre_keep)
    to_centre = plus({"cen": 1.0}, {lane: -k for lane, k in m_in.items()})
    m_in_t, period, hysteresis, cx, cx_keep, ands, num, den, values, cn, slope, lever = lanes_a.linear([
        ("m_in", [m_in]),
        ("period", [{"perc": 1.0}]),
        ("hysteresis", [{"hys": 1.0}]),
        ("cx", [to_centre]),
        ("cx_keep", [{lane: keep * k for lane, k in to_centre.items()}]),
        ("ands", [col for group in weight_groups for col in group]),
        ("num", [{"1": 1e-3}, {"1": 30.0}]),
        ("den", [{"ret": float(c.sr / F(3000.0))}, {"est": 1.0}]),
        ("values", [value for _, _, value in early]),
        ("cn", [{"cn": 1.0}]),
        ("slope", [{"ln_est": 1.0 / N, "ln_pe": -1.0 / N}]),
        ("lever", [{"1": 0.5 + N / 2, "est": float(R.RATE_LEVER_PERIODS)}]),
    ])

    # every weight: the least of its terms, clipped to [0, 1]
    count = len(early) + len(late)
    weights = g.Clip(g.ReduceMin(g.Reshape(ands, g.ints(-1, TERMS, count)), axes=[1], keepdims=0), zero, g.f(1.0))

    # auto note: the allowed pitch nearest the sung centre (the centre moved towards the sung
    # pitch, or the sung pitch where the centre is far), the current note kept within the
    # hysteresis
    dz = g.Where(g.Less(g.Abs(cx), g.f(R.CENTRE_RESET_ST)), cx_keep, zero)
    m_sel = g.Add(m_in_t, dz)
    r = g.Round(g.Div(g.Sub(m_sel, "scale_notes"), period))
    candidates = g.Add(g.Mul(r, period), "scale_notes")
    bonus = g.Where(g.Equal(candidates, cn), hysteresis, zero)
    best = g.ArgMin(g.Sub(g.Abs(g.Sub(candidates, m_sel)), bonus), axis=1, keepdims=1)
    auto_note = g.GatherElements(candidates, best, axis=1)

    # 1/time constant and 1/estimate, both scaled into [0, 1]
    ratios = g.Clip(g.Div(num, den), zero, g.f(1.0))
    trend = g.Mul(slope, lever)

    products = g.Mul(weights, g.Concat(values, auto_note, trend, ratios, dz, axis=1))
    names = [name for name, _, _ in early] + [name for name, _ in late]
    assert len(set(names)) == len(names), "product lane names must be unique"
    lanes_c = Lanes(g, [(products, names)])

    def total(*lanes, sign=1.0):
        return {lane: sign for lane in lanes}

    def minus(*lanes):
        return total(*lanes, sign=-1.0)

    def times(k, expr):
        return {lane: k * w for lane, w in expr.items()}

    log_rate = plus(total("ag_ln_pe", "ag_trend", "v_ln_est", "sp_ln", "default_ln"),
                    minus("ag_ln_est", "v_sp_ln", "v_default_ln"))
    log_slope = total("ag_slope")
    spacing = total("sp", "default")
    spacing_change = plus(total("v_est"), minus("v_sp", "v_default"))   # voiced: estimate - spacing
    m_target = plus(total("man", "upd_note", "upd_trn", "v_noscale", "auto_pt"), minus("v_auto_pt"))
    start = plus(total("v_m_in", "held_pt", "v_kept_pt", "none_man", "none_auto"),
                 minus("v_kept_m_in", "v_held_pt", "v_none_man", "v_none_auto"))
    ln2_12 = float(R.LOG2 / F(12.0))
    relax = plus(total("rx_up", "rx_down"), minus("v_rx_up", "v_rx_down"))
    keep_relax = plus(total("rxk_up", "rxk_down"), minus("v_rxk_up", "v_rxk_down"))
    # log target period = A - nB glide(n), A at the end of the glide
    ltp_a = plus(total("ln_sr_tun"), {"1": 69.0 * ln2_12}, times(-ln2_12, m_target))
    ltp_nb = plus(times(ln2_12, start), times(-ln2_12, m_target))
    dmin = float(R.DMIN)
    basis_rows = {  # per-sample rows = [1, n, (n+1)/N, n+1] @ coefficients
        "log_rate_a": [plus(log_rate, times(-1.0, ltp_a)), log_slope, {}, {}],
        "glide_arg": [{}, {}, {}, {"inv_tau": -1e3}],
        "sv": [total("str_pv"), {}, plus(total("v_str"), minus("str_pv")), {}],
        # the rows the exponentials mix, in this order
        "log_rate_period": [log_rate, log_slope, {}, {}],
        "shift": [plus(total("sh_pv"), keep_relax), {}, plus(total("sh_v"), minus("sh_pv")), {}],
        "one": [one, {}, {}, {}],
    }
    coefficients = [basis_rows[row][b] for row in basis_rows for b in range(4)]
    # Every exponential of the synthesis, as one MatMul of [exponent, log rate period, shift, 1,
    # a high voice's grain stretch] (the formant rate's share of the exponent is this block's):
    # row name -> coefficients (a missing last one is 0), and the bounds each row is clipped to.
    resample, keep_share = total("resample"), plus(one, minus("resample"))
    exps = {
        "rho": ([one, {}, {}, {}], 0.0, BIG),
        "inv_out": ([one, {"1": -1.0}, {}, {}], 0.0, float(F(1.0) / R.MIN_OUT_PERIOD)),
        "gamma": ([resample, {}, one, {}], 0.0, BIG),
        "gamma_out": ([plus(resample, {"1": -1.0}), one, one, {}], 0.0, BIG),
        "out_period": ([{"1": -1.0}, one, {}, {}], float(R.MIN_OUT_PERIOD), BIG),
        "span": ([keep_share, {}, {"1": -1.0}, {"1": float(R.SPAN_UNIT_LN)}, one], *span_bounds),
        "span_reach": ([keep_share, {}, {"1": -1.0}, {"1": float(R.SPAN_UNIT_LN + R.REACH_LN)}, one],
                       *(float(F(bound) * R.REACH) for bound in span_bounds)),
        "period": ([{}, one, {}, {}], 0.0, BIG),
        "inv_period": ([{}, {"1": -1.0}, {}, {}], 0.0, BIG),
    }
    mix_inputs = 5
    mix = [entry for row, _, _ in exps.values() for entry in row + [{}] * (mix_inputs - len(row))]
    steps_mixed = 3 * mix_inputs     # rho, inv_out and gamma are needed at every sample
    coef, scalars, mix_steps, mix_marks, partial, _, _, applied_weight, unfed_weight = lanes_c.linear([
        ("coefficients", coefficients),
        # the running sums' starts (rate, grain phase, read position), the glide's scale, 0/1
        # for a streamed state and the relax
        ("scalars", [{"dl0": -1.0, "1": float(H - 1) - lag}, total("psi0"), {"1": float(H) - lag}, ltp_nb,
                     plus(one, minus("unfed")), relax]),
        ("mix_steps", mix[:steps_mixed]),
        ("mix_marks", mix[steps_mixed:]),
        ("state", [total("v_est"), total("voicing"),
                   plus(total("upd_note", "cn"), minus("upd_cn")),
                   plus({"1": 69.0}, times(k12, plus(total("ln_sr_tun"), times(-1.0, ltp_a)))),
                   plus(spacing, spacing_change), {}, {}, {"1": float(N - 1 + H) - lag},
                   total("v_m_in", "v_dz")]
                  + [{"1": float(lag - H - N)}] * heads + [{}] * heads
                  + [plus({"1": ln_sr}, times(-1.0, ltp_a))]),
        ("detected", [{"detect": float(c.sr / F(30.0))}]),
        ("confidence", [total("voicing")]),
        ("applied", [plus(total("man_report", "v"), minus("v_man"))]),
        ("unfed", [total("unfed")]),
    ], outs=[None, None, None, None, None, "detected_pitch", "confidence", None, None])
    offsets, glide_scale, kept, relax_rate = g.split(g.Reshape(scalars, g.ints(-1, 6, 1)), [3, 1, 1, 1])  # [V, k, 1]

    # Per-sample work is laid out [V, rows, N]: ONNX Runtime broadcasts fast only over long inner spans.
    n = np.arange(N, dtype=F)
    basis = np.stack([np.ones(N, F), n, (n + F(1.0)) / F(N), n + F(1.0)])
    log_rate_a, glide_arg, sv, log_rate_period, shift_and_one = g.split(
        g.MatMul(g.Reshape(coef, g.ints(-1, len(basis_rows), 4)), g.const(basis)), [1] * 4 + [2])

    # 4. read rate in the log domain: exponent = sv (ln rate period - ln target period) + relax
    glide_term = g.Mul(g.Exp(glide_arg), glide_scale)
    limit = float(F(np.log(R.RHO_LIMIT)))
    exponent = g.Clip(g.Add(g.Mul(sv, g.Add(log_rate_a, glide_term)), relax_rate), g.f(-limit), g.f(limit))

    # 5. grains: the exponentials in two MatMuls, clipped per row: the three whose running sums
    # place everything are needed at every sample, the other six only where a grain starts
    floors = np.array([low for _, low, _ in exps.values()], F).reshape(1, -1, 1)
    ceilings = np.array([high for _, _, high in exps.values()], F).reshape(1, -1, 1)
    stretch_arg = g.Clip(g.Sub(g.f(float(c.ln_half_grain_min)), log_rate_period),
                         zero, g.f(R.MAX_STRETCH_LN))
    mixing = g.Concat(exponent, log_rate_period, shift_and_one, stretch_arg, axis=1)            # [V, 5, N]

    def exponentials(lanes, rows, mixed_at):
        mixed = g.MatMul(g.Reshape(lanes, g.ints(-1, len(rows), mix_inputs)), mixed_at)
        return g.Min(g.Max(g.Exp(mixed), g.const(floors[:, list(rows)])), g.const(ceilings[:, list(rows)]))

    steps = exponentials(mix_steps, range(3), mixing)
    # the rate's, the output grain phase's and the read position's running sums from their starts
    # summed along the first axis: ONNX Runtime's CumSum along a last axis goes element by element
    # (eight voices: 31 us, against 4 us for the two transposes and a CumSum over rows)
    sums_by_sample = g.CumSum(g.Transpose(g.Concat(offsets, steps, axis=2), perm=[2, 0, 1]), g.const(0, np.int64))
    sums = g.Transpose(g.slice(sums_by_sample, 1, N + 1, axis=0), perm=[1, 2, 0])   # [V, 3, N]
    _, psi, read = g.split(sums, [1, 1, 1])
    k = g.Floor(psi)
    psi_frac = g.Sub(psi, k)
    # Grain j starts on the first sample whose grain phase reaches j: the count of samples before.
    # A last mark that is never reached counts the whole block, so it is the block's last sample,
    # where the state's delay is read. Every value below is that of its mark's sample: a grain's
    # delay and anchor, and its span, are computed for these GRAINS + 1 samples, not for all N.
    grain_numbers = np.arange(1, grains + 1, dtype=F)
    thresholds = np.append(grain_numbers, BIG).reshape(grains + 1, 1)
    before = g.Less(psi, g.const(thresholds))                                    # [V, GRAINS + 1, N]
    count_before = g.Min(g.ReduceSum(g.Cast(before, to=TensorProto.FLOAT), g.ints(2), keepdims=0), g.f(N - 1))
    marks = g.Reshape(count_before, g.ints(-1, 1, grains + 1))
    # indices are int32 throughout the synthesis: GatherElements reads them ~20 % faster than int64
    mark_index = g.Cast(marks, to=TensorProto.INT32)

    def at_marks(tensor, rows):
        return g.GatherElements(tensor, g.Add(mark_index, g.const(np.zeros((1, rows, 1)), np.int32)), axis=2)

    rising, psi_at, read_at = g.split(at_marks(sums, 3), [1, 1, 1])
    gamma_out, out_period, span, span_reach, period, inv_period = g.split(
        exponentials(mix_marks, range(3, len(exps)), at_marks(mixing, mix_inputs)), [1] * 6)
    # a grain's phase at its start has just reached its number (it grows by at most 1 / 36 a sample)
    psi_frac_at = g.Sub(psi_at, g.const(np.append(grain_numbers, 0.0).reshape(1, 1, -1)))
    late_rate = g.Sub(gamma_out, out_period)
    ahead = g.Mul(g.Relu(late_rate), span_reach)
    # the delay, wrapped by a period into [DMIN + ahead, DMIN + ahead + P): held = n + H - delay
    delay_base = g.Add(marks, g.f(float(H) - dmin))
    wraps = g.Floor(g.Mul(g.Sub(g.Sub(delay_base, rising), ahead), inv_period))
    held = g.Add(rising, g.Mul(wraps, period))
    anchor = g.Add(g.Sub(held, read_at), g.Mul(psi_frac_at, late_rate))
    new_grains = g.Concat(anchor, span, axis=1)                        # [V, 2, GRAINS + 1]: the last is never played
    clipped_state = len(logged) + 1                                  # where the clipped state lanes start
    state_grains = g.Reshape(g.slice(clipped, clipped_state + R.S_HEADS, clipped_state + R.S_HEADS + 2 * heads),
                             g.ints(-1, 2, heads))
    grains_all = g.Concat(state_grains, new_grains, axis=2)                         # [V, 2, HEADS + GRAINS + 1]
    # head h plays grain k(n) + h of the state's (oldest first) and this block's
    slot = g.Add(g.Cast(k, to=TensorProto.INT32), g.const(np.arange(heads).reshape(1, heads, 1), np.int32))
    pair = g.const(np.zeros((1, 2, 1)), np.int32)
    per_head = g.GatherElements(grains_all, g.Add(g.Reshape(slot, g.ints(-1, 1, heads * N)), pair), axis=2)
    head_anchor, head_span = g.split(g.Reshape(per_head, g.ints(-1, 2 * heads, N)), [heads, heads])
    unclipped = g.Add(head_anchor, read)                                            # buffer index
    newest = np.arange(N, dtype=F).reshape(1, 1, N) + F(H) - R.DMIN
    positions = g.Min(g.Max(unclipped, g.f(2.0)), g.const(newest))
    # sin^2 windows two spans long from each grain's start, normalised to sum to one
    age = g.Add(psi_frac, g.const(np.arange(heads - 1, -1, -1, dtype=F).reshape(1, heads, 1)))
    x = g.Clip(g.Div(age, head_span), zero, g.f(np.pi))
    u = g.Mul(x, g.Sub(g.f(np.pi), x))
    window = g.Mul(g.Mul(u, u), g.Add(u, g.f(R.WINDOW_C)))
    norm = g.Div(kept, g.Max(g.ReduceSum(window, g.ints(1), keepdims=1), g.f(R.WEIGHT_FLOOR)))
    head_weights = g.Mul(window, norm)

    # one GatherElements reads all 4 Catmull-Rom taps of every head
    floor = g.Floor(positions)
    t = g.Sub(positions, floor)
    taps = g.Add(g.Reshape(g.Cast(floor, to=TensorProto.INT32), g.ints(-1, 1, heads * N)),
                 g.const(np.arange(-1, 3).reshape(1, 4, 1), np.int32))
    samples = g.Reshape(g.GatherElements(buf, g.Reshape(taps, g.ints(-1, 4 * heads * N)), axis=1),
                        g.ints(-1, 4, heads * N))                                  # [V, tap, head and sample]
    wt = g.Mul(head_weights, t)
    wt2 = g.Mul(wt, t)
    powers = g.Reshape(g.Concat(head_weights, wt, wt2, g.Mul(wt2, t), axis=1), g.ints(-1, 4, heads * N))
    # the tap weights: tap_weights[tap] = sum over powers p of CUBIC[p, tap] * powers[p]
    tap_weights = g.MatMul(g.const(R.CUBIC.T), powers)
    # the sum, or (unfed state: a caller that does not stream state back) the input itself
    weighted = g.Reshape(g.Mul(samples, tap_weights), g.ints(-1, 4 * heads, N))
    g.Add(g.ReduceSum(weighted, g.ints(1), keepdims=0), g.Mul("audio_buffer", unfed_weight),
          out="corrected_audio")

    # state and reported pitch: the last sample's values enter through one Gemm
    last_rows = [psi_frac, glide_term, unclipped, head_span]
    place = np.zeros((3 + 2 * heads, R.STATE_LEN + 1), np.float32)
    place[0, R.S_DELAY], place[1, R.S_PSI] = -1.0, 1.0
    place[2, R.S_TARGET], place[2, R.STATE_LEN] = k12, 1.0
    place[3 + np.arange(2 * heads), R.S_HEADS + np.arange(2 * heads)] = 1.0
    last = g.Reshape(g.Concat(g.slice(held, grains, grains + 1, axis=2),
                              g.slice(g.Concat(*last_rows, axis=1), N - 1, N, axis=2), axis=1), g.ints(-1, 3 + 2 * heads))
    _, log_freq = g.split(g.Gemm(last, g.const(place), partial), [R.STATE_LEN, 1], outs=["state_out", g.name("split")])
    g.Mul(applied_weight, g.Exp(log_freq), out="applied_target_hz")

    f32 = TensorProto.FLOAT
    voices = "voices"
    detector_state = [] if c.layers is None else [("detector_state", c.detector_state_len)]
    inputs = [helper.make_tensor_value_info(name, f32, [voices, size]) for name, size in [
        ("audio_buffer", N), ("target_pitch", 1), ("correction_strength", 1), ("scale_notes", R.SCALE_SLOTS),
        ("scale_period", 1), ("note_hysteresis", 1), ("tuning_hz", 1),
        ("retune_ms", 1), ("transpose", 1), ("formant_preserve", 1), ("formant_shift", 1), ("history", H),
        ("state", R.STATE_LEN)] + detector_state] + [helper.make_tensor_value_info("voice_mix", f32, [voices, voices])]
    outputs = [helper.make_tensor_value_info(name, f32, [voices, size]) for name, size in [
        ("corrected_audio", N), ("confidence", 1), ("detected_pitch", 1), ("applied_target_hz", 1),
        ("history_out", H), ("state_out", R.STATE_LEN)] + [(name + "_out", size) for name, size in detector_state]]
    # Defaults for everything past the base contract, so a caller that feeds only the base inputs
    # still runs (one voice: a default has one row). ONNX Runtime lists these as overridable
    # initializers, not inputs; autotuned reads both lists.
    unfed_state = np.zeros((1, R.STATE_LEN), np.float32)
    unfed_state[0, R.S_UNFED] = 1.0
    chromatic, octave = R.scale_from_mask(np.ones(12, np.float32))
    defaults = {"scale_notes": chromatic.reshape(1, -1), "scale_period": np.full((1, 1), octave, np.float32),
                "note_hysteresis": np.full((1, 1), R.HYSTERESIS_ST, np.float32),
                "tuning_hz": np.full((1, 1), 440.0, np.float32),
                "retune_ms": np.zeros((1, 1), np.float32), "transpose": np.zeros((1, 1), np.float32),
                "formant_preserve": np.ones((1, 1), np.float32), "formant_shift": np.zeros((1, 1), np.float32),
                "history": np.zeros((1, H), np.float32), "state": unfed_state,
                "voice_mix": np.ones((1, 1), np.float32),
                **{name: np.zeros((1, size), np.float32) for name, size in detector_state}}
    g.inits.extend(numpy_helper.from_array(value, name) for name, value in defaults.items())
    graph = helper.make_graph(g.nodes, "autotune", inputs, outputs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="autotuned models/build.py", producer_version=VERSION)
    model.ir_version = 8
    meta = {"sample_rate": str(sample_rate), "block_size": str(N),
            "latency_samples": str(c.latency_samples), "name": f"autotune-{detector}-grains", "version": VERSION,
            "detector": detector_description(c)}
    helper.set_model_props(model, meta)
    onnx.checker.check_model(model, full_check=True)
    return model


def detector_description(c):
    if c.layers is None:
        return "yin: the decimated CMNDF's minimum under an octave cost, voicing from its aperiodicity"
    sizes = [c.layers[0][0].shape[0]] + [w.shape[1] for w, _ in c.layers]
    # the last layer's skip is a diagonal: its zeros are not parameters
    weights = sum(np.count_nonzero(w) + b.size for w, b in c.layers)
    return (f"learned: an MLP {' -> '.join(map(str, sizes))} with a per-lag skip ({weights} parameters, "
            f"models/train) over the last {R.DETECTOR_CONTEXT} blocks' decimated CMNDF and level: "
            "lag posterior and voicing")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=pathlib.Path, default=HERE)
    parser.add_argument("--detector", choices=R.DETECTORS, default="learned",
                        help="the pitch and voicing stage: the trained MLP (default) or YIN's DSP")
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for filename, rate in MODELS.items():
        path = args.out_dir / filename
        path.write_bytes(build(rate, args.detector).SerializeToString(deterministic=True))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
