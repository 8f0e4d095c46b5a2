//! Soak: the daemon under jackd for SOAK_SECONDS (default 600) with a tone in, parameters
//! changing every 50 ms and an OSC flood of 20 000 messages/s. Not in the default test run:
//! `make soak`. Reports xruns, callback times and RSS at the start and end.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use rosc::{OscMessage, OscPacket, OscType};

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn float(status: &[OscType], i: usize) -> f32 {
    match status[i] {
        OscType::Float(v) => v,
        OscType::Int(v) => v as f32,
        _ => panic!("{status:?}"),
    }
}

#[test]
#[ignore = "ten minutes; run with `make soak`"]
fn soak() {
    let seconds: u64 = std::env::var("SOAK_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(600);
    let _jack = jack_lock();
    let server = JackServer::start_realtime(RATE, 512);
    let daemon = Daemon::start(&server, None, &[], &[]);
    let pid = daemon.child.id();
    let (tone, _) = looping_tone(196.0 * 2f32.powf(35.0 / 1200.0), 0.3);
    let client = TestClient::start(&daemon.client, tone, 2);
    let stop = Arc::new(AtomicBool::new(false));
    let target = daemon.osc;

    let changer = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let osc = OscClient::new();
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let step = (i % 20) as f32;
                osc.send(target, "/autotune/strength", vec![OscType::Float(step / 19.0)]);
                osc.send(target, "/autotune/retune/ms", vec![OscType::Float(step * 10.0)]);
                osc.send(target, "/autotune/scale", vec![OscType::Int((i % 15) as i32)]);
                osc.send(target, "/autotune/mode", vec![OscType::Int(if i % 40 < 20 { 0 } else { 2 })]);
                osc.send(target, "/autotune/target/note", vec![OscType::Float(50.0 + step)]);
                i += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let flood = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let osc = OscClient::new();
            let set = rosc::encoder::encode(&OscPacket::Message(OscMessage {
                addr: "/autotune/transpose".into(),
                args: vec![OscType::Float(0.0)],
            }))
            .unwrap();
            let bad =
                rosc::encoder::encode(&OscPacket::Message(OscMessage { addr: "/autotune/nope".into(), args: vec![] }))
                    .unwrap();
            let started = Instant::now();
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // 20 000 messages per second, in bursts of 200 every 10 ms.
                for k in 0..200 {
                    osc.send_raw(target, if k % 50 == 0 { &bad } else { &set });
                }
                sent += 200;
                let due = Duration::from_micros(sent * 50);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
                while osc.socket.set_nonblocking(true).is_ok() && osc.receive().is_some() {}
            }
            sent as f64 / started.elapsed().as_secs_f64()
        })
    };

    std::thread::sleep(Duration::from_secs(10));
    let rss_start = rss_kib(pid);
    let xruns_start = match daemon.status()[3] {
        OscType::Int(x) => x,
        _ => unreachable!(),
    };
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(1));
        assert!(daemon_alive(pid), "the daemon died");
    }
    stop.store(true, Ordering::Relaxed);
    changer.join().unwrap();
    let rate = flood.join().unwrap();
    let status = daemon.status();
    let rss_end = rss_kib(pid);
    client.close();
    let xruns = match status[3] {
        OscType::Int(x) => x - xruns_start,
        _ => unreachable!(),
    };
    println!(
        "soak {seconds} s: OSC flood {rate:.0} msg/s; xruns {xruns}; callback median {:.0} µs, p99 {:.0} µs, max {:.0} µs; RSS {rss_start} KiB -> {rss_end} KiB ({:+} KiB); model faults {:?}",
        float(&status, 9),
        float(&status, 10),
        float(&status, 11),
        rss_end as i64 - rss_start as i64,
        status[8],
    );
    assert_eq!(xruns, 0);
    assert!(rss_end < rss_start + 1024, "RSS grew {} KiB", rss_end - rss_start);
}

fn daemon_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}
