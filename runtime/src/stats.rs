//! Resource usage of a container as `runc events --stats` prints it: one JSON object
//! `{"type":"stats","id":...,"data":{...}}`. Absent fields read as zero, because runtimes omit
//! zero values and controllers that the host does not have.

use std::collections::HashMap;

use serde::Deserialize;

use crate::error::{Error, Result};

/// The cgroup statistics of one container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Stats {
    /// CPU time used and throttling.
    pub cpu: CpuStats,
    /// Memory usage and limits.
    pub memory: MemoryStats,
    /// Number of processes and its limit.
    pub pids: PidsStats,
    /// Block I/O counters.
    pub blkio: BlkioStats,
    /// Huge page usage, by page size (e.g. `2MB`).
    pub hugetlb: HashMap<String, HugetlbStats>,
}

/// CPU statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct CpuStats {
    /// Time used.
    pub usage: CpuUsage,
    /// CFS throttling counters.
    pub throttling: CpuThrottling,
}

/// CPU time in nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct CpuUsage {
    /// Total CPU time.
    pub total: u64,
    /// Total CPU time per CPU.
    pub percpu: Vec<u64>,
    /// Kernel-mode time per CPU.
    pub percpu_kernel: Vec<u64>,
    /// User-mode time per CPU.
    pub percpu_user: Vec<u64>,
    /// Kernel-mode time.
    pub kernel: u64,
    /// User-mode time.
    pub user: u64,
}

/// CFS throttling counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct CpuThrottling {
    /// Enforcement periods elapsed.
    pub periods: u64,
    /// Periods in which the group was throttled.
    pub throttled_periods: u64,
    /// Total time throttled, in nanoseconds.
    pub throttled_time: u64,
}

/// Memory statistics, in bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct MemoryStats {
    /// Page cache.
    pub cache: u64,
    /// Memory usage and limit.
    pub usage: MemoryEntry,
    /// Memory + swap usage and limit.
    pub swap: MemoryEntry,
    /// Kernel memory.
    pub kernel: MemoryEntry,
    /// Kernel TCP buffer memory.
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    /// The raw counters of `memory.stat`.
    pub raw: HashMap<String, u64>,
}

/// One memory counter with its limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct MemoryEntry {
    /// The limit.
    pub limit: u64,
    /// Current usage.
    pub usage: u64,
    /// Highest usage seen.
    pub max: u64,
    /// How many times the limit was hit.
    pub failcnt: u64,
}

/// Process count.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct PidsStats {
    /// Processes in the cgroup now.
    pub current: u64,
    /// The limit (0 = none).
    pub limit: u64,
}

/// Block I/O counters, one list per kind, one entry per device and operation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct BlkioStats {
    /// Bytes transferred.
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    /// Operations issued.
    pub io_serviced_recursive: Vec<BlkioEntry>,
    /// Operations queued.
    #[serde(rename = "ioQueueRecursive")]
    pub io_queued_recursive: Vec<BlkioEntry>,
    /// Time spent servicing.
    pub io_service_time_recursive: Vec<BlkioEntry>,
    /// Time spent waiting.
    pub io_wait_time_recursive: Vec<BlkioEntry>,
    /// Operations merged.
    pub io_merged_recursive: Vec<BlkioEntry>,
    /// Time with I/O in flight.
    pub io_time_recursive: Vec<BlkioEntry>,
    /// Sectors transferred.
    pub sectors_recursive: Vec<BlkioEntry>,
}

/// One block I/O counter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct BlkioEntry {
    /// Device major number.
    pub major: u64,
    /// Device minor number.
    pub minor: u64,
    /// Operation, e.g. `Read`, `Write`, `Total`.
    pub op: String,
    /// The counter.
    pub value: u64,
}

/// Huge page usage of one page size.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct HugetlbStats {
    /// Bytes in use.
    pub usage: u64,
    /// Highest usage seen.
    pub max: u64,
    /// How many times the limit was hit.
    pub failcnt: u64,
}

#[derive(Deserialize)]
struct StatsEvent {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    data: Option<Stats>,
}

impl Stats {
    /// Parses the output of `runc events --stats <id>` (the first stats event in it).
    pub fn from_events_output(bytes: &[u8]) -> Result<Stats> {
        let text = String::from_utf8_lossy(bytes);
        for line in text.lines().filter(|line| !line.trim().is_empty()) {
            let event: StatsEvent = serde_json::from_str(line)
                .map_err(|e| Error::parse("runtime events --stats output", e))?;
            if event.kind == "stats" {
                return Ok(event.data.unwrap_or_default());
            }
        }
        Err(Error::parse(
            "runtime events --stats output",
            "no stats event in it",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_cgroup_v1_stats_event() {
        let output = br#"{"type":"stats","id":"c1","data":{"cpu":{"usage":{"total":47230430,"percpu":[41769382,5461048],"percpu_kernel":[19905963,0],"percpu_user":[20000000,4000000],"kernel":20000000,"user":20000000},"throttling":{"periods":3,"throttledPeriods":1,"throttledTime":99}},"memory":{"cache":12288,"usage":{"limit":9223372036854771712,"usage":520192,"max":2510848,"failcnt":0},"swap":{"limit":1,"usage":2,"max":3,"failcnt":4},"kernelTCP":{"limit":9,"failcnt":0},"raw":{"rss":57344}},"pids":{"current":1},"blkio":{"ioServiceBytesRecursive":[{"major":8,"minor":0,"op":"Read","value":4096}]},"hugetlb":{"2MB":{"usage":0,"max":0,"failcnt":0}},"intel_rdt":{},"network_interfaces":null}}"#;
        let stats = Stats::from_events_output(output).unwrap();
        assert_eq!(stats.cpu.usage.total, 47230430);
        assert_eq!(stats.cpu.usage.percpu, vec![41769382, 5461048]);
        assert_eq!(stats.cpu.throttling.throttled_periods, 1);
        assert_eq!(stats.memory.usage.usage, 520192);
        assert_eq!(stats.memory.swap.failcnt, 4);
        assert_eq!(stats.memory.kernel_tcp.limit, 9);
        assert_eq!(stats.memory.raw["rss"], 57344);
        assert_eq!(stats.pids.current, 1);
        assert_eq!(stats.pids.limit, 0);
        assert_eq!(stats.blkio.io_service_bytes_recursive[0].op, "Read");
        assert!(stats.hugetlb.contains_key("2MB"));
    }

    #[test]
    fn output_without_a_stats_event_is_a_parse_error() {
        assert!(matches!(
            Stats::from_events_output(b""),
            Err(Error::Parse { .. })
        ));
        assert!(matches!(
            Stats::from_events_output(b"{\"type\":\"oom\",\"id\":\"c1\"}\n"),
            Err(Error::Parse { .. })
        ));
    }
}
