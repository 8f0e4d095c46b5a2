"""Quality benchmark of the default model: pitch accuracy, voicing, seams, delay, formants and speed.

    python3 models/quality.py                 # both rates, prints a table per rate
    python3 models/quality.py --rate 44100 --json out.json

Output pitch is measured by Praat (praat-parselmouth), never by the model's own YIN. Every figure
is also given for a passthrough (the input itself) so the model's effect can be read off.
"""

import argparse
import json
import pathlib
import time

import numpy as np
import parselmouth

import envelope
import stream
import transparency
import voices
from reference import BLOCK

HERE = pathlib.Path(__file__).resolve().parent
MODEL_FOR_RATE = {44100: HERE / "autotune.onnx", 48000: HERE / "autotune-48k.onnx"}
C_MAJOR = [1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1]
NOTE_SECONDS = 1.2
SETTLE_SECONDS = 0.03   # onset and Praat's window are left out of each note
FORMANT_VOICES_HZ = (82.41, 110.0, 196.0, 329.63)
TRANSPOSES = (5.0, -7.0, 12.0)
FRAME = 0.01
VIBRATO_CENTS = 20.0
MELODY_NOTE_SECONDS = 0.6


def note_of(freq, tuning=440.0):
    return 69 + 12 * np.log2(freq / tuning)


def hz_of(note, tuning=440.0):
    return tuning * 2 ** ((note - 69) / 12)


def praat_pitch(signal, rate, floor=60.0):
    """Frame times and f0 (Hz, 0 = unvoiced) by Praat's autocorrelation method."""
    pitch = parselmouth.Sound(signal.astype(np.float64), rate).to_pitch(
        time_step=FRAME, pitch_floor=floor, pitch_ceiling=1400.0)
    return pitch.xs(), pitch.selected_array["frequency"]


class Case:
    """A test voice: its samples, true f0 track, and the notes it is meant to land on."""

    def __init__(self, name, f0, rate, seed, vowel, with_shimmer=True, pulse=False):
        self.name, self.f0, self.rate, self.seed, self.vowel, self.pulse = name, f0, rate, seed, vowel, pulse
        self.signal = voices.render(f0, rate, vowel=vowel, seed=seed, pulse=pulse)
        if with_shimmer:
            # Slow random amplitude shimmer: a real voice's, and what the delay is measured on.
            rng = np.random.default_rng(seed + 1000)
            steps = rng.uniform(0.7, 1.0, len(f0) // 600 + 2)
            env = np.interp(np.arange(len(f0)), np.arange(len(steps)) * 600, steps)
            self.signal = (self.signal * env).astype(np.float32)


def test_set(rate):
    cases = []
    seed = 0
    for base in voices.BASE_NOTES_HZ:
        for detune in voices.DETUNES_CENTS:
            for vibrato in (0.0, VIBRATO_CENTS):
                seed += 1
                f0 = voices.steady(base * 2 ** (detune / 1200), NOTE_SECONDS, rate, vibrato_cents=vibrato)
                c = Case(f"{base:.0f}Hz{detune:+d}c{'~' if vibrato else ''}", f0, rate, seed, "aeo"[seed % 3])
                c.base_hz, c.segments = base, [(0, len(f0), base * 2 ** (detune / 1200))]
                cases.append(c)
    rng = np.random.default_rng(7)
    for m in range(4):
        notes = 45 + rng.integers(0, 24, 5)
        sung = hz_of(notes + rng.uniform(-40, 40, 5))
        f0 = voices.melody(sung, MELODY_NOTE_SECONDS, rate)
        seed += 1
        c = Case(f"melody{m}", f0, rate, seed, "aeo"[m % 3])
        per = int(MELODY_NOTE_SECONDS * rate)
        c.base_hz, c.segments = None, [(i * per, (i + 1) * per, sung[i]) for i in range(5)]
        cases.append(c)
    return cases


def pulse_like(case):
    """The case sung with a glottal pulse every cycle instead of random harmonic phases."""
    twin = Case(case.name, case.f0, case.rate, case.seed, case.vowel, pulse=True)
    twin.base_hz, twin.segments = case.base_hz, case.segments
    return twin


def ideal_correction(case):
    """What a perfect chromatic corrector makes of the case: the same voice, vowel, shimmer and
    noise, every note at the nearest semitone from its first sample, glides as sung. Its distance
    from the input is the envelope measure's own floor."""
    snapped = [hz_of(np.round(note_of(sung))) for _, _, sung in case.segments]
    if len(snapped) == 1:
        f0 = np.full(len(case.f0), snapped[0])
    else:
        f0 = voices.melody(snapped, MELODY_NOTE_SECONDS, case.rate)
    return Case(case.name, f0, case.rate, case.seed, case.vowel, pulse=case.pulse).signal


def frame_errors(case, output, target_of, delay_samples, strength=1.0):
    """Cents error of output frames against target_of(sung Hz), and voiced retention."""
    t_in, f_in = praat_pitch(case.signal, case.rate)
    t_out, f_out = praat_pitch(output, case.rate)
    shift = delay_samples / case.rate
    errors, kept, voiced_in = [], 0, 0
    for start, end, sung in case.segments:
        lo, hi = start / case.rate + SETTLE_SECONDS, end / case.rate - 0.05
        for t, f in zip(t_out, f_out):
            if not lo + shift <= t <= hi + shift:
                continue
            src = int(round((t - shift) * case.rate))
            true_in = case.f0[min(max(src, 0), len(case.f0) - 1)]
            in_frame = np.argmin(np.abs(t_in - (t - shift)))
            if f_in[in_frame] <= 0:
                continue
            voiced_in += 1
            if f <= 0:
                continue
            kept += 1
            target = target_of(sung)
            goal_cents = strength * 1200 * np.log2(target / true_in)
            errors.append(1200 * np.log2(f / true_in) - goal_cents)
    return np.array(errors), kept, voiced_in


def amplitude_envelope(signal, rate, cutoff=60.0):
    spectrum = np.fft.rfft(np.abs(signal))
    spectrum[int(cutoff * len(signal) / rate):] = 0
    return np.fft.irfft(spectrum, len(signal))


def measured_delay(inp, out, rate, max_lag=1500):
    """Delay (samples) of out against inp from their amplitude envelopes, edges left out."""
    margin = int(0.1 * rate)
    a = amplitude_envelope(inp, rate)[margin:-margin - max_lag]
    b = amplitude_envelope(out, rate)[margin:-margin]
    a, b = a - a.mean(), b - b.mean()
    scores = np.array([np.dot(a, b[lag:lag + len(a)]) for lag in range(max_lag)])
    k = int(np.argmax(scores))
    if 0 < k < max_lag - 1:
        den = scores[k - 1] - 2 * scores[k] + scores[k + 1]
        return k + (0.5 * (scores[k - 1] - scores[k + 1]) / den if den < 0 else 0.0)
    return float(k)


def roughness(signal):
    """Mean |second difference| at block seams over the same in block interiors."""
    second = np.abs(np.diff(signal.astype(np.float64), 2))
    index = np.arange(2, len(signal)) % BLOCK
    seam = np.isin(index, (0, 1))
    return float(second[seam].mean() / second[~seam].mean())


def summary(errors):
    a = np.abs(errors)
    return {"median_cents": float(np.median(a)), "p95_cents": float(np.percentile(a, 95)),
            "frames": int(len(a))}


def benchmark(rate, timing_blocks=5000):
    sess = stream.session(MODEL_FOR_RATE[rate])
    cases = test_set(rate)
    nearest = lambda sung: hz_of(np.round(note_of(sung)))  # noqa: E731
    runs = {
        "auto, chromatic, strength 1": dict(kwargs={}, target=nearest, strength=1.0),
        "explicit Hz target, strength 1": dict(kwargs="hz", target=None, strength=1.0),
        "auto, chromatic, strength 0.5": dict(kwargs={"strength": 0.5}, target=nearest, strength=0.5),
    }
    report = {"rate": rate, "runs": {}}
    delays = []
    for title, run in runs.items():
        all_model, all_pass, kept, voiced_in, rough = [], [], 0, 0, []
        for case in cases:
            if run["kwargs"] == "hz":
                if case.base_hz is None:
                    continue
                kwargs, target = {"target_pitch": case.base_hz}, (lambda sung, b=case.base_hz: b)
            else:
                kwargs, target = run["kwargs"], run["target"]
            out, _, _ = stream.run(sess, case.signal, **kwargs)
            delay = measured_delay(case.signal[:len(out)], out, rate)
            if title.startswith("auto, chromatic, strength 1"):
                delays.append((case.name, delay))
            errors, k, v = frame_errors(case, out, target, delay, run["strength"])
            passthrough, _, _ = frame_errors(case, case.signal, target, 0.0, run["strength"])
            all_model.append(errors)
            all_pass.append(passthrough)
            kept, voiced_in = kept + k, voiced_in + v
            rough.append(roughness(out))
        report["runs"][title] = {
            "model": summary(np.concatenate(all_model)),
            "passthrough": summary(np.concatenate(all_pass)),
            "voiced_retention": kept / max(voiced_in, 1),
            "seam_roughness": float(np.mean(rough)),
        }
    report["passthrough_seam_roughness"] = float(np.mean([roughness(c.signal) for c in cases]))
    values = np.array([d for _, d in delays])
    worst = delays[int(np.argmax(values))]
    low = [d for name, d in delays if name.startswith("82Hz")]
    report["delay_samples"] = {"mean": float(values.mean()), "worst": float(worst[1]), "worst_case": worst[0],
                               "worst_at_82Hz": float(max(low)),
                               "reported": int(sess.get_modelmeta().custom_metadata_map["latency_samples"])}
    report["c_major_f_sharp_plus_20"] = c_major_check(sess, rate)
    report["formants"] = formant_check(sess, rate)
    report["transparency"] = transparency_check(lambda signal: stream.run(sess, signal)[0], rate, cases)
    report["ort_us_per_block"] = ort_timing(sess, timing_blocks)
    report["model_bytes"] = MODEL_FOR_RATE[rate].stat().st_size
    return report


def formant_case(sess, rate, f0, vowel, seed, **controls):
    """(pitch moved, semitones; envelope warp; envelope distance, dB) of a held vowel through sess.

    Pitch by Praat (its floor low enough for 82 Hz down a fifth); the envelope warp and distance
    between input and output frames a delay apart, each pair at the sparser voice's resolution.
    """
    signal = voices.render(voices.steady(f0, 1.5, rate), rate, vowel=vowel, seed=seed)
    out, _, _ = stream.run(sess, signal, **controls)
    signal = signal[:len(out)]
    delay = measured_delay(signal, out, rate)
    t_in, f_in = praat_pitch(signal, rate, floor=40.0)
    t_out, f_out = praat_pitch(out, rate, floor=40.0)
    keep = (t_in > 0.3) & (t_in < len(signal) / rate - 0.2) & (f_in > 0)
    pairs = envelope.paired(signal, out, rate, delay, (t_in[keep], f_in[keep]), (t_out, f_out), floor_hz=40.0)
    moved = 12 * np.log2(np.median(f_out[(t_out > 0.3) & (f_out > 0)]) / np.median(f_in[keep]))
    return (float(moved), float(np.median([envelope.warp(a, b) for a, b in pairs])),
            float(np.median([envelope.log_spectral_distance(a, b) for a, b in pairs])))


def formant_check(sess, rate):
    """Transposes with formants kept and not, and a formant shift, on held vowels 82..330 Hz."""
    rows = []
    for i, f0 in enumerate(FORMANT_VOICES_HZ):
        vowel = "aeo"[i % 3]
        for semitones in TRANSPOSES:
            for keep in (1.0, 0.0):
                moved, warp, lsd = formant_case(sess, rate, f0, vowel, i, transpose=semitones, formant_preserve=keep)
                rows.append({"f0": f0, "transpose": semitones, "formant_preserve": keep, "formant_shift": 0.0,
                             "pitch_moved_st": moved, "warp": warp, "lsd_db": lsd})
        moved, warp, lsd = formant_case(sess, rate, f0, vowel, i, formant_shift=3.0)
        rows.append({"f0": f0, "transpose": 0.0, "formant_preserve": 1.0, "formant_shift": 3.0,
                     "pitch_moved_st": moved, "warp": warp, "lsd_db": lsd})
    return rows


def c_major_check(sess, rate):
    """A voice at F#+20 cents in C major: which note does it land on (Praat median)?"""
    results = {}
    for mask_name, mask in (("C major", C_MAJOR), ("chromatic", None)):
        landed = []
        for octave_note in (54, 66):   # F#3, F#4
            f0 = voices.steady(hz_of(octave_note + 0.2), 1.5, rate)
            signal = voices.render(f0, rate, seed=octave_note)
            out, _, _ = stream.run(sess, signal, scale_mask=mask)
            _, f = praat_pitch(out[int(0.3 * rate):], rate)
            landed.append(float(np.median(note_of(f[f > 0]))))
        results[mask_name] = landed
    return results


# Praat's voicing onsets move with a processor's delay: speech only delayed, by an amount that
# wanders over 200 samples (4 ms) in 5 s, keeps just 0.993 of the 91 Hz voice's voiced frames by
# the strict reading at 48 kHz (over 300 samples, 0.991). The tolerant reading counts an input
# frame kept when the output is voiced there at the measured delay or at any of RETENTION_SHIFTS
# x RETENTION_TOLERANCE seconds from it, which gives the 200-sample wander 1.000 (the 300-sample
# one, which strays past the tolerance, 0.998) and still loses 10 ms gaps.
RETENTION_TOLERANCE = 0.0025
RETENTION_SHIFTS = (-1.0, -0.5, 0.0, 0.5, 1.0)


def voiced_retention(signal, out, rate, delay, tolerance=0.0):
    """Fraction of the input's voiced frames whose output frame, `delay` samples later, is voiced too
    (or, with a tolerance in seconds, at a delay that much shorter or longer: RETENTION_TOLERANCE).

    Praat reads both on the same frame grid: the output advanced by the delay and both cut to the
    same length. Reading the output on its own grid and interpolating at the delayed times took
    frames at voicing onsets a fraction of a frame apart, so that the input merely delayed by 140
    samples kept only 0.978-0.994 of espeak-ng's voiced frames.
    """
    shift, slack = int(round(delay)), int(round(tolerance * rate))
    length = min(len(signal) - slack, len(out) - shift - slack) - slack
    _, f_in = praat_pitch(signal[slack:slack + length], rate)
    voiced_out = np.zeros(len(f_in), bool)
    for step in (RETENTION_SHIFTS if slack else (0.0,)):
        start = shift + slack + int(round(step * slack))
        _, f_out = praat_pitch(out[start:start + length], rate)
        voiced_out |= f_out[:len(f_in)] > 0
    voiced = f_in > 0
    return float(np.sum(voiced & voiced_out) / max(np.sum(voiced), 1))


def transparency_check(process, rate, cases=None, max_lag=1500):
    """Envelope distance, clicks and seams of auto-mode correction on vowels, melodies and speech.

    The vowels are measured twice: with the benchmark's random harmonic phases and pulse-like
    (pulse_like()). For the synthetic voices each group also has the envelope distance of an ideal
    correction (ideal_correction()), the measure's floor.

    process(signal) is the corrected signal, no longer than it; max_lag bounds its delay.
    """
    cases = cases or test_set(rate)
    vowels = [c for c in cases if c.base_hz is not None]
    groups = {"vowels": vowels,
              "pulse vowels": [pulse_like(c) for c in vowels],
              "melodies": [c for c in cases if c.base_hz is None],
              "speech": [transparency.speech(voice, pitch, rate) for voice, pitch in transparency.SPEECH_VOICES]}
    rows = {}
    for group, members in groups.items():
        measures, retained, retained_within, medians, floors = [], [], [], [], []
        signals = [m.signal if isinstance(m, Case) else m for m in members]
        for member, signal in zip(members, signals):
            out = process(signal)
            signal = signal[:len(out)]
            delay = measured_delay(signal, out, rate, max_lag)
            pitch_in, pitch_out = praat_pitch(signal, rate), praat_pitch(out, rate)
            measures.append(transparency.measure(signal, out, rate, delay, pitch_in, pitch_out))
            if isinstance(member, Case):
                ideal = ideal_correction(member)[:len(signal)]
                floors.append(transparency.envelope_distance(signal, ideal, rate, 0, pitch_in,
                                                             praat_pitch(ideal, rate)))
            if group == "speech":
                retained.append(voiced_retention(signal, out, rate, delay))
                retained_within.append(voiced_retention(signal, out, rate, delay, RETENTION_TOLERANCE))
                f = pitch_in[1]
                medians.append(float(np.median(f[f > 0])))
        weights = [len(s) for s in signals]
        rows[group] = {
            "lsd_db": float(np.median([m["lsd_db"] for m in measures])),
            "clicks_per_min_in": float(np.average([m["clicks_in"] for m in measures], weights=weights)),
            "clicks_per_min_out": float(np.average([m["clicks_out"] for m in measures], weights=weights)),
            "seam_flux_vs_input": float(np.mean([m["seam_flux"][0] for m in measures])),
            "off_seam_flux_vs_input": [float(r) for r in np.mean([m["seam_flux"][1:] for m in measures], axis=0)]}
        if floors:
            rows[group]["ideal_lsd_db"] = float(np.median(floors))
        if retained:
            rows[group]["voiced_retention"] = retained
            rows[group]["voiced_retention_within_tolerance"] = retained_within
            rows[group]["median_f0_hz"] = medians
    return rows


def print_transparency(rows):
    print(f"{'transparency':12} {'LSD dB':>7} {'ideal':>6} {'clicks/min in':>14} {'out':>6} {'seam flux vs in':>16} "
          f"{'off the seams':>14}")
    for group, r in rows.items():
        ideal = f"{r['ideal_lsd_db']:6.2f}" if "ideal_lsd_db" in r else f"{'-':>6}"
        print(f"{group:12} {r['lsd_db']:7.2f} {ideal} {r['clicks_per_min_in']:14.1f} {r['clicks_per_min_out']:6.1f} "
              f"{r['seam_flux_vs_input']:16.3f} {min(r['off_seam_flux_vs_input']):6.3f}-"
              f"{max(r['off_seam_flux_vs_input']):.3f}")
        if "voiced_retention" in r:
            pairs = ", ".join(f"{f:.0f} Hz {k:.3f} ({w:.3f})" for f, k, w in zip(
                r["median_f0_hz"], r["voiced_retention"], r["voiced_retention_within_tolerance"]))
            print(f"  speech voiced retention (within {RETENTION_TOLERANCE * 1000:g} ms): {pairs}")


def ort_timing(sess, blocks):
    rng = np.random.default_rng(0)
    signal = voices.render(voices.steady(196.0, blocks * BLOCK / 44100 + 0.1, 44100, 20.0), 44100, seed=5)
    signal = signal + 0.001 * rng.standard_normal(len(signal)).astype(np.float32)
    feeds = stream.initial_state(sess)
    feeds.update(target_pitch=np.zeros((1, 1), np.float32), correction_strength=np.ones((1, 1), np.float32),
                 tuning_hz=np.full((1, 1), 440.0, np.float32),
                 retune_ms=np.zeros((1, 1), np.float32))
    names = [o.name for o in sess.get_outputs()]
    times = []
    for b in range(blocks):
        feeds["audio_buffer"] = signal[b * BLOCK:(b + 1) * BLOCK].reshape(1, BLOCK)
        t = time.perf_counter()
        result = sess.run(names, feeds)
        times.append(time.perf_counter() - t)
        for name in list(feeds):
            if name + "_out" in names:
                feeds[name] = result[names.index(name + "_out")]
    us = np.array(times) * 1e6
    return {"median": float(np.median(us)), "p99": float(np.percentile(us, 99)), "blocks": blocks}


def print_report(r):
    print(f"\n== {r['rate']} Hz ==")
    print(f"{'run':34} {'median c':>9} {'p95 c':>8} {'pass med':>9} {'pass p95':>9} {'retain':>7} {'seams':>6}")
    for title, v in r["runs"].items():
        print(f"{title:34} {v['model']['median_cents']:9.2f} {v['model']['p95_cents']:8.2f} "
              f"{v['passthrough']['median_cents']:9.2f} {v['passthrough']['p95_cents']:9.2f} "
              f"{v['voiced_retention']:7.3f} {v['seam_roughness']:6.3f}")
    print(f"passthrough seam roughness {r['passthrough_seam_roughness']:.3f} (1.0 = seams like interiors)")
    d = r["delay_samples"]
    print(f"added delay: mean {d['mean']:.0f}, worst {d['worst']:.0f} ({d['worst_case']}), "
          f"worst at 82 Hz {d['worst_at_82Hz']:.0f} samples (passthrough 0); reported latency {d['reported']}")
    print(f"C major, F#+20c lands on MIDI {r['c_major_f_sharp_plus_20']['C major']} "
          f"(chromatic: {r['c_major_f_sharp_plus_20']['chromatic']})")
    print(f"{'formants: f0':>14} {'transpose':>9} {'keep':>5} {'shift':>5} {'pitch st':>9} {'warp':>6} {'ideal':>6} {'LSD dB':>7}")
    for f in r["formants"]:
        ideal = 2 ** ((f["transpose"] * (1 - f["formant_preserve"]) + f["formant_shift"]) / 12)
        print(f"{f['f0']:14.0f} {f['transpose']:+9.0f} {f['formant_preserve']:5.0f} {f['formant_shift']:+5.0f} "
              f"{f['pitch_moved_st']:9.2f} {f['warp']:6.3f} {ideal:6.3f} {f['lsd_db']:7.2f}")
    print_transparency(r["transparency"])
    t = r["ort_us_per_block"]
    print(f"ORT per block (1 thread): median {t['median']:.0f} us, p99 {t['p99']:.0f} us over {t['blocks']} blocks")
    print(f"model size {r['model_bytes']} bytes")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, choices=[44100, 48000])
    parser.add_argument("--json", type=pathlib.Path)
    parser.add_argument("--timing-blocks", type=int, default=5000)
    args = parser.parse_args()
    reports = [benchmark(rate, args.timing_blocks) for rate in ([args.rate] if args.rate else MODEL_FOR_RATE)]
    for r in reports:
        print_report(r)
    if args.json:
        args.json.write_text(json.dumps(reports, indent=2))


if __name__ == "__main__":
    main()
