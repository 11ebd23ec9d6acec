//! The standard `process_*` metrics (CPU, memory, file descriptors, threads, start time), read
//! from `/proc/self` at every scrape.
//!
//! Hand-written rather than the `prometheus` crate's `process` feature: that feature pulls the
//! `procfs` crate and with it a second version of `rustix`, for seven numbers that two small
//! files and a directory listing give. The names and meanings are those of the Prometheus client
//! libraries' process collectors, so existing dashboards and alerts work unchanged. On a system
//! without `/proc` the collector exports nothing.

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Counter, Gauge, IntGauge, Opts};

/// A [`Collector`] of this process's `process_*` metrics.
pub struct ProcessCollector {
    descs: Vec<Desc>,
    cpu_seconds: Counter,
    resident_memory: IntGauge,
    virtual_memory: IntGauge,
    open_fds: IntGauge,
    max_fds: IntGauge,
    start_time: Gauge,
    threads: IntGauge,
}

/// One reading of `/proc/self`.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessStats {
    /// User + system CPU time, in seconds.
    pub cpu_seconds: f64,
    /// Resident set size, in bytes.
    pub resident_memory_bytes: i64,
    /// Virtual memory size, in bytes.
    pub virtual_memory_bytes: i64,
    /// Start time, in seconds since the Unix epoch.
    pub start_time_seconds: f64,
    /// OS threads.
    pub threads: i64,
}

impl ProcessCollector {
    /// The collector; register it once per registry.
    pub fn new() -> prometheus::Result<Self> {
        let cpu_seconds = Counter::with_opts(Opts::new(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
        ))?;
        let gauge = |name: &str, help: &str| IntGauge::with_opts(Opts::new(name, help));
        let resident_memory = gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
        )?;
        let virtual_memory = gauge(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
        )?;
        let open_fds = gauge("process_open_fds", "Number of open file descriptors.")?;
        let max_fds = gauge(
            "process_max_fds",
            "Maximum number of open file descriptors.",
        )?;
        let start_time = Gauge::with_opts(Opts::new(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
        ))?;
        let threads = gauge("process_threads", "Number of OS threads in the process.")?;
        let mut descs = Vec::new();
        descs.extend(cpu_seconds.desc().into_iter().cloned());
        for g in [
            &resident_memory,
            &virtual_memory,
            &open_fds,
            &max_fds,
            &threads,
        ] {
            descs.extend(g.desc().into_iter().cloned());
        }
        descs.extend(start_time.desc().into_iter().cloned());
        Ok(Self {
            descs,
            cpu_seconds,
            resident_memory,
            virtual_memory,
            open_fds,
            max_fds,
            start_time,
            threads,
        })
    }
}

impl Collector for ProcessCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut families = Vec::new();
        if let Some(stats) = read_stats() {
            // The counter only goes up: add what was used since the last scrape.
            let delta = stats.cpu_seconds - self.cpu_seconds.get();
            if delta > 0.0 {
                self.cpu_seconds.inc_by(delta);
            }
            self.resident_memory.set(stats.resident_memory_bytes);
            self.virtual_memory.set(stats.virtual_memory_bytes);
            self.start_time.set(stats.start_time_seconds);
            self.threads.set(stats.threads);
            families.extend(self.cpu_seconds.collect());
            families.extend(self.resident_memory.collect());
            families.extend(self.virtual_memory.collect());
            families.extend(self.start_time.collect());
            families.extend(self.threads.collect());
        }
        if let Some(open) = open_fds() {
            self.open_fds.set(open);
            families.extend(self.open_fds.collect());
        }
        if let Some(max) = max_fds() {
            self.max_fds.set(max);
            families.extend(self.max_fds.collect());
        }
        families
    }
}

/// Reads `/proc/self/stat` and the boot time from `/proc/stat`.
pub fn read_stats() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let boot = std::fs::read_to_string("/proc/stat").ok()?;
    // SAFETY: sysconf only reads a system constant.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    // `c_long` is `i64` on 64-bit Linux, `i32` elsewhere.
    #[allow(clippy::useless_conversion)]
    let page = i64::from(page);
    parse_stat(&stat, &boot, ticks as f64, page)
}

/// Parses `proc_pid_stat(5)` text: `ticks` per second of CPU and start times, `page` bytes per
/// RSS page, `proc_stat` for the boot time (`btime`).
pub fn parse_stat(stat: &str, proc_stat: &str, ticks: f64, page: i64) -> Option<ProcessStats> {
    if ticks <= 0.0 || page <= 0 {
        return None;
    }
    // The command name (field 2) is in parentheses and may itself hold spaces and parentheses:
    // the fields that follow start after the last `)`, at field 3 (`state`).
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| -> Option<f64> { fields.get(n - 3)?.parse().ok() };
    let boot_time: f64 = proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(ProcessStats {
        cpu_seconds: (field(14)? + field(15)?) / ticks,
        threads: field(20)? as i64,
        start_time_seconds: boot_time + field(22)? / ticks,
        virtual_memory_bytes: field(23)? as i64,
        resident_memory_bytes: field(24)? as i64 * page,
    })
}

fn open_fds() -> Option<i64> {
    let entries = std::fs::read_dir("/proc/self/fd").ok()?;
    // The listing holds the descriptor of the directory being read: leave it out.
    Some(entries.count() as i64 - 1)
}

fn max_fds() -> Option<i64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_max_fds(&limits)
}

/// The soft limit of `Max open files` in `/proc/self/limits` text; `unlimited` is `i64::MAX`.
pub fn parse_max_fds(limits: &str) -> Option<i64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    match soft {
        "unlimited" => Some(i64::MAX),
        n => n.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_even_with_odd_command_names() {
        let stat = "4242 (pali sade) (x)) S 1 4242 4242 0 -1 4194560 2000 0 0 0 250 50 0 0 20 0 \
                    7 0 123400 987654321 2048 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0";
        let proc_stat = "cpu  1 2 3\nbtime 1700000000\nprocesses 99\n";
        let s = parse_stat(stat, proc_stat, 100.0, 4096).unwrap();
        assert_eq!(s.cpu_seconds, 3.0);
        assert_eq!(s.threads, 7);
        assert_eq!(s.start_time_seconds, 1_700_001_234.0);
        assert_eq!(s.virtual_memory_bytes, 987_654_321);
        assert_eq!(s.resident_memory_bytes, 2048 * 4096);
        assert_eq!(parse_stat("garbage", proc_stat, 100.0, 4096), None);
        assert_eq!(parse_stat(stat, "no btime", 100.0, 4096), None);
        assert_eq!(parse_stat(stat, proc_stat, 0.0, 4096), None);
    }

    #[test]
    fn max_open_files_is_the_soft_limit() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max cpu time              unlimited            unlimited            seconds   \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(parse_max_fds(limits), Some(1024));
        assert_eq!(
            parse_max_fds(
                "Max open files            unlimited            unlimited            files"
            ),
            Some(i64::MAX)
        );
        assert_eq!(parse_max_fds("nothing"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_scrape_reads_this_process() {
        let registry = prometheus::Registry::new();
        registry
            .register(Box::new(ProcessCollector::new().unwrap()))
            .unwrap();
        let _file = std::fs::File::open("/proc/self/stat").unwrap(); // one more open fd
                                                                     // Use some CPU, so the counter (in clock ticks of 10 ms) has something to show.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut spin = 0u64;
        while read_stats().unwrap().cpu_seconds == 0.0 && std::time::Instant::now() < deadline {
            spin = std::hint::black_box(spin.wrapping_mul(31).wrapping_add(7));
        }
        let families = registry.gather();
        let value = |name: &str| -> f64 {
            let family = families
                .iter()
                .find(|f| f.name() == name)
                .unwrap_or_else(|| panic!("no {name}"));
            let m = &family.get_metric()[0];
            if name.ends_with("_total") {
                m.get_counter().get_value()
            } else {
                m.get_gauge().get_value()
            }
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(value("process_cpu_seconds_total") > 0.0);
        assert!(value("process_resident_memory_bytes") > 1_000_000.0);
        assert!(value("process_virtual_memory_bytes") >= value("process_resident_memory_bytes"));
        assert!(value("process_open_fds") >= 4.0); // stdin, stdout, stderr, the file above
        assert!(value("process_max_fds") >= value("process_open_fds"));
        let started = value("process_start_time_seconds");
        assert!(
            started <= now + 1.0 && started > now - 3600.0,
            "{started} vs {now}"
        );
        assert!(value("process_threads") >= 1.0);
    }
}
