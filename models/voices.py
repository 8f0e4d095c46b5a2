"""Seeded synthetic voices for the quality benchmark and the tests.

A voice is a band-limited glottal source (harmonics falling at 12 dB/octave) shaped by a vowel's
formant resonators, with an exactly known instantaneous f0 so the truth is never estimated.
"""

import numpy as np

# (centre Hz, bandwidth Hz) of the first three formants of /a/, /e/, /o/.
VOWELS = {
    "a": ((730, 90), (1090, 110), (2440, 170)),
    "e": ((530, 80), (1840, 120), (2480, 170)),
    "o": ((570, 80), (840, 100), (2410, 170)),
}
BASE_NOTES_HZ = (82.41, 110.0, 196.0, 329.63, 523.25)
DETUNES_CENTS = (-70, -40, -20, 20, 40, 70)


def resonator_gain(freq, resonances):
    """Magnitude response at freq (Hz) of a cascade of two-pole resonators, (centre, bandwidth) Hz."""
    gain = np.ones_like(freq)
    for centre, bandwidth in resonances:
        gain = gain * centre**2 / np.sqrt((centre**2 - freq**2) ** 2 + (bandwidth * freq) ** 2)
    return gain


def formant_gain(freq, vowel):
    """Magnitude response of the vowel's formant resonators at freq (Hz)."""
    return resonator_gain(freq, VOWELS[vowel])


def formant_phase(freq, vowel):
    """Phase response (radians) of the vowel's formant resonators at freq (Hz)."""
    return -sum(np.arctan2(bandwidth * freq, centre**2 - freq**2) for centre, bandwidth in VOWELS[vowel])


def render(f0, sample_rate, vowel="a", seed=0, level_db=-12.0, max_harmonic_hz=8000.0, pulse=False):
    """Render a voice following the per-sample f0 track (Hz, 0 = silence).

    The harmonics' phases are random (seeded), or with `pulse` those of a pulse train through the
    resonators: every cycle a glottal pulse and its ringing, as a real voice has, and where in the
    cycle a grain is centred changes its spectrum between the harmonics.
    """
    rng = np.random.default_rng(seed)
    f0 = np.asarray(f0, np.float64)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    out = np.zeros(len(f0))
    voiced_f0 = np.where(f0 > 0, f0, 1.0)
    top = int(max_harmonic_hz / max(f0[f0 > 0].min(), 1.0))
    for k in range(1, top + 1):
        freq = k * voiced_f0
        amp = np.where((f0 > 0) & (freq < max_harmonic_hz), formant_gain(freq, vowel) / k**2, 0.0)
        # drawn either way, so a pulse-like voice has its random-phase twin's noise
        offset = rng.uniform(0, 2 * np.pi)
        if pulse:
            offset = np.pi / 2 + formant_phase(freq, vowel)
        out += amp * np.sin(k * phase + offset)
    # A short fade at every voicing edge, as a singer's onset is never a step.
    env = np.convolve((f0 > 0).astype(np.float64), np.hanning(int(0.01 * sample_rate)), "same")
    out *= np.clip(env / env.max(), 0, 1) if env.max() > 0 else 0
    out += 10 ** (-75 / 20) * rng.standard_normal(len(out))
    peak = np.max(np.abs(out))
    return (out / peak * 10 ** (level_db / 20)).astype(np.float32)


def steady(freq, seconds, sample_rate, vibrato_cents=0.0, vibrato_hz=5.5):
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return freq * 2 ** (vibrato_cents * np.sin(2 * np.pi * vibrato_hz * t) / 1200)


def melody(notes_hz, note_seconds, sample_rate, glide_seconds=0.03):
    """f0 of consecutive notes joined by short glides."""
    per = int(note_seconds * sample_rate)
    steps = np.repeat(np.log2(notes_hz), per)
    width = max(int(glide_seconds * sample_rate), 1)
    kernel = np.ones(width) / width
    padded = np.concatenate([np.full(width, steps[0]), steps, np.full(width, steps[-1])])
    smooth = np.convolve(padded, kernel, "same")[width:-width]
    return 2**smooth
