//! The pitch detector in noise, measured through the live daemon; not run by `make test`:
//! `make bench-detector` writes the held-out noisy set (models/train/heldout.py), builds the YIN
//! model beside the shipped one, and runs this. Each condition plays once through a daemon on a
//! private jackd while a subscriber reads its own `/autotune/meter/pitch` at 120 Hz; the readings
//! are scored against the true f0 of the block they report (or, as a reading arrives up to a block
//! late or early, of a block beside it). It prints numbers for the README and
//! the model card; it asserts nothing about quality.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use rosc::{OscPacket, OscType};

const GROSS_CENTS: f64 = 75.0;
const METER_HZ: f32 = 120.0;
const BLOCK: f64 = 512.0;
const CONDITIONS: [&str; 5] = ["clean", "pink_10_dB", "pink_5_dB", "babble_10_dB", "babble_5_dB"];

fn bench_dir() -> PathBuf {
    std::env::var_os("DETECTOR_BENCH_DIR").map_or_else(|| root().join("target/detector-bench"), PathBuf::from)
}

fn read_wav(path: &Path) -> Vec<f32> {
    let mut reader = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    reader.samples::<i16>().map(|s| f32::from(s.unwrap()) / 32768.0).collect()
}

/// Per block: (true f0 in Hz, share of voiced samples; -1 = unknown).
fn read_truth(path: &Path) -> Vec<(f64, f64)> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|line| {
            let mut fields = line.split_whitespace().map(|f| f.parse::<f64>().unwrap());
            (fields.next().unwrap(), fields.next().unwrap())
        })
        .collect()
}

/// (seconds since the player started, metered pitch in Hz) while `signal` plays once, and a
/// second after.
fn meter_readings(daemon: &Daemon, signal: Vec<f32>) -> Vec<(f64, f64)> {
    let surface = OscClient::new();
    surface.socket.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let seconds = signal.len() as f64 / f64::from(RATE);
    surface.send(daemon.osc, "/autotune/subscribe", vec![OscType::Float(METER_HZ)]);
    let client = TestClient::with_midi(&daemon.client, signal, false, Vec::new(), seconds as usize + 4);
    let start = Instant::now();
    let mut renewed = start;
    let mut readings = Vec::new();
    while start.elapsed().as_secs_f64() < seconds + 1.0 {
        if renewed.elapsed() > Duration::from_secs(5) {
            surface.send(daemon.osc, "/autotune/subscribe", vec![OscType::Float(METER_HZ)]);
            renewed = Instant::now();
        }
        let Some(OscPacket::Bundle(bundle)) = surface.receive_packet() else { continue };
        let at = start.elapsed().as_secs_f64();
        for packet in bundle.content {
            if let OscPacket::Message(m) = packet {
                if let (true, Some(OscType::Float(hz))) = (m.addr == "/autotune/meter/pitch", m.args.first()) {
                    readings.push((at, f64::from(*hz)));
                }
            }
        }
    }
    surface.send(daemon.osc, "/autotune/unsubscribe", vec![]);
    client.close();
    readings
}

/// What a reading at `at` seconds reports, given the delay `offset`: its block and the blocks either
/// side (a reading's arrival time is a block uncertain), as Some(their true f0s) when all three are
/// fully voiced, Some(empty) when all are unvoiced, None otherwise.
fn truth_at(truth: &[(f64, f64)], at: f64, offset: f64) -> Option<Vec<f64>> {
    let block = ((at - offset) * f64::from(RATE) / BLOCK).floor();
    if block < 1.0 || block as usize + 1 >= truth.len() {
        return None;
    }
    let around = &truth[block as usize - 1..=block as usize + 1];
    if around.iter().all(|&(_, share)| share == 1.0) {
        Some(around.iter().map(|&(f0, _)| f0).collect())
    } else if around.iter().all(|&(_, share)| share == 0.0) {
        Some(Vec::new())
    } else {
        None
    }
}

/// The delay (0-0.5 s) at which the readings' voicing best agrees with the truth's: the meter's
/// clock is the subscriber's, not JACK's.
fn alignment(readings: &[(f64, f64)], truth: &[(f64, f64)]) -> f64 {
    let agreement = |offset: f64| {
        readings
            .iter()
            .filter(|&&(at, hz)| truth_at(truth, at, offset).is_some_and(|f0s| f0s.is_empty() == (hz <= 0.0)))
            .count()
    };
    (0..500).map(|ms| f64::from(ms) / 1000.0).max_by_key(|&offset| agreement(offset)).unwrap()
}

struct Score {
    gross: f64,
    recall: f64,
    precision: f64,
    readings: usize,
}

fn score(readings: &[(f64, f64)], truth: &[(f64, f64)]) -> Score {
    let offset = alignment(readings, truth);
    let (mut voiced, mut said_voiced, mut gross, mut false_voiced) = (0usize, 0usize, 0usize, 0usize);
    for &(at, hz) in readings {
        match truth_at(truth, at, offset) {
            Some(f0s) if f0s.is_empty() => false_voiced += usize::from(hz > 0.0),
            Some(f0s) => {
                voiced += 1;
                if hz > 0.0 {
                    said_voiced += 1;
                    let nearest = f0s.iter().map(|f0| (1200.0 * (hz / f0).log2()).abs()).fold(f64::INFINITY, f64::min);
                    gross += usize::from(nearest > GROSS_CENTS);
                }
            }
            None => {}
        }
    }
    Score {
        gross: gross as f64 / said_voiced.max(1) as f64,
        recall: said_voiced as f64 / voiced.max(1) as f64,
        precision: said_voiced as f64 / (said_voiced + false_voiced).max(1) as f64,
        readings: readings.len(),
    }
}

#[test]
#[ignore = "a measurement for the README: `make bench-detector`"]
fn detector_in_noise() {
    let dir = bench_dir();
    let models = [("learned", root().join("models")), ("yin", dir.join("yin"))];
    println!("| detector | condition | gross errors (> {GROSS_CENTS} c) | voicing recall | precision | readings |");
    println!("|---|---|---|---|---|---|");
    for (detector, model_dir) in &models {
        let _lock = jack_lock();
        let server = JackServer::start(RATE, 512);
        let model_setting = format!("model.dir={}", model_dir.display());
        let daemon = Daemon::start(&server, None, &[&model_setting, "model.file=autotune.onnx"], &[]);
        for condition in CONDITIONS {
            let signal = read_wav(&dir.join(format!("{condition}.wav")));
            let truth = read_truth(&dir.join(format!("{condition}.truth")));
            let s = score(&meter_readings(&daemon, signal), &truth);
            println!(
                "| {detector} | {} | {:.1} % | {:.3} | {:.3} | {} |",
                condition.replace('_', " "),
                100.0 * s.gross,
                s.recall,
                s.precision,
                s.readings
            );
        }
    }
}
