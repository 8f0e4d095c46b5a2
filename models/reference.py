"""NumPy reference of the default autotuned model: the source of truth that build.py turns into ONNX.

One call of `Reference.process` is one 512-sample block; everything that must survive a block
boundary lives in the `history` and `state` arrays, exactly as the ONNX graph's state pairs do.
All arithmetic is float32 so the graph can be checked against this sample by sample.

Algorithm (see models/README.md for the why):
  1. buf = [history | block]
  2. YIN's cumulative-mean-normalised difference of the block against the past, on the signal
     decimated 8x; the learned detector (models/train/) picks its lag and the voicing from it and
     the last blocks' (or, with detector="yin", its minimum under an octave cost and a ramp in the
     aperiodicity); then the full-rate difference around that lag and a parabola through its
     minimum; voicing is the lesser of that and a level gate
  3. per-sample log period track: log-linear trend between consecutive estimates that agree
  4. read rate rho(n) = (P(n) / P_target(n)) ** (strength * voicing(n)); the output period is
     P(n) / rho(n)
  5. pitch-synchronous grains (TD-PSOLA family), up to HEADS at a time: a grain starts every
     output period, one input period after the grain before it (its delay wrapped by a period
     into a fixed window, so grains stay in phase and the delay bounded), and is read at the
     formant rate gamma = rho ** (1 - formant_preserve) * 2 ** (formant_shift / 12) for two spans
     (one input period at that rate, each); the windows are normalised to sum to one. gamma = 1
     keeps the formants where they were sung, gamma = rho is v2's resampler. At rho = 1 (in tune,
     strength 0, unvoiced) every grain has the same delay: the output is the input, delayed.
"""

import pathlib

import numpy as np

F = np.float32
D = np.float64

BLOCK = 512
HISTORY = 2048
# Input samples are clipped to this magnitude: any finite input then keeps every energy sum finite.
AUDIO_LIMIT = F(1e4)
# YIN searches lags on the signal decimated by DEC (DEC_TAPS-tap low-pass at DEC_CUTOFF_HZ), then
# refines at the full rate over REFINE_LAGS lags centred on DEC times the decimated lag (the inner
# ones reach DEC either way: a decimated lag one off still leaves the true period in reach, which
# the learned detector's pick needs at low pitches, where a decimated lag is 26 cents). Every
# voice's correlation is a matrix product over the decimated block (a Conv cannot take a
# per-voice kernel), so DEC 8 costs a quarter of DEC 4's; measured on the vibrato and melody
# voices, the accuracy is the same (p95 2.77 against 2.80 cents).
DEC = 8
DEC_TAPS = 32
DEC_CUTOFF_HZ = 2250.0
BLOCK_DEC = BLOCK // DEC
REFINE_LAGS = 19
# The refinement's difference at each inner lag is weighed by 1 + REFINE_PENALTY times its distance
# from the centre (in units of the outermost's): a true period's dip (near zero) still wins, but in
# noise, where the difference is flat, the minimum stays near the detector's pick instead of
# drifting to an edge. Measured on the learned detector's held-out babble at 44.1 kHz, gross
# errors 0 / 0.1 / 0.3 / 1.0: 3.8 / 2.7 / 1.7 / 1.5 % at 10 dB SNR, 12.8 / 9.5 / 6.6 / 5.5 % at 5 dB;
# on clean vowels the p95 error 3.89 / 3.89 / 3.95 / 4.91 cents.
REFINE_PENALTY = F(0.3)
# Cost of each octave of lag added to the CMNDF before its minimum is taken.
OCTAVE_COST = 0.05
# Floor of the difference function: keeps every CMNDF finite, even on silence or DC.
DIFF_FLOOR = F(1e-20)
OUT_OF_RANGE = 1e30
RETUNE_FLOOR_SAMPLES = 1e-3
# target_pitch above this many Hz is a manual target; 0 (or anything below) is auto mode.
MANUAL_HZ = F(0.5)
# A held target below this (MIDI) is "none".
NO_TARGET = F(1e-3)
# Aperiodicity (CMNDF at the chosen lag) at which voicing is 0.5; the ramp is VOICING_RAMP wide.
VOICING_AP = F(0.35)
VOICING_RAMP = F(0.15)
# Level gate: fully unvoiced below GATE_DB dBFS RMS, fully voiced GATE_RANGE_DB above it.
GATE_DB = F(-60.0)
GATE_RANGE_DB = F(10.0)
# The learned detector (models/train/, `detector="learned"`): an MLP over [the recent peak level,
# then this block's and the DETECTOR_CONTEXT - 1 blocks' before it decimated CMNDF and log level]
# gives a logit per lag and a voicing logit; it replaces YIN's lag pick and voicing ramp. Its last
# layer also takes this block's CMNDF (a skip past the narrow hidden layers). The log
# level is ln(max(e0, DETECTOR_LEVEL_FLOOR) / DETECTOR_LEVEL_FLOOR), so silence and the zeroed state
# are 0. The peak is the level, or the last peak less DETECTOR_PEAK_DECAY, whichever is higher: a
# block well below its phrase's level is likely bleed in a gap. Lags YIN prices out get
# -DETECTOR_MASK in the last layer's bias.
DETECTORS = ("learned", "yin")
DETECTOR_CONTEXT = 4
DETECTOR_LEVEL_FLOOR = F(1e-12 * BLOCK_DEC)
# 0.2 dB a block: 20 dB in 1.2 s at 44.1 kHz.
DETECTOR_PEAK_DECAY = F(0.2 * np.log(10.0) / 10.0)
DETECTOR_MASK = F(1e4)
# The learned voicing probability becomes the periodicity through a ramp this wide around 0.5, so a
# block it is fairly sure is unvoiced (p <= 0.4) gets no correction at all, as YIN's ramp gives.
DETECTOR_VOICING_RAMP = F(0.2)
# Consecutive estimates within this many cents are one note: trend between them, else a step.
AGREE_CENTS = F(60.0)
# Auto mode keeps the current note until another allowed note is this many semitones closer
# (`note_hysteresis`, default a quarter of a 12-tone semitone; autotuned feeds a quarter of a
# tuning's smallest step, so a 19-EDO note 20 cents above a step is not held on the next one).
HYSTERESIS_ST = F(0.25)
HYSTERESIS_MAX = F(1.0)
# Allowed pitch classes the model takes (`scale_notes`): enough for any Scala scale a singer
# tunes to (19, 22, 31, 41, 53 notes to the octave); a scale with fewer notes repeats them.
SCALE_SLOTS = 64
# The periods a scale may have, semitones (0 = no note allowed: auto mode follows the voice).
SCALE_PERIOD_MAX = F(48.0)
# Auto mode chooses the note from the sung pitch's centre, a one-pole average over this time
# constant, so a vibrato's swings never pick the neighbouring note ("targeting ignores vibrato");
# a voice more than CENTRE_RESET_ST from the centre (a new note, an onset) restarts it there.
CENTRE_MS = 40.0
CENTRE_RESET_ST = F(0.8)
# Read rate limits: 25 semitones up or down (transpose reaches ±24).
RHO_LIMIT = F(4.25)
# Minimum head delay, for the cubic interpolator's look-ahead of two samples.
DMIN = F(2.0)
# Grains: output periods are at least MIN_OUT_PERIOD samples, so a block starts at most GRAINS
# new grains. A grain reads two input periods (at the formant rate) and lasts between
# MIN_SPAN and HEADS / 2 output periods; HEADS grains sound at once at most.
MIN_OUT_PERIOD = F(36.0)
GRAINS = 15
HEADS = 4
MIN_SPAN = F(0.6)
# A voice whose period is under HALF_GRAIN_MIN_MS has its spans stretched towards it, by at most
# MAX_STRETCH: two periods of a voice above ~245 Hz are too short a window to resolve its
# harmonics, so the spectrum between them, where a correction reads it, depends on their phases
# (the model card's transparency figures; other floors and caps measured no better).
HALF_GRAIN_MIN_MS = 4.08
MAX_STRETCH = F(1.6)
MAX_STRETCH_LN = F(np.log(MAX_STRETCH))
# Extra room, as a fraction of the grain's reach, for a formant rate that rises during a grain.
REACH_MARGIN = F(1.25)
# A grain's window is sin^2 over x = 0..pi (two spans), written as u^2 (u + WINDOW_C) with
# u = x (pi - x): within 0.17 % of the peak of a scaled sin^2 (the scale cancels where the windows
# are normalised), and ONNX Runtime computes those four products in a third of a Sin's time.
WINDOW_C = F(3.28)
WINDOW_PEAK = F(np.pi ** 2 / 4.0) ** 2 * (F(np.pi ** 2 / 4.0) + WINDOW_C)
# The weights' sum never falls below this (a thousandth of a window's peak) before it divides them.
WEIGHT_FLOOR = F(1e-3) * WINDOW_PEAK
FORMANT_SHIFT_LIMIT = F(12.0)
LOG2 = F(np.log(2.0))
# Spans are kept in units of 2/pi output periods, so a window is sin^2(age / span), age in periods.
SPAN_UNIT = F(2.0 / np.pi)
SPAN_UNIT_LN = F(np.log(2.0 / np.pi))
# A span (in SPAN_UNIT) times REACH is the grain's length in output periods, with the margin.
REACH = F(2.0) * REACH_MARGIN / SPAN_UNIT
REACH_LN = F(np.log(REACH))
# Where a block's estimate sits on the rate track: RATE_LEVER_PERIODS periods before the block's
# centre (measured on the vibrato voices of quality.py: 0 gives a p95 of 6.2 cents, 0.5 3.7, 1 2.8,
# 1.5 4.2; v2's -0.5 - DMIN / P, right for a resampler's read head, gives medians of 3-8 cents).
RATE_LEVER_PERIODS = F(1.0)
# Unvoiced sound after a voiced phrase is brought back to the reported latency, where a dry copy
# compensated by it lies (a blend, bypass): in a block unvoiced after an unvoiced one, the read rate
# closes RELAX_SHARE of the delay's distance from the latency, at most RELAX_LIMIT (ln of the
# rate), and the formant rate follows, so the grains read as one head resampled by at most that.
# Only where the last period leaves the latency inside the wrap window (a spacing above
# RELAX_MIN_SPACING latencies); a higher voice's window holds no delay much further from it.
RELAX_SHARE = F(0.5)
RELAX_LIMIT = F(np.log(1.03))
RELAX_MIN_SPACING = F(1.25)
# The pitch whose typical delay is reported as the latency: between the typical male and female
# singing voice, and the harmonic mean of the quality benchmark's base notes (82-523 Hz), so the
# latency equals the mean delay measured over them.
LATENCY_HZ = 160.0
STATE_LEN = 9 + 2 * HEADS
# Layout of the `state` tensor. S_UNFED is 1 only in the graph's default for `state`: a caller that
# does not stream state back gets the input block unchanged instead of a stateless mess. S_PSI is
# the fractional output grain phase, S_DELAY the next grain's delay minus the latency. S_HEADS..
# are the anchors of the sounding grains, oldest first, as buffer positions relative to the next
# block's start and offset by the latency (so a zeroed state is heads at the nominal delay, not at
# no delay); S_SPANS.. their half-lengths. S_CENTRE is the sung pitch's centre (MIDI note; 0
# after an unvoiced block).
S_EST, S_VOICING, S_NOTE, S_TARGET, S_SPACING, S_UNFED, S_PSI, S_DELAY, S_CENTRE = range(9)
S_HEADS = 9
S_SPANS = S_HEADS + HEADS


class Constants:
    """Everything that depends on the sample rate."""

    def __init__(self, sample_rate, detector="learned"):
        if detector not in DETECTORS:
            raise ValueError(f"detector {detector!r}: one of {DETECTORS}")
        self.sr = F(sample_rate)
        self.tau_min = int(round(sample_rate / 1100.0))
        self.tau_max = int(round(sample_rate / 69.0))
        # The period assumed before any voice was heard (the spacing of unvoiced grains).
        self.default_period = F(round(sample_rate / 200.0))
        self.ln_half_grain_min = F(np.log(HALF_GRAIN_MIN_MS * 1e-3 * sample_rate))
        # A grain's delay wraps within [DMIN, DMIN + P): half the voice's period past DMIN on
        # average, so the latency reported is that of a voice at LATENCY_HZ.
        self.latency_samples = int(round(float(DMIN) + 0.5 * sample_rate / LATENCY_HZ))
        # Decimated YIN: lags 0 .. lags_dec-1 at sample_rate / DEC.
        self.tau_min_dec = self.tau_min // DEC
        self.lags_dec = self.tau_max // DEC + 2
        self.dec_len = self.lags_dec + BLOCK_DEC - 1
        self.rev_len = DEC * (self.dec_len - 1) + DEC_TAPS
        self.fir = decimator(sample_rate)
        self.inv_tau = (1.0 / np.maximum(np.arange(self.lags_dec, dtype=D), 1.0)).astype(F)
        lags = np.arange(self.lags_dec, dtype=D)
        self.lag_cost = np.where((lags < self.tau_min_dec) | (lags > self.lags_dec - 2), OUT_OF_RANGE,
                                 OCTAVE_COST * np.log2(np.maximum(lags, 1.0))).astype(F)
        self.detector = detector
        self.lag_mask = np.where(self.lag_cost >= OUT_OF_RANGE, -DETECTOR_MASK, F(0.0)).astype(F)
        self.layers = detector_layers(sample_rate, self.lag_mask) if detector == "learned" else None
        self.detector_state_len = 1 + (DETECTOR_CONTEXT - 1) * (self.lags_dec + 1)
        # The share of the old centre a block keeps.
        self.centre_keep = F(np.exp(-BLOCK / (sample_rate * CENTRE_MS / 1000.0)))
        # Retune 0 ms still glides over RETUNE_FLOOR_SAMPLES: a finite time constant, no division by 0.
        self.retune_floor_ms = F(RETUNE_FLOOR_SAMPLES * 3000.0 / sample_rate)


def agree_bounds():
    """Ratios of consecutive period estimates that count as one note (AGREE_CENTS either way)."""
    half_width = AGREE_CENTS / F(1200.0) * LOG2
    return F(np.exp(-half_width)), F(np.exp(half_width))


def decimator(sample_rate):
    """Low-pass FIR for the 8x decimation before YIN: Hann-windowed sinc, unity gain at DC."""
    n = np.arange(DEC_TAPS, dtype=D) - (DEC_TAPS - 1) / 2.0
    cutoff = DEC_CUTOFF_HZ / sample_rate
    h = 2.0 * cutoff * np.sinc(2.0 * cutoff * n) * np.hanning(DEC_TAPS + 2)[1:-1]
    return (h / h.sum()).astype(F)


def detector_layers(sample_rate, lag_mask):
    """The learned detector's [(weights, bias)] for `sample_rate`, trained by models/train/train.py;
    the last bias carries `lag_mask` (the lags YIN prices out)."""
    path = pathlib.Path(__file__).resolve().parent / "train" / f"detector-{int(sample_rate)}.npz"
    with np.load(path) as saved:
        count = len([key for key in saved.files if key.startswith("w")])
        layers = [(saved[f"w{k}"].astype(F), saved[f"b{k}"].astype(F)) for k in range(count)]
    w, b = layers[-1]
    layers[-1] = (w, (b + np.concatenate([lag_mask, [F(0.0)]])).astype(F))
    return layers


def difference(buf, c):
    """YIN's cumulative-mean-normalised difference over every decimated lag of the newest BLOCK
    samples against the past, and the block's decimated energy.

    The lag search runs on an 8x decimated signal, where the whole difference function is one small
    correlation.
    """
    # Time-reversed, so a correlation output index is a lag and the block comes first.
    rev = buf[::-1][:c.rev_len]
    dec = np.array([np.dot(c.fir, rev[DEC * m:DEC * m + DEC_TAPS]) for m in range(c.dec_len)], F)
    blk = dec[:BLOCK_DEC]
    lags = np.arange(c.lags_dec)
    cross = np.array([np.dot(blk, dec[t:t + BLOCK_DEC]) for t in lags], F)
    energy = np.array([np.sum(dec[t:t + BLOCK_DEC] ** 2, dtype=F) for t in lags], F)
    e0 = energy[0]
    diff = np.maximum(energy + e0 - F(2.0) * cross, DIFF_FLOOR)
    return diff / (np.cumsum(diff, dtype=F) * c.inv_tau), e0


def yin_pick(cmnd, c):
    """YIN's decimated lag, the CMNDF minimum under an octave cost (each octave down costs
    OCTAVE_COST, which picks the fundamental over its subharmonics the way YIN's first-dip rule
    does), and its periodicity in [0, 1] (a ramp in the aperiodicity, the CMNDF there)."""
    i = int(np.argmin(cmnd + c.lag_cost))
    return i, F(np.clip((VOICING_AP - cmnd[i]) / VOICING_RAMP + F(0.5), F(0.0), F(1.0)))


def detector_level(e0):
    return np.log(np.maximum(e0 * F(1.0 / DETECTOR_LEVEL_FLOOR), F(1.0)))


def detector_inputs(cmnd, e0, detector_state):
    """The learned detector's input row and the detector state the next block gets (its head)."""
    level = detector_level(e0)
    peak = np.maximum(level, detector_state[0] - DETECTOR_PEAK_DECAY)
    x = np.concatenate([[peak], cmnd, [level], detector_state[1:]]).astype(F)
    return x, x[:len(detector_state)]


def learned_pick(cmnd, e0, detector_state, c):
    """The learned detector's decimated lag (its lag posterior's peak), periodicity (a ramp in its
    voicing probability) and next detector state."""
    x, state = detector_inputs(cmnd, e0, detector_state)
    for k, (w, b) in enumerate(c.layers):
        if k == len(c.layers) - 1:
            x = np.concatenate([x, cmnd])
        x = (x @ w + b).astype(F)
        if k < len(c.layers) - 1:
            x = np.maximum(x, F(0.0))
    i = int(np.argmax(x[:c.lags_dec]))
    p = F(F(1.0) / (F(1.0) + np.exp(-x[c.lags_dec])))
    return i, np.clip((p - F(0.5)) / DETECTOR_VOICING_RAMP + F(0.5), F(0.0), F(1.0)), state


def refine_weights():
    """The weights of the refinement's inner lags, nearest the centre 1 (REFINE_PENALTY)."""
    half = REFINE_LAGS // 2
    distance = np.abs(np.arange(1, REFINE_LAGS - 1) - half) / F(half - 1)
    return (F(1.0) + REFINE_PENALTY * distance.astype(F)).astype(F)


def refine(buf, i):
    """The period (samples): the full-rate difference at REFINE_LAGS lags around DEC times the
    decimated lag i, and a parabola through its smallest inner value (weighed by refine_weights)."""
    coarse = DEC * i
    block = buf[HISTORY:]
    half = REFINE_LAGS // 2
    d = np.array([np.sum((block - buf[HISTORY - tau:HISTORY - tau + BLOCK]) ** 2, dtype=F)
                  for tau in range(coarse - half, coarse + half + 1)], F)
    k = 1 + int(np.argmin(d[1:-1] * refine_weights()))
    a, b, r = d[k - 1], d[k], d[k + 1]
    num, den = F(0.5) * (a - r), a - F(2.0) * b + r
    shift = np.clip(num / np.maximum(den, F(1e-9)), F(-1.0), F(1.0))
    return F(F(coarse - half + k) + shift)


def voicing(periodic, e0):
    """Voicing in [0, 1]: the lesser of periodicity and level, so "voiced" (>= 0.5) needs both."""
    level_db = F(10.0) / F(np.log(10.0)) * np.log(np.maximum(e0, F(1e-12 * BLOCK_DEC)) / F(BLOCK_DEC))
    loud = np.clip((level_db - GATE_DB) / GATE_RANGE_DB, F(0.0), F(1.0))
    return F(min(periodic, loud))


def scale_from_mask(mask):
    """(scale_notes, scale_period) for 12 flags C..B: the allowed classes, repeated to fill every
    slot; no class allowed is period 0."""
    classes = np.flatnonzero(np.asarray(mask, F) > F(0.5)).astype(F)
    if classes.size == 0:
        return np.zeros(SCALE_SLOTS, F), F(0.0)
    return np.resize(classes, SCALE_SLOTS).astype(F), F(12.0)


def sung_centre(m_in, centre, keep):
    """The pitch auto mode chooses a note from: the centre moved towards m_in, or m_in itself
    when the centre is CENTRE_RESET_ST or more away (a new note, or none before)."""
    x = centre - m_in
    return m_in + (x * keep if np.abs(x) < CENTRE_RESET_ST else F(0.0))


def note_choice(m_sel, notes, period, current, hysteresis=HYSTERESIS_ST):
    """The allowed pitch nearest to m_sel; the current note wins unless another is `hysteresis` closer.

    Candidates are the nearest pitch of each allowed class (`notes`, semitones, repeating every
    `period` semitones), distances in semitones.
    """
    period = np.maximum(period, F(1.0))
    r = np.round((m_sel - notes) / period)
    candidates = r * period + notes
    bonus = np.where(candidates == current, F(hysteresis), F(0.0))
    return candidates[int(np.argmin(np.abs(candidates - m_sel) - bonus))]


# Catmull-Rom weights of taps -1, 0, 1, 2 as a polynomial in the fraction t: [1, t, t^2, t^3] @ CUBIC.
CUBIC = np.array([[0.0, 1.0, 0.0, 0.0],
                  [-0.5, 0.0, 0.5, 0.0],
                  [1.0, -2.5, 2.0, -0.5],
                  [-0.5, 1.5, -1.5, 0.5]], F)


def heads(buf, pos, weight):
    """Sum over heads of weight * Catmull-Rom interpolation of buf at positions pos, both [BLOCK, heads]."""
    floor = np.floor(pos)
    t = pos - floor
    taps = floor.astype(np.int64)[:, :, None] + np.arange(-1, 3)
    powers = np.stack([weight, weight * t, weight * t * t, weight * t * t * t], axis=2)
    return np.sum(buf[taps] * (powers @ CUBIC), axis=(1, 2), dtype=F)


def cumulative(start, steps):
    """start + the running sum of steps, summed in that order (as a CumSum over [start | steps]).

    Summed from the start, both implementations round every partial sum at the same magnitude;
    a CumSum from 0 and an Add after it round a different way from NumPy's and lose the
    sample-level agreement test_model.py checks.
    """
    return np.cumsum(np.concatenate([[F(start)], steps]).astype(F), dtype=F)[1:]


class Reference:
    """The model, one block at a time, with its state held between calls."""

    def __init__(self, sample_rate, detector="learned"):
        self.c = Constants(sample_rate, detector)
        self.history = np.zeros(HISTORY, F)
        self.state = np.zeros(STATE_LEN, F)
        self.detector_state = np.zeros(self.c.detector_state_len, F)

    def buffer(self, block):
        """[history | block] as this block will see it: what `process` analyses and reads from."""
        return np.concatenate([self.history, np.clip(np.asarray(block, F), -AUDIO_LIMIT, AUDIO_LIMIT)])

    def process(self, block, target_pitch=0.0, strength=1.0, scale_mask=None, tuning_hz=440.0,
                retune_ms=0.0, transpose=0.0, formant_preserve=1.0, formant_shift=0.0, analysed=None,
                scale_notes=None, scale_period=None, note_hysteresis=HYSTERESIS_ST):
        """Returns (corrected block, confidence, detected_pitch, applied_target_hz).

        `analysed` is the buffer pitch and voicing are found on, if not this voice's own
        `buffer(block)`: for linked voices, the voice_mix row's mix of the group's buffers, so that
        they are all corrected by the same decisions; the grains still read this voice's own.
        The allowed notes are `scale_notes` and `scale_period` (the model's inputs) if given, else
        the 12 flags `scale_mask` (all allowed when absent)."""
        c = self.c
        if scale_notes is None:
            notes, period = scale_from_mask(np.ones(12, F) if scale_mask is None else scale_mask)
        else:
            notes, period = np.asarray(scale_notes, F), F(scale_period if scale_period is not None else 12.0)
        period = np.clip(period, F(0.0), SCALE_PERIOD_MAX)
        target_pitch, strength = F(target_pitch), np.clip(F(strength), F(0.0), F(1.0))
        tuning = np.clip(F(tuning_hz), F(300.0), F(600.0))
        semitones = np.clip(F(transpose), F(-24.0), F(24.0))
        retune = np.clip(F(retune_ms), c.retune_floor_ms, F(5000.0))
        keep = np.clip(F(formant_preserve), F(0.0), F(1.0))
        shift = np.clip(F(formant_shift), -FORMANT_SHIFT_LIMIT, FORMANT_SHIFT_LIMIT)
        s = self.state
        n = np.arange(BLOCK, dtype=F)
        ramp = (n + F(1.0)) / F(BLOCK)
        buf = self.buffer(block)
        ln_sr = np.log(c.sr)

        # 2. pitch and voicing of this block
        analysed = buf if analysed is None else np.asarray(analysed, F)
        cmnd, e0 = difference(analysed, c)
        if c.layers is None:
            lag, periodic = yin_pick(cmnd, c)
        else:
            lag, periodic, self.detector_state = learned_pick(cmnd, e0, self.detector_state, c)
        est = refine(analysed, lag)
        v_blk = voicing(periodic, e0)
        voiced = v_blk >= F(0.5)

        # 3. period track, in log period: the read rate uses the period where the heads read, a
        # log-linear trend between agreeing estimates (within AGREE_CENTS), else this block's
        # estimate.
        prev_est = s[S_EST]
        lo, hi = agree_bounds()
        agree = voiced and est - prev_est * lo > 0 and prev_est * hi - est > 0
        spaced = s[S_SPACING] > F(0.5)
        spacing_prev = s[S_SPACING] if spaced else c.default_period
        ln_spacing = np.log(max(s[S_SPACING], F(1.0))) if spaced else np.log(c.default_period)
        ln_est, ln_prev = np.log(est), np.log(max(prev_est, F(1e-6)))
        if agree:
            slope = (ln_est - ln_prev) / F(BLOCK)
            offset = ln_prev + slope * (F(0.5 + BLOCK / 2) + RATE_LEVER_PERIODS * est)
        else:
            slope, offset = F(0.0), (ln_est if voiced else ln_spacing)
        log_rate_period = offset + slope * n

        # target note (MIDI, fractional): manual Hz, else nearest allowed note, else the input
        ln_tuning = np.log(tuning)
        m_in = F(69.0) + F(12.0) / LOG2 * (ln_sr - np.log(est) - ln_tuning)
        manual = target_pitch > MANUAL_HZ
        any_allowed = period > F(0.5)
        note = s[S_NOTE]
        m_sel = sung_centre(m_in, s[S_CENTRE], c.centre_keep)
        if voiced and not manual and any_allowed:
            hysteresis = np.clip(F(note_hysteresis), F(0.0), HYSTERESIS_MAX)
            note = note_choice(m_sel, notes, period, s[S_NOTE], hysteresis)
        # transpose shifts every new target; a held target already carries it
        if manual:
            m_target = F(69.0) + F(12.0) / LOG2 * (np.log(np.clip(target_pitch, F(20.0), F(5000.0))) - ln_tuning)
            m_target += semitones
        elif voiced:
            m_target = (note if any_allowed else m_in) + semitones
        else:
            m_target = s[S_TARGET]

        # retune: exponential glide of the target; a note onset glides in from the sung pitch
        held = s[S_TARGET] >= NO_TARGET
        if voiced and (s[S_VOICING] < F(0.5) or not held):
            start = m_in
        else:
            start = s[S_TARGET] if held else m_target
        time_constant = retune * c.sr / F(3000.0)
        glide = np.exp(-(n + F(1.0)) / time_constant)
        m_smooth = m_target + (start - m_target) * glide

        # 4. read rate, in the log domain: ln(rate period / target period)
        v = s[S_VOICING] + (v_blk - s[S_VOICING]) * ramp
        log_target_period = ln_sr - ln_tuning - (m_smooth - F(69.0)) * (LOG2 / F(12.0))
        log_limit = F(np.log(RHO_LIMIT))
        relaxing = (not voiced and s[S_VOICING] < F(0.5)
                    and s[S_SPACING] > RELAX_MIN_SPACING * F(c.latency_samples))
        relax = np.clip(RELAX_SHARE / F(BLOCK) * s[S_DELAY], -RELAX_LIMIT, RELAX_LIMIT) if relaxing else F(0.0)
        exponent = np.clip(strength * v * (log_rate_period - log_target_period) + relax, -log_limit, log_limit)

        # 5. grains. Everything below is per sample, as if a grain started there; each grain keeps
        # the values of the sample it starts on. gamma = rho ** (1 - keep) * 2 ** (shift / 12) is the
        # formant rate, shifted only where voiced, so unvoiced sound is resampled only by the relax
        # back to the latency, which gamma follows whatever keep is.
        out_arg = log_rate_period - exponent
        gamma_arg = (F(1.0) - keep) * exponent + v * shift * (LOG2 / F(12.0)) + keep * relax
        rho = np.exp(exponent)
        out_period = np.maximum(np.exp(out_arg), MIN_OUT_PERIOD)
        inv_out = np.minimum(np.exp(-out_arg), F(1.0) / MIN_OUT_PERIOD)
        gamma = np.exp(gamma_arg)
        gamma_out = np.exp(gamma_arg + out_arg)
        period, inv_period = np.exp(log_rate_period), np.exp(-log_rate_period)
        # Half a grain, in output periods (in SPAN_UNIT): one input period at the formant rate,
        # rho / gamma output periods, stretched for a high voice, within bounds.
        stretch_arg = np.clip(c.ln_half_grain_min - log_rate_period, F(0.0), MAX_STRETCH_LN)
        span_arg = exponent - gamma_arg + SPAN_UNIT_LN + stretch_arg
        span_low, span_high = MIN_SPAN * SPAN_UNIT, F(HEADS / 2) * SPAN_UNIT
        span = np.clip(np.exp(span_arg), span_low, span_high)
        span_reach = np.clip(np.exp(span_arg + REACH_LN), span_low * REACH, span_high * REACH)
        # The output grain phase (a grain starts where it crosses an integer) and the read position
        # at the formant rate (a buffer index, offset by the latency the anchors are stored with).
        psi = cumulative(s[S_PSI], inv_out)
        read = cumulative(F(HISTORY) - F(c.latency_samples), gamma)
        k = np.floor(psi)
        psi_frac = psi - k
        # How much faster than real time a grain reads, in samples per output period: it moves a
        # start rounded to the sample after the phase's crossing back onto the crossing, and sets
        # the room a grain read faster than real time needs to stay behind the newest sample.
        late_rate = gamma_out - out_period
        ahead = np.maximum(late_rate, F(0.0)) * span_reach
        # The delay a grain starting here gets: each grain one input period after the one before
        # it (so the two are in phase) is the delay growing by 1 - rho per sample; it wraps by one
        # period into [DMIN + ahead, DMIN + ahead + P), skipping or repeating a period. At rho = 1
        # it stays put: every grain reads the same samples, the input delayed, whatever the
        # estimate, and unvoiced sound (rho = 1, or the relax's rho with gamma = rho) is one delayed
        # head. `rising` is the running sum of rho, from minus the last delay, so the delay before
        # wrapping is n + 1 - rising.
        rising = cumulative(F(HISTORY - 1) - F(c.latency_samples) - s[S_DELAY], rho)
        unwrapped = (n + F(HISTORY) - DMIN - rising) - ahead        # delay - DMIN - ahead
        wraps = np.floor(unwrapped * inv_period)
        held = rising + wraps * period                               # n + HISTORY - delay
        # A grain's anchor: its read position at the crossing minus the read position's running sum.
        anchor = (held - read) + psi_frac * late_rate
        starts = np.minimum(np.array([np.sum(psi < F(j)) for j in range(1, GRAINS + 1)]), BLOCK - 1)
        anchors = np.concatenate([s[S_HEADS:S_SPANS], anchor[starts]]).astype(F)
        spans = np.concatenate([np.clip(s[S_SPANS:], span_low, span_high), span[starts]]).astype(F)
        # Head h plays grain k(n) + h of [state grains oldest first, this block's]: h = HEADS - 1 is
        # the youngest.
        h = np.arange(HEADS)
        slot = k.astype(np.int64)[:, None] + h
        unclipped = anchors[slot] + read[:, None]
        pos = np.minimum(np.maximum(unclipped, F(2.0)), (n + F(HISTORY) - DMIN)[:, None])  # [BLOCK, HEADS]
        # Weights: a raised-cosine (sin^2) window two spans long from each grain's start,
        # normalised to sum to one (grains of two periods at a hop of one sum to one already).
        grain_span = spans[slot]
        age = psi_frac[:, None] + F(1.0) * (HEADS - 1 - h)
        x = np.clip(age / grain_span, F(0.0), F(np.pi))
        u = x * (F(np.pi) - x)
        window = u * u * (u + WINDOW_C)
        weight = window / np.maximum(np.sum(window, axis=1, keepdims=True), WEIGHT_FLOOR)
        out = heads(buf, pos, weight)
        if s[S_UNFED] > F(0.5):
            out = np.asarray(block, F)

        self.history = buf[BLOCK:].copy()
        self.state = np.concatenate([[est if voiced else F(0.0), v_blk, note, m_smooth[-1],
                                      est if voiced else spacing_prev, F(0.0), psi_frac[-1],
                                      F(BLOCK - 1 + HISTORY) - held[-1] - F(c.latency_samples),
                                      m_sel if voiced else F(0.0)],
                                     unclipped[-1] - F(HISTORY + BLOCK) + F(c.latency_samples),
                                     grain_span[-1]]).astype(F)
        detected = c.sr / est if voiced else F(0.0)
        applied = np.exp(ln_sr - log_target_period[-1]) if voiced or manual else F(0.0)
        return out.astype(F), F(v_blk), F(detected), F(applied)
