"""NumPy reference of the default autotuned model: the source of truth that build.py turns into ONNX.

One call of `Reference.process` is one 512-sample block; everything that must survive a block
boundary lives in the `history` and `state` arrays, exactly as the ONNX graph's state pairs do.
All arithmetic is float32 so the graph can be checked against this sample by sample.

Algorithm (see models/README.md for the why):
  1. buf = [history | block]
  2. YIN on the block against the past: cumulative-mean-normalised difference, first dip under
     YIN_THRESHOLD else the global minimum, parabolic refinement; voicing from aperiodicity and level
  3. per-sample period track P(n): linear trend between consecutive estimates that agree
  4. read rate rho(n) = (P(n) / P_target(n)) ** (strength * voicing(n))
  5. pitch-synchronous two-head resampler, heads one period apart, crossfaded by head phase
"""

import numpy as np

F = np.float32
D = np.float64

BLOCK = 512
HISTORY = 2048
YIN_THRESHOLD = F(0.15)
# Aperiodicity (CMNDF at the chosen lag) at which voicing is 0.5; the ramp is VOICING_RAMP wide.
VOICING_AP = F(0.35)
VOICING_RAMP = F(0.15)
# Level gate: fully unvoiced below GATE_DB dBFS RMS, fully voiced GATE_RANGE_DB above it.
GATE_DB = F(-60.0)
GATE_RANGE_DB = F(10.0)
# Consecutive estimates within this many cents are one note: trend between them, else a step.
AGREE_CENTS = F(60.0)
# Auto mode keeps the current note until another allowed note is this many semitones closer.
HYSTERESIS_ST = F(0.25)
# Read rate limits: 25 semitones up or down (transpose reaches ±24).
RHO_LIMIT = F(4.25)
# Minimum head delay, for the cubic interpolator's look-ahead of two samples.
DMIN = F(2.0)
# Unvoiced: the head drifts to a crossfade edge (a single head, a pure delay) at this rate.
DRIFT_RATE = F(0.02)
LOG2 = F(np.log(2.0))
STATE_LEN = 7
# Layout of the `state` tensor. S_UNFED is 1 only in the graph's default for `state`: a caller that
# does not stream state back gets the input block unchanged instead of a stateless mess.
S_DELAY, S_EST, S_VOICING, S_NOTE, S_TARGET, S_SPACING, S_UNFED = range(STATE_LEN)


class Constants:
    """Everything that depends on the sample rate."""

    def __init__(self, sample_rate):
        self.sr = F(sample_rate)
        self.tau_min = int(round(sample_rate / 1100.0))
        self.tau_max = int(round(sample_rate / 69.0))
        # The period assumed before any voice was heard; the model's nominal delay follows from it.
        self.default_period = F(round(sample_rate / 200.0))
        self.latency_samples = int(DMIN + self.default_period)


def yin(buf, c):
    """Period estimate (samples), aperiodicity and block energy of the newest BLOCK samples of buf."""
    block = buf[HISTORY:]
    seg = buf[HISTORY - c.tau_max:]
    lags = np.arange(c.tau_max + 1)
    # Cross term and lagged energy, lag 0..tau_max, the way the graph's grouped Conv computes them.
    cross = np.array([np.dot(block, seg[c.tau_max - t:c.tau_max - t + BLOCK]) for t in lags], F)
    seg2 = seg * seg
    energy = np.array([np.sum(seg2[c.tau_max - t:c.tau_max - t + BLOCK], dtype=F) for t in lags], F)
    e0 = np.sum(block * block, dtype=F)
    diff = np.maximum(e0 + energy - F(2.0) * cross, F(0.0))[1:]
    taus = np.arange(1, c.tau_max + 1, dtype=F)
    cmnd = diff * taus / np.maximum(np.cumsum(diff, dtype=F), F(1e-12))

    left = cmnd[c.tau_min - 2:c.tau_max - 2]
    mid = cmnd[c.tau_min - 1:c.tau_max - 1]
    right = cmnd[c.tau_min:c.tau_max]
    dip = (mid < left) & (mid <= right) & (mid < YIN_THRESHOLD)
    count = mid.shape[0]
    score = np.where(dip, F(count) - np.arange(count, dtype=F), F(0.0))
    first = int(np.argmax(score))
    i = first if score[first] > 0 else int(np.argmin(mid))
    a, b, r = left[i], mid[i], right[i]
    den = a - F(2.0) * b + r
    shift = np.clip(F(0.5) * (a - r) / np.maximum(den, F(1e-9)), F(-1.0), F(1.0))
    shift = shift if den > F(1e-9) else F(0.0)
    period = F(c.tau_min + i) + F(shift)
    return F(period), F(b), e0


def voicing(aperiodicity, e0):
    periodic = np.clip((VOICING_AP - aperiodicity) / VOICING_RAMP + F(0.5), F(0.0), F(1.0))
    level_db = F(10.0) / F(np.log(10.0)) * np.log(e0 / F(BLOCK) + F(1e-12))
    loud = np.clip((level_db - GATE_DB) / GATE_RANGE_DB, F(0.0), F(1.0))
    return F(periodic * loud)


def midi_note(freq, tuning):
    return F(69.0) + F(12.0) * np.log(freq / tuning) / LOG2


def nearest_allowed(m_in, mask, current):
    """Nearest note whose pitch class is allowed, keeping `current` within the hysteresis."""
    classes = np.arange(12, dtype=F)
    candidates = classes + F(12.0) * np.round((m_in - classes) / F(12.0))
    dist = np.abs(m_in - candidates) + (F(1.0) - mask) * F(1000.0)
    best = int(np.argmin(dist))
    current_class = int(current - F(12.0) * np.floor(current / F(12.0)))
    keep = (current > 0) and mask[current_class] > 0.5 and np.abs(m_in - current) < dist[best] + HYSTERESIS_ST
    return current if keep else candidates[best]


def cubic(buf, pos):
    """Catmull-Rom interpolation of buf at fractional float64 positions pos."""
    i = np.floor(pos)
    t = (pos - i).astype(F)
    i = i.astype(np.int64)
    y0, y1, y2, y3 = buf[i - 1], buf[i], buf[i + 1], buf[i + 2]
    return y1 + F(0.5) * t * (y2 - y0 + t * (F(2.0) * y0 - F(5.0) * y1 + F(4.0) * y2 - y3
                                          + t * (F(3.0) * (y1 - y2) + y3 - y0)))


class Reference:
    """The model, one block at a time, with its state held between calls."""

    def __init__(self, sample_rate):
        self.c = Constants(sample_rate)
        self.history = np.zeros(HISTORY, F)
        self.state = np.zeros(STATE_LEN, F)

    def process(self, block, target_pitch=0.0, strength=1.0, scale_mask=None, tuning_hz=440.0,
                retune_ms=0.0, transpose=0.0):
        """Returns (corrected block, confidence, detected_pitch, applied_target_hz)."""
        c = self.c
        mask = np.ones(12, F) if scale_mask is None else np.asarray(scale_mask, F)
        target_pitch, strength = F(target_pitch), np.clip(F(strength), F(0.0), F(1.0))
        tuning = np.clip(F(tuning_hz), F(300.0), F(600.0))
        semitones = np.clip(F(transpose), F(-24.0), F(24.0))
        retune = np.clip(F(retune_ms), F(0.0), F(5000.0))
        s = self.state
        n = np.arange(BLOCK, dtype=F)
        buf = np.concatenate([self.history, np.asarray(block, F)])

        # 2. pitch and voicing of this block
        est, aperiodicity, e0 = yin(buf, c)
        v_blk = voicing(aperiodicity, e0)
        voiced = v_blk >= F(0.5)

        # 3. period track. The read rate uses the period where the heads read: a trend between
        # agreeing estimates, else this block's estimate. The head spacing glides continuously
        # from the last block's end to this block's end, so even a note change has no seam.
        prev_est = s[S_EST]
        agree = voiced and prev_est > 0 and \
            np.abs(np.log(est / max(prev_est, F(1e-6)))) < AGREE_CENTS / F(1200.0) * LOG2
        head_pos = (n + F(0.5) + F(BLOCK / 2) - DMIN - F(0.5) * est) / F(BLOCK)
        spacing_prev = s[S_SPACING] if s[S_SPACING] > 0 else c.default_period
        if agree:
            rate_period = prev_est + (est - prev_est) * head_pos
        else:
            rate_period = np.full(BLOCK, est if voiced else spacing_prev, F)
        ramp = (n + F(1.0)) / F(BLOCK)
        period = spacing_prev + (rate_period[-1] - spacing_prev) * ramp

        # target note (MIDI, fractional): manual Hz, else nearest allowed note, else the input
        m_in = midi_note(c.sr / est, tuning)
        manual = target_pitch > 0
        any_allowed = np.sum(mask) > F(0.5)
        note = s[S_NOTE]
        if voiced and not manual and any_allowed:
            note = nearest_allowed(m_in, mask, s[S_NOTE])
        # transpose shifts every new target; a held target already carries it
        if manual:
            m_target = midi_note(np.clip(target_pitch, F(20.0), F(5000.0)), tuning) + semitones
        elif voiced:
            m_target = (note if any_allowed else m_in) + semitones
        else:
            m_target = s[S_TARGET]

        # retune: exponential glide of the target; a note onset glides in from the sung pitch
        start = s[S_TARGET]
        if voiced and (s[S_VOICING] < F(0.5) or start <= 0):
            start = m_in
        if start <= 0:
            start = m_target
        glide = np.exp(-(n + F(1.0)) / np.maximum(retune * c.sr / F(3000.0), F(1e-3)))
        m_smooth = m_target + (start - m_target) * glide

        # 4. read rate
        v = s[S_VOICING] + (v_blk - s[S_VOICING]) * ramp
        target_period = c.sr / (tuning * np.exp((m_smooth - F(69.0)) / F(12.0) * LOG2))
        log_limit = F(np.log(RHO_LIMIT))
        exponent = np.clip(strength * v * np.log(rate_period / target_period), -log_limit, log_limit)

        # 5. two-head resampler; unvoiced, the head drifts to the nearest crossfade edge.
        # The head delay integrates over the whole stream, so it is kept in float64: float32
        # rounding of exp() would make it random-walk away from any other implementation.
        d0 = s[S_DELAY]
        phi0 = np.clip((d0 - DMIN) / period[0], F(0.0), F(1.0))
        up = phi0 >= F(0.5)
        edge_dist = (F(1.0) - phi0) * period[0] if up else phi0 * period[0]
        drift = np.minimum(DRIFT_RATE * (F(1.0) - v_blk) * (n + F(1.0)), edge_dist)
        drift = drift if up else -drift
        rho = np.exp(exponent.astype(D))
        delay = D(d0) + np.cumsum(D(1.0) - rho) + drift.astype(D)
        period_d = period.astype(D)
        wrapped = delay - D(DMIN)
        delay = D(DMIN) + wrapped - period_d * np.floor(wrapped / period_d)
        phi = ((delay - D(DMIN)) / period_d).astype(F)
        # The younger head's weight rises faster than linearly: the mix leans to the newer audio,
        # which lowers the mean delay from 2 + P to 2 + 0.86 P; both weights still meet 0 and 1
        # exactly at the splice, where the heads are a period apart and in phase.
        young = np.sin(F(np.pi / 2) * phi)
        now = D(HISTORY) + n.astype(D)
        out = young * cubic(buf, now - delay) + (F(1.0) - young) * cubic(buf, now - delay - period_d)

        if s[S_UNFED] > F(0.5):
            out = np.asarray(block, F)
        self.history = buf[BLOCK:].copy()
        self.state = np.array([F(delay[-1]), est if voiced else F(0.0), v_blk, note, m_smooth[-1],
                               period[-1], F(0.0)], F)
        detected = c.sr / est if voiced else F(0.0)
        applied = tuning * np.exp((m_smooth[-1] - F(69.0)) / F(12.0) * LOG2) if voiced or manual else F(0.0)
        return out.astype(F), F(v_blk), F(detected), F(applied)
