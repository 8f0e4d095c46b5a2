"""Training and held-out material for the learned detector: voices whose f0 is known by construction,
mixed with noises at a chosen SNR. Offline only (`make train`, `make bench-detector`), never the
daemon.

Voices:
- sung: a glottal source's harmonics through a vowel's formant resonators, with jitter, shimmer,
  breath, vibrato, scoops, note dynamics and gaps between phrases; the f0 track is the one
  rendered;
- spoken: espeak-ng (Debian) renders moved onto a known f0 contour by Praat's PSOLA (parselmouth);
  a frame counts as voiced only where Praat hears the new contour in the output.
Unvoiced material: noise alone (white, pink, brown, hiss) in bursts.
Noises: pink, speech babble (several espeak-ng talkers), a band (fluidsynth from a General MIDI
soundfont: bass, chords and a lead line), and a room (decaying-noise reverb) on the voice.
Training and held-out material differ in seeds, espeak-ng voices, texts, vowels and songs.
"""

import pathlib
import subprocess
import sys
import tempfile
import wave

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
import reference as R  # noqa: E402
import transparency  # noqa: E402
import voices  # noqa: E402

# Formants (Hz) of the vowels voices are sung on; the held-out set sings the last two only.
VOWEL_FORMANTS = {
    "a": (730, 1090, 2440), "e": (530, 1840, 2480), "i": (300, 2250, 3000), "o": (570, 840, 2410),
    "u": (320, 900, 2300), "ae": (660, 1720, 2410), "er": (490, 1350, 1690), "uh": (520, 1190, 2390),
    "oe": (450, 1500, 2300), "ih": (400, 1950, 2600),
}
TRAIN_VOWELS = ("a", "e", "i", "o", "u", "ae", "er", "uh")
HELD_OUT_VOWELS = ("oe", "ih")
# espeak-ng talkers: (language, variant). Disjoint between training and held-out, and between the
# spoken voices and the babble.
TRAIN_TALKERS = (("en-us", "m1"), ("en-gb", "f2"), ("de", "m3"), ("fr", "f1"), ("es", "m2"), ("it", "f3"),
                 ("nl", "m4"), ("pt", "f4"))
BABBLE_TALKERS = (("en-us", "m5"), ("en-gb", "f5"), ("de", "f1"), ("fr", "m6"), ("es", "f2"), ("sv", "m7"),
                  ("pl", "f3"), ("ru", "m1"))
HELD_OUT_TALKERS = (("en-us", "f4"), ("de", "m2"), ("fr", "m3"), ("cs", "f1"))
HELD_OUT_BABBLE = (("en-gb", "m6"), ("it", "m5"), ("nl", "f5"), ("fi", "m4"), ("hu", "f2"))
TEXTS = (
    "Every morning the baker opens the shop before the sun rises over the quiet harbour.",
    "A little rain in spring makes the garden green and the farmers happy for the whole year.",
    "Please remember to bring the maps, the water and a warm coat for the long walk tomorrow.",
    "The orchestra tuned their instruments while the audience slowly found their seats.",
    "Numbers are measured, not assumed, and every claim has a test that can fail.",
    "She sang the old song again, softly at first, and then with all the voice she had.",
)
HELD_OUT_TEXTS = (
    "Seven windows faced the river, and from each one you could hear the boats go by.",
    "The committee will meet again on Thursday to decide where the new library should stand.",
)
# The f0 range voices are drawn from (Hz): the model detects 69-1100.
SUNG_RANGE = (75.0, 900.0)
SPOKEN_RANGE = (75.0, 320.0)
# Low talkers, spoken a second time: with SPOKEN_RANGE alone the detector saw few medians below
# 100 Hz and missed most voiced blocks of espeak-ng's low male voices (71 / 91 Hz: it reported 46 /
# 59 % of them, and put 75 / 25 % of those more than 75 cents off, mostly on a harmonic).
LOW_SPOKEN_RANGE = (62.0, 130.0)


def rng_for(*keys):
    """A generator seeded from `keys` (ints and strings), the same on every machine."""
    seed = [abs(hash_text(k)) if isinstance(k, str) else int(k) for k in keys]
    return np.random.default_rng(seed)


def hash_text(text):
    return int.from_bytes(text.encode()[:8].ljust(8, b"\0"), "little") ^ len(text)


def smooth_noise(rng, n, rate, cutoff_hz):
    """Unit-RMS noise low-passed at cutoff_hz (one-pole, forwards and back)."""
    w = rng.standard_normal(n // 64 + 4)
    # Made at 1/64 of the rate and interpolated: only its slow part is wanted.
    a = np.exp(-2 * np.pi * cutoff_hz * 64 / rate)
    for direction in (1, -1):
        w = w[::direction]
        for i in range(1, len(w)):
            w[i] = a * w[i - 1] + (1 - a) * w[i]
        w = w[::direction]
    w = np.interp(np.arange(n) / 64.0, np.arange(len(w)), w)
    return w / (np.std(w) + 1e-12)


def sung(rate, rng, seconds, vowels=TRAIN_VOWELS, max_harmonic_hz=8000.0, f0_range=SUNG_RANGE):
    """(audio, f0 per sample; 0 = unvoiced) of a sung line: phrases of notes with scoops, vibrato,
    jitter and shimmer, breath throughout, silent gaps between phrases."""
    n = int(seconds * rate)
    f0 = np.zeros(n)
    dynamics = np.zeros(n)
    t = 0
    lo, hi = np.log(f0_range[0]), np.log(f0_range[1])
    centre = np.exp(rng.uniform(lo + 0.3, hi - 0.3))
    # A third of the lines start at once, as a stream that opens on a voice does (nothing before it).
    first = rng.uniform() < 1 / 3
    while t < n:
        gap = 0 if first else int(rng.uniform(0.05, 0.4) * rate)
        first = False
        t += gap
        for _ in range(rng.integers(1, 4)):
            length = int(rng.uniform(0.25, 1.2) * rate)
            if t + length > n:
                length = n - t
            if length <= 0:
                break
            note = np.clip(centre * 2 ** (rng.uniform(-7, 7) / 12), *f0_range)
            k = np.arange(length) / rate
            cents = np.zeros(length)
            scoop = rng.uniform(0.03, 0.2)
            cents += rng.uniform(-300, 100) * np.exp(-k / (scoop / 3))
            depth, vib_rate, onset = rng.uniform(0, 110), rng.uniform(4.0, 7.5), rng.uniform(0.1, 0.5)
            cents += depth * np.clip((k - onset) / 0.3, 0, 1) * np.sin(2 * np.pi * vib_rate * k + rng.uniform(0, 6.3))
            f0[t:t + length] = np.clip(note * 2 ** (cents / 1200), f0_range[0] * 0.9, f0_range[1] * 1.1)
            dynamics[t:t + length] = rng.uniform(-8.0, 4.0)
            t += length
    voiced = f0 > 0
    jitter = 1 + rng.uniform(0.002, 0.012) * smooth_noise(rng, n, rate, 40.0)
    f0_true = np.where(voiced, f0 * jitter, 0.0)
    phase = 2 * np.pi * np.cumsum(np.where(voiced, f0_true, 0.0)) / rate
    vowel = VOWEL_FORMANTS[vowels[rng.integers(len(vowels))]]
    size = rng.uniform(0.85, 1.2)
    drift = 1 + 0.05 * smooth_noise(rng, n, rate, 1.0)
    formants = [np.asarray(f) * size * drift for f in vowel]
    bandwidths = (rng.uniform(60, 120), rng.uniform(80, 150), rng.uniform(120, 220))
    tilt = rng.uniform(1.5, 2.5)  # harmonic k at k^-tilt: 9-15 dB an octave
    safe_f0 = np.where(voiced, f0_true, 100.0)
    top = int(max_harmonic_hz / f0_range[0] * 0.95)
    out = np.zeros(n)
    for k in range(1, top + 1):
        freq = k * safe_f0
        if np.all(freq >= max_harmonic_hz):
            break
        amp = np.where(voiced & (freq < max_harmonic_hz), voices.resonator_gain(freq, zip(formants, bandwidths)) / k**tilt, 0.0)
        out += amp * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    shimmer = 1 + rng.uniform(0.02, 0.12) * smooth_noise(rng, n, rate, 30.0)
    edges = np.convolve(voiced.astype(float), np.hanning(int(0.02 * rate)), "same")
    swells = np.convolve(dynamics, np.hanning(int(0.1 * rate)) / np.sum(np.hanning(int(0.1 * rate))), "same")
    out *= shimmer * np.clip(edges / max(edges.max(), 1e-12), 0, 1) * 10 ** (swells / 20)
    level = np.sqrt(np.mean(out[voiced] ** 2)) if voiced.any() else 1.0
    breath = np.diff(rng.standard_normal(n + 1)) * (0.6 + 0.4 * np.cos(phase))
    out += level * 10 ** (rng.uniform(-35, -18) / 20) * breath / np.std(breath)
    return out, f0_true


def espeak(talker, text, rate, pitch=50):
    """espeak-ng's rendering, resampled to `rate` by Praat; a parselmouth Sound."""
    import parselmouth
    language, variant = talker
    x, source_rate = transparency.espeak_ng(f"{language}+{variant}", pitch, 155, text)
    return parselmouth.Sound(x, sampling_frequency=source_rate).resample(rate, 50)


def spoken(rate, rng, talker, text, f0_range=SPOKEN_RANGE):
    """(audio, f0 per sample) of espeak-ng speech moved by Praat's PSOLA onto a known contour: the
    rendering's own contour, rescaled to a random median and range and given a slow drift."""
    import parselmouth
    from parselmouth.praat import call
    sound = espeak(talker, text, rate, pitch=int(rng.integers(20, 80)))
    pitch = sound.to_pitch(0.005, 60.0, 500.0)
    times = pitch.xs()
    original = pitch.selected_array["frequency"]
    voiced = original > 0
    if voiced.sum() < 10:
        raise ValueError(f"espeak-ng gave no voiced frames for {talker}")
    median = np.exp(np.mean(np.log(original[voiced])))
    target_median = np.exp(rng.uniform(np.log(f0_range[0] * 1.15), np.log(f0_range[1] / 1.3)))
    spread = rng.uniform(0.6, 1.6)
    drift = np.exp(0.08 * np.sin(2 * np.pi * times / rng.uniform(1.5, 4.0) + rng.uniform(0, 6.3)))
    contour = np.where(voiced, target_median * (original / np.where(voiced, median, 1.0)) ** spread * drift, 0.0)
    contour = np.where(voiced, np.clip(contour, f0_range[0] * 0.9, f0_range[1] * 1.1), 0.0)
    manipulation = call(sound, "To Manipulation", 0.01, 60.0, 500.0)
    tier = call("Create PitchTier", "contour", sound.xmin, sound.xmax)
    for time, f in zip(times[voiced], contour[voiced]):
        call(tier, "Add point", float(time), float(f))
    call([tier, manipulation], "Replace pitch tier")
    out = call(manipulation, "Get resynthesis (overlap-add)")
    x = out.values[0].astype(np.float64)
    # Voiced where Praat hears the contour within 50 cents in the output; elsewhere unvoiced, or
    # (where it hears another pitch) unknown, marked -1 and left out of training and scoring.
    heard = out.to_pitch(0.005, 60.0, 500.0)
    heard_f = np.interp(times, heard.xs(), heard.selected_array["frequency"])
    agree = voiced & (heard_f > 0) & (np.abs(1200 * np.log2(np.maximum(heard_f, 1) / np.maximum(contour, 1))) < 50)
    label = np.where(agree, contour, np.where(voiced | (heard_f > 0), -1.0, 0.0))
    sample_times = np.arange(len(x)) / rate
    nearest = np.clip(np.searchsorted(times, sample_times), 0, len(times) - 1)
    f0 = label[nearest]
    smooth = np.interp(sample_times, times, np.where(label > 0, label, 0.0))
    return x, np.where(f0 > 0, np.where(smooth > 0, smooth, f0), f0)


def pink(rng, n):
    """Unit-RMS pink noise (a 1/f power spectrum, shaped in the frequency domain)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spectrum), dtype=float)
    spectrum /= np.sqrt(np.maximum(f, 1.0))
    x = np.fft.irfft(spectrum, n)
    return x / np.std(x)


def noise_alone(rng, n, rate):
    """Unvoiced sound at a voice's level: white, pink, brown or high-passed (hissing) noise under a
    random envelope of bursts and pauses."""
    white = rng.standard_normal(n)
    kind = rng.integers(4)
    if kind == 1:
        x = pink(rng, n)
    elif kind == 2:
        x = np.cumsum(white)
        x -= np.convolve(x, np.ones(512) / 512, "same")
    elif kind == 3:
        x = np.diff(np.diff(white, prepend=0.0), prepend=0.0)
    else:
        x = white
    envelope = np.clip(1.0 + 2.0 * smooth_noise(rng, n, rate, rng.uniform(1.0, 8.0)), 0.0, None)
    x = x * envelope
    return x / (np.std(x) + 1e-12)


class Babble:
    """Speech babble: several talkers at once, each a sentence at a random offset, looped."""

    def __init__(self, rate, talkers, texts):
        self.parts = [espeak(talker, text, rate).values[0] for talker in talkers for text in texts[:2]]

    def take(self, rng, n, talkers=5):
        out = np.zeros(n)
        for index in rng.choice(len(self.parts), size=talkers, replace=False):
            part = self.parts[index]
            tiled = np.tile(part, n // len(part) + 2)
            start = rng.integers(len(part))
            out += tiled[start:start + n] * rng.uniform(0.5, 1.0)
        return out / np.std(out)


SOUNDFONT = "/usr/share/sounds/sf2/TimGM6mb.sf2"
# General MIDI programs a band plays: bass, chords and a lead line (the pitched interference a
# stage microphone hears).
BASS_PROGRAMS = (32, 33, 34, 38)
CHORD_PROGRAMS = (0, 4, 16, 24, 25, 48, 49)
LEAD_PROGRAMS = (40, 56, 65, 71, 73, 80)


class Band:
    """A band under the voice: a bass line, chords and a lead melody in a random key and tempo,
    rendered by fluidsynth (Debian) from a General MIDI soundfont; excerpts are taken as babble's."""

    def __init__(self, rate, seed, songs=6, seconds=20.0):
        self.parts = [self.song(rate, np.random.default_rng([seed, k]), seconds) for k in range(songs)]

    @staticmethod
    def song(rate, rng, seconds):
        import mido
        song = mido.MidiFile(ticks_per_beat=480)
        beat = 60.0 / rng.uniform(70, 150)
        key = int(rng.integers(0, 12))
        major = (0, 2, 4, 5, 7, 9, 11)
        degrees = rng.integers(0, 7, size=int(seconds / beat / 4) + 2)
        lines = ((0, rng.choice(BASS_PROGRAMS), 4, 36), (1, rng.choice(CHORD_PROGRAMS), 4, 60),
                 (2, rng.choice(LEAD_PROGRAMS), 1, 72))
        for channel, program, beats_per_note, base in lines:
            track = mido.MidiTrack()
            song.tracks.append(track)
            track.append(mido.Message("program_change", channel=channel, program=int(program), time=0))
            ticks = 480 * beats_per_note
            for step in range(int(seconds / beat / beats_per_note)):
                root = key + major[degrees[step * beats_per_note // 4]]
                if channel == 1:
                    notes = [base + root, base + root + 4 - (root % 12 in (2, 4, 9)), base + root + 7]
                elif channel == 0:
                    notes = [base + root]
                else:
                    notes = [base + key + major[int(rng.integers(0, 7))] + 12 * int(rng.integers(-1, 1))]
                velocity = int(rng.integers(60, 110))
                for note in notes:
                    track.append(mido.Message("note_on", channel=channel, note=int(note), velocity=velocity, time=0))
                for k, note in enumerate(notes):
                    track.append(mido.Message("note_off", channel=channel, note=int(note), time=ticks if k == 0 else 0))
        song.tracks.insert(0, mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=int(beat * 1e6), time=0)]))
        with tempfile.TemporaryDirectory() as tmp:
            midi, audio = pathlib.Path(tmp) / "band.mid", pathlib.Path(tmp) / "band.wav"
            song.save(str(midi))
            subprocess.run(["fluidsynth", "-ni", "-q", "-g", "0.5", "-r", str(rate), "-F", str(audio), SOUNDFONT,
                            str(midi)], check=True, capture_output=True)
            with wave.open(str(audio)) as w:
                frames = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float64) / 32768.0
                x = frames.reshape(-1, w.getnchannels()).mean(axis=1)
        return x[: int(seconds * rate)]

    def take(self, rng, n):
        part = self.parts[rng.integers(len(self.parts))]
        tiled = np.tile(part, n // len(part) + 2)
        start = rng.integers(len(part))
        out = tiled[start:start + n]
        return out / (np.std(out) + 1e-12)


def room(rng, rate, x):
    """x in a room: the direct sound plus exponentially decaying noise (RT60 0.2-0.9 s) at a random
    direct-to-reverberant ratio."""
    rt60 = rng.uniform(0.2, 0.9)
    length = int(rt60 * rate)
    tail = rng.standard_normal(length) * np.exp(-6.9 * np.arange(length) / length)
    tail[: int(0.005 * rate)] = 0.0
    tail *= 10 ** (-rng.uniform(0, 12) / 20) / np.sqrt(np.sum(tail**2))
    wet = np.fft.irfft(np.fft.rfft(x, len(x) + length) * np.fft.rfft(tail, len(x) + length))[: len(x)]
    return x + wet


def mix(voice, f0, noise, snr_db, rng, level_db=None):
    """voice + noise at snr_db (voice RMS over its voiced samples against the noise's), scaled to a
    peak at level_db dBFS (random if None)."""
    voiced = f0 > 0
    voice_rms = np.sqrt(np.mean(voice[voiced] ** 2)) if voiced.any() else np.std(voice)
    out = voice + (0.0 if noise is None else noise * voice_rms * 10 ** (-snr_db / 20))
    level = rng.uniform(-30, -3) if level_db is None else level_db
    return (out / (np.max(np.abs(out)) + 1e-12) * 10 ** (level / 20)).astype(np.float32)


def block_truth(f0):
    """Per block: (f0 in Hz, the geometric mean over its voiced samples; 0 if none) and the share of
    its samples that are voiced (-1 for a block with any unknown sample)."""
    blocks = len(f0) // R.BLOCK
    f = f0[: blocks * R.BLOCK].reshape(blocks, R.BLOCK)
    voiced = f > 0
    share = voiced.mean(axis=1)
    share = np.where((f < 0).any(axis=1), -1.0, share)
    logs = np.where(voiced, np.log(np.where(voiced, f, 1.0)), 0.0)
    mean = np.exp(logs.sum(axis=1) / np.maximum(voiced.sum(axis=1), 1))
    return np.where(voiced.any(axis=1), mean, 0.0), share


def features(x, c):
    """Per block of x (streamed from silence): the decimated CMNDF over every lag and the block's
    decimated energy, as reference.yin computes them ([blocks, lags_dec], [blocks])."""
    blocks = len(x) // R.BLOCK
    pad = R.HISTORY
    padded = np.concatenate([np.zeros(pad), np.asarray(x[: blocks * R.BLOCK], np.float64)])
    filtered = np.convolve(padded, c.fir.astype(np.float64))[: len(padded)]
    # Decimated sample q is the filter's output at 8 q + 7: block b's newest is at its last sample.
    z = filtered[R.DEC - 1::R.DEC].astype(np.float32)
    newest = (pad + R.BLOCK) // R.DEC - 1 + np.arange(blocks) * R.BLOCK_DEC
    dec = z[newest[:, None] - np.arange(c.dec_len)[None, :]]                  # [blocks, dec_len]
    blk = dec[:, : R.BLOCK_DEC]
    lags = c.lags_dec
    cross = np.stack([np.sum(blk * dec[:, t:t + R.BLOCK_DEC], axis=1) for t in range(lags)], axis=1)
    squares = np.concatenate([np.zeros((blocks, 1), np.float32), np.cumsum(dec * dec, axis=1)], axis=1)
    energy = squares[:, R.BLOCK_DEC:R.BLOCK_DEC + lags] - squares[:, :lags]
    e0 = energy[:, :1]
    diff = np.maximum(energy + e0 - 2 * cross, R.DIFF_FLOOR)
    cmnd = diff / (np.cumsum(diff, axis=1) * c.inv_tau[None, :])
    return cmnd.astype(np.float32), e0[:, 0].astype(np.float32)
