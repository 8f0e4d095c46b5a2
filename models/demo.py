"""Renders the demo phrase `make demo` corrects: 8 s of a sung melody, slightly out of tune,
with scoops into notes, vibrato and a held note, made by the repo's own voice synthesizer.

    python3 models/demo.py demo/before.wav
"""

import pathlib
import sys
import wave

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import voices  # noqa: E402

RATE = 44_100


def phrase():
    """f0 per sample: (note Hz, seconds, cents off, scoop cents, vibrato cents) per note."""
    notes = [
        (196.00, 0.8, +25, -150, 0),
        (220.00, 0.6, -30, -100, 0),
        (246.94, 0.6, +20, 0, 0),
        (261.63, 1.2, -35, -200, 25),
        (246.94, 0.5, +40, 0, 0),
        (220.00, 0.5, -20, -80, 0),
        (196.00, 0.6, +30, -120, 0),
        (293.66, 2.8, -25, -250, 35),
    ]
    parts = []
    for hz, seconds, off, scoop, vibrato in notes:
        n = int(seconds * RATE)
        t = np.arange(n) / RATE
        cents = off + scoop * np.exp(-t / 0.06)
        # Vibrato grows in after the onset, as a singer's does.
        cents = cents + vibrato * np.clip((t - 0.3) / 0.4, 0, 1) * np.sin(2 * np.pi * 5.5 * t)
        parts.append(hz * 2 ** (cents / 1200))
    gap = np.zeros(int(0.2 * RATE))
    return np.concatenate([gap, *parts, gap])


def main():
    out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "demo/before.wav")
    out.parent.mkdir(parents=True, exist_ok=True)
    audio = voices.render(phrase(), RATE, vowel="a", seed=7, level_db=-6.0)
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    with wave.open(str(out), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.tobytes())
    print(f"wrote {out} ({len(audio) / RATE:.1f} s)")


if __name__ == "__main__":
    main()
