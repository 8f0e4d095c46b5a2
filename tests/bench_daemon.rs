//! Whole-daemon measurements, not run by `make test`: `make bench-daemon` (CPU, callback time,
//! RSS) and `make malloc-count` (what is allocated on the JACK thread per callback). They
//! print numbers for the README; they assert nothing about time.

mod common;

use std::time::{Duration, Instant};

use common::*;
use rosc::OscType;

fn seconds() -> u64 {
    std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(60)
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap().split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Memory in MiB: (RSS, PSS, private, RSS of JACK's shared segments). RSS counts the JACK
/// server's shared segment, which every JACK client maps and whose size the server's
/// `--port-max` sets; private memory is what the daemon itself holds.
fn memory_mib(pid: u32) -> (f64, f64, f64, f64) {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap();
    let field = |name: &str| -> f64 {
        let line = rollup.lines().find(|l| l.starts_with(name)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse::<f64>().unwrap() / 1024.0
    };
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    let (mut in_jack, mut jack_kib) = (false, 0.0);
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("Rss:") if in_jack => jack_kib += words.next().unwrap().parse::<f64>().unwrap(),
            // a mapping's header line: "start-end perms offset dev inode [path]"
            Some(first) if first.contains('-') && !first.ends_with(':') => {
                in_jack = words.nth(4).is_some_and(|path| path.starts_with("/dev/shm/jack"))
            }
            _ => {}
        }
    }
    (field("Rss:"), field("Pss:"), field("Private_Clean:") + field("Private_Dirty:"), jack_kib / 1024.0)
}

fn number(args: &[OscType], i: usize) -> f64 {
    match &args[i] {
        OscType::Float(v) => f64::from(*v),
        OscType::Int(v) => f64::from(*v),
        OscType::Long(v) => *v as f64,
        other => panic!("{other:?}"),
    }
}

/// A running daemon of `voices` voices with a sung tone (a different one per voice) going
/// through each.
fn running(voices: usize, env: &[(&str, &str)]) -> (JackServer, Daemon, TestClient) {
    let server = JackServer::start_realtime(RATE, 512);
    let setting = format!("jack.voices={voices}");
    let daemon = Daemon::start(&server, None, &[&setting], env);
    let tone = |k: usize| looping_tone(196.0 * 2f32.powf((35.0 + 7.0 * k as f32) / 1200.0), 0.3).0;
    let client = if voices == 1 {
        TestClient::start(&daemon.client, tone(0), 2)
    } else {
        TestClient::voices(&daemon.client, (0..voices).map(tone).collect(), Vec::new(), 2)
    };
    (server, daemon, client)
}

/// What one measurement of a running daemon gave.
struct Cost {
    cpu_percent: f64,
    status: Vec<OscType>,
    memory: (f64, f64, f64, f64),
}

fn measure(voices: usize, env: &[(&str, &str)]) -> Cost {
    let (_server, daemon, client) = running(voices, env);
    let pid = daemon.child.id();
    std::thread::sleep(Duration::from_secs(5));
    let (ticks, start) = (cpu_ticks(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(seconds()));
    // SAFETY: sysconf has no preconditions.
    let tick_hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu_percent = (cpu_ticks(pid) - ticks) as f64 / tick_hz / start.elapsed().as_secs_f64() * 100.0;
    let status = daemon.status();
    let memory = memory_mib(pid);
    client.close();
    Cost { cpu_percent, status, memory }
}

/// `VOICES=1,8,32` (default 1) measured in turn, `ROUNDS` times (default 1), so that a VM whose
/// speed drifts is compared within a round; each round prints every count's CPU against the
/// first one's, and at the end each count's median ratio over the rounds.
#[test]
#[ignore = "a minute of measurement per voice count; run with `make bench-daemon`"]
fn daemon_cost() {
    let _jack = jack_lock();
    let extra = std::env::var("BENCH_ENV").unwrap_or_default();
    let env: Vec<(&str, &str)> = extra.split_whitespace().filter_map(|kv| kv.split_once('=')).collect();
    let counts: Vec<usize> = std::env::var("VOICES")
        .unwrap_or_else(|_| "1".into())
        .split(',')
        .map(|n| n.trim().parse().expect("VOICES is a comma-separated list of voice counts"))
        .collect();
    let rounds: usize = std::env::var("ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(1);
    let mut ratios = vec![Vec::new(); counts.len()];
    for round in 1..=rounds {
        let mut first_cpu = None;
        for (&voices, ratios) in counts.iter().zip(&mut ratios) {
            let Cost { cpu_percent: cpu, status, memory: (rss, pss, private, jack) } = measure(voices, &env);
            let base = *first_cpu.get_or_insert(cpu);
            ratios.push(cpu / base);
            println!(
                "round {round}, {voices} voices, over {} s: CPU {cpu:.2} % of one core (×{:.2} the first count's); callback median {:.0} µs, p99 {:.0} µs, max {:.0} µs over {} callbacks; RSS {rss:.1} MiB = JACK's shared segment {jack:.1} + the daemon's own {:.1} (PSS {pss:.1}, private {private:.1}); xruns {}",
                seconds(),
                cpu / base,
                number(&status, 9),
                number(&status, 10),
                number(&status, 11),
                number(&status, 12),
                rss - jack,
                number(&status, 3),
            );
        }
    }
    for (voices, ratios) in counts.iter().zip(&mut ratios).skip(1) {
        ratios.sort_by(f64::total_cmp);
        let middle = ratios.len() / 2;
        let median = if ratios.len() % 2 == 1 { ratios[middle] } else { (ratios[middle - 1] + ratios[middle]) / 2.0 };
        let listed: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
        println!(
            "{voices} voices against {}: CPU ×{median:.2} (median of {} rounds: {})",
            counts[0],
            ratios.len(),
            listed.join(" ")
        );
    }
}

#[test]
#[ignore = "needs MALLOC_COUNT_SO; run with `make malloc-count`"]
fn mallocs_per_callback() {
    let preload = std::env::var("MALLOC_COUNT_SO").expect("MALLOC_COUNT_SO=path/to/malloc_count.so");
    let out = std::env::temp_dir().join(format!("{}.txt", unique("malloc-count")));
    let _jack = jack_lock();
    let env = [("LD_PRELOAD", preload.as_str()), ("MALLOC_COUNT_OUT", out.to_str().unwrap())];
    let (_server, mut daemon, client) = running(1, &env);
    std::thread::sleep(Duration::from_secs(seconds().min(30)));
    let callbacks = number(&daemon.status(), 12);
    client.close();
    daemon.signal(15);
    assert_eq!(daemon.wait_exit(Duration::from_secs(10)), Some(0));
    let report = std::fs::read_to_string(&out).expect("the preload wrote no report");
    // JACK runs its thread-init callback on each of its client threads; the process thread is
    // the one of them that allocates at all.
    let fields: Vec<f64> = report
        .lines()
        .filter(|l| l.starts_with("autotuned-rt "))
        .map(|l| l.split_whitespace().skip(2).map(|f| f.parse().unwrap()).collect::<Vec<f64>>())
        .max_by(|a, b| a[0].total_cmp(&b[0]))
        .unwrap_or_else(|| panic!("no JACK thread in:\n{report}"));
    println!(
        "JACK thread over {callbacks} callbacks: {} mallocs, {} frees = {:.1} mallocs and {:.1} frees per callback (all threads:\n{report})",
        fields[0],
        fields[1],
        fields[0] / callbacks,
        fields[1] / callbacks
    );
    std::fs::remove_file(out).unwrap();
}
