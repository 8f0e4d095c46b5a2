"""Spectral envelopes of voiced sound, and the frequency warp between two of them (formants).

The envelope of a frame is read off its harmonics: the log magnitude at each multiple of the frame's
f0 (Praat's, never the model's), interpolated over frequency. That works the same for an 82 Hz and
a 660 Hz voice, where a cepstral lifter would have to change with the pitch.
"""

import numpy as np

FRAME = 2048
LOW_HZ, HIGH_HZ = 250.0, 4000.0
# Envelopes are kept on a fine linear grid; comparisons smooth both to the coarser voice's f0.
STEP_HZ = 5.0
LINEAR = np.arange(0.0, 2.2 * HIGH_HZ, STEP_HZ)
GRID = np.geomspace(LOW_HZ, HIGH_HZ, 200)
WARPS = np.geomspace(0.5, 2.0, 481)


def frame_envelope(frame, rate, f0):
    """Log magnitude (dB) on LINEAR, interpolated between the harmonics of f0."""
    spectrum = np.abs(np.fft.rfft(frame * np.hanning(len(frame)), 4 * len(frame)))
    freqs = np.fft.rfftfreq(4 * len(frame), 1.0 / rate)
    harmonics = f0 * np.arange(1, int(min(HIGH_HZ * 2.2, rate / 2 - f0) / f0) + 1)
    # Each harmonic's magnitude: the spectrum's peak within a quarter of f0 of it.
    width = f0 / 4
    peaks = [spectrum[(freqs > h - width) & (freqs < h + width)].max() for h in harmonics]
    db = 20 * np.log10(np.maximum(peaks, 1e-9))
    return np.interp(LINEAR, harmonics, db)


def envelopes(signal, rate, times, f0s):
    """Envelope at each time (s) where f0 (Hz) > 0; returns (times kept, [frames, GRID])."""
    kept, rows = [], []
    for t, f0 in zip(times, f0s):
        start = int(round(t * rate)) - FRAME // 2
        if f0 <= 0 or start < 0 or start + FRAME > len(signal):
            continue
        kept.append(t)
        rows.append(frame_envelope(np.asarray(signal[start:start + FRAME], np.float64), rate, f0))
    return np.array(kept), np.array(rows).reshape(len(rows), len(LINEAR))


def smoothed(env, width_hz):
    """env (on LINEAR) averaged over width_hz, at GRID: what a voice at f0 = width_hz can show."""
    taps = max(int(round(width_hz / STEP_HZ)), 1)
    box = np.convolve(env, np.ones(taps) / taps, "same")
    return np.interp(GRID, LINEAR, box)


def pair(env_in, env_out, f0_in, f0_out):
    """Both envelopes at the resolution of the sparser one, on GRID."""
    width = max(f0_in, f0_out)
    return smoothed(env_in, width), smoothed(env_out, width)


def paired(inp, out, rate, delay, pitch_in, pitch_out, floor_hz):
    """(input, output) envelope pairs at each voiced input frame, each pair at the sparser voice's
    resolution (pair()); the output's frame is `delay` samples later and needs an f0 of floor_hz
    or more (interpolated between a voiced and an unvoiced frame, f0 is not a pitch).

    pitch_in, pitch_out: (frame times, f0) of each side, f0 0 where unvoiced (Praat's).
    """
    (t_in, f_in), (t_out, f_out) = pitch_in, pitch_out
    times, env_in = envelopes(inp, rate, t_in, f_in)
    f_in_at = np.interp(times, t_in, f_in)
    f_out_at = np.interp(times + delay / rate, t_out, f_out)
    voiced = f_out_at >= floor_hz
    # output frames past the end are left out, so the zip stops there
    _, env_out = envelopes(out, rate, times[voiced] + delay / rate, f_out_at[voiced])
    return [pair(a, b, fa, fb) for a, b, fa, fb in zip(env_in[voiced], env_out, f_in_at[voiced], f_out_at[voiced])]


def warp(env_in, env_out):
    """The factor a that best maps the input envelope onto the output's: out(f) ~ in(f / a).

    Level is left out (each envelope's mean is removed over the frequencies both cover).
    """
    log_grid = np.log(GRID)
    best, best_score = 1.0, np.inf
    for a in WARPS:
        moved = np.interp(log_grid - np.log(a), log_grid, env_in, left=np.nan, right=np.nan)
        ok = ~np.isnan(moved)
        if ok.sum() < len(GRID) // 2:
            continue
        x, y = moved[ok] - moved[ok].mean(), env_out[ok] - env_out[ok].mean()
        score = np.mean((x - y) ** 2)
        if score < best_score:
            best, best_score = a, score
    return best


def log_spectral_distance(env_in, env_out):
    """RMS difference in dB of two envelopes over GRID."""
    return float(np.sqrt(np.mean((env_in - env_out) ** 2)))
