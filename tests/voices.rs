//! Many voices in one node, end to end: the daemon with `[jack] voices` under a private jackd,
//! one ONNX Runtime run per block for all of them, each voice with its own ports, parameters and
//! meters.

mod common;

use std::time::Duration;

use common::*;
use rosc::OscType;

/// Hz of MIDI note `note` at A4 = 440 Hz.
fn note_hz(note: f32) -> f32 {
    440.0 * 2f32.powf((note - 69.0) / 12.0)
}

#[test]
fn four_voices_each_land_on_their_own_transposed_target() {
    let _jack = jack_lock();
    let server = JackServer::start(RATE, 512);
    let config = root().join("config/autotuned.toml");
    // Voice 2's transpose comes from its [voice.2] setting, 3 and 4 from their OSC addresses.
    // Formants follow the pitch: a sine's "formant" is its own frequency, so with formants kept
    // a transposed sine's strongest partial is not its fundamental and zero crossings mislead.
    let extra = ["jack.voices=4", "voice.2.transpose=3", "tuning.formant_preserve=0"];
    let daemon = Daemon::start(&server, Some(&config), &extra, &[]);
    let osc = OscClient::new();
    osc.send(daemon.osc, "/autotune/voice/3/transpose", vec![OscType::Float(-5.0)]);
    osc.send(daemon.osc, "/autotune/voice/4/transpose", vec![OscType::Float(7.0)]);
    let transposes = [0.0, 3.0, -5.0, 7.0];
    for (k, transpose) in transposes.iter().enumerate() {
        let reply = osc.request(daemon.osc, &format!("/autotune/voice/{}/transpose", k + 1), vec![]).unwrap();
        assert_eq!(reply.args, vec![OscType::Float(*transpose)], "voice {}", k + 1);
    }
    let status = daemon.status();
    assert_eq!(status[13], OscType::Int(4), "the status reports the voices: {status:?}");

    // Each voice sings a different note, off by a different amount (auto mode, chromatic).
    let sung = [(57.0, 30.0), (55.0, -25.0), (59.0, 20.0), (52.0, -35.0)];
    let (signals, heard): (Vec<Vec<f32>>, Vec<f32>) =
        sung.iter().map(|(note, cents)| looping_tone(note_hz(*note) * 2f32.powf(cents / 1200.0), 0.3)).unzip();
    let mut client = TestClient::voices(&daemon.client, signals, Vec::new(), 8);
    std::thread::sleep(Duration::from_secs(1));
    let recorded = client.record_all(3.0);
    client.close();

    for (k, ((output, (note, _)), transpose)) in recorded.iter().zip(&sung).zip(&transposes).enumerate() {
        let tail = &output[output.len() - RATE as usize..];
        assert!(tail.iter().all(|x| x.is_finite()));
        let target = note_hz(note + transpose);
        let measured = median_hz(tail);
        let error = cents(measured, target);
        println!("voice {}: sung {:.2} Hz, out {measured:.2} Hz, {error:+.2} c from {target:.2} Hz", k + 1, heard[k]);
        assert!(
            error.abs() <= 5.0,
            "voice {}: sung {:.2} Hz, out {measured:.2} Hz, {error:.2} cents from its target {target:.2} Hz",
            k + 1,
            heard[k]
        );
    }
}

#[test]
fn per_voice_midi_channels_drive_and_report_their_own_voice() {
    let _jack = jack_lock();
    let server = JackServer::start(RATE, 512);
    let extra = ["jack.voices=2", "midi.channels=per_voice", "tuning.mode=midi", "tuning.formant_preserve=0"];
    let daemon = Daemon::start(&server, None, &extra, &[]);
    // Channel 1 holds A3 for voice 1, channel 2 holds D4 for voice 2; both sing the same tone.
    let second = u64::from(RATE);
    let schedule = vec![(second / 4, [0x90, 57, 100]), (second / 4, [0x91, 62, 100])];
    let (tone, _) = looping_tone(250.0, 0.3);
    let mut client = TestClient::voices(&daemon.client, vec![tone.clone(), tone], schedule, 8);
    std::thread::sleep(Duration::from_secs(1));
    let recorded = client.record_all(3.0);
    let midi = client.midi_received();
    client.close();

    for (k, target) in [(0, note_hz(57.0)), (1, note_hz(62.0))] {
        let measured = median_hz(&recorded[k][recorded[k].len() - RATE as usize..]);
        println!("voice {}: out {measured:.2} Hz, target {target:.2} Hz", k + 1);
        assert!(cents(measured, target).abs() <= 5.0, "voice {}: {measured:.2} Hz, target {target:.2} Hz", k + 1);
    }
    let note_ons: Vec<[u8; 2]> =
        midi.iter().filter(|(_, m)| m[0] & 0xf0 == 0x90 && m[2] > 0).map(|(_, m)| [m[0], m[1]]).collect();
    assert!(note_ons.contains(&[0x90, 57]) && note_ons.contains(&[0x91, 62]), "note-ons sent: {note_ons:?}");
}

/// RMS of `a - b` against RMS of `a`, dB.
fn difference_db(a: &[f32], b: &[f32]) -> f32 {
    let energy = |x: &mut dyn Iterator<Item = f32>| x.map(|v| v * v).sum::<f32>();
    let difference = energy(&mut a.iter().zip(b).map(|(x, y)| x - y));
    10.0 * (difference / energy(&mut a.iter().copied())).log10()
}

/// `signal` through a windowed-sinc low-pass at `cutoff_hz` (511 taps, Hann): > 40 dB down an
/// octave above the cutoff, so a pitch measure of what is below it does not see what is above.
fn low_pass(signal: &[f32], cutoff_hz: f32) -> Vec<f32> {
    let half = 255i32;
    let fc = f64::from(cutoff_hz) / f64::from(RATE);
    let taps: Vec<f64> = (-half..=half)
        .map(|k| {
            let k = f64::from(k);
            let sinc =
                if k == 0.0 { 2.0 * fc } else { (std::f64::consts::TAU * fc * k).sin() / (std::f64::consts::PI * k) };
            sinc * (0.5 + 0.5 * (std::f64::consts::PI * k / f64::from(half + 1)).cos())
        })
        .collect();
    signal
        .windows(taps.len())
        .map(|w| w.iter().zip(&taps).map(|(x, t)| f64::from(*x) * t).sum::<f64>() as f32)
        .collect()
}

#[test]
fn a_linked_pair_with_bleed_is_corrected_alike() {
    let _jack = jack_lock();
    let server = JackServer::start(RATE, 512);
    let extra = ["jack.voices=2", "jack.link=1+2", "tuning.formant_preserve=0"];
    let daemon = Daemon::start(&server, None, &extra, &[]);
    // Voice 2 is voice 1 plus a second singer's bleed at -20 dB, an octave and a fifth above.
    let (lead, sung) = looping_tone(224.0, 0.3);
    let (bleed, _) = looping_tone(673.0, 0.03);
    let with_bleed: Vec<f32> = lead.iter().zip(&bleed).map(|(a, b)| a + b).collect();
    let signals = vec![lead, with_bleed];
    let mut client = TestClient::voices(&daemon.client, signals.clone(), Vec::new(), 8);
    std::thread::sleep(Duration::from_secs(1));
    let recorded = client.record_all(3.0);
    client.close();

    let tails: Vec<&[f32]> = recorded.iter().map(|r| &r[r.len() - RATE as usize..]).collect();
    // Each voice's pitch below the bleed: the lead's, as corrected.
    let first = median_hz(&low_pass(tails[0], 400.0));
    let second = median_hz(&low_pass(tails[1], 400.0));
    let apart = difference_db(tails[0], tails[1]);
    println!(
        "linked: voice 1 {first:.3} Hz, voice 2 {second:.3} Hz ({:+.2} c), difference {apart:.1} dB",
        cents(second, first)
    );
    assert!(cents(first, 220.0).abs() <= 5.0, "voice 1 sang {sung} Hz, out {first:.2} Hz");
    assert!(cents(second, first).abs() <= 1.0, "voice 2 at {second:.3} Hz, voice 1 at {first:.3} Hz");
    // Corrected alike, the two outputs differ by the corrected bleed only (-20 dB); corrected
    // apart, by their grains' different timing as well.
    assert!(apart <= -17.0, "the outputs differ by {apart:.1} dB");

    // A reload builds the model for both voices again, still linked.
    let osc = OscClient::new();
    osc.socket.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let reply = osc.request(daemon.osc, "/autotune/model/reload", vec![]).unwrap();
    assert_eq!(reply.addr, "/autotune/model/reload.reply", "{reply:?}");
    let mut client = TestClient::voices(&daemon.client, signals, Vec::new(), 8);
    std::thread::sleep(Duration::from_secs(1));
    let recorded = client.record_all(2.0);
    client.close();
    let tails: Vec<&[f32]> = recorded.iter().map(|r| &r[r.len() - RATE as usize..]).collect();
    let apart = difference_db(tails[0], tails[1]);
    assert!(apart <= -17.0, "after the reload the outputs differ by {apart:.1} dB");
}

/// The daemon with `settings` exits at start; returns what it logged.
fn refused_at_start(settings: &[&str]) -> String {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_autotuned"));
    command.current_dir(root()).env("RUST_LOG", "info").args(["--set", "model.dir=tests/fixtures"]);
    command.args(["--set", &format!("osc.bind=127.0.0.1:{}", free_udp_port())]);
    for setting in settings {
        command.args(["--set", setting]);
    }
    let mut child = command.stderr(std::process::Stdio::piped()).spawn().unwrap();
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("the daemon started with {settings:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn more_voices_or_links_than_the_model_serves_stop_the_daemon_at_start() {
    let log = refused_at_start(&["model.file=identity.onnx", "jack.voices=4"]);
    assert!(log.contains("identity.onnx") && log.contains("no voice axis") && log.contains("4 voices"), "{log}");
    let log = refused_at_start(&["model.file=nan.onnx", "jack.voices=2", "jack.link=1+2"]);
    assert!(log.contains("nan.onnx: [jack] link needs a model with a voice_mix input"), "{log}");
}
