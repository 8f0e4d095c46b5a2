//! The controls a singer's engineer uses, end to end: the real binary under a private jackd,
//! a JACK test client singing (sine tones) and sending/receiving MIDI, OSC over real UDP.

mod common;

use std::time::{Duration, Instant};

use common::*;
use rosc::{OscPacket, OscType};

fn note_hz(note: f32) -> f32 {
    440.0 * ((note - 69.0) / 12.0).exp2()
}

fn string(s: &str) -> Vec<OscType> {
    vec![OscType::String(s.into())]
}

/// Sends, then waits for the ping behind it: everything before was applied.
fn set(daemon: &Daemon, osc: &OscClient, addr: &str, args: Vec<OscType>) {
    osc.send(daemon.osc, addr, args);
    assert_eq!(osc.request(daemon.osc, "/autotune/ping", vec![]).unwrap().addr, "/autotune/pong");
}

/// The pitch (as a fractional MIDI note) of the last second of a recording.
fn landed(recorded: &[f32]) -> f32 {
    let hz = median_hz(&recorded[recorded.len() - RATE as usize..]);
    69.0 + 12.0 * (hz / 440.0).log2()
}

#[test]
fn auto_mode_follows_key_and_scale() {
    let _jack = jack_lock();
    let server = JackServer::start(RATE, 512);
    let daemon = Daemon::start(&server, None, &[], &[]);
    let osc = OscClient::new();
    set(&daemon, &osc, "/autotune/key", string("C"));
    set(&daemon, &osc, "/autotune/scale", string("major"));
    let (tone, sung) = looping_tone(note_hz(54.2), 0.3);
    assert!((cents(sung, note_hz(54.0)) - 20.0).abs() < 3.0, "F# + 20 cents");
    let mut client = TestClient::start(&daemon.client, tone, 10);
    let mut recorded = Vec::new();
    client.record(2.0, &mut recorded);
    let note = landed(&recorded);
    let class = note.round() as i32 % 12;
    assert!(class == 5 || class == 7, "C major: F#+20 landed on MIDI {note:.2}");
    assert!((note - note.round()).abs() * 100.0 <= 5.0, "{note:.3}");

    set(&daemon, &osc, "/autotune/scale", string("chromatic"));
    client.record(2.0, &mut recorded);
    client.close();
    let note = landed(&recorded);
    assert_eq!(note.round() as i32, 54, "chromatic: landed on MIDI {note:.2}");
    assert!((note - 54.0).abs() * 100.0 <= 5.0, "{note:.3}");
}

#[test]
fn midi_mode_tunes_to_the_held_note_and_lets_go_on_note_off() {
    let _jack = jack_lock();
    let server = JackServer::start(RATE, 512);
    let daemon = Daemon::start(&server, None, &["tuning.mode=midi"], &[]);
    let second = u64::from(RATE);
    let schedule = vec![(second / 2, [0x90, 57, 100]), (3 * second, [0x80, 57, 0])];
    let mut client = TestClient::with_midi(&daemon.client, sine(215.0, 1.0, 0.3), true, schedule, 12);
    let mut recorded = Vec::new();
    client.record(2.8, &mut recorded);
    let held = median_hz(&recorded[recorded.len() - RATE as usize..]);
    assert!(cents(held, 220.0).abs() <= 5.0, "note 57 held: output {held:.2} Hz");
    client.record(2.0, &mut recorded);
    client.close();
    let released = median_hz(&recorded[recorded.len() - RATE as usize..]);
    assert!(cents(released, 215.0).abs() <= 5.0, "after note-off: output {released:.2} Hz, input 215");
}

/// Samples from the first move away from `from` (cents) until the pitch stays within 5 cents
/// of `to`, and the pitch error `after` samples into the move.
fn glide(track: &[(usize, f32)], from: f32, to: f32, after: usize) -> (usize, f32) {
    let start = track.iter().position(|(_, hz)| cents(*hz, from).abs() > 10.0).expect("the pitch never moved");
    let t0 = track[start].0;
    let settled = (start..track.len())
        .find(|&i| track[i..].iter().take(40).all(|(_, hz)| cents(*hz, to).abs() <= 5.0))
        .expect("never reached the new target");
    let at = track.iter().find(|(t, _)| *t >= t0 + after).map_or(0.0, |(_, hz)| cents(*hz, to));
    (track[settled].0 - t0, at)
}

#[test]
fn retune_speed_shapes_the_glide_to_a_new_note() {
    let _jack = jack_lock();
    let server = JackServer::start(RATE, 512);
    let second = RATE as usize;
    for (retune, change_at) in [(0.0f32, 2 * second), (200.0, 2 * second)] {
        let daemon = Daemon::start(&server, None, &["tuning.mode=midi", &format!("tuning.retune_ms={retune}")], &[]);
        let schedule = vec![(second as u64 / 2, [0x90, 57, 100]), (change_at as u64, [0x90, 60, 100])];
        let mut client = TestClient::with_midi(&daemon.client, sine(215.0, 1.0, 0.3), true, schedule, 10);
        let mut recorded = Vec::new();
        client.record(3.5, &mut recorded);
        client.close();
        let track: Vec<(usize, f32)> =
            pitch_track(&recorded).into_iter().filter(|(t, _)| *t > second + second / 2).collect();
        let (took, at_50ms) = glide(&track, 220.0, note_hz(60.0), second / 20);
        eprintln!("retune {retune} ms: settled {took} samples after the move began; {at_50ms:.1} c off after 50 ms");
        if retune == 0.0 {
            // Within a block, plus a period: a jump in the read rate makes the grains' delay wrap
            // by a period once, and when depends on where the delay stood (arbitrary: model 3.1.3
            // took 169-354 samples over eight phases of this sine, 3.2.0 344-518).
            let period = (RATE as f32 / 215.0).ceil() as usize;
            assert!(took <= 512 + period, "retune 0 took {took} samples to reach the new note");
        } else {
            assert!(at_50ms.abs() > 5.0, "retune 200 ms was within {at_50ms:.1} cents after 50 ms");
            assert!(took <= second * 6 / 10, "retune 200 ms took {took} samples (> 600 ms)");
        }
    }
}

#[test]
fn midi_out_reports_the_sung_melody() {
    let _jack = jack_lock();
    let server = JackServer::start(RATE, 512);
    let daemon = Daemon::start(&server, None, &[], &[]);
    let gap = vec![0.0f32; RATE as usize / 2];
    let melody: Vec<f32> = [
        gap.clone(),
        sine(note_hz(57.3), 0.5, 0.3),
        sine(note_hz(59.2), 0.5, 0.3),
        sine(note_hz(60.0), 0.5, 0.3),
        gap.clone(),
        gap,
    ]
    .concat();
    let mut client = TestClient::with_midi(&daemon.client, melody, false, Vec::new(), 10);
    let mut recorded = Vec::new();
    client.record(3.0, &mut recorded);
    let midi = client.midi_received();
    client.close();
    let ons: Vec<u8> = midi.iter().filter(|(_, m)| m[0] & 0xf0 == 0x90 && m[2] > 0).map(|(_, m)| m[1]).collect();
    let offs: Vec<u8> = midi
        .iter()
        .filter(|(_, m)| m[0] & 0xf0 == 0x80 || (m[0] & 0xf0 == 0x90 && m[2] == 0))
        .map(|(_, m)| m[1])
        .collect();
    assert_eq!(ons, [57, 59, 60], "note-ons {midi:?}");
    assert_eq!(offs, [57, 59, 60], "note-offs {midi:?}");
}

#[test]
fn subscribers_get_meters_at_their_rate_until_the_lease_ends() {
    let _jack = jack_lock();
    let server = JackServer::start(RATE, 512);
    let daemon = Daemon::start(&server, None, &[], &[]);
    let (tone, sung) = looping_tone(196.0 * 2f32.powf(30.0 / 1200.0), 0.3);
    let mut client = TestClient::start(&daemon.client, tone, 30);
    let mut recorded = Vec::new();
    client.record(0.5, &mut recorded);
    let surface = OscClient::new();
    surface.send(
        daemon.osc,
        "/autotune/subscribe",
        vec![OscType::Int(i32::from(surface.socket.local_addr().unwrap().port())), OscType::Float(30.0)],
    );
    let start = Instant::now();
    let mut bundles = 0;
    let mut pitches = Vec::new();
    while start.elapsed() < Duration::from_secs(2) {
        if let Some(OscPacket::Bundle(b)) = surface.receive_packet() {
            bundles += 1;
            if let Some(OscPacket::Message(m)) = b.content.first() {
                if let [OscType::Float(hz)] = m.args[..] {
                    pitches.push(hz);
                }
            }
        }
    }
    let rate = bundles as f32 / start.elapsed().as_secs_f32();
    eprintln!("meters: {rate:.1} bundles/s for 30 requested");
    assert!((24.0..=36.0).contains(&rate), "{rate:.1} meter bundles per second for 30 requested");
    let median = {
        let mut p = pitches.clone();
        p.sort_by(f32::total_cmp);
        p[p.len() / 2]
    };
    assert!(cents(median, sung).abs() <= 5.0, "metered pitch {median:.2} Hz, sung {sung:.2} Hz");

    // The lease is 10 s from the subscribe; after that, silence.
    while start.elapsed() < Duration::from_millis(10_300) {
        surface.receive_packet();
    }
    let mut late = 0;
    let quiet = Instant::now();
    while quiet.elapsed() < Duration::from_secs(1) {
        if surface.receive_packet().is_some() {
            late += 1;
        }
    }
    client.close();
    assert_eq!(late, 0, "meters kept coming after the lease ended");
}

#[test]
fn the_midi_scale_allows_the_held_chord_and_falls_back_when_released() {
    let _jack = jack_lock();
    let server = JackServer::start(RATE, 512);
    // Before `midi`, C major: its notes are the fallback.
    let daemon = Daemon::start(&server, None, &["tuning.scale=major", "tuning.formant_preserve=0"], &[]);
    OscClient::new().send(daemon.osc, "/autotune/scale", vec![OscType::String("midi".into())]);
    let second = u64::from(RATE);
    let chord = [60u8, 64, 67];
    let mut schedule: Vec<(u64, [u8; 3])> = chord.iter().map(|n| (second / 2, [0x90, *n, 100])).collect();
    schedule.extend(chord.iter().map(|n| (3 * second, [0x80, *n, 0])));
    // D4 + 30 cents: C-E-G held, E is nearest; released, C major allows D.
    let (tone, sung) = looping_tone(293.66 * 2f32.powf(30.0 / 1200.0), 0.3);
    let mut client = TestClient::with_midi(&daemon.client, tone, true, schedule, 12);
    let mut recorded = Vec::new();
    client.record(2.8, &mut recorded);
    let held = median_hz(&recorded[recorded.len() - RATE as usize..]);
    client.record(2.0, &mut recorded);
    client.close();
    let released = median_hz(&recorded[recorded.len() - RATE as usize..]);
    println!("sung {sung} Hz: C-E-G held {held:.2} Hz, released {released:.2} Hz");
    assert!(cents(held, 329.63).abs() <= 5.0, "C-E-G held: output {held:.2} Hz, not E4");
    assert!(cents(released, 293.66).abs() <= 5.0, "released: output {released:.2} Hz, not D4");
}

#[test]
fn flex_tune_corrects_near_notes_and_leaves_far_ones_alone() {
    let _jack = jack_lock();
    let server = JackServer::start(RATE, 512);
    let daemon = Daemon::start(&server, None, &["tuning.flex=0.6", "tuning.formant_preserve=0"], &[]);
    // Flex 0.6: full correction within 20 cents of the note, none past 30. A5, so that whole-Hz
    // tones (which loop without a seam) fall within 0.2 cents of 35 and 10 cents off.
    for (off, lands_at) in [(35.0f32, None), (10.0, Some(880.0f32))] {
        let (tone, sung) = looping_tone(880.0 * 2f32.powf(off / 1200.0), 0.3);
        let mut client = TestClient::start(&daemon.client, tone, 8);
        let mut recorded = Vec::new();
        client.record(3.0, &mut recorded);
        client.close();
        let out = median_hz(&recorded[recorded.len() - RATE as usize..]);
        println!("flex 0.6, sung {sung} Hz ({:+.1} c): out {out:.2} Hz", cents(sung, 880.0));
        match lands_at {
            None => assert!(cents(out, sung).abs() <= 5.0, "{off} c off: out {out:.2} Hz, sung {sung} Hz"),
            Some(note) => assert!(cents(out, note).abs() <= 3.0, "{off} c off: out {out:.2} Hz, not {note} Hz"),
        }
    }
}

/// The pitch along `signal` in cents from `reference`, each value the mean over ~20 periods (so
/// the grains' cycle-to-cycle jitter averages out and the sung movement remains).
fn smoothed_cents(signal: &[f32], reference: f32) -> Vec<f32> {
    let track: Vec<f32> = pitch_track(signal).into_iter().map(|(_, hz)| cents(hz, reference)).collect();
    track.windows(20).map(|w| w.iter().sum::<f32>() / 20.0).collect()
}

fn standard_deviation(values: &[f32]) -> f32 {
    let mean = values.iter().sum::<f32>() / values.len() as f32;
    (values.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / values.len() as f32).sqrt()
}

/// `seconds` of a sine around A3 whose pitch is `cents(t)` cents from it at `t` seconds.
fn a3_moving(seconds: f64, cents: impl Fn(f64) -> f64) -> Vec<f32> {
    let rate = f64::from(RATE);
    let mut phase = 0.0f64;
    (0..(seconds * rate) as usize)
        .map(|i| {
            phase += std::f64::consts::TAU * 220.0 * (cents(i as f64 / rate) / 1200.0).exp2() / rate;
            0.3 * phase.sin() as f32
        })
        .collect()
}

#[test]
fn humanize_keeps_a_held_note_s_drift_and_short_notes_still_snap() {
    let _jack = jack_lock();
    let server = JackServer::start(RATE, 512);
    let daemon = Daemon::start(&server, None, &["tuning.formant_preserve=0"], &[]);
    let osc = OscClient::new();
    // A held A3 drifting ±15 cents at 0.7 Hz, 7 s, played once.
    let drifting = a3_moving(7.0, |t| 15.0 * (std::f64::consts::TAU * 0.7 * t).sin());
    let sung = standard_deviation(&smoothed_cents(&drifting[3 * RATE as usize..], 220.0));
    // A 150 ms note 40 cents sharp, then silence, once a second.
    let mut short = sine(220.0 * 2f32.powf(40.0 / 1200.0), 0.15, 0.3);
    short.resize(RATE as usize, 0.0);
    for humanize in [0.0f32, 1.0] {
        osc.send(daemon.osc, "/autotune/humanize", vec![OscType::Float(humanize)]);
        let mut client = TestClient::with_midi(&daemon.client, drifting.clone(), false, Vec::new(), 10);
        let mut recorded = Vec::new();
        client.record(6.5, &mut recorded);
        client.close();
        let start = recorded.iter().position(|x| x.abs() > 0.01).expect("output");
        let held =
            standard_deviation(&smoothed_cents(&recorded[start + 3 * RATE as usize..start + 6 * RATE as usize], 220.0));

        let mut client = TestClient::start(&daemon.client, short.clone(), 8);
        let mut recorded = Vec::new();
        client.record(3.0, &mut recorded);
        client.close();
        let tail = &recorded[recorded.len() - 2 * RATE as usize..];
        let onset = tail.iter().position(|x| x.abs() > 0.01).expect("the short note");
        let note = &tail[onset + RATE as usize / 20..onset + RATE as usize * 14 / 100];
        let landed = cents(median_hz(note), 220.0);
        println!("humanize {humanize}: held drift SD {held:.2} c (sung {sung:.2}); 150 ms note at {landed:+.2} c");
        if humanize == 0.0 {
            assert!(held <= 2.5, "humanize 0: the drift comes out at {held:.2} c SD");
        } else {
            assert!(held >= sung / 2.0, "humanize 1: {held:.2} c SD of the sung {sung:.2}");
        }
        assert!(landed.abs() <= 8.0, "humanize {humanize}: the 150 ms note lands {landed:.2} c from A3");
    }
}

#[test]
fn created_vibrato_starts_after_its_onset_at_its_rate_and_depth() {
    let _jack = jack_lock();
    let server = JackServer::start(RATE, 512);
    let extra =
        ["tuning.vibrato_rate=5", "tuning.vibrato_depth=40", "tuning.vibrato_onset=300", "tuning.formant_preserve=0"];
    let daemon = Daemon::start(&server, None, &extra, &[]);
    // Half a second of silence, then a steady, in-tune A3 for four seconds, played once.
    let mut signal = vec![0.0; RATE as usize / 2];
    signal.extend(sine(220.0, 4.0, 0.3));
    let mut client = TestClient::with_midi(&daemon.client, signal, false, Vec::new(), 10);
    let mut recorded = Vec::new();
    client.record(4.5, &mut recorded);
    client.close();
    let onset = recorded.iter().position(|x| x.abs() > 0.01).expect("output");
    let ms = |t: usize| onset + t * RATE as usize / 1000;
    // Five periods a value: a 5 Hz vibrato passes, the grains' jitter averages out.
    let track = |from: usize, to: usize| -> Vec<(f32, f32)> {
        let points = pitch_track(&recorded[from..to]);
        points
            .windows(5)
            .map(|w| (w[2].0 as f32 / RATE as f32, w.iter().map(|(_, hz)| cents(*hz, 220.0)).sum::<f32>() / 5.0))
            .collect()
    };
    let before: Vec<f32> = track(ms(50), ms(250)).into_iter().map(|(_, c)| c).collect();
    let spread_before =
        before.iter().copied().fold(f32::MIN, f32::max) - before.iter().copied().fold(f32::MAX, f32::min);
    let during = track(ms(1000), ms(3500));
    let mean = during.iter().map(|(_, c)| c).sum::<f32>() / during.len() as f32;
    let depth = (2.0 * during.iter().map(|(_, c)| (c - mean) * (c - mean)).sum::<f32>() / during.len() as f32).sqrt();
    let rises: Vec<f32> = during.windows(2).filter(|w| w[0].1 < mean && w[1].1 >= mean).map(|w| w[1].0).collect();
    let rate = (rises.len() - 1) as f32 / (rises[rises.len() - 1] - rises[0]);
    println!("created vibrato: {rate:.2} Hz, depth {depth:.1} c, before the onset {spread_before:.1} c peak to peak");
    assert!((rate - 5.0).abs() <= 0.3, "rate {rate:.2} Hz");
    assert!((depth - 40.0).abs() <= 8.0, "depth {depth:.1} c");
    assert!(spread_before <= 5.0, "{spread_before:.1} c of movement before the onset");
}

/// The pitch of `recorded` from `from` seconds after its first sound to `to`, in cents from
/// `reference`, each value the mean over five periods: (mean, depth), the depth being the
/// amplitude of a sine with the same spread.
fn centre_and_depth(recorded: &[f32], from: f32, to: f32, reference: f32) -> (f32, f32) {
    let onset = recorded.iter().position(|x| x.abs() > 0.01).expect("output");
    let at = |s: f32| onset + (s * RATE as f32) as usize;
    let points = pitch_track(&recorded[at(from)..at(to)]);
    let track: Vec<f32> =
        points.windows(5).map(|w| w.iter().map(|(_, hz)| cents(*hz, reference)).sum::<f32>() / 5.0).collect();
    let mean = track.iter().sum::<f32>() / track.len() as f32;
    (mean, (2.0 * track.iter().map(|c| (c - mean) * (c - mean)).sum::<f32>() / track.len() as f32).sqrt())
}

#[test]
fn natural_vibrato_keeps_the_sung_vibrato_around_the_corrected_note() {
    let _jack = jack_lock();
    let server = JackServer::start(RATE, 512);
    let daemon = Daemon::start(&server, None, &["tuning.formant_preserve=0"], &[]);
    let osc = OscClient::new();
    // A3 sung 25 cents flat with a ±30 cent, 5.5 Hz vibrato, 5 s, played once: its troughs (55
    // cents flat) are nearer G#3 than A3.
    let sung = a3_moving(5.0, |t| -25.0 + 30.0 * (std::f64::consts::TAU * 5.5 * t).sin());
    let (sung_centre, sung_depth) = centre_and_depth(&sung, 1.0, 4.5, 220.0);
    for natural in [1.0f32, 0.0] {
        set(&daemon, &osc, "/autotune/vibrato/natural", vec![OscType::Float(natural)]);
        let mut client = TestClient::with_midi(&daemon.client, sung.clone(), false, Vec::new(), 10);
        let mut recorded = Vec::new();
        client.record(5.2, &mut recorded);
        client.close();
        let (centre, depth) = centre_and_depth(&recorded, 1.0, 4.5, 220.0);
        println!(
            "natural {natural}: centre {centre:+.2} c, depth {depth:.1} c (sung {sung_centre:+.1} c, depth {sung_depth:.1})"
        );
        if natural == 1.0 {
            assert!(centre.abs() <= 3.0, "natural 1: the centre is {centre:+.2} c from A3");
            assert!((depth - 30.0).abs() <= 6.0, "natural 1: depth {depth:.1} c");
        } else {
            assert!(depth <= 5.0, "natural 0: depth {depth:.1} c");
            assert!(centre.abs() <= 3.0, "natural 0: the centre is {centre:+.2} c from A3");
        }
    }
}

/// A fresh directory with the shipped Scala files and a broken one.
fn scales_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(unique("scales"));
    std::fs::create_dir_all(&dir).unwrap();
    for file in ["19-edo.scl", "just-major.scl"] {
        std::fs::copy(root().join("config/scales").join(file), dir.join(file)).unwrap();
    }
    std::fs::write(dir.join("broken.scl"), "! broken.scl\nBroken\n 3\n 9/8\n five/4\n 2/1\n").unwrap();
    dir
}

#[test]
fn scala_tunings_snap_auto_mode_to_their_pitches() {
    let _jack = jack_lock();
    let server = JackServer::start(RATE, 512);
    let dir = scales_dir();
    let extra = [
        format!("tuning.scala_dir={}", dir.display()),
        "tuning.scala=19-edo.scl".into(),
        "tuning.formant_preserve=0".into(),
        "tuning.vibrato_natural=0".into(),
    ];
    let daemon = Daemon::start(&server, None, &extra.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    let osc = OscClient::new();
    let play = |note: f32| {
        let (tone, _) = looping_tone(note_hz(note), 0.3);
        let mut client = TestClient::start(&daemon.client, tone, 8);
        let mut recorded = Vec::new();
        client.record(2.0, &mut recorded);
        client.close();
        landed(&recorded)
    };
    // 19-EDO from C: step 5 is 315.8 cents above C4; sung 20 cents above it.
    let step5 = 60.0 + 5.0 * 12.0 / 19.0;
    let note = play(step5 + 0.2);
    println!("19-EDO: step 5 + 20 c landed {:+.2} c from step 5", (note - step5) * 100.0);
    assert!((note - step5).abs() * 100.0 <= 2.0, "19-EDO: landed on MIDI {note:.3}, step 5 is {step5:.3}");

    // A 12-note just intonation from C, loaded live: sung near the 12-TET E, G and A, each lands
    // on its ratio (5/4, 3/2, 5/3 above C4), not on the 12-TET note.
    set(&daemon, &osc, "/autotune/scala", string("just-major.scl"));
    let query = osc.request(daemon.osc, "/autotune/scala", vec![]).unwrap();
    assert_eq!(query.args, string("just-major.scl"));
    for (sung, ratio) in [(64.1f32, 5.0f32 / 4.0), (67.1, 3.0 / 2.0), (69.0, 5.0 / 3.0)] {
        let target = 60.0 + 12.0 * ratio.log2();
        let note = play(sung);
        println!("just: sung MIDI {sung}, landed {:+.2} c from {ratio}", (note - target) * 100.0);
        assert!((note - target).abs() * 100.0 <= 2.0, "just {ratio}: landed on MIDI {note:.3}, not {target:.3}");
    }

    // A broken file is answered with its name and line; the tuning stays.
    osc.send(daemon.osc, "/autotune/scala", string("broken.scl"));
    let error = osc.receive().expect("an error reply");
    assert_eq!(error.addr, "/autotune/error");
    let OscType::String(message) = &error.args[2] else { panic!("{error:?}") };
    assert!(message.contains("broken.scl, line 5"), "{message}");
    let refused = osc.request(daemon.osc, "/autotune/scala", string("../19-edo.scl")).unwrap();
    assert_eq!(refused.args[1], OscType::Int(6));
    let note = play(69.0);
    assert!((note - (60.0 + 12.0 * (5.0f32 / 3.0).log2())).abs() * 100.0 <= 2.0, "after the broken file: {note:.3}");
    std::fs::remove_dir_all(dir).unwrap();
}
