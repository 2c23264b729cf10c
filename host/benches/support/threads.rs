//! Each thread of a process, as `/proc/PID/task/TID/schedstat` counts it:
//! its time on a CPU (nanoseconds) and how often it was switched in (one
//! per wake-up, and one per preemption). Shared by the benches that read a
//! running agent's threads (`idle`, `http_check`).

use std::collections::HashMap;

/// One thread's counters at one moment.
#[derive(Clone, Default)]
pub struct ThreadSample {
    pub name: String,
    /// Time on a CPU, in nanoseconds.
    pub run_ns: u64,
    /// Times switched in: one per wake-up (and one per preemption).
    pub slices: u64,
}

/// Every thread of process `pid` now, by thread id.
pub fn threads_of(pid: i32) -> HashMap<u64, ThreadSample> {
    let mut threads = HashMap::new();
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc/PID/task");
    for task in tasks.flatten() {
        let Ok(tid) = task.file_name().to_string_lossy().parse::<u64>() else {
            continue;
        };
        // A thread may end between the listing and the read.
        let (Ok(name), Ok(schedstat)) = (
            std::fs::read_to_string(task.path().join("comm")),
            std::fs::read_to_string(task.path().join("schedstat")),
        ) else {
            continue;
        };
        let numbers: Vec<u64> = schedstat
            .split_whitespace()
            .map(|n| n.parse().expect("a number"))
            .collect();
        threads.insert(
            tid,
            ThreadSample {
                name: name.trim().to_string(),
                run_ns: numbers[0],
                slices: numbers[2],
            },
        );
    }
    threads
}
