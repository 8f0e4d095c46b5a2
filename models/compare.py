"""autotuned beside x42-fat1, Autotalent and Praat's TD-PSOLA on the benchmark's voices and speech.

    make compare                                     # installs the other two, then both rates
    python3 models/compare.py --rate 44100 --json compare.json

Every processor corrects the same signals in auto mode over the chromatic scale, as hard as it
goes: autotuned strength 1, retune 0 (the default model for the rate); x42-fat1 in Auto mode
with its fastest filter, as it comes and in its low-latency "fast correction" mode; Autotalent
with all twelve notes in the scale, strength 1, smoothness 0. The others are Debian's builds,
run offline: x42-fat1 (LV2) by lv2file in 512-frame blocks, Autotalent (LADSPA) by applyplugin
on 16-bit files. Praat's TD-PSOLA is the yardstick of the method autotuned's grains belong to,
with none of a real-time corrector's limits: offline, its pitch marks placed on the whole signal,
no delay, every pitch point moved to the nearest semitone. Each is measured against its own
input with quality.py's measures: Praat's pitch error from 30 ms after each note onset and the
delay on the sung test set, then transparency_check (envelope distance, clicks, seams, speech's
voiced retention).

Debian's Autotalent links glibc's `__exp_finite` family, gone since glibc 2.31: LIBM_FINITE
names a library that provides them (`make compare` builds models/libm_finite.c), preloaded
into applyplugin only.
"""

import argparse
import json
import os
import pathlib
import subprocess
import tempfile
import wave

import numpy as np
import parselmouth
from parselmouth.praat import call

import quality
import stream
import transparency
from reference import BLOCK

# Autotalent's delay is larger than quality.py's 1500-sample search covers.
MAX_LAG = 4000
FAT1 = "http://gareus.org/oss/lv2/fat1"
FAT1_CONTROLS = {"mode": 0, "filter": 0.02}
# applyplugin takes the control inputs in port order (analyseplugin lists them).
AUTOTALENT_CONTROLS = [
    ("concert A", 440), ("fixed pitch", 0), ("pull to fixed pitch", 0),
    *[(note, 1) for note in ("A", "Bb", "B", "C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab")],
    ("correction strength", 1), ("correction smoothness", 0), ("pitch shift", 0), ("scale rotate", 0),
    ("LFO depth", 0), ("LFO rate", 5), ("LFO shape", 0), ("LFO symmetry", 0), ("LFO quantization", 0),
    ("formant correction", 0), ("formant warp", 0), ("mix", 1)]
# Above the test set's highest voice (523 Hz + 70 cents).
PSOLA_CEILING_HZ = 600.0
# applyplugin stops with its input: silence after it lets the delayed end out.
AUTOTALENT_TAIL_SECONDS = 0.2


def autotuned(rate):
    sess = stream.session(quality.MODEL_FOR_RATE[rate])
    return lambda signal: stream.run(sess, signal)[0]


def x42_fat1(rate, fast=False):
    def process(signal):
        with tempfile.TemporaryDirectory() as tmp:
            src, dst = pathlib.Path(tmp, "in.raw"), pathlib.Path(tmp, "out.raw")
            signal.astype("<f4").tofile(src)
            ports = {**FAT1_CONTROLS, "fastmode": int(fast)}
            controls = [arg for port, value in ports.items() for arg in ("-p", f"{port}:{value}")]
            subprocess.run(["lv2file", "-i", str(src), "-o", str(dst), "-r", str(rate), "-n", "1",
                            "-b", str(BLOCK), *controls, FAT1], check=True, capture_output=True)
            return np.fromfile(dst, "<f4")
    return process


def autotalent(rate):
    libm_finite = os.environ.get("LIBM_FINITE")
    if not libm_finite:
        raise SystemExit("compare.py: set LIBM_FINITE to a build of models/libm_finite.c (`make compare` does)")
    environment = {**os.environ, "LD_PRELOAD": libm_finite}
    plugin = ["/usr/lib/ladspa/autotalent.so", "autotalent", *[str(value) for _, value in AUTOTALENT_CONTROLS]]

    def process(signal):
        with tempfile.TemporaryDirectory() as tmp:
            src, dst = pathlib.Path(tmp, "in.wav"), pathlib.Path(tmp, "out.wav")
            with wave.open(str(src), "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(rate)
                w.writeframes((np.clip(signal, -1.0, 1.0) * 32767).astype("<i2").tobytes())
            subprocess.run(["applyplugin", "-s", str(AUTOTALENT_TAIL_SECONDS), str(src), str(dst), *plugin],
                           check=True, capture_output=True, env=environment)
            with wave.open(str(dst)) as w:
                out = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768
            return out[:len(signal)]
    return process


def praat_psola(rate):
    def process(signal):
        sound = parselmouth.Sound(signal.astype(np.float64), rate)
        manipulation = call(sound, "To Manipulation", quality.FRAME, transparency.PRAAT_FLOOR_HZ, PSOLA_CEILING_HZ)
        tier = call(manipulation, "Extract pitch tier")
        call(tier, "Formula", "440 * 2 ^ (round(12 * log2(self / 440)) / 12)")
        call([tier, manipulation], "Replace pitch tier")
        return call(manipulation, "Get resynthesis (overlap-add)").values[0].astype(np.float32)[:len(signal)]
    return process


PROCESSORS = {"autotuned": autotuned, "x42-fat1": x42_fat1, "x42-fat1 fast": lambda rate: x42_fat1(rate, fast=True),
              "Autotalent": autotalent, "Praat PSOLA": praat_psola}


def remembered(process):
    """process, run once per signal: the sung set is measured twice (accuracy, transparency)."""
    outputs = {}

    def once(signal):
        if id(signal) not in outputs:
            outputs[id(signal)] = (signal, process(signal))
        return outputs[id(signal)][1]
    return once


def accuracy(process, cases, rate):
    """quality.py's auto run (chromatic, strength 1) for any processor."""
    nearest = lambda sung: quality.hz_of(np.round(quality.note_of(sung)))  # noqa: E731
    errors, kept, voiced, delays = [], 0, 0, []
    for case in cases:
        out = process(case.signal)
        delay = quality.measured_delay(case.signal[:len(out)], out, rate, MAX_LAG)
        e, k, v = quality.frame_errors(case, out, nearest, delay)
        errors.append(e)
        kept, voiced = kept + k, voiced + v
        delays.append(delay)
    return {**quality.summary(np.concatenate(errors)), "voiced_retention": kept / max(voiced, 1),
            "delay_mean": float(np.mean(delays)), "delay_worst": float(np.max(delays))}


def compare(rate, names):
    cases = quality.test_set(rate)
    report = {"rate": rate, "processors": {}}
    for name in names:
        process = remembered(PROCESSORS[name](rate))
        report["processors"][name] = {"auto": accuracy(process, cases, rate),
                                      "transparency": quality.transparency_check(process, rate, cases, MAX_LAG)}
    return report


def print_report(r):
    print(f"\n== {r['rate']} Hz ==")
    print(f"{'':13} {'median c':>8} {'p95 c':>6} {'kept':>5} {'delay':>10} {'LSD vowels':>10} {'pulse':>6} {'melodies':>8} "
          f"{'speech':>6} {'clicks/min':>10} {'speech kept':>24}")
    for name, p in r["processors"].items():
        a, t = p["auto"], p["transparency"]
        clicks = "/".join(f"{t[g]['clicks_per_min_out']:.1f}" for g in ("vowels", "melodies"))
        kept = " ".join(f"{k:.3f}" for k in t["speech"]["voiced_retention_within_tolerance"])
        print(f"{name:13} {a['median_cents']:8.2f} {a['p95_cents']:6.2f} {a['voiced_retention']:5.3f} "
              f"{a['delay_mean']:4.0f}/{a['delay_worst']:<5.0f} {t['vowels']['lsd_db']:10.2f} "
              f"{t['pulse vowels']['lsd_db']:6.2f} {t['melodies']['lsd_db']:8.2f} {t['speech']['lsd_db']:6.2f} {clicks:>10} {kept:>24}")
    print(f"(delay: mean/worst samples; clicks: vowels/melodies, the input has 0; speech kept: voiced "
          f"retention within {quality.RETENTION_TOLERANCE * 1000:g} ms per espeak-ng voice, lowest pitch first; "
          f"strict below)")
    for name, p in r["processors"].items():
        print(f"-- {name}")
        quality.print_transparency(p["transparency"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, choices=[44100, 48000])
    parser.add_argument("--only", choices=list(PROCESSORS), action="append",
                        help="measure only these processors (repeatable)")
    parser.add_argument("--json", type=pathlib.Path)
    args = parser.parse_args()
    reports = [compare(rate, args.only or list(PROCESSORS))
               for rate in ([args.rate] if args.rate else quality.MODEL_FOR_RATE)]
    for r in reports:
        print_report(r)
    if args.json:
        args.json.write_text(json.dumps(reports, indent=2))


if __name__ == "__main__":
    main()
