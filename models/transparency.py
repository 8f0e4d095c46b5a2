"""Transparency measures of a correction: envelope distance, clicks, block seams, and speech voices.

    python3 models/transparency.py --rate 44100       # prints the table (quality.py includes it)

Every measure compares the output with its own input, so a figure is the model's effect: the
envelope distance is between the envelopes of input and output frames a delay apart, read at
their harmonics (envelope.py) rather than by a cepstral lifter, whose floor for a voice sung at
another pitch was 2-3 dB here; clicks are counted in both; the seam figure is the output's ratio
of spectral flux across block boundaries to elsewhere, over the same ratio of the input. Speech is
espeak-ng's (Debian), rendered here at several pitches, so no recording is needed.
"""

import argparse
import pathlib
import subprocess
import tempfile
import wave

import numpy as np

import envelope
from reference import BLOCK

# The envelope distance is taken below 3 kHz, where the synthetic voices' harmonics stand above
# their breath noise at every pitch.
LSD_BAND = envelope.GRID <= 3000.0
# Praat's pitch floor (quality.praat_pitch): an output frame's f0 must be at least this.
PRAAT_FLOOR_HZ = 60.0
# Clicks: peaks of the second difference above CLICK_FACTOR x its RMS over CLICK_WINDOW seconds;
# peaks closer than CLICK_GAP seconds are one click.
CLICK_FACTOR = 6.0
CLICK_WINDOW = 0.02
CLICK_GAP = 0.005
# The edges are left out: a file that starts mid-note starts with a step, and the output's starts
# after the model's delay.
CLICK_EDGE = 0.05
# Spectral flux between frames of FLUX_FRAME samples every FLUX_HOP; a flux whose frame pair has a
# block boundary between the frame centres is a seam flux.
FLUX_FRAME = 128
FLUX_HOP = 32
# Shifts of the block boundaries, in samples, where the seam measure is read again as a control.
OFF_SEAM_OFFSETS = tuple(range(64, BLOCK, 64))
# Four sentences, ~26 s a voice and 1700-2000 voiced frames: with the first alone (~600 frames),
# a voice's voiced retention moved by a few frames, ±0.005-0.01, with any change to where grains
# fall, more than a 0.99 bound leaves. None is in the detector's training or held-out texts.
SPEECH_TEXT = " ".join((
    "The quick brown fox jumps over the lazy dog while seven singers hold a long note "
    "and everyone listens to the quiet room.",
    "Yesterday my neighbour painted his fence bright yellow, and now the whole street argues about it.",
    "How many hours does the night train need to cross the mountains when the snow is deep?",
    "Our engineer measured every voice twice, wrote down the numbers, and went home very late.",
))
# espeak-ng voices and pitch settings: median f0 71, 91, 176 and 233 Hz (Praat).
SPEECH_VOICES = (("en-us", 10), ("en-gb", 40), ("en-us+f2", 40), ("en-us+f4", 75))


def espeak_ng(voice, pitch, words_per_minute, text):
    """espeak-ng's rendering of `text` (Debian's espeak-ng): samples in [-1, 1] and their rate."""
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(words_per_minute), "-w", str(path),
                        text], check=True, capture_output=True)
        with wave.open(str(path)) as w:
            return np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float64) / 32768.0, w.getframerate()


def speech(voice, pitch, rate):
    """espeak-ng's rendering of SPEECH_TEXT, resampled (band-limited, by FFT) to `rate`."""
    x, source_rate = espeak_ng(voice, pitch, 150, SPEECH_TEXT)
    spectrum = np.fft.rfft(x)
    length = int(round(len(x) * rate / source_rate))
    resized = np.zeros(length // 2 + 1, complex)
    keep = min(len(spectrum), len(resized))
    resized[:keep] = spectrum[:keep]
    y = np.fft.irfft(resized, length) * length / len(x)
    return (0.5 * y / np.max(np.abs(y))).astype(np.float32)


def envelope_distance(inp, out, rate, delay, pitch_in, pitch_out):
    """Median RMS difference (dB) of the level-matched envelopes of input and output voiced frames.

    Envelopes are read at the harmonics of Praat's f0 of each side (envelope.py), both smoothed to
    the sparser voice's resolution, so a voice sung at another pitch with the same vowel scores ~0.
    """
    pairs = envelope.paired(inp, out, rate, delay, pitch_in, pitch_out, PRAAT_FLOOR_HZ)
    distances = []
    for x, y in pairs:
        x, y = x[LSD_BAND], y[LSD_BAND]
        distances.append(np.sqrt(np.mean(((y - y.mean()) - (x - x.mean())) ** 2)))
    return float(np.median(distances)) if distances else float("nan")


def clicks_per_minute(signal, rate):
    residual = np.diff(signal.astype(np.float64), 2)
    window = int(CLICK_WINDOW * rate)
    local = np.sqrt(np.convolve(residual ** 2, np.ones(window) / window, "same")) + 1e-12
    edge = int(CLICK_EDGE * rate)
    peaks = np.flatnonzero(np.abs(residual[edge:-edge]) > CLICK_FACTOR * local[edge:-edge])
    if len(peaks) == 0:
        return 0.0
    clicks = 1 + int(np.sum(np.diff(peaks) > CLICK_GAP * rate))
    return clicks / ((len(signal) - 2 * edge) / rate) * 60.0


def seam_flux_ratios(signal):
    """Mean spectral flux of frame pairs straddling a block boundary over that of all other pairs,
    first at the real boundaries, then at every OFF_SEAM_OFFSETS shift of them.

    Nothing happens at the shifted boundaries, so their spread is what the measure reads on this
    audio with no block structure at all: its resolution.
    """
    x = signal.astype(np.float64)
    window = np.hanning(FLUX_FRAME)
    starts = np.arange(0, len(x) - FLUX_FRAME, FLUX_HOP)
    mags = np.abs(np.fft.rfft(np.stack([x[s:s + FLUX_FRAME] * window for s in starts]), axis=1))
    flux = np.sum(np.diff(mags, axis=0) ** 2, axis=1)
    centres = starts + FLUX_FRAME // 2
    ratios = []
    for offset in (0,) + OFF_SEAM_OFFSETS:
        block = (centres - offset) // BLOCK
        seam = block[:-1] != block[1:]
        ratios.append(float(flux[seam].mean() / flux[~seam].mean()))
    return np.array(ratios)


def measure(inp, out, rate, delay, pitch_in, pitch_out):
    """Envelope distance, clicks per minute in and out, and seam flux ratios out/in for one signal
    (at the block boundaries, then off them: seam_flux_ratios).

    inp is as long as out; pitch_in, pitch_out: Praat's (frame times, f0) of each.
    """
    return {"lsd_db": envelope_distance(inp, out, rate, delay, pitch_in, pitch_out),
            "clicks_in": clicks_per_minute(inp, rate), "clicks_out": clicks_per_minute(out, rate),
            "seam_flux": seam_flux_ratios(out) / seam_flux_ratios(inp)}


def main():
    import quality
    import stream

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, choices=[44100, 48000], default=44100)
    args = parser.parse_args()
    sess = stream.session(quality.MODEL_FOR_RATE[args.rate])
    quality.print_transparency(quality.transparency_check(lambda signal: stream.run(sess, signal)[0], args.rate))


if __name__ == "__main__":
    main()
