//! CPU time and memory of the server (by pid) and of the generator itself, from `/proc`.

use std::time::Instant;

/// Clock ticks per second of `/proc/*/stat` times (USER_HZ: 100 on every Linux architecture
/// that matters; the kernel ABI fixes it independently of the scheduler tick).
const TICKS_PER_S: f64 = 100.0;

/// One reading of a process.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    /// When it was taken.
    pub at: Instant,
    /// utime + stime, in ticks.
    pub cpu_ticks: u64,
    /// VmRSS in KiB.
    pub rss_kb: Option<u64>,
    /// Peak resident set size over the process' life (`VmHWM`), KB.
    pub rss_peak_kb: Option<u64>,
    /// RssAnon in KiB (heap and stacks: what connections cost in user space).
    pub rss_anon_kb: Option<u64>,
    /// Threads.
    pub threads: Option<u64>,
    /// Busy ticks of the whole machine (all CPUs; only in the generator's samples).
    pub machine_busy_ticks: u64,
    /// Softirq ticks of the whole machine (`/proc/stat`; only in the generator's samples).
    /// Loopback TCP does much of its work in softirq, which Linux does not charge to the
    /// process it ran for: it is part of `other_cpu_s`.
    pub machine_softirq_ticks: u64,
}

impl Sample {
    /// CPU seconds between two samples.
    pub(crate) fn cpu_s_since(&self, earlier: &Sample) -> f64 {
        self.cpu_ticks.saturating_sub(earlier.cpu_ticks) as f64 / TICKS_PER_S
    }
}

/// Which process.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Who {
    /// The process with this pid.
    Pid(u32),
    /// This process.
    Myself,
}

impl Who {
    fn dir(self) -> String {
        match self {
            Who::Pid(p) => format!("/proc/{p}"),
            Who::Myself => "/proc/self".into(),
        }
    }

    /// Reads utime + stime and the memory lines.
    pub(crate) fn sample(self) -> Result<Sample, String> {
        let dir = self.dir();
        let at = Instant::now();
        let stat = std::fs::read_to_string(format!("{dir}/stat"))
            .map_err(|e| format!("cannot read {dir}/stat: {e}"))?;
        // Fields after the command name (which may contain spaces and parentheses).
        let rest = stat
            .rsplit_once(')')
            .map(|(_, r)| r)
            .ok_or_else(|| format!("unexpected {dir}/stat"))?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // rest[0] is field 3 (state); utime and stime are fields 14 and 15.
        let num = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
        let cpu_ticks = num(11)
            .zip(num(12))
            .map(|(u, s)| u + s)
            .ok_or_else(|| format!("unexpected {dir}/stat"))?;
        let status = std::fs::read_to_string(format!("{dir}/status")).unwrap_or_default();
        let field = |name: &str| {
            status.lines().find_map(|l| {
                l.strip_prefix(name)?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
        };
        Ok(Sample {
            at,
            cpu_ticks,
            rss_kb: field("VmRSS:"),
            rss_peak_kb: field("VmHWM:"),
            rss_anon_kb: field("RssAnon:"),
            threads: field("Threads:"),
            machine_busy_ticks: 0,
            machine_softirq_ticks: 0,
        })
    }
}

/// Samples the server when a pid was given.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Probe {
    /// The server, if known.
    pub server: Option<u32>,
}

impl Probe {
    /// Checks that the pid can be read.
    pub(crate) fn new(pid: Option<u32>) -> Result<Probe, String> {
        if let Some(p) = pid {
            Who::Pid(p)
                .sample()
                .map_err(|e| format!("--pid {p}: {e}"))?;
        }
        Ok(Probe { server: pid })
    }

    /// The server's reading (`None` without a pid or if it exited).
    pub(crate) fn server(&self) -> Option<Sample> {
        self.server.and_then(|p| Who::Pid(p).sample().ok())
    }

    /// The generator's reading.
    /// The generator's reading, with the machine's busy time.
    pub(crate) fn myself(&self) -> Sample {
        let mut s = Who::Myself.sample().unwrap_or(Sample {
            at: Instant::now(),
            cpu_ticks: 0,
            rss_kb: None,
            rss_peak_kb: None,
            rss_anon_kb: None,
            threads: None,
            machine_busy_ticks: 0,
            machine_softirq_ticks: 0,
        });
        (s.machine_busy_ticks, s.machine_softirq_ticks) = machine_busy_ticks();
        s
    }
}

/// Ticks all CPUs spent busy since boot (`/proc/stat`: everything but idle and iowait), and of
/// those in softirq.
fn machine_busy_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = stat.lines().next().and_then(|l| l.strip_prefix("cpu ")) else {
        return (0, 0);
    };
    let v: Vec<u64> = cpu
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let total: u64 = v.iter().take(8).sum();
    (
        total.saturating_sub(v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0)),
        v.get(6).copied().unwrap_or(0),
    )
}

/// Makes sure this process may open `needed` more file descriptors: raises the soft
/// `RLIMIT_NOFILE` up to the hard limit when that is enough, and says what to do otherwise.
pub(crate) fn ensure_fds(needed: u64) -> Result<u64, String> {
    let want = needed + 64;
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)
        .map_err(|e| format!("cannot read the open-files limit: {e}"))?;
    if soft >= want {
        return Ok(soft);
    }
    if hard >= want {
        rlimit::setrlimit(rlimit::Resource::NOFILE, want, hard)
            .map_err(|e| format!("cannot raise the open-files limit to {want}: {e}"))?;
        return Ok(want);
    }
    Err(format!(
        "{needed} connections need {want} file descriptors but the hard limit is {hard} \
         (raise it, e.g. `ulimit -Hn {want}; ulimit -n {want}` as root, for the server too)"
    ))
}
