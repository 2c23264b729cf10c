//! What starting a service costs while the agent holds many mappings: the
//! old way (tokio's `Command` with a `pre_exec` hook, so std forks) against
//! the launcher (`warden::runtime::launch`, `clone(CLONE_VM |
//! CLONE_VFORK)`), each starting `/bin/true` and waiting for its exit.
//!
//! A fork copies the page tables of every mapping the parent holds and the
//! child's exec tears the copy down, so the old way's cost grows with the
//! agent's size; the launcher shares the parent's memory and copies
//! nothing. The process holds 0, 5 000 and 50 000 extra mappings (an agent
//! holds about five per resource: 0, 1 000 and 10 000 resources), each one
//! page, written (so that a fork has page tables and an anon_vma to copy,
//! as for a resource's memory), alternately read-write and read-only so
//! that neighbours do not merge into one mapping.
//!
//! Per start: the wall time from the start to the exit seen (median and
//! p90), the time of the start call alone (what the calling thread, a
//! tokio worker in the agent, spends on it), and the CPU time of this process (`getrusage(RUSAGE_SELF)`: the
//! fork's copy is the parent's) and of its reaped children
//! (`RUSAGE_CHILDREN`: the exec's teardown of the copy is the child's),
//! each divided by the starts. Both ways run in one current-thread tokio
//! runtime, interleaved in rounds of ten, in the same working directory
//! (entered by descriptor, as the agent does).
//!
//! Run: `cargo bench -p warden --bench spawn --profile dev` (the work
//! measured is the kernel's; a debug build changes little).
//! `WARDEN_SPAWN_STARTS` (default 300) starts of each way per row;
//! `WARDEN_SPAWN_MAPPINGS` (default 0,5000,50000).

#[path = "support/stats.rs"]
mod stats;

use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use stats::{human, quantile};
use warden::runtime::launch::Launch;

const PROGRAM: &str = "/bin/true";

fn main() {
    let starts: usize = std::env::var("WARDEN_SPAWN_STARTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let rows: Vec<usize> = std::env::var("WARDEN_SPAWN_MAPPINGS")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![0, 5_000, 50_000]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let cwd = std::env::temp_dir();
    let mut held = Mappings::default();
    let mut results = Vec::new();
    for extra in rows {
        held.grow_to(extra);
        let maps = mappings_now();
        let (old, new) = runtime.block_on(measure(starts, &cwd));
        eprintln!("{extra} extra mappings ({maps} in all): measured");
        results.push((extra, maps, old, new));
    }
    println!();
    println!(
        "| extra mappings | mappings in all | way | start to exit, median | p90 | the start call, median | p90 | CPU per start: parent | child | total |"
    );
    println!("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for (extra, maps, old, new) in &results {
        for (way, m) in [
            ("fork + exec (pre_exec)", old),
            ("launcher (CLONE_VM)", new),
        ] {
            println!(
                "| {extra} | {maps} | {way} | {} | {} | {} | {} | {} | {} | {} |",
                human(quantile(&m.walls, 0.5)),
                human(quantile(&m.walls, 0.9)),
                human(quantile(&m.calls, 0.5)),
                human(quantile(&m.calls, 0.9)),
                human(m.parent_cpu),
                human(m.child_cpu),
                human(m.parent_cpu + m.child_cpu),
            );
        }
    }
}

/// One way's figures over its starts.
#[derive(Default)]
struct Measured {
    /// Start to exit seen, sorted.
    walls: Vec<Duration>,
    /// The start call alone (the calling thread, a tokio worker in the
    /// agent, runs nothing else meanwhile), sorted.
    calls: Vec<Duration>,
    parent_cpu: Duration,
    child_cpu: Duration,
}

async fn measure(starts: usize, cwd: &Path) -> (Measured, Measured) {
    let (mut old, mut new) = (Measured::default(), Measured::default());
    // Warm both paths (page cache, the dynamic loader's first look-ups).
    for _ in 0..5 {
        old_way(cwd).await;
        new_way(cwd).await;
    }
    let (mut old_cpu, mut new_cpu) = (
        (Duration::ZERO, Duration::ZERO),
        (Duration::ZERO, Duration::ZERO),
    );
    let mut done = 0;
    while done < starts {
        let round = (starts - done).min(10);
        let before = cpu();
        for _ in 0..round {
            let started = Instant::now();
            let call = old_way(cwd).await;
            old.walls.push(started.elapsed());
            old.calls.push(call);
        }
        let middle = cpu();
        for _ in 0..round {
            let started = Instant::now();
            let call = new_way(cwd).await;
            new.walls.push(started.elapsed());
            new.calls.push(call);
        }
        let after = cpu();
        old_cpu.0 += middle.0 - before.0;
        old_cpu.1 += middle.1 - before.1;
        new_cpu.0 += after.0 - middle.0;
        new_cpu.1 += after.1 - middle.1;
        done += round;
    }
    let per = |total: Duration| total / starts as u32;
    for m in [&mut old, &mut new] {
        m.walls.sort_unstable();
        m.calls.sort_unstable();
    }
    old.parent_cpu = per(old_cpu.0);
    old.child_cpu = per(old_cpu.1);
    new.parent_cpu = per(new_cpu.0);
    new.child_cpu = per(new_cpu.1);
    (old, new)
}

fn open_dir(dir: &Path) -> OwnedFd {
    std::fs::File::open(dir)
        .expect("the working directory")
        .into()
}

/// What the agent did before the launcher: tokio's Command, a cleared
/// environment, stdio to /dev/null, a process group of its own, and a
/// pre_exec hook entering the working directory by descriptor. Returns
/// how long `spawn` took.
async fn old_way(cwd: &Path) -> Duration {
    let dir = open_dir(cwd);
    let mut command = tokio::process::Command::new(PROGRAM);
    command
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    // SAFETY: between fork and exec only fchdir, async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            nix::unistd::fchdir(&dir)?;
            Ok(())
        });
    }
    let started = Instant::now();
    let mut child = command.spawn().expect("fork + exec");
    let call = started.elapsed();
    let status = child.wait().await.expect("wait");
    assert!(status.success(), "{status}");
    call
}

/// The launcher, as `runtime/process.rs` uses it. Returns how long
/// `start` took.
async fn new_way(cwd: &Path) -> Duration {
    let mut launch = Launch::new(Path::new(PROGRAM)).expect("absolute");
    launch.cwd(open_dir(cwd));
    let started = Instant::now();
    let child = launch.start().expect("launch");
    let call = started.elapsed();
    let status = child.wait().await.expect("wait");
    assert!(status.success(), "{status}");
    call
}

/// This process's CPU time and its reaped children's.
fn cpu() -> (Duration, Duration) {
    let usage = |who| {
        // SAFETY: rusage is plain data, valid as all zeroes.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: getrusage writes one rusage into `usage`.
        unsafe { libc::getrusage(who, &mut usage) };
        let time = |t: libc::timeval| {
            Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
        };
        time(usage.ru_utime) + time(usage.ru_stime)
    };
    (usage(libc::RUSAGE_SELF), usage(libc::RUSAGE_CHILDREN))
}

/// How many mappings this process has (lines of /proc/self/maps).
fn mappings_now() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .expect("maps")
        .lines()
        .count()
}

/// Extra one-page mappings, each written, alternately read-write and
/// read-only (so that no two merge); never unmapped (the bench exits).
#[derive(Default)]
struct Mappings {
    count: usize,
}

impl Mappings {
    fn grow_to(&mut self, count: usize) {
        if count <= self.count {
            return;
        }
        let more = count - self.count;
        let page = 4096;
        // SAFETY: a fresh private anonymous mapping; nothing else uses it.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                more * page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED, "mmap of {more} pages");
        for i in 0..more {
            let page_at = base.wrapping_byte_add(i * page);
            // SAFETY: a page of the mapping just made, writable.
            unsafe { page_at.cast::<u8>().write_volatile(1) };
            // The previous block's last mapping is read-only when
            // `self.count` is odd: keep alternating across blocks.
            if (self.count + i) % 2 == 1 {
                // SAFETY: the same page, made read-only.
                let done = unsafe { libc::mprotect(page_at, page, libc::PROT_READ) };
                assert_eq!(done, 0, "mprotect");
            }
        }
        self.count = count;
    }
}
