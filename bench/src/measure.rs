//! Latency percentiles, process memory, and how figures are printed.

use std::time::Duration;

use anyhow::Context;

/// Nearest-rank percentile of sorted samples; zero when there are none.
pub fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    // Nearest rank: the smallest sample with at least `fraction` of them at or below it.
    let rank = (fraction * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A process's memory as the kernel accounts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// Resident now (`VmRSS`), KiB.
    pub rss_kib: u64,
    /// Highest resident since the process started (`VmHWM`), KiB.
    pub peak_kib: u64,
}

/// Reads `/proc/<pid>/status`.
///
/// # Errors
/// The process is gone, or this is not Linux.
pub fn memory_of(pid: u32) -> anyhow::Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status (Linux only)"))?;
    parse_status(&status).with_context(|| format!("/proc/{pid}/status has no VmRSS/VmHWM"))
}

fn parse_status(status: &str) -> Option<Memory> {
    let field = |name: &str| {
        status.lines().find_map(|line| line.strip_prefix(name)?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
    };
    Some(Memory { rss_kib: field("VmRSS:")?, peak_kib: field("VmHWM:")? })
}

/// CPU time (in clock ticks) of the whole machine and of chosen processes, to
/// tell how much of the machine a run had: on a shared machine, other jobs
/// (and, in a VM, the host: "steal") skew every figure.
#[derive(Debug, Clone)]
pub struct CpuSnapshot {
    /// Every tick of every core: busy, idle and stolen.
    total: u64,
    /// Ticks some process ran or the host took (steal).
    busy: u64,
    processes: Vec<(&'static str, u32, u64)>,
}

impl CpuSnapshot {
    /// `None` off Linux.
    pub fn take(processes: &[(&'static str, u32)]) -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let (total, busy) = parse_machine_ticks(&stat)?;
        let processes = processes
            .iter()
            .map(|&(name, pid)| {
                let ticks =
                    std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|s| parse_process_ticks(&s));
                (name, pid, ticks.unwrap_or(0))
            })
            .collect();
        Some(Self { total, busy, processes })
    }

    /// The ticks `pid` had used when the snapshot was taken.
    pub fn ticks_of(&self, pid: u32) -> Option<u64> {
        self.processes.iter().find(|(_, p, _)| *p == pid).map(|(_, _, ticks)| *ticks)
    }

    /// "server 96%, bench 61%, everything else 31% (of 200%)" since `self`.
    pub fn usage_since(&self, later: &Self, cores: usize) -> String {
        let total = later.total.saturating_sub(self.total).max(1) as f64;
        let capacity = 100.0 * cores as f64;
        let share = |ticks: u64| capacity * ticks as f64 / total;
        let mut ours = 0;
        let mut parts: Vec<String> = later
            .processes
            .iter()
            .map(|(name, pid, ticks)| {
                let before = self.processes.iter().find(|(_, p, _)| p == pid).map_or(0, |(_, _, t)| *t);
                let used = ticks.saturating_sub(before);
                ours += used;
                format!("{name} {:.0}%", share(used))
            })
            .collect();
        let others = later.busy.saturating_sub(self.busy).saturating_sub(ours);
        parts.push(format!("everything else {:.0}%", share(others)));
        format!("{} (of {capacity:.0}%)", parts.join(", "))
    }
}

/// (all ticks, busy ticks incl. steal) from the `cpu` line of `/proc/stat`.
fn parse_machine_ticks(stat: &str) -> Option<(u64, u64)> {
    let fields: Vec<u64> =
        stat.lines().next()?.strip_prefix("cpu ")?.split_whitespace().filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let [user, nice, system, idle, iowait, irq, softirq, steal, ..] = fields[..] else { return None };
    let busy = user + nice + system + irq + softirq + steal;
    Some((busy + idle + iowait, busy))
}

/// utime + stime of `/proc/<pid>/stat` (all threads).
fn parse_process_ticks(stat: &str) -> Option<u64> {
    // The command name may hold spaces and parentheses; the fields follow the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

pub fn ms(duration: Duration) -> String {
    let millis = duration.as_secs_f64() * 1000.0;
    if millis < 10.0 { format!("{millis:.2} ms") } else { format!("{millis:.1} ms") }
}

pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

pub fn percent(part: f64, whole: f64) -> String {
    if whole > 0.0 { format!("{:.0}%", 100.0 * part / whole) } else { "n/a".to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&samples, 0.5), Duration::from_millis(50));
        assert_eq!(percentile(&samples, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&samples, 1.0), Duration::from_millis(100));
        assert_eq!(percentile(&samples[..1], 0.99), Duration::from_millis(1));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }

    #[test]
    fn memory_comes_from_the_status_file() {
        let status = "Name:\tidentity-server\nVmHWM:\t   51200 kB\nVmRSS:\t   20480 kB\nThreads:\t5\n";
        assert_eq!(parse_status(status), Some(Memory { rss_kib: 20_480, peak_kib: 51_200 }));
        assert_eq!(parse_status("Name:\tx\n"), None);
    }

    #[test]
    fn cpu_ticks_come_from_proc_stat() {
        assert_eq!(parse_machine_ticks("cpu  100 0 50 800 10 0 5 15 0 0\ncpu0 1 2 3\n"), Some((980, 170)));
        let process = "4242 (a (weird) name) S 1 4242 1 0 -1 4194304 100 0 0 0 70 30 0 0 20 0 1 0 494414";
        assert_eq!(parse_process_ticks(process), Some(100));
    }

    #[test]
    fn usage_is_split_between_the_processes_and_everything_else() {
        let before = CpuSnapshot { total: 0, busy: 0, processes: vec![("server", 1, 0)] };
        let after = CpuSnapshot { total: 200, busy: 150, processes: vec![("server", 1, 100)] };
        assert_eq!(before.usage_since(&after, 2), "server 100%, everything else 50% (of 200%)");
    }

    #[test]
    fn this_process_has_a_resident_size() {
        let memory = memory_of(std::process::id()).unwrap();
        assert!(memory.rss_kib > 0 && memory.peak_kib >= memory.rss_kib);
    }
}
