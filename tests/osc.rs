//! The OSC server over real UDP on 127.0.0.1 with a real rosc client: queries, sets, errors,
//! bundles, nesting attacks and random garbage. No JACK needed: the server runs in-process.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{self, Receiver, Sender};

use autotuned::control::{Controls, Status};
use autotuned::osc::{self, Answer, OscService, Request};
use autotuned::parameters::{NOTES, RETUNE_MS, STRENGTH, TARGET_HZ, TRANSPOSE, TUNING_HZ};
use autotuned::rt::{Meters, Mode};
use autotuned::settings::Settings;
use common::OscClient;
use rosc::{OscBundle, OscMessage, OscPacket, OscTime, OscType};

struct Server {
    addr: SocketAddr,
    controls: Arc<Controls>,
    requests: Receiver<Request>,
    answers: Sender<Answer>,
    stop: Arc<AtomicBool>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn server(errors_per_second: u32) -> Server {
    server_with(errors_per_second, 1)
}

fn server_with(errors_per_second: u32, voices: usize) -> Server {
    let mut settings = Settings::default();
    settings.osc.errors_per_second = errors_per_second;
    settings.jack.voices = voices;
    let controls = Arc::new(Controls::new(settings.voice_params()));
    let (tx, requests) = mpsc::channel();
    let (answers, answer_rx) = mpsc::channel();
    let (status, meters) = (Arc::new(Status::default()), Arc::new(Meters::new(voices)));
    let service = OscService::new(&settings, Arc::clone(&controls), status, meters, tx, answer_rx);
    let stop = Arc::new(AtomicBool::new(false));
    let (_thread, addr) = osc::spawn("127.0.0.1:0", service, Arc::clone(&stop)).unwrap();
    Server { addr, controls, requests, answers, stop }
}

/// Datagrams are handled in order: once a ping is answered, everything before it was applied.
fn sync(c: &OscClient, s: &Server) {
    assert_eq!(c.request(s.addr, "/autotune/ping", vec![]).unwrap().addr, "/autotune/pong");
}

fn float(v: f32) -> Vec<OscType> {
    vec![OscType::Float(v)]
}

#[test]
fn set_and_query_round_trip_with_lenient_types() {
    let s = server(100);
    let c = OscClient::new();
    c.send(s.addr, "/autotune/strength", vec![OscType::Int(0)]);
    assert_eq!(c.request(s.addr, "/autotune/strength", vec![]).unwrap().args, float(0.0));
    c.send(s.addr, "/autotune/strength", vec![OscType::Double(0.75)]);
    assert_eq!(c.request(s.addr, "/autotune/strength", vec![]).unwrap().args, float(0.75));
    c.send(s.addr, "/autotune/bypass", vec![OscType::Bool(true)]);
    assert_eq!(c.request(s.addr, "/autotune/bypass", vec![]).unwrap().args, float(1.0));
    c.send(s.addr, "/autotune/bypass", vec![OscType::Float(0.2)]);
    assert_eq!(c.request(s.addr, "/autotune/bypass", vec![]).unwrap().args, float(0.0));
    c.send(s.addr, "/autotune/retune/ms", vec![OscType::String("80".into())]);
    assert_eq!(c.request(s.addr, "/autotune/retune/ms", vec![]).unwrap().args, float(80.0));
    c.send(s.addr, "/autotune/tuning", float(442.0));
    assert_eq!(c.request(s.addr, "/autotune/tuning", vec![]).unwrap().args, float(442.0));

    c.send(s.addr, "/autotune/target/hz", float(330.0));
    sync(&c, &s);
    assert_eq!(s.controls.get().mode(), Mode::Manual);
    assert_eq!(c.request(s.addr, "/autotune/target/hz", vec![]).unwrap().args, float(330.0));
    c.send(s.addr, "/autotune/mode", vec![OscType::String("auto".into())]);
    assert_eq!(c.request(s.addr, "/autotune/mode", vec![]).unwrap().args, vec![OscType::String("auto".into())]);
    c.send(s.addr, "/autotune/target/note", vec![OscType::Float(69.5)]);
    sync(&c, &s);
    let hz = s.controls.get().get(TARGET_HZ);
    assert!((hz - 442.0 * 2f32.powf(0.5 / 12.0)).abs() < 1e-3, "{hz}");
    let OscType::Float(note) = c.request(s.addr, "/autotune/target/note", vec![]).unwrap().args[0] else { panic!() };
    assert!((note - 69.5).abs() < 1e-4);
    c.send(s.addr, "/autotune/mode", vec![OscType::Int(1)]);
    sync(&c, &s);
    assert_eq!(s.controls.get().mode(), Mode::Midi);
    c.send(s.addr, "/autotune/target/release", vec![]);
    sync(&c, &s);
    assert_eq!(s.controls.get().mode(), Mode::Auto, "release returns to the configured mode");

    assert_eq!(
        c.request(s.addr, "/autotune/ping", vec![OscType::Int(7)]).unwrap(),
        OscMessage { addr: "/autotune/pong".into(), args: vec![OscType::Int(7)] }
    );
    let status = c.request(s.addr, "/autotune/status", vec![]).unwrap();
    assert_eq!(status.addr, "/autotune/status.reply");
    assert_eq!(status.args[0], OscType::String(env!("CARGO_PKG_VERSION").into()));
}

#[test]
fn bad_input_gets_error_replies_and_changes_nothing() {
    let s = server(100);
    let c = OscClient::new();
    let before = s.controls.get();
    let cases: Vec<(&str, Vec<OscType>, i32)> = vec![
        ("/autotune/nothing", vec![], 1),
        ("/elsewhere/strength", float(0.5), 1),
        ("/autotune/strength", vec![OscType::String("loud".into())], 2),
        ("/autotune/strength", vec![OscType::Float(0.1), OscType::Float(0.2)], 2),
        ("/autotune/strength", vec![OscType::Float(f32::NAN)], 2),
        ("/autotune/strength", float(1.5), 3),
        ("/autotune/target/hz", float(5.0), 3),
        ("/autotune/target/note", vec![OscType::Int(140)], 3),
        ("/autotune/tuning", float(300.0), 3),
        ("/autotune/mode", vec![OscType::String("sideways".into())], 2),
        ("/autotune/mode", vec![OscType::Int(3)], 2),
        ("/autotune/key", vec![OscType::String("H".into())], 2),
        ("/autotune/key", vec![OscType::Int(12)], 2),
        ("/autotune/scale", vec![OscType::String("bebop".into())], 2),
        ("/autotune/notes", vec![OscType::Int(1); 5], 2),
        ("/autotune/notes", vec![OscType::Int(5000)], 2),
        ("/autotune/notes/12", float(1.0), 1),
        ("/autotune/transpose", float(25.0), 3),
        ("/autotune/preset", vec![OscType::String("nope".into())], 2),
        ("/autotune/subscribe", vec![OscType::Int(9000), OscType::Float(500.0)], 3),
    ];
    for (addr, args, code) in cases {
        let reply = c.request(s.addr, addr, args).unwrap_or_else(|| panic!("no error reply for {addr}"));
        assert_eq!(reply.addr, "/autotune/error");
        assert_eq!(reply.args[0], OscType::String(addr.into()));
        assert_eq!(reply.args[1], OscType::Int(code), "{addr}: {:?}", reply.args[2]);
    }
    c.send_raw(s.addr, b"\x01\x02garbage");
    assert_eq!(c.receive().unwrap().args[1], OscType::Int(4));
    assert_eq!(s.controls.get(), before);
}

#[test]
fn a_bundle_is_applied_at_once() {
    let s = server(100);
    let c = OscClient::new();
    let message = |addr: &str, args| OscPacket::Message(OscMessage { addr: addr.into(), args });
    let bundle = OscPacket::Bundle(OscBundle {
        timetag: OscTime { seconds: 0, fractional: 1 },
        content: vec![
            message("/autotune/strength", float(0.3)),
            OscPacket::Bundle(OscBundle {
                timetag: OscTime { seconds: 0, fractional: 1 },
                content: vec![
                    message("/autotune/target/hz", float(250.0)),
                    message("/autotune/retune/ms", float(40.0)),
                ],
            }),
        ],
    });
    c.send_raw(s.addr, &rosc::encoder::encode(&bundle).unwrap());
    sync(&c, &s);
    let p = s.controls.get();
    assert_eq!((p.get(STRENGTH), p.get(TARGET_HZ), p.get(RETUNE_MS), p.mode()), (0.3, 250.0, 40.0, Mode::Manual));
}

#[test]
fn nested_bundles_and_arrays_are_refused_before_decoding() {
    let s = server(100);
    let c = OscClient::new();
    c.send_raw(s.addr, &common::nested_bundles(3000));
    let reply = c.receive().unwrap();
    assert_eq!((reply.addr.as_str(), &reply.args[1]), ("/autotune/error", &OscType::Int(5)));

    let mut deep_array = b"/autotune/strength\0\0".to_vec();
    deep_array.push(b',');
    deep_array.extend(std::iter::repeat_n(b'[', 30_000));
    deep_array.extend(std::iter::repeat_n(b']', 30_000));
    while deep_array.len() % 4 != 0 {
        deep_array.push(0);
    }
    deep_array.extend_from_slice(&[0, 0, 0, 0]);
    c.send_raw(s.addr, &deep_array);
    assert_eq!(c.receive().unwrap().args[1], OscType::Int(5));
    assert!(c.request(s.addr, "/autotune/ping", vec![]).is_some());
}

#[test]
fn error_replies_are_rate_limited() {
    let s = server(5);
    let c = OscClient::new();
    for _ in 0..50 {
        c.send(s.addr, "/autotune/nope", vec![]);
    }
    let mut errors = 0;
    while c.receive().is_some() {
        errors += 1;
    }
    assert!((5..=7).contains(&errors), "{errors} error replies for 50 bad messages at 5/s");
}

#[test]
fn random_and_mutated_datagrams_do_not_crash_the_server() {
    let s = server(1000);
    let c = OscClient::new();
    let mut rng = common::Rng(0x2545_f491_4f6c_dd1d);
    let mut next = move || rng.next();
    let valid = rosc::encoder::encode(&OscPacket::Message(OscMessage {
        addr: "/autotune/strength".into(),
        args: vec![OscType::Float(0.5), OscType::String("x".into())],
    }))
    .unwrap();
    for i in 0..10_000 {
        let datagram: Vec<u8> = if i % 2 == 0 {
            (0..(next() % 300) as usize).map(|_| next() as u8).collect()
        } else {
            let mut d = valid.clone();
            for _ in 0..(1 + next() % 4) {
                let at = (next() as usize) % d.len();
                d[at] = next() as u8;
            }
            if next() % 4 == 0 {
                d.truncate((next() as usize) % d.len());
            }
            d
        };
        if !datagram.is_empty() {
            c.send_raw(s.addr, &datagram);
        }
        if i % 500 == 0 {
            while c.receive().is_some() {}
        }
    }
    // A flood can overflow the socket's receive buffer (UDP drops), so ask until answered.
    let c2 = OscClient::new();
    common::wait_for(std::time::Duration::from_secs(20), "a pong after the flood", || {
        c2.request(s.addr, "/autotune/ping", vec![]).is_some_and(|m| m.addr == "/autotune/pong")
    });
    let p = s.controls.get();
    assert!((0.0..=1.0).contains(&p.get(STRENGTH)));
    assert!((20.0..=2000.0).contains(&p.get(TARGET_HZ)) && (400.0..=480.0).contains(&p.get(TUNING_HZ)));
}

#[test]
fn model_reload_is_passed_to_the_supervisor() {
    let s = server(100);
    let c = OscClient::new();
    c.send(s.addr, "/autotune/model/reload", vec![OscType::String("autotune-48k.onnx".into())]);
    sync(&c, &s);
    let Request::ReloadModel { name, from } = s.requests.try_recv().unwrap();
    assert_eq!(name.as_deref(), Some("autotune-48k.onnx"));
    let reply = c.request(s.addr, "/autotune/model/reload", vec![OscType::Int(3)]).unwrap();
    assert_eq!(reply.args[1], OscType::Int(2));

    // The supervisor's answer reaches the sender: the reason as an error, or what now runs.
    let failed = Answer { to: from, path: "/model/reload", outcome: Err("made for 48000 Hz".into()) };
    s.answers.send(failed).unwrap();
    let error = c.receive().unwrap();
    assert_eq!(error.addr, "/autotune/error");
    assert_eq!(error.args[0], OscType::String("/autotune/model/reload".into()));
    assert_eq!(error.args[1], OscType::Int(7));
    assert_eq!(error.args[2], OscType::String("made for 48000 Hz".into()));
    s.answers.send(Answer { to: from, path: "/model/reload", outcome: Ok("autotune 2".into()) }).unwrap();
    let done = c.receive().unwrap();
    assert_eq!(
        (done.addr.as_str(), &done.args[0]),
        ("/autotune/model/reload.reply", &OscType::String("autotune 2".into()))
    );
}

#[test]
fn key_scale_notes_and_presets_drive_the_scale_mask() {
    let s = server(100);
    let c = OscClient::new();
    let mask = || s.controls.get().scale_mask();
    c.send(s.addr, "/autotune/scale", vec![OscType::String("major".into())]);
    c.send(s.addr, "/autotune/key", vec![OscType::String("G".into())]);
    sync(&c, &s);
    // G major: G A B C D E F#.
    assert_eq!(mask(), 0b1010_1101_0101);
    assert_eq!(c.request(s.addr, "/autotune/key", vec![]).unwrap().args, vec![OscType::String("G".into())]);
    assert_eq!(c.request(s.addr, "/autotune/scale", vec![]).unwrap().args, vec![OscType::String("major".into())]);
    c.send(s.addr, "/autotune/scale", vec![OscType::Int(12)]);
    sync(&c, &s);
    assert_eq!(
        c.request(s.addr, "/autotune/scale", vec![]).unwrap().args,
        vec![OscType::String("minor_pentatonic".into())]
    );

    let flags: Vec<OscType> = [1, 0, 1, 0, 1, 0, 0, 1, 0, 0, 0, 0].into_iter().map(OscType::Int).collect();
    c.send(s.addr, "/autotune/notes", flags.clone());
    sync(&c, &s);
    assert_eq!(mask(), 0b0000_1001_0101);
    assert_eq!(c.request(s.addr, "/autotune/notes", vec![]).unwrap().args, flags);
    assert_eq!(c.request(s.addr, "/autotune/scale", vec![]).unwrap().args, vec![OscType::String("custom".into())]);
    c.send(s.addr, "/autotune/notes/11", vec![OscType::Bool(true)]);
    c.send(s.addr, "/autotune/notes/0", float(0.0));
    sync(&c, &s);
    assert_eq!(mask(), 0b1000_1001_0100);
    c.send(s.addr, "/autotune/notes", vec![OscType::Int(0xfff)]);
    sync(&c, &s);
    assert_eq!(mask(), 0xfff);

    c.send(s.addr, "/autotune/preset", vec![OscType::String("natural".into())]);
    sync(&c, &s);
    let p = s.controls.get();
    assert_eq!((p.get(STRENGTH), p.get(RETUNE_MS)), (0.8, 80.0));
    let names = c.request(s.addr, "/autotune/preset", vec![]).unwrap().args;
    assert_eq!(names, vec![OscType::String("hard".into()), OscType::String("natural".into())]);
    c.send(s.addr, "/autotune/transpose", float(-12.5));
    sync(&c, &s);
    assert_eq!(s.controls.get().get(TRANSPOSE), -12.5);
}

#[test]
fn subscribers_get_feedback_meters_and_dumps() {
    let s = server(100);
    let surface = OscClient::new();
    let other = OscClient::new();
    let dump = surface.request(s.addr, "/autotune/subscribe", vec![]).unwrap();
    assert_eq!(dump.addr, "/autotune/strength", "subscribing starts with every parameter");
    other.send(s.addr, "/autotune/strength", float(0.4));
    // The surface hears the change another client made.
    let mut heard = false;
    let mut meters = 0;
    for _ in 0..200 {
        match surface.receive_packet() {
            Some(rosc::OscPacket::Message(m)) if m.addr == "/autotune/strength" && m.args == float(0.4) => heard = true,
            Some(rosc::OscPacket::Bundle(b)) => {
                meters += 1;
                let addrs: Vec<String> = b
                    .content
                    .iter()
                    .filter_map(|p| match p {
                        rosc::OscPacket::Message(m) => Some(m.addr.clone()),
                        _ => None,
                    })
                    .collect();
                assert_eq!(
                    addrs,
                    [
                        "/autotune/meter/pitch",
                        "/autotune/meter/note",
                        "/autotune/meter/cents",
                        "/autotune/meter/confidence",
                        "/autotune/meter/target"
                    ]
                );
            }
            _ => {}
        }
        if heard && meters >= 3 {
            break;
        }
    }
    assert!(heard && meters >= 3, "feedback {heard}, {meters} meter bundles");
    let all = other.request(s.addr, "/autotune/dump", vec![]);
    assert!(all.is_some());
    assert_eq!(other.request(s.addr, "/autotune/meter/pitch", vec![]).unwrap().args, float(0.0));
}

#[test]
fn the_open_stage_control_session_uses_only_answered_addresses() {
    let text = std::fs::read_to_string(common::root().join("config/open-stage-control/autotuned.json")).unwrap();
    let session: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(session["type"], "session");
    let mut addresses = Vec::new();
    collect_addresses(&session["content"], &mut addresses);
    assert!(addresses.len() >= 25, "{addresses:?}");
    for required in
        ["/autotune/strength", "/autotune/mode", "/autotune/scale", "/autotune/meter/pitch", "/autotune/subscribe"]
    {
        assert!(addresses.iter().any(|a| a == required), "the session lacks {required}");
    }
    let s = server(1000);
    let c = OscClient::new();
    for address in &addresses {
        // Each query or action is answered by a reply or nothing, never an error.
        c.send(s.addr, address, vec![]);
        c.send(s.addr, "/autotune/ping", vec![]);
        loop {
            match c.receive_packet().unwrap_or_else(|| panic!("no pong after {address}")) {
                OscPacket::Message(reply) if reply.addr == "/autotune/pong" => break,
                OscPacket::Message(reply) => {
                    assert!(reply.addr != "/autotune/error", "{address}: {:?}", reply.args)
                }
                OscPacket::Bundle(_) => {}
            }
        }
    }
}

fn collect_addresses(widget: &serde_json::Value, out: &mut Vec<String>) {
    if let Some(address) = widget["address"].as_str().filter(|a| a.starts_with('/')) {
        out.push(address.to_owned());
    }
    for child in widget["widgets"].as_array().into_iter().chain(widget["tabs"].as_array()).flatten() {
        collect_addresses(child, out);
    }
}

#[test]
fn the_readme_lists_every_address() {
    let readme = std::fs::read_to_string(common::root().join("README.md")).unwrap();
    let s = server(100);
    let c = OscClient::new();
    c.send(s.addr, "/autotune/dump", vec![]);
    let mut addresses: Vec<String> = std::iter::from_fn(|| c.receive()).map(|m| m.addr).collect();
    addresses.retain(|a| !a.starts_with("/autotune/notes/"));
    addresses.extend(
        [
            "/autotune/notes/N",
            "/autotune/target/release",
            "/autotune/preset",
            "/autotune/subscribe",
            "/autotune/unsubscribe",
            "/autotune/scala",
        ]
        .map(String::from),
    );
    addresses.extend(["pitch", "note", "cents", "confidence", "target"].map(|m| format!("/autotune/meter/{m}")));
    addresses
        .extend(["/autotune/model/reload", "/autotune/ping", "/autotune/status", "/autotune/error"].map(String::from));
    assert!(addresses.len() >= 25, "{addresses:?}");
    for address in addresses {
        assert!(readme.contains(&format!("`{address}`")), "README does not list {address}");
    }
    for name in autotuned::scales::SCALE_NAMES {
        assert!(readme.contains(&format!("`{name}`")), "README does not list the scale {name}");
    }
}

#[test]
fn voices_are_set_together_or_one_by_one_and_each_is_fed_back() {
    let s = server_with(100, 3);
    let c = OscClient::new();
    c.send(s.addr, "/autotune/strength", float(0.3));
    c.send(s.addr, "/autotune/voice/2/strength", float(0.5));
    c.send(s.addr, "/autotune/voice/3/preset", vec![OscType::String("natural".into())]);
    c.send(s.addr, "/autotune/voice/1/notes/1", float(0.0));
    sync(&c, &s);
    let voices = s.controls.all();
    let strengths: Vec<f32> = voices.iter().map(|p| p.get(STRENGTH)).collect();
    assert_eq!(strengths, [0.3, 0.5, 0.8], "all voices, then voice 2, then voice 3's preset");
    assert_eq!(voices[0].get(RETUNE_MS), 0.0);
    assert_eq!(voices[2].get(RETUNE_MS), 80.0);
    assert_ne!(voices[0].get(NOTES), voices[1].get(NOTES), "one voice's scale changed");

    assert_eq!(c.request(s.addr, "/autotune/voice/2/strength", vec![]).unwrap().args, float(0.5));
    let plain = c.request(s.addr, "/autotune/strength", vec![]).unwrap();
    assert_eq!((plain.addr.as_str(), plain.args), ("/autotune/strength", float(0.3)), "voice 1's value");
    let error = c.request(s.addr, "/autotune/voice/4/strength", float(0.1)).unwrap();
    assert_eq!(error.addr, "/autotune/error");
    assert_eq!(error.args[1], OscType::Int(1));
    assert_eq!(error.args[2], OscType::String("there is no voice 4; voices are 1..=3".into()));
    assert_eq!(s.controls.all()[2].get(STRENGTH), 0.8, "an error changes nothing");

    c.send(s.addr, "/autotune/voice/2/dump", vec![]);
    let mut dump = Vec::new();
    while let Some(m) = c.receive() {
        dump.push(m);
    }
    assert!(!dump.is_empty() && dump.iter().all(|m| m.addr.starts_with("/autotune/voice/2/")), "{dump:?}");
    assert!(dump.contains(&OscMessage { addr: "/autotune/voice/2/strength".into(), args: float(0.5) }));

    c.send(s.addr, "/autotune/subscribe", vec![]);
    let mut state = Vec::new();
    while let Some(m) = c.receive() {
        state.push(m);
    }
    for (addr, value) in
        [("/autotune/strength", 0.3), ("/autotune/voice/1/strength", 0.3), ("/autotune/voice/3/strength", 0.8)]
    {
        assert!(state.contains(&OscMessage { addr: addr.into(), args: float(value) }), "{addr} in {state:?}");
    }
    c.send(s.addr, "/autotune/voice/3/strength", float(0.9));
    let mut feedback = Vec::new();
    let start = std::time::Instant::now();
    while feedback.is_empty() && start.elapsed() < std::time::Duration::from_secs(5) {
        if let Some(OscPacket::Message(m)) = c.receive_packet() {
            feedback.push(m);
        }
    }
    assert_eq!(feedback, [OscMessage { addr: "/autotune/voice/3/strength".into(), args: float(0.9) }]);
    c.send(s.addr, "/autotune/unsubscribe", vec![]);
    while c.receive_packet().is_some() {}
    let meter = c.request(s.addr, "/autotune/voice/3/meter/pitch", vec![]).unwrap();
    assert_eq!(meter.addr, "/autotune/voice/3/meter/pitch");
    let status = c.request(s.addr, "/autotune/status", vec![]).unwrap();
    assert_eq!(status.args[13], OscType::Int(3));
}
