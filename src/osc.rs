//! The OSC control surface, on its own thread: a UDP server for the `/autotune` address space
//! (root configurable), with queries, replies, error reports and a guard against packets that
//! would make the decoder recurse too deep.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use rosc::{OscBundle, OscMessage, OscPacket, OscTime, OscType};

use crate::control::{Controls, Status, apply, tune};
use crate::parameters::{Id, Kind, MODE, NOTES, TARGET_HZ, TUNING_HZ, by_address, ids};
use crate::rt::{Meters, Mode, Params};
use crate::scala::ScalaError;
use crate::scales::{hz_note, note_hz};
use crate::settings::{Presets, Settings};

/// Deepest bundle nesting accepted; rosc recurses once per level with no limit of its own.
pub const MAX_BUNDLE_DEPTH: usize = 8;
/// Deepest `[` array nesting accepted in a type tag (dropping nested arrays recurses too).
pub const MAX_ARRAY_DEPTH: usize = 8;
/// Largest datagram read; a longer one is truncated by the socket and rejected as malformed.
const MAX_DATAGRAM: usize = 65_536;

/// `/autotune/error` codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    UnknownAddress = 1,
    BadArguments = 2,
    OutOfRange = 3,
    Malformed = 4,
    TooDeep = 5,
    Refused = 6,
    /// A request was accepted but could not be carried out (e.g. a model that does not load).
    Failed = 7,
}

/// What the OSC thread asks of the supervisor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Load `name` from the models directory (or the configured model) and swap it in; the
    /// outcome goes back to `from`.
    ReloadModel { name: Option<String>, from: SocketAddr },
}

/// The supervisor's answer to a [`Request`], sent back to whoever asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub to: SocketAddr,
    /// The request's address below the root, e.g. `/model/reload`.
    pub path: &'static str,
    /// What now runs, or why the request failed.
    pub outcome: Result<String, String>,
}

/// Why a packet was not decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PacketFault {
    pub code: ErrorCode,
    pub message: String,
}

fn fault(code: ErrorCode, message: impl Into<String>) -> PacketFault {
    PacketFault { code, message: message.into() }
}

/// Walks a datagram's bundle structure and type tags without decoding it, refusing nesting
/// beyond the limits, so the recursive decoder only ever sees bounded input.
pub fn check_nesting(bytes: &[u8]) -> Result<(), PacketFault> {
    check_packet(bytes, 1)
}

fn check_packet(bytes: &[u8], depth: usize) -> Result<(), PacketFault> {
    if bytes.starts_with(b"#bundle\0") {
        if depth > MAX_BUNDLE_DEPTH {
            return Err(fault(ErrorCode::TooDeep, format!("bundles nested deeper than {MAX_BUNDLE_DEPTH}")));
        }
        let mut rest = bytes.get(16..).ok_or_else(|| fault(ErrorCode::Malformed, "bundle shorter than its header"))?;
        while !rest.is_empty() {
            let size = rest.get(..4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize);
            let element = size
                .and_then(|size| rest.get(4..4 + size))
                .ok_or_else(|| fault(ErrorCode::Malformed, "bundle element longer than the bundle"))?;
            check_packet(element, depth + 1)?;
            rest = &rest[4 + element.len()..];
        }
        return Ok(());
    }
    // A message: address, then the type tag string; only `[` nesting matters here.
    let address_end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    let tags_start = (address_end + 4) & !3;
    let tags = bytes.get(tags_start..).unwrap_or_default();
    let tags = &tags[..tags.iter().position(|b| *b == 0).unwrap_or(tags.len())];
    let mut open = 0usize;
    for tag in tags {
        match tag {
            b'[' => {
                open += 1;
                if open > MAX_ARRAY_DEPTH {
                    return Err(fault(ErrorCode::TooDeep, format!("arrays nested deeper than {MAX_ARRAY_DEPTH}")));
                }
            }
            b']' => open = open.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// A token bucket for error replies.
struct RateLimit {
    per_second: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    fn new(per_second: u32) -> RateLimit {
        RateLimit { per_second: f64::from(per_second), tokens: f64::from(per_second), last: Instant::now() }
    }

    fn allow(&mut self) -> bool {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.per_second).min(self.per_second);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// How long a `/subscribe` lasts without renewal.
pub const LEASE: Duration = Duration::from_secs(10);
/// Meter rates a subscriber may ask for, Hz.
pub const METER_RATE: (f32, f32) = (1.0, 120.0);
const DEFAULT_METER_RATE: f32 = 30.0;

struct Subscriber {
    addr: SocketAddr,
    period: Duration,
    expires: Instant,
    next_meter: Instant,
}

/// The address space and its state; `handle` turns one datagram into replies, `tick` sends
/// meters, parameter feedback and the supervisor's answers.
pub struct OscService {
    root: String,
    reply_port: u16,
    presets: Presets,
    default_mode: Mode,
    controls: Arc<Controls>,
    status: Arc<Status>,
    meters: Arc<Meters>,
    requests: Sender<Request>,
    answers: Receiver<Answer>,
    errors: RateLimit,
    subscribers: Vec<Subscriber>,
    /// The parameter values subscribers were last sent, to send only what changed.
    last_sent: Vec<OscMessage>,
    /// Source networks allowed to send; empty: any.
    allow: Vec<IpNet>,
    models_dir: PathBuf,
    scala_dir: PathBuf,
    /// The Scala file (and keyboard mapping) the voices were last tuned to; empty: none.
    scala: (String, String),
}

/// A value read from lenient OSC arguments.
fn number(arg: &OscType) -> Option<f64> {
    match arg {
        OscType::Float(v) => Some(f64::from(*v)),
        OscType::Double(v) => Some(*v),
        OscType::Int(v) => Some(f64::from(*v)),
        OscType::Long(v) => Some(*v as f64),
        OscType::Bool(v) => Some(if *v { 1.0 } else { 0.0 }),
        OscType::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// One message's effect: a reply, a change, or an error.
enum Outcome {
    Reply(Vec<OscMessage>),
    Changed,
    Error(ErrorCode, String),
}

fn bad(message: impl Into<String>) -> Outcome {
    Outcome::Error(ErrorCode::BadArguments, message.into())
}

/// Addresses (below the root) that are views of a parameter rather than rows of the table.
const TARGET_NOTE: &str = "/target/note";
const TARGET_RELEASE: &str = "/target/release";
const PRESET: &str = "/preset";

/// `/notes/N`: one pitch class of the `notes` mask.
fn note_class(path: &str) -> Option<u8> {
    path.strip_prefix("/notes/")?.parse::<u8>().ok().filter(|c| *c < 12)
}

/// `/voice/K/rest` → (Some(K), "/rest"); any other path → (None, path). K is as written
/// (1-based, not range-checked).
fn voice_path(path: &str) -> (Option<usize>, &str) {
    let Some(rest) = path.strip_prefix("/voice/") else { return (None, path) };
    let (number, inner) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    match number.parse::<usize>() {
        Ok(k) if !inner.is_empty() => (Some(k), inner),
        _ => (None, path),
    }
}

/// Addresses (below the root, and below `/voice/K`) that change parameters; the rest are
/// services.
fn is_parameter(path: &str) -> bool {
    let (_, path) = voice_path(path);
    by_address(path).is_some() || [TARGET_NOTE, TARGET_RELEASE, PRESET].contains(&path) || note_class(path).is_some()
}

/// The prefix of voice `index`'s (0-based) own addresses.
fn voice_prefix(index: usize) -> String {
    format!("/voice/{}", index + 1)
}

/// The OSC arguments a parameter's value is sent as.
fn value_args(id: Id, value: f32) -> Vec<OscType> {
    match &id.row().kind {
        Kind::Float { .. } | Kind::Toggle => vec![OscType::Float(value)],
        Kind::Int { .. } => vec![OscType::Int(value as i32)],
        Kind::Choice(c) => vec![OscType::String(c.names.get(value as usize).copied().unwrap_or_default().into())],
        Kind::Mask => (0..12).map(|c| OscType::Int(i32::from((value as u16) >> c & 1))).collect(),
    }
}

/// Reads a parameter's value from OSC arguments, checked against its row.
fn value_from(id: Id, args: &[OscType]) -> Result<f32, Outcome> {
    let row = id.row();
    let ranged = |v: f64| row.check(v).map_err(|e| Outcome::Error(ErrorCode::OutOfRange, e));
    match &row.kind {
        Kind::Choice(c) => {
            let index = match args {
                [OscType::String(name)] => (c.parse)(name),
                [arg] => number(arg).filter(|v| *v >= 0.0 && (*v as usize) < c.names.len()).map(|v| v as usize),
                _ => None,
            };
            index
                .map(|i| i as f32)
                .ok_or_else(|| bad(format!("expects one of: {} (or 0..{})", c.names.join(", "), c.names.len() - 1)))
        }
        Kind::Mask => {
            let mask = match args {
                [one] => number(one).filter(|v| (0.0..4096.0).contains(v) && v.fract() == 0.0),
                twelve if twelve.len() == 12 => twelve.iter().enumerate().try_fold(0.0, |mask, (class, arg)| {
                    number(arg).map(|v| if v >= 0.5 { mask + f64::from(1u16 << class) } else { mask })
                }),
                _ => None,
            };
            mask.map(|m| m as f32).ok_or_else(|| bad("expects 12 flags (C..B) or one int mask 0..4095"))
        }
        _ => single_number(args).and_then(ranged),
    }
}

impl OscService {
    pub fn new(
        settings: &Settings,
        controls: Arc<Controls>,
        status: Arc<Status>,
        meters: Arc<Meters>,
        requests: Sender<Request>,
        answers: Receiver<Answer>,
    ) -> OscService {
        OscService {
            root: settings.osc.root.clone(),
            reply_port: settings.osc.reply_port,
            presets: settings.presets.clone(),
            default_mode: settings.default_mode(),
            controls,
            status,
            meters,
            requests,
            answers,
            errors: RateLimit::new(settings.osc.errors_per_second),
            subscribers: Vec::new(),
            last_sent: Vec::new(),
            allow: settings.osc_allow(),
            models_dir: settings.model.dir.clone(),
            scala_dir: settings.scala.dir.clone(),
            scala: (settings.scala.file.clone(), settings.scala.kbm.clone()),
        }
    }

    /// Decodes and applies one datagram; returns the packets to send. A bundle's parameter
    /// changes are published together.
    pub fn handle(&mut self, bytes: &[u8], from: SocketAddr) -> Vec<(SocketAddr, OscPacket)> {
        let mut out = Vec::new();
        if !self.allow.is_empty() && !self.allow.iter().any(|net| net.contains(&from.ip())) {
            // Not answered: a reply would confirm the daemon to whoever is outside.
            log::debug!("OSC from {from} ignored: not in osc.allow");
            return out;
        }
        let to = self.reply_to(from);
        let packet = match check_nesting(bytes).and_then(|()| {
            rosc::decoder::decode_udp(bytes)
                .map(|(_, p)| p)
                .map_err(|e| fault(ErrorCode::Malformed, format!("cannot decode: {e}")))
        }) {
            Ok(p) => p,
            Err(f) => {
                self.error(&mut out, to, "", f.code, &f.message);
                return out;
            }
        };
        let mut messages = Vec::new();
        flatten(packet, &mut messages);
        let (parameters, services): (Vec<OscMessage>, Vec<OscMessage>) =
            messages.into_iter().partition(|m| self.path(&m.addr).is_some_and(is_parameter));
        let mut outcomes: Vec<(String, Outcome)> = self.controls.update(|voices| {
            parameters.into_iter().map(|m| (m.addr.clone(), self.apply_to_voices(voices, &m))).collect()
        });
        for m in services {
            let addr = m.addr.clone();
            let outcome = self.apply_service(m, from);
            outcomes.push((addr, outcome));
        }
        for (addr, outcome) in outcomes {
            match outcome {
                Outcome::Reply(replies) => out.extend(replies.into_iter().map(|m| (to, OscPacket::Message(m)))),
                Outcome::Changed => {}
                Outcome::Error(code, msg) => self.error(&mut out, to, &addr, code, &msg),
            }
        }
        out
    }

    fn reply_to(&self, from: SocketAddr) -> SocketAddr {
        if self.reply_port == 0 { from } else { SocketAddr::new(from.ip(), self.reply_port) }
    }

    /// Meters due to subscribers, feedback of changed parameters, the supervisor's answers,
    /// expired leases. Returns the packets to send and when to call again at the latest.
    pub fn tick(&mut self, now: Instant) -> (Vec<(SocketAddr, OscPacket)>, Instant) {
        self.subscribers.retain(|s| s.expires > now);
        let mut out = Vec::new();
        while let Ok(answer) = self.answers.try_recv() {
            let to = self.reply_to(answer.to);
            match answer.outcome {
                Ok(running) => {
                    let reply = self.message(&format!("{}.reply", answer.path), vec![OscType::String(running)]);
                    out.push((to, OscPacket::Message(reply)));
                }
                Err(reason) => {
                    let addr = format!("{}{}", self.root, answer.path);
                    self.error(&mut out, to, &addr, ErrorCode::Failed, &reason);
                }
            }
        }
        let current = self.every_parameter_message();
        let changed: Vec<OscMessage> = current.iter().filter(|m| !self.last_sent.contains(m)).cloned().collect();
        self.last_sent = current;
        let meters = self.meter_messages();
        for s in &mut self.subscribers {
            for m in &changed {
                out.push((s.addr, OscPacket::Message(m.clone())));
            }
            if s.next_meter <= now {
                let bundle = OscBundle { timetag: OscTime { seconds: 0, fractional: 1 }, content: meters.clone() };
                out.push((s.addr, OscPacket::Bundle(bundle)));
                // Keep the schedule, but never try to catch up a backlog.
                s.next_meter = (s.next_meter + s.period).max(now);
            }
        }
        let next = self.subscribers.iter().map(|s| s.next_meter).min().unwrap_or(now + Duration::from_millis(100));
        (out, next.min(now + Duration::from_millis(100)))
    }

    fn path<'a>(&self, addr: &'a str) -> Option<&'a str> {
        addr.strip_prefix(&self.root).filter(|rest| rest.starts_with('/'))
    }

    fn error(
        &mut self,
        out: &mut Vec<(SocketAddr, OscPacket)>,
        to: SocketAddr,
        path: &str,
        code: ErrorCode,
        msg: &str,
    ) {
        log::debug!("OSC to {to}: {path}: {msg}");
        if self.errors.allow() {
            let args =
                vec![OscType::String(path.to_owned()), OscType::Int(code as i32), OscType::String(msg.to_owned())];
            out.push((to, OscPacket::Message(OscMessage { addr: format!("{}/error", self.root), args })));
        }
    }

    fn message(&self, path: &str, args: Vec<OscType>) -> OscMessage {
        OscMessage { addr: format!("{}{path}", self.root), args }
    }

    /// The message that sets the parameter (or view) at `path` to its current value in `p`,
    /// addressed below `prefix` (empty, or a voice's `/voice/K`).
    fn value_message(&self, p: &Params, prefix: &str, path: &str) -> Option<OscMessage> {
        let at = |args| Some(self.message(&format!("{prefix}{path}"), args));
        if let Some(id) = by_address(path) {
            return at(value_args(id, p.get(id)));
        }
        if path == TARGET_NOTE {
            let note = hz_note(p.get(TARGET_HZ), p.get(TUNING_HZ));
            return at(vec![OscType::Float(note)]);
        }
        let class = note_class(path)?;
        at(vec![OscType::Float(f32::from(p.scale_mask() >> class & 1))])
    }

    /// Every parameter of `p` as the message that sets it, below `prefix`.
    fn parameter_messages(&self, p: &Params, prefix: &str) -> Vec<OscMessage> {
        let views = std::iter::once(TARGET_NOTE.to_owned()).chain((0..12).map(|c| format!("/notes/{c}")));
        ids()
            .map(|id| id.row().address.to_owned())
            .chain(views)
            .filter_map(|path| self.value_message(p, prefix, &path))
            .collect()
    }

    /// The feedback and `/dump` format: voice 1's values at the plain addresses, and with more
    /// than one voice every voice's at its `/voice/K` addresses too.
    fn every_parameter_message(&self) -> Vec<OscMessage> {
        let voices = self.controls.all();
        let mut messages = self.parameter_messages(&voices[0], "");
        if voices.len() > 1 {
            for (k, p) in voices.iter().enumerate() {
                messages.extend(self.parameter_messages(p, &voice_prefix(k)));
            }
        }
        messages
    }

    /// Voice `index`'s meters below `prefix`.
    fn voice_meter_messages(&self, index: usize, tuning: f32, prefix: &str) -> Vec<OscPacket> {
        let m = self.meters.voice(index);
        let (pitch, target) = (m.detected_hz(), m.target_hz());
        let note = if pitch > 0.0 { hz_note(pitch, tuning) } else { 0.0 };
        let cents = if pitch > 0.0 && target > 0.0 { 1200.0 * (pitch / target).log2() } else { 0.0 };
        [
            ("/meter/pitch", pitch),
            ("/meter/note", note),
            ("/meter/cents", cents),
            ("/meter/confidence", m.confidence()),
            ("/meter/target", target),
        ]
        .into_iter()
        .map(|(path, v)| OscPacket::Message(self.message(&format!("{prefix}{path}"), vec![OscType::Float(v)])))
        .collect()
    }

    /// Voice 1's meters at the plain addresses, and with more than one voice every voice's at
    /// `/voice/K/meter/…`.
    fn meter_messages(&self) -> Vec<OscPacket> {
        let voices = self.controls.all();
        let mut packets = self.voice_meter_messages(0, voices[0].get(TUNING_HZ), "");
        if voices.len() > 1 {
            for (k, p) in voices.iter().enumerate() {
                packets.extend(self.voice_meter_messages(k, p.get(TUNING_HZ), &voice_prefix(k)));
            }
        }
        packets
    }

    /// Applies one parameter message to the voices it addresses: every voice at a plain
    /// address, voice K at `/voice/K/…`. A query answers with voice 1's value (or voice K's).
    fn apply_to_voices(&self, voices: &mut [Params], m: &OscMessage) -> Outcome {
        let path = self.path(&m.addr).unwrap_or_default();
        let (voice, inner) = voice_path(path);
        let targets = match voice {
            None => 0..voices.len(),
            Some(k) if (1..=voices.len()).contains(&k) => k - 1..k,
            Some(k) => {
                let known = if voices.len() == 1 { "1".to_owned() } else { format!("1..={}", voices.len()) };
                return Outcome::Error(ErrorCode::UnknownAddress, format!("there is no voice {k}; voices are {known}"));
            }
        };
        if m.args.is_empty() && inner != TARGET_RELEASE {
            let prefix = voice.map_or_else(String::new, |k| voice_prefix(k - 1));
            if inner == PRESET {
                let names = self.presets.0.keys().map(|n| OscType::String(n.clone())).collect();
                return Outcome::Reply(vec![self.message(&format!("{prefix}{PRESET}"), names)]);
            }
            return Outcome::Reply(self.value_message(&voices[targets.start], &prefix, inner).into_iter().collect());
        }
        let mut outcome = Outcome::Changed;
        for p in &mut voices[targets] {
            outcome = self.apply_parameter(p, inner, m);
            if !matches!(outcome, Outcome::Changed) {
                break;
            }
        }
        outcome
    }

    /// Applies one parameter message, addressed at `path` below the root and any voice
    /// prefix, to `p` (a working copy published after the packet).
    fn apply_parameter(&self, p: &mut Params, path: &str, m: &OscMessage) -> Outcome {
        let set = |p: &mut Params, id: Id, value: Result<f32, Outcome>| match value {
            Ok(v) => {
                apply(p, id, v);
                if id == TARGET_HZ {
                    apply(p, MODE, Mode::Manual.value());
                }
                Outcome::Changed
            }
            Err(e) => e,
        };
        if let Some(id) = by_address(path) {
            return set(p, id, value_from(id, &m.args));
        }
        if let Some(class) = note_class(path) {
            let flag = match single_number(&m.args) {
                Ok(v) => v >= 0.5,
                Err(e) => return e,
            };
            let mask = if flag { p.scale_mask() | 1 << class } else { p.scale_mask() & !(1 << class) };
            return set(p, NOTES, Ok(f32::from(mask)));
        }
        match path {
            TARGET_NOTE => {
                let hz = single_number(&m.args).map(|note| note_hz(note as f32, p.get(TUNING_HZ)));
                let checked = hz.and_then(|hz| {
                    TARGET_HZ.row().check(f64::from(hz)).map_err(|e| Outcome::Error(ErrorCode::OutOfRange, e))
                });
                set(p, TARGET_HZ, checked)
            }
            TARGET_RELEASE => set(p, MODE, Ok(self.default_mode.value())),
            // A name, optionally followed by a button's value (control surfaces append one).
            _ => match m.args.as_slice() {
                [OscType::String(name), ..] => match self.presets.0.get(name) {
                    Some(preset) => {
                        preset.apply(p);
                        Outcome::Changed
                    }
                    None => bad(format!("unknown preset {name:?}; known: {}", self.preset_names())),
                },
                _ => bad("expects a preset name"),
            },
        }
    }

    fn preset_names(&self) -> String {
        self.presets.0.keys().cloned().collect::<Vec<_>>().join(", ")
    }

    fn apply_service(&mut self, m: OscMessage, from: SocketAddr) -> Outcome {
        let Some(path) = self.path(&m.addr) else {
            return Outcome::Error(ErrorCode::UnknownAddress, format!("unknown address (the root is {})", self.root));
        };
        match path {
            "/ping" => Outcome::Reply(vec![self.message("/pong", m.args)]),
            "/status" => Outcome::Reply(vec![self.message("/status.reply", self.status_args())]),
            "/dump" => Outcome::Reply(self.every_parameter_message()),
            dump if voice_path(dump).1 == "/dump" => match voice_path(dump).0 {
                Some(k) if (1..=self.controls.voices()).contains(&k) => {
                    Outcome::Reply(self.parameter_messages(&self.controls.all()[k - 1], &voice_prefix(k - 1)))
                }
                _ => Outcome::Error(ErrorCode::UnknownAddress, "no such voice".into()),
            },
            "/subscribe" => self.subscribe(&m, from),
            "/scala" => self.load_scala(&m),
            "/unsubscribe" => {
                let to = self.reply_to(from);
                self.subscribers.retain(|s| s.addr != to);
                Outcome::Changed
            }
            "/model/reload" => {
                let name = match m.args.as_slice() {
                    [] => None,
                    [OscType::String(s)] => Some(s.clone()),
                    _ => return bad("expects no argument or a model file name"),
                };
                if let Some(Err(reason)) = name.as_deref().map(|n| crate::app::model_in_dir(&self.models_dir, n)) {
                    return Outcome::Error(ErrorCode::Refused, reason);
                }
                match self.requests.send(Request::ReloadModel { name, from }) {
                    Ok(()) => Outcome::Changed,
                    Err(_) => bad("the supervisor is shutting down"),
                }
            }
            meter if voice_path(meter).1.starts_with("/meter/") && m.args.is_empty() => {
                let all = self.meter_messages();
                let found = all.into_iter().find_map(|p| match p {
                    OscPacket::Message(reply) if reply.addr == m.addr => Some(reply),
                    _ => None,
                });
                found.map_or_else(
                    || Outcome::Error(ErrorCode::UnknownAddress, "unknown meter".into()),
                    |r| Outcome::Reply(vec![r]),
                )
            }
            _ => Outcome::Error(ErrorCode::UnknownAddress, "unknown address".into()),
        }
    }

    /// `/scala s file [s kbm]` tunes every voice to a Scala file from `[tuning] scala_dir` and
    /// makes their scale `scala`; a query answers with the file (and mapping) loaded. A file that
    /// does not read changes nothing and is answered with the reason.
    fn load_scala(&mut self, m: &OscMessage) -> Outcome {
        let (file, kbm) = match m.args.as_slice() {
            [] => {
                let (file, kbm) = self.scala.clone();
                let args = [file].into_iter().chain((!kbm.is_empty()).then_some(kbm)).map(OscType::String);
                return Outcome::Reply(vec![self.message("/scala", args.collect())]);
            }
            [OscType::String(file)] => (file.clone(), String::new()),
            [OscType::String(file), OscType::String(kbm)] => (file.clone(), kbm.clone()),
            _ => return bad("expects a .scl file name, and optionally a .kbm file name"),
        };
        match crate::scala::load(&self.scala_dir, &file, (!kbm.is_empty()).then_some(kbm.as_str())) {
            Ok(tuning) => {
                self.controls.update(|voices| voices.iter_mut().for_each(|p| tune(p, tuning)));
                log::info!("tuned to Scala {file} {kbm}");
                self.scala = (file, kbm);
                Outcome::Changed
            }
            Err(e @ ScalaError::Refused { .. }) => Outcome::Error(ErrorCode::Refused, e.to_string()),
            Err(e) => Outcome::Error(ErrorCode::Failed, e.to_string()),
        }
    }

    /// `/subscribe [i port] [f rate]`: a 10 s lease on meters and parameter feedback, renewed
    /// by subscribing again. Port 0 or none is the port the request came from (or
    /// `osc.reply_port`); a lone float is the rate. Replies with every parameter, so a new
    /// surface starts in sync.
    fn subscribe(&mut self, m: &OscMessage, from: SocketAddr) -> Outcome {
        let is_int = |a: &OscType| matches!(a, OscType::Int(_) | OscType::Long(_));
        let (port, rate) = match m.args.as_slice() {
            [] => (Some(0.0), Some(f64::from(DEFAULT_METER_RATE))),
            [rate] if !is_int(rate) => (Some(0.0), number(rate)),
            [port] => (number(port), Some(f64::from(DEFAULT_METER_RATE))),
            [port, rate] if is_int(port) => (number(port), number(rate)),
            _ => return bad("expects [i port] [f rate]"),
        };
        let (Some(port), Some(rate)) = (port, rate) else { return bad("expects [i port] [f rate]") };
        let (lo, hi) = METER_RATE;
        if !(0.0..=65535.0).contains(&port) {
            return Outcome::Error(ErrorCode::OutOfRange, format!("port {port} is outside 0..=65535"));
        }
        if !(f64::from(lo)..=f64::from(hi)).contains(&rate) {
            return Outcome::Error(ErrorCode::OutOfRange, format!("rate {rate} is outside {lo}..={hi} Hz"));
        }
        let to = self.reply_to(from);
        let addr = if port == 0.0 { to } else { SocketAddr::new(from.ip(), port as u16) };
        let now = Instant::now();
        let period = Duration::from_secs_f64(1.0 / rate);
        match self.subscribers.iter_mut().find(|s| s.addr == addr) {
            Some(s) => {
                s.period = period;
                s.expires = now + LEASE;
            }
            None => self.subscribers.push(Subscriber { addr, period, expires: now + LEASE, next_meter: now }),
        }
        Outcome::Reply(self.every_parameter_message())
    }

    fn status_args(&self) -> Vec<OscType> {
        let s = &self.status;
        let text = s.text();
        let callbacks = self.meters.callbacks.stats();
        vec![
            OscType::String(env!("CARGO_PKG_VERSION").into()),
            OscType::Int(s.sample_rate.load(Relaxed) as i32),
            OscType::Int(s.period.load(Relaxed) as i32),
            OscType::Int(s.xruns.load(Relaxed) as i32),
            OscType::Float(s.load_percent()),
            OscType::Int(s.latency.load(Relaxed) as i32),
            OscType::String(text.model),
            OscType::String(text.state),
            OscType::Int(self.meters.faults() as i32),
            OscType::Float(callbacks.p50_us),
            OscType::Float(callbacks.p99_us),
            OscType::Float(callbacks.max_us),
            OscType::Long(callbacks.count as i64),
            OscType::Int(self.controls.voices() as i32),
        ]
    }
}

fn single_number(args: &[OscType]) -> Result<f64, Outcome> {
    match args {
        [arg] => {
            number(arg).filter(|v| v.is_finite()).ok_or_else(|| bad(format!("expects a finite number, got {arg:?}")))
        }
        args => Err(bad(format!("expects one number, got {} arguments", args.len()))),
    }
}

fn flatten(packet: OscPacket, out: &mut Vec<OscMessage>) {
    match packet {
        OscPacket::Message(m) => out.push(m),
        OscPacket::Bundle(b) => b.content.into_iter().for_each(|p| flatten(p, out)),
    }
}

/// Binds the socket and serves until `stop` is raised. Returns the bound address (port 0 in the
/// settings picks a free one).
pub fn spawn(bind: &str, mut service: OscService, stop: Arc<AtomicBool>) -> io::Result<(JoinHandle<()>, SocketAddr)> {
    let socket = UdpSocket::bind(bind)?;
    let local = socket.local_addr()?;
    let handle = std::thread::Builder::new().name("osc".into()).spawn(move || {
        let mut buffer = vec![0u8; MAX_DATAGRAM];
        let mut deadline = Instant::now();
        while !stop.load(Relaxed) {
            let wait = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
            if let Err(e) = socket.set_read_timeout(Some(wait)) {
                log::warn!("OSC socket timeout: {e}");
            }
            let mut outgoing = match socket.recv_from(&mut buffer) {
                Ok((len, from)) => service.handle(&buffer[..len], from),
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => Vec::new(),
                Err(e) => {
                    log::warn!("OSC receive failed: {e}");
                    Vec::new()
                }
            };
            let now = Instant::now();
            if now >= deadline || !outgoing.is_empty() {
                let (ticked, next) = service.tick(now);
                outgoing.extend(ticked);
                deadline = next;
            }
            for (to, packet) in outgoing {
                match rosc::encoder::encode(&packet) {
                    Ok(bytes) => {
                        if let Err(e) = socket.send_to(&bytes, to) {
                            log::debug!("OSC reply to {to} failed: {e}");
                        }
                    }
                    Err(e) => log::warn!("OSC reply could not be encoded: {e}"),
                }
            }
        }
    })?;
    Ok((handle, local))
}
