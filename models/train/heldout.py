"""Writes the held-out noisy set for the live measurement through the daemon (`make bench-detector`):
per condition a 16-bit WAV and a `.truth` file with one line per 512-sample block, "f0 share"
(the block's true f0 in Hz, 0 if none; the share of its samples that are voiced, -1 unknown).

    python3 models/train/heldout.py OUT_DIR [--seconds 30]
"""

import argparse
import pathlib
import wave

import numpy as np

import data
import train

RATE = 44100


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=pathlib.Path)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    conditions = train.held_out_audio(RATE, clips=int(args.seconds // 3), kinds=("pink", "babble"))
    for name, (x, f0) in conditions.items():
        if name.endswith(" 20 dB"):
            continue
        stem = args.out_dir / name.replace(" ", "_")
        with wave.open(str(stem.with_suffix(".wav")), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(RATE)
            w.writeframes(np.round(np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())
        truth, share = data.block_truth(f0)
        stem.with_suffix(".truth").write_text("".join(f"{f:.3f} {s:.4f}\n" for f, s in zip(truth, share)))
        print(f"wrote {stem}.wav / .truth")


if __name__ == "__main__":
    main()
