"""Builds models/autotune.onnx (44.1 kHz) and models/autotune-48k.onnx from reference.py.

Every step below computes what a step of `reference.Reference.process` computes; test_model.py
checks that the two agree over a long streamed signal. The output is deterministic: same bytes on
every run.

    python3 models/build.py            # writes both models next to this file

The graph is laid out for ONNX Runtime's cost model, where every node costs ~0.35 us or more
whatever its size (see models/README.md): YIN's correlation is one small Conv on a 4x decimated
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
VERSION = "3.0.0"
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


TERMS = 4
# Margins are scaled by a power of two (exact): a margin that is not 0 is at least ~1e-8 here (a
# float ulp near its threshold), so the scaled one clips to exactly 0 or 1.
SCALE = 2.0 ** 66


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
            terms = [{lane: SCALE * k for lane, k in term.items()} for term in weight]
        terms = terms + [never_binding] * (TERMS - len(terms))
        for group, term in zip(groups, terms):
            group.append(term)
    return groups


def build(sample_rate):
    c = R.Constants(sample_rate)
    g = Graph()
    N, H, BD, L = R.BLOCK, R.HISTORY, R.BLOCK_DEC, c.lags_dec
    zero = g.f(0.0)
    ln_sr = float(np.log(c.sr))
    k12 = float(F(12.0) / R.LOG2)

    # 1. buf = [history | block], the block clipped so that every sum below stays finite
    block = g.Clip("audio_buffer", g.f(-R.AUDIO_LIMIT), g.f(R.AUDIO_LIMIT))
    buf = g.Concat("history", block, axis=1)
    g.Slice(buf, g.ints(N), g.ints(N + H), g.ints(1), out="history_out")

    # 2. YIN on the time-reversed, 4x decimated signal: a Conv output index is then a lag.
    rev = g.Slice(buf, g.ints(H + N - 1), g.ints(H + N - 1 - c.rev_len), g.ints(1), g.ints(-1))
    dec = g.Conv(g.Reshape(rev, g.ints(1, 1, c.rev_len)), g.const(c.fir.reshape(1, 1, -1)),
                 strides=[R.DEC])                                                # [1, 1, dec_len]
    blk = g.slice(dec, 0, BD, axis=2)
    e0 = g.ReduceSumSquare(blk, axes=[1, 2], keepdims=0)                       # [1]
    cross = g.Conv(dec, g.Mul(blk, g.f(-2.0)), e0)                             # e0 - 2 C(lag)
    # lagged energy: a window sum of the squares = difference of their running sum BD apart
    running = g.CumSum(g.Mul(dec, dec), g.const(2, np.int64))
    window = np.zeros((1, 1, 2), np.float32)
    window[0, 0] = [-1.0, 1.0]
    energy = g.Conv(running, g.const(window), dilations=[BD], pads=[1, 0])
    # floored: the running sum stays > 0 and every CMNDF finite, even on silence or DC
    diff = g.Max(g.Add(cross, energy), g.f(R.DIFF_FLOOR))                       # [1, 1, L]
    cmnd = g.Div(diff, g.Mul(g.CumSum(diff, g.const(2, np.int64)), g.const(c.inv_tau.reshape(1, 1, L))))

    # the lag: CMNDF minimum under the octave cost (and out-of-range lags priced out)
    cmnd = g.Reshape(cmnd, g.ints(1, L))
    i = g.ArgMin(g.Add(cmnd, g.const(c.lag_cost.reshape(1, L))), axis=1, keepdims=1)   # [1, 1] int64
    aperiodicity = g.GatherElements(cmnd, i, axis=1)

    # full-rate difference at REFINE_LAGS lags around 4 i; parabola through the smallest
    lags = R.REFINE_LAGS
    half_lags = lags // 2
    rows = (H + np.arange(N)[None, :] + half_lags - np.arange(lags)[:, None]).reshape(1, lags * N)
    i4 = g.Mul(i, g.const(R.DEC, np.int64))
    lagged = g.Reshape(g.GatherElements(buf, g.Sub(g.const(rows, np.int64), i4), axis=1), g.ints(1, lags, N))
    d = g.ReduceSumSquare(g.Sub(lagged, block), axes=[2], keepdims=0)          # [1, lags]
    inner = lags - 2
    fit = np.zeros((lags, 3 * inner), np.float32)
    for k in range(inner):
        fit[k + 1, k] = 1.0                                       # d at the centre
        fit[k, inner + k], fit[k + 2, inner + k] = 0.5, -0.5      # (a - r) / 2
        fit[k:k + 3, 2 * inner + k] = [1.0, -2.0, 1.0]            # a - 2b + r
    centre, num, den = g.split(g.Gemm(d, g.const(fit)), [inner] * 3)
    k = g.ArgMin(centre, axis=1, keepdims=1)
    shift = g.Clip(g.Div(num, g.Max(den, g.f(1e-9))), g.f(-1.0), g.f(1.0))
    centres = np.arange(inner, dtype=F).reshape(1, inner) + F(1 - half_lags)   # lag of centre k minus 4 i
    offset_shift = g.GatherElements(g.Add(shift, g.const(centres)), k, axis=1)
    est = g.Add(g.Cast(i4, to=TensorProto.FLOAT), offset_shift)

    # 3-4. Per-block decisions. The pack: every scalar they read, clipped per lane; the first
    # LOGGED lanes also go through one Log.
    lo, hi = R.agree_bounds()
    state_lanes = ["pe", "pv", "cn", "pt", "sp", "unfed", "psi0"] + [f"a{h}" for h in range(R.HEADS)] + [
        f"s{h}" for h in range(R.HEADS)]
    logged = [("e0", 1e-12 * BD, BIG), ("est", 1.0, BIG), ("tun", 300.0, 600.0), ("tpc", 20.0, 5000.0)] + [
        (lane + "_l", 1.0 if lane == "sp" else 1e-6, BIG) for lane in state_lanes]
    pack_lanes = logged + [("ap", -BIG, BIG)] + [(lane, -BIG, BIG) for lane in state_lanes] + [
        ("str", 0.0, 1.0), ("ret", c.retune_floor_ms, 5000.0), ("trn", -24.0, 24.0), ("tp", -BIG, BIG),
        ("fkeep", 0.0, 1.0), ("fsh", -float(R.FORMANT_SHIFT_LIMIT), float(R.FORMANT_SHIFT_LIMIT))] + [
        (f"mask{k}", -BIG, BIG) for k in range(12)]
    pack = g.Concat(g.Reshape(e0, g.ints(1, 1)), est, "tuning_hz", "target_pitch", "state", aperiodicity, "state",
                    "correction_strength", "retune_ms", "transpose", "target_pitch", "formant_preserve",
                    "formant_shift", "scale_mask", axis=1)
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
    ramps = [{"ap": -1.0 / float(R.VOICING_RAMP), "1": float(R.VOICING_AP / R.VOICING_RAMP + F(0.5))},
             {"ln_e0": float(F(10.0) / F(np.log(10.0)) / R.GATE_RANGE_DB),
              "1": float((-F(10.0) / F(np.log(10.0)) * F(np.log(BD)) - R.GATE_DB) / R.GATE_RANGE_DB)}]
    voiced = [plus(ramp, {"1": -BELOW_HALF}) for ramp in ramps]  # both ramps >= 0.5
    manual, auto = {"tp": 1.0, "1": -float(R.MANUAL_HZ)}, {"tp": -1.0, "1": ABOVE_MANUAL}
    # a class is allowed at mask 1; "any allowed" is a mask sum above 0.5
    allowed = dict({f"mask{k}": 1.0 for k in range(12)}, **{"1": -0.5})
    none_allowed = dict({f"mask{k}": -1.0 for k in range(12)}, **{"1": ABOVE_HALF})
    was_voiced = {"pv": 1.0, "1": -BELOW_HALF}
    held, not_held = {"pt": 1.0, "1": -BELOW_NO_TARGET}, {"pt": -1.0, "1": float(R.NO_TARGET)}
    spaced, unspaced = {"sp": 1.0, "1": -0.5}, {"sp": -1.0, "1": ABOVE_HALF}
    agree = voiced + [{"est": 1.0, "pe": -float(lo)}, {"pe": float(hi), "est": -1.0}]
    update = voiced + [auto, allowed]
    always = []
    pt, one = {"pt": 1.0}, {"1": 1.0}
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
        ("pv", always, {"pv": 1.0}),                       # voicing ramp and formant shift
        ("sh_pv", ({"pv": 1.0},), {"fsh": float(R.LOG2 / F(12.0))}),
        ("sh_v", tuple(ramps), {"fsh": float(R.LOG2 / F(12.0))}),
        ("resample", always, {"1": 1.0, "fkeep": -1.0}),  # how much of rho the formants follow
        ("str_pv", ({"str": 1.0},), {"pv": 1.0}),
        ("voicing", tuple(ramps), one),                    # voicing: the lesser ramp, clipped
        ("v_str", tuple(ramps), {"str": 1.0}),
    ]
    late = [("upd_note", update), ("ag_trend", agree), ("inv_tau", always), ("detect", voiced)]
    weight_groups = weight_columns([w for _, w, _ in early] + [w for _, w in late])

    u, ands, num, den, values, cn, slope, lever = lanes_a.linear([
        ("u", [{lane: k / 12.0 for lane, k in dict(m_in, **{"1": m_in["1"] - cls}).items()} for cls in range(12)]),
        ("ands", [col for group in weight_groups for col in group]),
        ("num", [{"1": 1e-3}, {"1": 30.0}]),
        ("den", [{"ret": float(c.sr / F(3000.0))}, {"est": 1.0}]),
        ("values", [value for _, _, value in early]),
        ("cn", [{"cn": 1.0}]),
        ("slope", [{"ln_est": 1.0 / N, "ln_pe": -1.0 / N}]),
        ("lever", [{"1": float(F(0.5 + N / 2) - R.DMIN), "est": -0.5}]),
    ])

    # every weight: the least of its terms, clipped to [0, 1]
    count = len(early) + len(late)
    weights = g.Clip(g.ReduceMin(g.Reshape(ands, g.ints(TERMS, count)), axes=[0], keepdims=1), zero, g.f(1.0))

    # auto note: the nearest allowed candidate, the current note kept within the hysteresis
    r = g.Round(u)
    candidates = g.Add(g.Mul(r, g.f(12.0)), g.const(np.arange(12, dtype=F).reshape(1, 12)))
    bonus = g.Where(g.Equal(candidates, cn), g.Add("scale_mask", g.f(R.HYSTERESIS_ST / F(12.0))), "scale_mask")
    best = g.ArgMin(g.Sub(g.Abs(g.Sub(r, u)), bonus), axis=1, keepdims=1)
    auto_note = g.GatherElements(candidates, best, axis=1)

    # 1/time constant and 1/estimate, both scaled into [0, 1]
    ratios = g.Clip(g.Div(num, den), zero, g.f(1.0))
    trend = g.Mul(slope, lever)

    products = g.Mul(weights, g.Concat(values, auto_note, trend, ratios, axis=1))
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
    # log target period = A - nB glide(n), A at the end of the glide
    ltp_a = plus(total("ln_sr_tun"), {"1": 69.0 * ln2_12}, times(-ln2_12, m_target))
    ltp_nb = plus(times(ln2_12, start), times(-ln2_12, m_target))
    basis_rows = {  # per-sample rows = [1, n, (n+1)/N, n+1] @ coefficients
        "log_rate": [plus(log_rate, times(-1.0, ltp_a)), log_slope, {}, {}],
        "glide_arg": [{}, {}, {}, {"inv_tau": -1e3}],
        "sv": [total("str_pv"), {}, plus(total("v_str"), minus("str_pv")), {}],
        "period": [spacing, {}, spacing_change, {}],
        "log_rate_period": [log_rate, log_slope, {}, {}],
        "voicing": [total("pv"), {}, plus(total("voicing"), minus("pv")), {}],
        "shift": [total("sh_pv"), {}, plus(total("sh_v"), minus("sh_pv")), {}],
    }
    coefficients = [basis_rows[row][b] for row in basis_rows for b in range(4)]
    keep = plus(one, minus("unfed"))
    heads = R.HEADS
    coef, nb, partial, _, _, log_freq_base, applied_weight, keep_model, unfed_weight, resample = lanes_c.linear([
        ("coefficients", coefficients),
        ("ltp_nb", [ltp_nb]),
        ("state", [total("v_est"), total("voicing"),
                   plus(total("upd_note", "cn"), minus("upd_cn")),
                   plus({"1": 69.0}, times(k12, plus(total("ln_sr_tun"), times(-1.0, ltp_a)))),
                   plus(spacing, spacing_change), {}, {}] + [{"1": float(c.latency_samples - N)}] * heads + [{}] * heads),
        ("detected", [{"detect": float(c.sr / F(30.0))}]),
        ("confidence", [total("voicing")]),
        ("log_freq", [plus({"1": ln_sr}, times(-1.0, ltp_a))]),
        ("applied", [plus(total("man_report", "v"), minus("v_man"))]),
        ("keep", [keep] * (4 * heads)),
        ("unfed", [total("unfed")]),
        ("resample", [total("resample")]),
    ], outs=[None, None, None, "detected_pitch", "confidence", None, None, None, None, None])

    # Per-sample work is laid out [rows, N]: ONNX Runtime broadcasts fast only over long inner spans.
    n = np.arange(N, dtype=F)
    basis = np.stack([np.ones(N, F), n, (n + F(1.0)) / F(N), n + F(1.0)])
    log_rate_a, glide_arg, sv, period, log_rate_period, v, v_shift = g.split(
        g.Gemm(g.Reshape(coef, g.ints(len(basis_rows), 4)), g.const(basis)), [1] * 7, axis=0)

    # 4. read rate in the log domain: exponent = sv (ln rate period - ln target period); the
    # output period is the rate period / rho
    glide_term = g.Mul(g.Exp(glide_arg), nb)
    limit = float(F(np.log(R.RHO_LIMIT)))
    exponent = g.Clip(g.Mul(sv, g.Add(log_rate_a, glide_term)), g.f(-limit), g.f(limit))
    out_period = g.Max(g.Exp(g.Sub(log_rate_period, exponent)), g.f(R.MIN_OUT_PERIOD))

    # 5. grains. Formant rate gamma, the input phase over the buffer, the output grain phase psi.
    gamma = g.Exp(g.Add(g.Mul(exponent, resample), v_shift))
    phase_new = g.Add(g.CumSum(g.Reciprocal(period), g.const(1, np.int64)), g.slice("phase", H - 1, H))
    phase_buf = g.Concat("phase", phase_new, axis=1)                                 # [1, H + N]
    phase_end = g.slice(phase_buf, H + N - 1, H + N)
    g.Sub(g.slice(phase_buf, N, N + H), g.Floor(phase_end), out="phase_out")
    psi = g.Add(g.CumSum(g.Reciprocal(out_period), g.const(1, np.int64)), g.slice("state", R.S_PSI, R.S_PSI + 1))
    k = g.Floor(psi)
    psi_frac = g.Sub(psi, k)
    read = g.CumSum(gamma, g.const(1, np.int64))
    # start sample of grains 1..GRAINS: the count of samples before psi reaches each
    grains = R.GRAINS
    before = g.Cast(g.Less(psi, g.const(np.arange(1, grains + 1, dtype=F).reshape(grains, 1))), to=TensorProto.FLOAT)
    starts = g.Min(g.ReduceSum(before, g.ints(1), keepdims=0), g.f(N - 1))          # [GRAINS]
    span = g.Min(g.Max(g.Div(period, gamma), g.Mul(out_period, g.f(R.MIN_SPAN))),
                 g.Mul(out_period, g.f(heads / 2)))
    unvoiced_half = g.Mul(g.Sub(g.f(1.0), v), g.Mul(period, g.f(0.5)))
    reach = g.Add(g.Add(g.Mul(g.Relu(g.Sub(gamma, g.f(1.0))), g.Mul(span, g.f(2.0 * R.REACH_MARGIN))), g.f(R.DMIN)),
                  unvoiced_half)
    span_periods = g.Div(span, out_period)
    at = g.Gather(g.Concat(reach, v, read, psi, out_period, gamma, span_periods, axis=0),
                  g.Cast(starts, to=TensorProto.INT64), axis=1)
    reach_at, v_at, read_at, psi_at, out_period_at, gamma_at, span_at = g.split(at, [1] * 7, axis=0)  # [1, GRAINS]
    # samples from the crossing itself to the start sample, so a start rounded a sample later lands
    # on the same position
    late = g.Mul(g.Sub(psi_at, g.const(np.arange(1, grains + 1, dtype=F).reshape(1, grains))), out_period_at)
    aim = g.Sub(g.Sub(g.Reshape(starts, g.ints(1, grains)), late), reach_at)
    # the pitch mark at or before aim, where voiced: phase locally linear between two samples
    index = g.Clip(g.Add(aim, g.f(H)), zero, g.f(H + N - 2))
    below = g.Floor(index)
    below_i = g.Cast(below, to=TensorProto.INT64)
    lo_hi = g.Gather(phase_buf, g.Concat(below_i, g.Add(below_i, g.const(1, np.int64)), axis=1), axis=1)
    phase_lo, phase_hi = g.split(g.Reshape(lo_hi, g.ints(1, 2 * grains)), [grains, grains])
    step = g.Max(g.Sub(phase_hi, phase_lo), g.f(1.0 / c.tau_max))
    at_aim = g.Add(phase_lo, g.Mul(g.Sub(index, below), step))
    mark = g.Sub(aim, g.Div(g.Mul(v_at, g.Sub(at_aim, g.Floor(at_aim))), step))
    # anchors: the state's grains oldest first, then this block's; head h plays grain k(n) - h
    # (and each grain's half-length in output periods, fixed at its start, so its window follows
    # the grain phase alone and never jumps when a parameter does)
    state_heads = g.Slice("state", g.ints(R.S_SPANS - 1), g.ints(R.S_HEADS - 1), g.ints(1), g.ints(-1))
    state_spans = g.Slice("state", g.ints(R.S_SPANS + heads - 1), g.ints(R.S_SPANS - 1), g.ints(1), g.ints(-1))
    crossing_read = g.Sub(read_at, g.Mul(gamma_at, late))
    state_anchors = g.Sub(state_heads, g.f(c.latency_samples))   # stored offset by the latency
    anchors = g.Reshape(g.Concat(state_anchors, g.Sub(mark, crossing_read), axis=1), g.ints(heads + grains))
    spans = g.Reshape(g.Concat(state_spans, span_at, axis=1), g.ints(heads + grains))
    slot = g.Min(g.Add(g.Cast(k, to=TensorProto.INT64),
                       g.const(np.arange(heads - 1, -1, -1).reshape(heads, 1), np.int64)),
                 g.const(grains + heads - 1, np.int64))                             # [HEADS, N]
    unclipped = g.Add(g.Gather(anchors, slot, axis=0), read)
    newest = np.arange(N, dtype=F).reshape(1, N) + F(H) - R.DMIN
    positions = g.Min(g.Max(g.Add(unclipped, g.f(H)), g.f(2.0)), g.const(newest))    # buffer index
    # raised-cosine windows two spans long from each grain's start, normalised to sum to one
    age = g.Add(psi_frac, g.const(np.arange(heads, dtype=F).reshape(heads, 1)))
    grain_span = g.Max(g.Gather(spans, slot, axis=0), g.f(R.MIN_SPAN))
    edge = g.Clip(g.Div(g.Min(age, g.Sub(g.Mul(grain_span, g.f(2.0)), age)), grain_span), zero, g.f(1.0))
    window = g.Sub(g.f(0.5), g.Mul(g.Cos(g.Mul(edge, g.f(np.pi))), g.f(0.5)))
    head_weights = g.Div(window, g.Max(g.ReduceSum(window, g.ints(0), keepdims=1), g.f(R.WEIGHT_FLOOR)))

    # one GatherElements reads all 4 Catmull-Rom taps of every head
    floor = g.Floor(positions)
    t = g.Sub(positions, floor)
    taps = g.Add(g.Cast(floor, to=TensorProto.INT64), g.const(np.arange(-1, 3).reshape(4, 1, 1), np.int64))
    samples = g.Reshape(g.GatherElements(buf, g.Reshape(taps, g.ints(1, 4 * heads * N)), axis=1),
                        g.ints(4 * heads, N))
    wt = g.Mul(head_weights, t)
    wt2 = g.Mul(wt, t)
    powers = g.Concat(head_weights, wt, wt2, g.Mul(wt2, t), axis=0)                  # [4 HEADS, N]
    # row tap * HEADS + head of the weights = sum over powers p of CUBIC[p, tap] * powers[p * HEADS + head]
    tap_weights = g.Gemm(g.const(np.kron(R.CUBIC.T, np.eye(heads, dtype=F))), powers)
    # the column sum, or (unfed state: a caller that does not stream state back) the input itself
    g.Gemm(keep_model, g.Mul(samples, tap_weights), g.Mul("audio_buffer", unfed_weight), out="corrected_audio")

    # state and reported pitch: the last sample's values enter through Gemms with one-hot rows
    def last_row(lane):
        rows = np.zeros((N, R.STATE_LEN), np.float32)
        rows[N - 1, lane] = 1.0
        return rows

    with_psi = g.Gemm(psi_frac, g.const(last_row(R.S_PSI)), partial)
    with_target = g.Gemm(glide_term, g.const(k12 * last_row(R.S_TARGET)), with_psi)
    place = np.zeros((2 * heads, R.STATE_LEN), np.float32)
    place[np.arange(2 * heads), R.S_HEADS + np.arange(2 * heads)] = 1.0
    last_heads = g.Reshape(g.slice(g.Concat(unclipped, grain_span, axis=0), N - 1, N), g.ints(1, 2 * heads))
    g.Gemm(last_heads, g.const(place), with_target, out="state_out")
    log_freq = g.Gemm(glide_term, g.const(last_row(0)[:, :1]), log_freq_base)
    g.Mul(applied_weight, g.Exp(log_freq), out="applied_target_hz")

    f32 = TensorProto.FLOAT
    inputs = [
        helper.make_tensor_value_info("audio_buffer", f32, [1, N]),
        helper.make_tensor_value_info("target_pitch", f32, [1, 1]),
        helper.make_tensor_value_info("correction_strength", f32, [1, 1]),
        helper.make_tensor_value_info("scale_mask", f32, [1, 12]),
        helper.make_tensor_value_info("tuning_hz", f32, [1, 1]),
        helper.make_tensor_value_info("retune_ms", f32, [1, 1]),
        helper.make_tensor_value_info("transpose", f32, [1, 1]),
        helper.make_tensor_value_info("formant_preserve", f32, [1, 1]),
        helper.make_tensor_value_info("formant_shift", f32, [1, 1]),
        helper.make_tensor_value_info("history", f32, [1, H]),
        helper.make_tensor_value_info("phase", f32, [1, H]),
        helper.make_tensor_value_info("state", f32, [1, R.STATE_LEN]),
    ]
    outputs = [
        helper.make_tensor_value_info("corrected_audio", f32, [1, N]),
        helper.make_tensor_value_info("confidence", f32, [1, 1]),
        helper.make_tensor_value_info("detected_pitch", f32, [1, 1]),
        helper.make_tensor_value_info("applied_target_hz", f32, [1, 1]),
        helper.make_tensor_value_info("history_out", f32, [1, H]),
        helper.make_tensor_value_info("phase_out", f32, [1, H]),
        helper.make_tensor_value_info("state_out", f32, [1, R.STATE_LEN]),
    ]
    # Defaults for everything past the base contract, so a caller that feeds only the base inputs
    # still runs. ONNX Runtime lists these as overridable initializers, not inputs; autotuned reads
    # both lists.
    unfed_state = np.zeros((1, R.STATE_LEN), np.float32)
    unfed_state[0, R.S_UNFED] = 1.0
    defaults = {"scale_mask": np.ones((1, 12), np.float32), "tuning_hz": np.full((1, 1), 440.0, np.float32),
                "retune_ms": np.zeros((1, 1), np.float32), "transpose": np.zeros((1, 1), np.float32),
                "formant_preserve": np.ones((1, 1), np.float32), "formant_shift": np.zeros((1, 1), np.float32),
                "history": np.zeros((1, H), np.float32), "phase": np.zeros((1, H), np.float32),
                "state": unfed_state}
    g.inits.extend(numpy_helper.from_array(value, name) for name, value in defaults.items())
    graph = helper.make_graph(g.nodes, "autotune", inputs, outputs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="autotuned models/build.py", producer_version=VERSION)
    model.ir_version = 8
    meta = {"sample_rate": str(sample_rate), "block_size": str(N),
            "latency_samples": str(c.latency_samples), "name": "autotune-yin-grains", "version": VERSION}
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
