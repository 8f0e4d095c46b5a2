//! Hostile control input against the live daemon: every fuzz corpus entry plus 100 000 random
//! and mutated datagrams over UDP while audio runs. The daemon must not crash, no NaN may reach
//! the output, and error replies must stay rate-limited.

mod common;

use std::time::{Duration, Instant};

use autotuned::parameters::TABLE;
use common::*;
use rosc::{OscMessage, OscPacket, OscType};

/// Every parameter's address from the table, plus the views and services that take arguments.
fn addresses() -> Vec<String> {
    let mut all: Vec<String> = TABLE.iter().map(|row| format!("/autotune{}", row.address)).collect();
    all.extend(
        [
            "/autotune/target/note",
            "/autotune/notes/3",
            "/autotune/preset",
            "/autotune/subscribe",
            "/autotune/model/reload",
        ]
        .map(String::from),
    );
    all
}

fn datagram(rng: &mut Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
    let addresses = addresses();
    let address = addresses[rng.below(addresses.len())].as_str();
    let weird = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.0, f32::MAX, f32::MIN_POSITIVE, 1e30, -1e30];
    match rng.below(7) {
        0 => (0..rng.below(2000)).map(|_| rng.next() as u8).collect(),
        1 => {
            let mut d = corpus[rng.below(corpus.len())].clone();
            for _ in 0..1 + rng.below(8) {
                if !d.is_empty() {
                    let at = rng.below(d.len());
                    d[at] = rng.next() as u8;
                }
            }
            if rng.below(3) == 0 {
                d.truncate(rng.below(d.len() + 1));
            }
            d
        }
        2 => nested_bundles(1 + rng.below(3000)),
        3 => {
            let text = "\u{1F3A4}".repeat(rng.below(14_000));
            rosc::encoder::encode(&OscPacket::Message(OscMessage {
                addr: address.into(),
                args: vec![OscType::String(text)],
            }))
            .unwrap()
        }
        4 => {
            let args = (0..rng.below(20))
                .map(|_| match rng.below(6) {
                    0 => OscType::Int(rng.next() as i32),
                    1 => OscType::Float(weird[rng.below(weird.len())]),
                    2 => OscType::Double(f64::from_bits(rng.next())),
                    3 => OscType::Blob((0..rng.below(100)).map(|_| rng.next() as u8).collect()),
                    4 => OscType::Bool(rng.below(2) == 0),
                    _ => OscType::Nil,
                })
                .collect();
            rosc::encoder::encode(&OscPacket::Message(OscMessage { addr: address.into(), args })).unwrap()
        }
        5 => rosc::encoder::encode(&OscPacket::Message(OscMessage {
            addr: address.into(),
            args: vec![OscType::Float(weird[rng.below(weird.len())])],
        }))
        .unwrap(),
        _ => vec![0u8; 60_000 + rng.below(5_000)],
    }
}

#[test]
fn the_live_daemon_survives_the_corpus_and_100k_hostile_datagrams() {
    let _jack = jack_lock();
    let server = JackServer::start(RATE, 512);
    let daemon = Daemon::start(&server, None, &[], &[]);
    let (tone, _) = looping_tone(210.0, 0.3);
    let mut client = TestClient::start(&daemon.client, tone, 60);
    let mut recorded = Vec::new();
    client.record(0.5, &mut recorded);

    let corpus: Vec<Vec<u8>> = std::fs::read_dir(root().join("fuzz/corpus/osc_packet"))
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert!(corpus.len() >= 20);
    let attacker = OscClient::new();
    attacker.socket.set_nonblocking(true).unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut errors = 0u32;
    let mut count_errors = |attacker: &OscClient| {
        let mut buf = [0u8; 65_536];
        while let Ok((len, _)) = attacker.socket.recv_from(&mut buf) {
            if let Ok((_, OscPacket::Message(m))) = rosc::decoder::decode_udp(&buf[..len]) {
                if m.addr == "/autotune/error" {
                    errors += 1;
                }
            }
        }
    };
    let started = Instant::now();
    for entry in &corpus {
        let _ = attacker.socket.send_to(entry, daemon.osc);
    }
    for i in 0..100_000 {
        let d = datagram(&mut rng, &corpus);
        let _ = attacker.socket.send_to(&d, daemon.osc);
        if i % 500 == 0 {
            count_errors(&attacker);
            // Let the server breathe now and then, so most datagrams are read, not dropped.
            std::thread::sleep(Duration::from_micros(500));
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    count_errors(&attacker);
    let elapsed = started.elapsed().as_secs_f32();
    client.record(0.5, &mut recorded);
    client.close();

    let checker = OscClient::new();
    wait_for(Duration::from_secs(10), "a pong after the flood", || {
        checker.request(daemon.osc, "/autotune/ping", vec![]).is_some_and(|m| m.addr == "/autotune/pong")
    });
    assert!(recorded.iter().all(|x| x.is_finite()), "NaN or inf reached the output");
    let limit = 10.0 * (elapsed + 1.0) + 10.0;
    eprintln!("{} datagrams in {elapsed:.1} s; {errors} error replies (limit {limit:.0})", 100_000 + corpus.len());
    assert!(errors > 0 && errors as f32 <= limit, "{errors} error replies in {elapsed:.1} s");
    let status = daemon.status();
    assert_eq!(status[7], OscType::String("running".into()));
    for address in ["/autotune/strength", "/autotune/tuning", "/autotune/target/hz", "/autotune/transpose"] {
        let Some(OscType::Float(v)) =
            checker.request(daemon.osc, address, vec![]).and_then(|m| m.args.first().cloned())
        else {
            panic!("{address} unanswered")
        };
        assert!(v.is_finite(), "{address} = {v}");
    }
}
