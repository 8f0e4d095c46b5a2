"""Checks of the shipped models: byte-identical rebuild, graph == NumPy reference, base-only calls,
scale handling and metadata. Run with `python3 -m pytest models`."""

import sys
import pathlib

import numpy as np
import onnx
import pytest

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import build  # noqa: E402
import compare  # noqa: E402
import envelope  # noqa: E402
import quality  # noqa: E402
import stream  # noqa: E402
import transparency  # noqa: E402
import voices  # noqa: E402
import reference as R  # noqa: E402
from reference import BLOCK, Reference  # noqa: E402

RATES = list(build.MODELS.values())
# Per state lane. The grains' anchors integrate the read rate over the block in float32, where the
# two implementations round differently: 0.05 samples is 1 microsecond at 44.1 kHz.
STATE_TOLERANCE = np.full(R.STATE_LEN, 1e-2, np.float32)
STATE_TOLERANCE[R.S_HEADS:] = 0.05
# The next grain's delay ends a 512-sample float32 running sum of the read rate started near
# 2500, whose rounding differs between CumSum and NumPy by up to ~0.02 samples (the 19-EDO
# stream's larger corrections reach 0.014); the anchors, made the same way, have 0.05.
STATE_TOLERANCE[R.S_DELAY] = 0.05


def path_for(rate):
    return quality.MODEL_FOR_RATE[rate]


def long_signal(rate):
    """~10 s: a melody, vibrato, a held note, silence, breath noise and a held note again."""
    rng = np.random.default_rng(11)
    parts = [
        voices.render(voices.melody([98.0, 147.0 * 2 ** (0.3 / 12), 262.0, 196.0 * 2 ** (-0.4 / 12)], 0.7, rate),
                      rate, seed=1),
        voices.render(voices.steady(233.0, 1.5, rate, vibrato_cents=40.0), rate, vowel="e", seed=2),
        np.zeros(rate // 3, np.float32),
        # Breath: broadband noise at a breath's level, about -40 dBFS.
        (0.01 * rng.standard_normal(rate // 2)).astype(np.float32),
        voices.render(voices.steady(86.0, 1.5, rate), rate, vowel="o", seed=3),
        voices.render(voices.steady(500.0, 1.2, rate, vibrato_cents=15.0), rate, seed=4),
    ]
    return np.concatenate(parts)


def test_rebuild_is_byte_identical(tmp_path):
    for filename, rate in build.MODELS.items():
        rebuilt = build.build(rate).SerializeToString(deterministic=True)
        assert rebuilt == (HERE / filename).read_bytes(), f"{filename} differs from a fresh build"


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("controls", [
    {},
    {"target_pitch": 210.0, "retune_ms": 60.0},
    {"strength": 0.5, "scale_mask": quality.C_MAJOR, "tuning_hz": 442.0, "retune_ms": 150.0, "transpose": -7.5},
    {"scale_notes": np.resize(np.arange(19, dtype=np.float32) * np.float32(12 / 19), R.SCALE_SLOTS),
     "scale_period": 12.0, "note_hysteresis": 0.158},
])
def test_graph_matches_reference(rate, controls):
    check_graph_against_reference(stream.session(path_for(rate)), Reference(rate), long_signal(rate), controls)


@pytest.mark.parametrize("rate", RATES)
def test_yin_detector_build_matches_its_reference(rate):
    """`make models DETECTOR=yin` (YIN's lag pick and voicing, no learned stage) still builds a
    graph that agrees with the reference run the same way."""
    model = build.build(rate, "yin")
    assert "detector_state" not in {i.name for i in model.graph.input}
    sess = stream.session(model.SerializeToString())
    check_graph_against_reference(sess, Reference(rate, detector="yin"), long_signal(rate)[:3 * rate], {})


def check_graph_against_reference(sess, ref, signal, controls):
    """Every block of a long stream, the graph fed the reference's state, matches the reference.

    The state is the reference's own at every block because the grain phase integrates float
    rounding for the whole stream: a grain start within rounding of an integer phase can fall a
    sample apart in the two implementations. Both are valid, but from there the two streams are
    different (equally good) outputs, so free-running, only their level is compared.
    """
    names = [o.name for o in sess.get_outputs()]
    feeds = stream.feeds(sess, **controls)
    learned = "detector_state_out" in names
    rate = int(ref.c.sr)
    worst, grain_starts_differ = 0.0, 0
    for b in range(len(signal) // BLOCK):
        block = signal[b * BLOCK:(b + 1) * BLOCK]
        feeds.update(audio_buffer=block.reshape(1, BLOCK), history=ref.history.reshape(1, -1),
                     state=ref.state.reshape(1, -1))
        if learned:
            feeds["detector_state"] = ref.detector_state.reshape(1, -1)
        got = dict(zip(names, sess.run(names, feeds)))
        expected, confidence, detected, applied = ref.process(block, **controls)
        assert np.all(np.isfinite(got["corrected_audio"]))
        audio_error = float(np.abs(got["corrected_audio"][0] - expected).max())
        assert abs(got["confidence"][0, 0] - confidence) <= 1e-3
        assert abs(got["detected_pitch"][0, 0] - detected) <= 1e-2
        assert abs(got["applied_target_hz"][0, 0] - applied) <= 1e-2
        state_error = np.abs(got["state_out"][0] - ref.state)
        assert np.all(state_error[:R.S_HEADS] <= STATE_TOLERANCE[:R.S_HEADS])
        if learned:
            assert np.abs(got["detector_state_out"][0] - ref.detector_state).max() <= 1e-3
        if np.all(state_error[R.S_HEADS:] <= STATE_TOLERANCE[R.S_HEADS:]):
            worst = max(worst, audio_error)
        else:
            # This block's grain starts a sample apart: a grain that started a sample later reads
            # the voice a sample later (up to 0.005 here on a 500 Hz tone at -12 dBFS).
            grain_starts_differ += 1
            assert audio_error <= 1e-2
    assert worst <= 1e-3, f"max abs diff {worst}"
    # A grain starts where the output phase crosses an integer; within float rounding of it, one
    # implementation can start it a sample later than the other (both valid, the audio agrees).
    assert grain_starts_differ <= len(signal) // BLOCK // 50, f"{grain_starts_differ} blocks"

    free, _, _ = stream.run(sess, signal, **controls)
    ref = Reference(rate, ref.c.detector)
    expected = np.concatenate([ref.process(signal[b * BLOCK:(b + 1) * BLOCK], **controls)[0]
                               for b in range(len(signal) // BLOCK)])
    assert np.all(np.isfinite(free))
    assert abs(np.sqrt(np.mean(free ** 2)) / np.sqrt(np.mean(expected ** 2)) - 1) < 0.01


@pytest.mark.parametrize("rate", RATES)
def test_base_contract_only_call_passes_audio_through(rate):
    signal = voices.render(voices.steady(180.0, 0.5, rate), rate)
    out, _, _ = stream.run(stream.session(path_for(rate)), signal, base_only=True)
    assert np.array_equal(out, signal[:len(out)])


@pytest.mark.parametrize("rate", RATES)
def test_c_major_moves_f_sharp_to_f_or_g(rate):
    landed = quality.c_major_check(stream.session(path_for(rate)), rate)
    for note in landed["C major"]:
        nearest = round(note)
        assert nearest % 12 in (5, 7), f"landed on MIDI {note:.2f}"
        assert abs(note - nearest) * 100 <= 5
    for note in landed["chromatic"]:
        assert round(note) % 12 == 6 and abs(note - round(note)) * 100 <= 5


@pytest.mark.parametrize("rate", RATES)
def test_contract_and_metadata(rate):
    model = onnx.load(path_for(rate))
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["sample_rate"] == str(rate) and meta["block_size"] == str(BLOCK)
    assert int(meta["latency_samples"]) > 0 and meta["name"] and meta["version"]
    assert model.opset_import[0].version == 17
    ops = {node.op_type for node in model.graph.node}
    assert not ops & {"Loop", "Scan", "If"}
    sess = stream.session(path_for(rate))
    names = {i.name for i in sess.get_inputs() + sess.get_overridable_initializers()}
    assert {"audio_buffer", "target_pitch", "correction_strength", "scale_notes", "scale_period", "note_hysteresis",
            "tuning_hz", "retune_ms",
            "transpose", "formant_preserve", "formant_shift", "history", "state", "detector_state",
            "voice_mix"} == names
    outputs = {o.name for o in sess.get_outputs()}
    assert {"corrected_audio", "confidence", "detected_pitch", "applied_target_hz", "history_out",
            "state_out", "detector_state_out"} == outputs
    assert meta["detector"].startswith("learned: ") and meta["name"] == "autotune-learned-grains"


@pytest.mark.parametrize("rate", RATES)
def test_unvoiced_noise_is_one_head_that_returns_to_the_latency(rate):
    """A single head: wherever the model calls the noise unvoiced outright, the output is the input
    read (Catmull-Rom, as the heads read) at the delay the state reports, moving linearly across
    each block, so it is never combed. A block called faintly voiced (confidence under 0.5, still
    unvoiced) applies that much of the correction and moves the delay (3.4.0 calls one block of
    this noise 0.04 at 44.1 kHz: 8 samples); it and the block after, where the voicing ramps back,
    are left out. After it the delay returns to the reported latency."""
    noise = (0.05 * np.random.default_rng(3).standard_normal(rate)).astype(np.float32)
    sess = stream.session(path_for(rate))
    inputs, names = stream.feeds(sess, target_pitch=300.0), [o.name for o in sess.get_outputs()]
    out, confidence, delays = [], [], [0.0]
    for b in range(len(noise) // BLOCK):
        inputs["audio_buffer"] = noise[b * BLOCK:(b + 1) * BLOCK].reshape(1, BLOCK)
        result = stream.step(sess, names, inputs)
        out.append(result["corrected_audio"][0])
        confidence.append(float(result["confidence"][0, 0]))
        delays.append(float(result["state_out"][0, R.S_DELAY]))
    out, confidence = np.concatenate(out), np.array(confidence)
    assert confidence.max() < 0.5
    latency = int({p.key: p.value for p in onnx.load(path_for(rate)).metadata_props}["latency_samples"])
    # each block's last sample has the state's delay (minus the latency); the delay moves by a
    # constant rate across the block
    ramp = (np.arange(BLOCK) + 1.0) / BLOCK
    delay = latency + np.concatenate([a + (b - a) * ramp for a, b in zip(delays[:-1], delays[1:])])
    padded = np.concatenate([np.zeros(R.HISTORY, np.float32), noise])
    positions = np.arange(len(out)) - delay + R.HISTORY
    expected = R.heads(padded, positions[:, None], np.ones((len(out), 1), np.float32))
    faint = np.zeros(len(confidence) + 1, bool)
    faint[np.flatnonzero(confidence > 0)[:, None] + [0, 1]] = True
    window, reach = 2 * BLOCK, 2 * latency
    checked = 0
    for start in range(reach, len(out) - window, window):
        if faint[start // BLOCK:(start + window - 1) // BLOCK + 1].any():
            continue
        got, want = out[start:start + window], expected[start:start + window]
        assert np.dot(got, want) / np.sqrt(np.dot(got, got) * np.dot(want, want)) > 0.99, start
        checked += 1
    assert checked >= 0.8 * (len(out) - reach) // window
    assert abs(delays[-1]) < 0.5


@pytest.mark.parametrize("rate", RATES)
def test_a_high_voice_gets_longer_grains_up_to_the_stretch_limit(rate):
    """A span is one input period below 245 Hz; above, it is stretched towards HALF_GRAIN_MIN_MS,
    by at most MAX_STRETCH (strength 0, so rho = 1 and nothing else moves the span)."""
    sess = stream.session(path_for(rate))
    names = [o.name for o in sess.get_outputs()]
    for f0, stretch in ((110.0, 1.0), (330.0, R.HALF_GRAIN_MIN_MS * 1e-3 * 330.0), (523.0, float(R.MAX_STRETCH))):
        inputs = stream.feeds(sess, strength=0.0)
        signal = voices.render(voices.steady(f0, 0.5, rate), rate)
        for b in range(len(signal) // BLOCK):
            inputs["audio_buffer"] = signal[b * BLOCK:(b + 1) * BLOCK].reshape(1, BLOCK)
            stream.step(sess, names, inputs)
        spans = inputs["state"][0, R.S_SPANS:R.S_SPANS + R.HEADS] / R.SPAN_UNIT
        assert np.allclose(spans, stretch, rtol=0.01), (f0, spans, stretch)


@pytest.mark.parametrize("rate", RATES)
def test_the_detector_follows_a_low_talker(rate):
    """espeak-ng's en-gb talker at a 91 Hz median (the speech benchmark's, in no training or held-out
    set): the model reports most of the blocks Praat calls voiced, at Praat's pitch. Model 3.3.0's
    detector, trained on few talkers below 100 Hz, reported 59 / 74 % of them, 25 / 14 % of those
    more than 75 cents off (44.1 / 48 kHz)."""
    speech = transparency.speech(*transparency.SPEECH_VOICES[1], rate)
    _, _, detected = stream.run(stream.session(path_for(rate)), speech)
    times, f0 = quality.praat_pitch(speech, rate)
    centres = (np.arange(len(detected)) * BLOCK + BLOCK / 2) / rate
    praat = f0[np.abs(times[None, :] - centres[:, None]).argmin(axis=1)]
    voiced = praat > 0
    both = voiced & (detected > 0)
    reported = both.sum() / voiced.sum()
    gross = np.mean(np.abs(1200 * np.log2(detected[both] / praat[both])) > 75.0)
    assert reported >= 0.8 and gross <= 0.1, (reported, gross)


def test_voiced_retention_of_a_mere_delay_is_one():
    """The benchmark's voiced retention gives speech that is only delayed every voiced frame back
    (reading the output on its own frame grid gave the one-sentence set's 92 Hz voice, 140
    samples late, 0.988)."""
    rate = 44100
    speech = transparency.speech(*transparency.SPEECH_VOICES[1], rate)
    for delay in (60, 140, 300):
        delayed = np.concatenate([np.zeros(delay, np.float32), speech])
        assert quality.voiced_retention(speech, delayed, rate, delay) == 1.0


def test_voiced_retention_within_tolerance_forgives_a_wandering_delay_but_not_gaps():
    """Speech delayed by an amount wandering over 200 samples (4 ms) loses voicing onsets by the
    strict reading (0.993 of the 91 Hz voice's frames), none within the tolerance; 10 ms gaps every
    quarter second are lost by both readings."""
    rate = 48000
    speech = transparency.speech(*transparency.SPEECH_VOICES[1], rate)
    t = np.arange(len(speech))
    wandering = 100 + 100 * (1 + np.sin(2 * np.pi * t / (5 * rate)))
    delayed = np.interp(t - wandering, t, speech, left=0).astype(np.float32)
    delay = quality.measured_delay(speech, delayed, rate)
    assert quality.voiced_retention(speech, delayed, rate, delay) < 0.995
    assert quality.voiced_retention(speech, delayed, rate, delay, quality.RETENTION_TOLERANCE) == 1.0
    gapped = delayed.copy()
    for start in range(rate // 4, len(gapped), rate // 4):
        gapped[start:start + rate // 100] = 0.0
    assert quality.voiced_retention(speech, gapped, rate, delay, quality.RETENTION_TOLERANCE) < 0.98


def test_a_pulse_like_voice_has_the_random_phase_voices_harmonics_and_a_peak_each_cycle():
    """Only the harmonics' phases differ: level-matched magnitudes within 0.5 dB at every harmonic
    below 3 kHz (above, the -75 dB noise floor), and the pulse-like voice's crest factor above the
    random-phase one's (2.32 against 1.98)."""
    rate, f0 = 44100, 110.0
    track = voices.steady(f0, 1.0, rate)
    spectra, crests = [], []
    for pulse in (False, True):
        x = voices.render(track, rate, vowel="a", seed=3, pulse=pulse).astype(np.float64)
        spectra.append(np.abs(np.fft.rfft(x * np.hanning(len(x)))))
        crests.append(np.max(np.abs(x)) / np.sqrt(np.mean(x**2)))
    bins = np.rint(f0 * np.arange(1, int(3000 / f0)) * len(track) / rate).astype(int)
    difference = 20 * np.log10(spectra[1][bins] / spectra[0][bins])
    assert np.max(np.abs(difference - np.median(difference))) < 0.5
    assert crests[1] > 1.1 * crests[0]


def test_an_ideal_correction_is_near_the_envelope_measures_floor():
    """The same vowel at the corrected pitch scores well under the 0.8 dB bound, whatever its
    phases; another vowel at that pitch does not, so the measure sees formants."""
    rate = 44100
    case = next(c for c in quality.test_set(rate) if c.name == "110Hz+40c")
    for voice in (case, quality.pulse_like(case)):
        ideal = quality.ideal_correction(voice)
        other = quality.Case("other", np.full(len(case.f0), 110.0), rate, voice.seed, "o" if voice.vowel != "o"
                             else "a", pulse=voice.pulse).signal
        pitch_in = quality.praat_pitch(voice.signal, rate)
        distances = [transparency.envelope_distance(voice.signal, out, rate, 0, pitch_in, quality.praat_pitch(out, rate))
                     for out in (ideal, other)]
        assert distances[0] < 0.6 < 2.0 < distances[1]


def test_praat_psola_yardstick_corrects_without_delay_and_keeps_the_vowel():
    """compare.py's Praat TD-PSOLA lands a detuned vowel on its semitone, in time with the input,
    with the vowel's envelope in place (the warp; a pulse-like voice's distance is under 0.8 dB):
    it is a corrector, not the input passed through or resampled."""
    rate = 44100
    case = quality.pulse_like(next(c for c in quality.test_set(rate) if c.name == "110Hz+40c"))
    out = compare.praat_psola(rate)(case.signal)
    assert len(out) == len(case.signal)
    _, f0 = quality.praat_pitch(out[rate // 4:], rate)
    assert abs(np.median(1200 * np.log2(f0[f0 > 0] / 110.0))) < 2.0
    assert abs(quality.measured_delay(case.signal, out, rate)) < 20
    pitch_in, pitch_out = quality.praat_pitch(case.signal, rate), quality.praat_pitch(out, rate)
    pairs = envelope.paired(case.signal, out, rate, 0, pitch_in, pitch_out, transparency.PRAAT_FLOOR_HZ)
    assert abs(np.median([envelope.warp(a, b) for a, b in pairs]) - 1.0) < 0.02
    assert transparency.envelope_distance(case.signal, out, rate, 0, pitch_in, pitch_out) < 0.8


@pytest.mark.parametrize("rate", RATES)
def test_any_finite_input_gives_finite_output(rate):
    """Huge but finite samples (a broken upstream plug-in) must not overflow the graph's sums."""
    sess = stream.session(path_for(rate))
    rng = np.random.default_rng(5)
    big = np.finfo(np.float32).max
    blocks = [np.full(BLOCK, 1e30), rng.standard_normal(BLOCK) * 1e19, np.full(BLOCK, -big),
              np.where(rng.random(BLOCK) < 0.5, big, -big), np.full(BLOCK, 1e-40)]
    voice = voices.render(voices.steady(220.0, 0.3, rate), rate)[:4 * BLOCK]
    signal = np.concatenate([voice] + blocks + [voice]).astype(np.float32)
    out, confidence, pitch = stream.run(sess, signal)
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(confidence)) and np.all(np.isfinite(pitch))


@pytest.mark.parametrize("rate", RATES)
def test_voices_are_independent_rows(rate):
    """Three voices with their own controls in one call per block give what each gives alone."""
    sess = stream.session(path_for(rate))
    names = [o.name for o in sess.get_outputs()]
    signals = [voices.render(voices.steady(f0, 0.6, rate, vibrato_cents=20.0), rate, vowel=vowel, seed=seed)
               for f0, vowel, seed in ((110.0, "a", 1), (233.0, "e", 2), (390.0, "o", 3))]
    controls = [{}, {"transpose": 5.0, "formant_preserve": 0.0}, {"target_pitch": 400.0, "formant_shift": 3.0}]
    alone = [stream.run(sess, s, **c)[0] for s, c in zip(signals, controls)]
    per_voice = [stream.feeds(sess, **c) for c in controls]
    batch = {name: np.concatenate([f[name] for f in per_voice]) for name in per_voice[0]}
    batch["voice_mix"] = np.eye(3, dtype=np.float32)
    together = []
    for b in range(len(signals[0]) // BLOCK):
        batch["audio_buffer"] = np.stack([s[b * BLOCK:(b + 1) * BLOCK] for s in signals])
        result = stream.step(sess, names, batch)
        together.append(result["corrected_audio"])
    together = np.concatenate(together, axis=1)
    for voice in range(3):
        assert np.max(np.abs(together[voice] - alone[voice])) <= 1e-5, f"voice {voice}"
        assert np.sqrt(np.mean(alone[voice] ** 2)) > 0.01


@pytest.mark.parametrize("rate", RATES)
def test_linked_voices_are_analysed_on_their_mix_and_corrected_alike(rate):
    """A voice and the same voice with another singer's bleed at -20 dB, linked by voice_mix:
    the graph matches the reference fed the group's mix, and both rows take the same decisions."""
    lead = voices.render(voices.steady(196.0, 1.0, rate, vibrato_cents=30.0), rate, vowel="a", seed=4)
    other = voices.render(voices.steady(262.0, 1.0, rate), rate, vowel="o", seed=5)
    signals = [lead, lead + 0.1 * other[:len(lead)]]
    mix = np.full((2, 2), 0.5, np.float32)
    sess = stream.session(path_for(rate))
    names = [o.name for o in sess.get_outputs()]
    controls = {"transpose": 2.0}
    batch = {name: np.concatenate([value] * 2) for name, value in stream.feeds(sess, **controls).items()}
    batch["voice_mix"] = mix
    refs = [Reference(rate), Reference(rate)]
    worst = 0.0
    for b in range(len(lead) // BLOCK):
        blocks = [s[b * BLOCK:(b + 1) * BLOCK].astype(np.float32) for s in signals]
        batch.update(audio_buffer=np.stack(blocks), history=np.stack([r.history for r in refs]),
                     state=np.stack([r.state for r in refs]), detector_state=np.stack([r.detector_state for r in refs]))
        got = dict(zip(names, sess.run(names, batch)))
        buffers = [r.buffer(x) for r, x in zip(refs, blocks)]
        analysed = (mix @ np.stack(buffers)).astype(np.float32)
        for voice, (r, x) in enumerate(zip(refs, blocks)):
            expected, confidence, detected, applied = r.process(x, analysed=analysed[voice], **controls)
            worst = max(worst, float(np.abs(got["corrected_audio"][voice] - expected).max()))
            assert abs(got["detected_pitch"][voice, 0] - detected) <= 1e-2
            assert abs(got["applied_target_hz"][voice, 0] - applied) <= 1e-2
        assert got["detected_pitch"][0, 0] == got["detected_pitch"][1, 0]
        assert got["applied_target_hz"][0, 0] == got["applied_target_hz"][1, 0]
        np.testing.assert_array_equal(got["state_out"][0, :R.S_HEADS], got["state_out"][1, :R.S_HEADS])
    assert worst <= 1e-3, f"max abs diff {worst}"


def sung_note(signal, rate):
    """The median MIDI note Praat hears in the voiced frames of signal."""
    _, f0 = quality.praat_pitch(signal, rate)
    return float(np.median(quality.note_of(f0[f0 > 0])))


def edo19_notes():
    """19 equal steps to the octave from C, as `scale_notes` (semitones), repeated to fill the slots."""
    return np.resize(np.arange(19, dtype=np.float32) * np.float32(12 / 19), R.SCALE_SLOTS)


@pytest.mark.parametrize("rate", RATES)
def test_any_scale_of_pitches_is_snapped_to(rate):
    """19-EDO from C: a tone 20 cents above step 5 lands on step 5 (Praat on the output); a
    Bohlen-Pierce-like period of 19.02 semitones with two notes snaps within that period."""
    sess = stream.session(path_for(rate))
    step5 = 5 * 12 / 19                                          # semitones above C
    sung = quality.hz_of(48 + step5 + 0.2)                      # C3 octave
    signal = voices.render(voices.steady(sung, 1.2, rate), rate)
    out, _, _ = stream.run(sess, signal, scale_notes=edo19_notes(), scale_period=12.0)
    landed = sung_note(out[rate // 3:], rate)
    assert abs(landed - (48 + step5)) * 100 <= 2, f"landed {landed:.3f}, step 5 is {48 + step5:.3f}"
    # Arriving from step 6: a quarter of a 19-EDO step of hysteresis lets go of it for step 5;
    # the 12-tone quarter semitone (25 c, more than the 19 c between the two distances) holds on.
    arriving = np.concatenate([voices.steady(quality.hz_of(48 + 6 * 12 / 19), 0.5, rate),
                               voices.steady(sung, 1.2, rate)])
    signal = voices.render(arriving, rate)
    for hysteresis, expected in ((0.25 * 12 / 19, 5), (0.25, 6)):
        out, _, _ = stream.run(sess, signal, scale_notes=edo19_notes(), scale_period=12.0,
                               note_hysteresis=hysteresis)
        landed = sung_note(out[-rate:], rate)
        assert abs(landed - (48 + expected * 12 / 19)) * 100 <= 2, f"hysteresis {hysteresis}: landed {landed:.3f}"
    tritave = 12 * np.log2(3)
    notes = np.resize(np.array([0.0, 6.0], np.float32), R.SCALE_SLOTS)
    sung = quality.hz_of(3 * tritave + 6.3)                      # periods count from MIDI note 0
    out, _, _ = stream.run(sess, voices.render(voices.steady(sung, 1.2, rate), rate), scale_notes=notes,
                           scale_period=tritave)
    landed = sung_note(out[rate // 3:], rate)
    assert abs(landed - (3 * tritave + 6.0)) * 100 <= 2, f"landed {landed:.3f}"


@pytest.mark.parametrize("rate", RATES)
def test_targeting_ignores_vibrato(rate):
    """A ±40 c, 5.5 Hz vibrato around A3 sung 30 c flat: its troughs (70 c flat) are 40 c nearer
    G#3, more than the 25 c of hysteresis, so a nearest-note choice from the sung pitch flips to
    G#3 at every trough (the reference does, without the centre); chosen from the sung centre,
    every voiced block targets A3, and a real note change still moves it."""
    sess = stream.session(path_for(rate))
    names = [o.name for o in sess.get_outputs()]
    f0 = np.concatenate([voices.steady(quality.hz_of(57 - 0.30), 2.0, rate, vibrato_cents=40.0),
                         voices.steady(quality.hz_of(59), 0.6, rate)])
    signal = voices.render(f0, rate)
    inputs = stream.feeds(sess)
    targets = []
    for b in range(len(signal) // BLOCK):
        inputs["audio_buffer"] = signal[b * BLOCK:(b + 1) * BLOCK].reshape(1, BLOCK)
        targets.append(float(stream.step(sess, names, inputs)["applied_target_hz"][0, 0]))
    targets = np.array(targets)
    vibrato = targets[5:int(2.0 * rate / BLOCK) - 1]
    assert np.all(np.abs(quality.note_of(vibrato) - 57) < 1e-3), np.unique(np.round(quality.note_of(vibrato), 2))
    assert abs(quality.note_of(targets[-5]) - 59) < 1e-3
