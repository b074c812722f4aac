//! Task statistics: `runc events --stats` output (berth-runtime's [`Stats`]) turned into the
//! `io.containerd.cgroups.v1.Metrics` message that ctr's `tasks metrics` decodes.

use berth_proto::io::containerd::cgroups::v1 as cg;
use berth_runtime::{BlkioEntry, MemoryEntry, Stats};

/// The cgroup v1 metrics message for `stats`.
pub(crate) fn metrics_of(stats: &Stats) -> cg::Metrics {
    let raw = |key: &str| stats.memory.raw.get(key).copied().unwrap_or(0);
    let mut hugetlb: Vec<cg::HugetlbStat> = stats
        .hugetlb
        .iter()
        .map(|(pagesize, entry)| cg::HugetlbStat {
            usage: entry.usage,
            max: entry.max,
            failcnt: entry.failcnt,
            pagesize: pagesize.clone(),
        })
        .collect();
    hugetlb.sort_by(|a, b| a.pagesize.cmp(&b.pagesize));
    let blkio = &stats.blkio;
    cg::Metrics {
        hugetlb,
        pids: Some(cg::PidsStat {
            current: stats.pids.current,
            limit: stats.pids.limit,
        }),
        cpu: Some(cg::CpuStat {
            usage: Some(cg::CpuUsage {
                total: stats.cpu.usage.total,
                kernel: stats.cpu.usage.kernel,
                user: stats.cpu.usage.user,
                per_cpu: stats.cpu.usage.percpu.clone(),
            }),
            throttling: Some(cg::Throttle {
                periods: stats.cpu.throttling.periods,
                throttled_periods: stats.cpu.throttling.throttled_periods,
                throttled_time: stats.cpu.throttling.throttled_time,
            }),
        }),
        memory: Some(cg::MemoryStat {
            cache: stats.memory.cache,
            rss: raw("rss"),
            rss_huge: raw("rss_huge"),
            mapped_file: raw("mapped_file"),
            dirty: raw("dirty"),
            writeback: raw("writeback"),
            pg_pg_in: raw("pgpgin"),
            pg_pg_out: raw("pgpgout"),
            pg_fault: raw("pgfault"),
            pg_maj_fault: raw("pgmajfault"),
            inactive_anon: raw("inactive_anon"),
            active_anon: raw("active_anon"),
            inactive_file: raw("inactive_file"),
            active_file: raw("active_file"),
            unevictable: raw("unevictable"),
            hierarchical_memory_limit: raw("hierarchical_memory_limit"),
            hierarchical_swap_limit: raw("hierarchical_memsw_limit"),
            total_cache: raw("total_cache"),
            total_rss: raw("total_rss"),
            total_rss_huge: raw("total_rss_huge"),
            total_mapped_file: raw("total_mapped_file"),
            total_dirty: raw("total_dirty"),
            total_writeback: raw("total_writeback"),
            total_pg_pg_in: raw("total_pgpgin"),
            total_pg_pg_out: raw("total_pgpgout"),
            total_pg_fault: raw("total_pgfault"),
            total_pg_maj_fault: raw("total_pgmajfault"),
            total_inactive_anon: raw("total_inactive_anon"),
            total_active_anon: raw("total_active_anon"),
            total_inactive_file: raw("total_inactive_file"),
            total_active_file: raw("total_active_file"),
            total_unevictable: raw("total_unevictable"),
            usage: Some(memory_entry(&stats.memory.usage)),
            swap: Some(memory_entry(&stats.memory.swap)),
            kernel: Some(memory_entry(&stats.memory.kernel)),
            kernel_tcp: Some(memory_entry(&stats.memory.kernel_tcp)),
        }),
        blkio: Some(cg::BlkIoStat {
            io_service_bytes_recursive: blkio_entries(&blkio.io_service_bytes_recursive),
            io_serviced_recursive: blkio_entries(&blkio.io_serviced_recursive),
            io_queued_recursive: blkio_entries(&blkio.io_queued_recursive),
            io_service_time_recursive: blkio_entries(&blkio.io_service_time_recursive),
            io_wait_time_recursive: blkio_entries(&blkio.io_wait_time_recursive),
            io_merged_recursive: blkio_entries(&blkio.io_merged_recursive),
            io_time_recursive: blkio_entries(&blkio.io_time_recursive),
            sectors_recursive: blkio_entries(&blkio.sectors_recursive),
        }),
        ..cg::Metrics::default()
    }
}

fn memory_entry(entry: &MemoryEntry) -> cg::MemoryEntry {
    cg::MemoryEntry {
        limit: entry.limit,
        usage: entry.usage,
        max: entry.max,
        failcnt: entry.failcnt,
    }
}

fn blkio_entries(entries: &[BlkioEntry]) -> Vec<cg::BlkIoEntry> {
    entries
        .iter()
        .map(|entry| cg::BlkIoEntry {
            op: entry.op.clone(),
            device: String::new(),
            major: entry.major,
            minor: entry.minor,
            value: entry.value,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runc_stats_fill_the_v1_metrics() {
        let output = br#"{"type":"stats","id":"c1","data":{"cpu":{"usage":{"total":47,"percpu":[40,7],"kernel":20,"user":27},"throttling":{"periods":3,"throttledPeriods":1,"throttledTime":99}},"memory":{"cache":12288,"usage":{"limit":1000,"usage":520,"max":600,"failcnt":2},"raw":{"rss":57344,"total_pgfault":9,"hierarchical_memsw_limit":5}},"pids":{"current":1,"limit":10},"blkio":{"ioServiceBytesRecursive":[{"major":8,"minor":0,"op":"Read","value":4096}]},"hugetlb":{"2MB":{"usage":1,"max":2,"failcnt":0}}}}"#;
        let stats = Stats::from_events_output(output).unwrap();
        let metrics = metrics_of(&stats);
        let cpu = metrics.cpu.unwrap();
        assert_eq!(cpu.usage.as_ref().unwrap().per_cpu, vec![40, 7]);
        assert_eq!(cpu.throttling.unwrap().throttled_time, 99);
        let memory = metrics.memory.unwrap();
        assert_eq!(memory.rss, 57344);
        assert_eq!(memory.total_pg_fault, 9);
        assert_eq!(memory.hierarchical_swap_limit, 5);
        assert_eq!(memory.usage.unwrap().failcnt, 2);
        assert_eq!(metrics.pids.unwrap().limit, 10);
        assert_eq!(
            metrics.blkio.unwrap().io_service_bytes_recursive[0].value,
            4096
        );
        assert_eq!(metrics.hugetlb[0].pagesize, "2MB");
    }
}
