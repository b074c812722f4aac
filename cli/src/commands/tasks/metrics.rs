//! `tasks metrics`: a task's cgroup statistics, decoded from the cgroups v1 or v2
//! message the daemon sends, and printed with the names of the cgroup files they come
//! from (`memory.usage_in_bytes`, `cpu.usage_usec`, …) as ctr prints them.

use berth_proto::containerd::services::tasks::v1::{GetRequest, MetricsRequest};
use berth_proto::containerd::types::Metric;
use berth_proto::io::containerd::cgroups::{v1, v2};
use serde_json::{json, Value};

use crate::context::Context;
use crate::error::CliError;
use crate::output::{print_json, timestamp_text, Format, Table};

/// Arguments of `tasks metrics`.
#[derive(Debug, clap::Args)]
pub struct MetricsArgs {
    /// The task.
    pub id: String,
}

/// One metric: its name and value (a number, or a list of numbers).
type Row = (String, Value);

/// The rows of a cgroups v1 message.
fn v1_rows(metrics: &v1::Metrics) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    let mut add = |name: &str, value: Value| rows.push((name.to_string(), value));
    if let Some(memory) = &metrics.memory {
        let usage = memory.usage.unwrap_or_default();
        add("memory.usage_in_bytes", json!(usage.usage));
        add("memory.limit_in_bytes", json!(usage.limit));
        add("memory.max_usage_in_bytes", json!(usage.max));
        add("memory.failcnt", json!(usage.failcnt));
        add("memory.stat.cache", json!(memory.cache));
        add("memory.stat.rss", json!(memory.rss));
        add("memory.stat.mapped_file", json!(memory.mapped_file));
        if let Some(swap) = memory.swap {
            add("memory.memsw.usage_in_bytes", json!(swap.usage));
            add("memory.memsw.limit_in_bytes", json!(swap.limit));
        }
    }
    if let Some(oom) = &metrics.memory_oom_control {
        add("memory.oom_control.oom_kill", json!(oom.oom_kill));
        add("memory.oom_control.under_oom", json!(oom.under_oom));
    }
    if let Some(cpu) = &metrics.cpu {
        if let Some(usage) = &cpu.usage {
            add("cpuacct.usage", json!(usage.total));
            add("cpuacct.usage_percpu", json!(usage.per_cpu));
            add("cpuacct.usage_user", json!(usage.user));
            add("cpuacct.usage_sys", json!(usage.kernel));
        }
        if let Some(throttling) = &cpu.throttling {
            add("cpu.stat.nr_periods", json!(throttling.periods));
            add("cpu.stat.nr_throttled", json!(throttling.throttled_periods));
            add("cpu.stat.throttled_time", json!(throttling.throttled_time));
        }
    }
    if let Some(pids) = &metrics.pids {
        add("pids.current", json!(pids.current));
        add("pids.limit", json!(pids.limit));
    }
    rows
}

/// The rows of a cgroups v2 message.
fn v2_rows(metrics: &v2::Metrics) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    let mut add = |name: &str, value: u64| rows.push((name.to_string(), json!(value)));
    if let Some(pids) = &metrics.pids {
        add("pids.current", pids.current);
        add("pids.limit", pids.limit);
    }
    if let Some(cpu) = &metrics.cpu {
        add("cpu.usage_usec", cpu.usage_usec);
        add("cpu.user_usec", cpu.user_usec);
        add("cpu.system_usec", cpu.system_usec);
        add("cpu.nr_periods", cpu.nr_periods);
        add("cpu.nr_throttled", cpu.nr_throttled);
        add("cpu.throttled_usec", cpu.throttled_usec);
    }
    if let Some(memory) = &metrics.memory {
        add("memory.usage", memory.usage);
        add("memory.usage_limit", memory.usage_limit);
        add("memory.swap_usage", memory.swap_usage);
        add("memory.swap_limit", memory.swap_limit);
        add("memory.anon", memory.anon);
        add("memory.file", memory.file);
    }
    if let Some(events) = &metrics.memory_events {
        add("memory.events.oom", events.oom);
        add("memory.events.oom_kill", events.oom_kill);
    }
    rows
}

/// Decodes a metric's payload: its type name and rows.
fn decode(metric: &Metric) -> Result<(String, Vec<Row>), String> {
    let Some(data) = &metric.data else {
        return Err("the daemon sent a metric without data".into());
    };
    if berth_proto::any::is::<v1::Metrics>(&data.type_url) {
        let metrics = berth_proto::any::unpack::<v1::Metrics>(data).map_err(|e| e.to_string())?;
        return Ok((data.type_url.clone(), v1_rows(&metrics)));
    }
    if berth_proto::any::is::<v2::Metrics>(&data.type_url) {
        let metrics = berth_proto::any::unpack::<v2::Metrics>(data).map_err(|e| e.to_string())?;
        return Ok((data.type_url.clone(), v2_rows(&metrics)));
    }
    Err(format!(
        "metrics of type {:?} cannot be shown",
        data.type_url
    ))
}

/// A value as the table shows it: numbers as they are, lists as `[a b c]`.
fn cell(value: &Value) -> String {
    match value {
        Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        ),
        other => other.to_string(),
    }
}

/// Prints the metrics of one task.
pub async fn metrics(context: &Context, args: MetricsArgs) -> Result<(), CliError> {
    let api = context.api().await?;
    let reply = api
        .tasks()
        .metrics(MetricsRequest {
            filters: vec![format!("id=={}", args.id)],
        })
        .await
        .map_err(CliError::rpc(format!(
            "reading the metrics of task {}",
            args.id
        )))?
        .into_inner();
    let Some(metric) = reply.metrics.into_iter().find(|m| m.id == args.id) else {
        // Say why: a task that does not exist is NotFound from the daemon itself.
        api.tasks()
            .get(GetRequest {
                container_id: args.id.clone(),
                exec_id: String::new(),
            })
            .await
            .map_err(CliError::rpc(format!(
                "reading the metrics of task {}",
                args.id
            )))?;
        return Err(CliError::Failed(format!(
            "task {}: the daemon has no metrics for it (is it running?)",
            args.id
        )));
    };
    let (kind, rows) =
        decode(&metric).map_err(|e| CliError::Failed(format!("task {}: {e}", args.id)))?;
    let timestamp = timestamp_text(metric.timestamp.as_ref());
    match context.format {
        Format::Json => {
            let values: serde_json::Map<String, Value> = rows.into_iter().collect();
            print_json(&json!({
                "id": metric.id,
                "timestamp": timestamp,
                "type": kind,
                "metrics": values,
            }));
        }
        Format::Table => {
            let mut header = Table::new(&["ID", "TIMESTAMP"]);
            header.row(vec![metric.id.clone(), timestamp]);
            header.print();
            println!();
            let mut table = Table::new(&["METRIC", "VALUE"]);
            for (name, value) in &rows {
                table.row(vec![name.clone(), cell(value)]);
            }
            table.print();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(data: prost_types::Any) -> Metric {
        Metric {
            timestamp: None,
            id: "t1".into(),
            data: Some(data),
        }
    }

    #[test]
    fn cgroups_v1_metrics_are_named_as_ctr_names_them() {
        let v1 = v1::Metrics {
            pids: Some(v1::PidsStat {
                current: 1,
                limit: 32,
            }),
            memory: Some(v1::MemoryStat {
                cache: 4096,
                usage: Some(v1::MemoryEntry {
                    usage: 1 << 20,
                    limit: 64 << 20,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            cpu: Some(v1::CpuStat {
                usage: Some(v1::CpuUsage {
                    total: 500,
                    per_cpu: vec![200, 300],
                    ..Default::default()
                }),
                throttling: None,
            }),
            ..Default::default()
        };
        let (kind, rows) = decode(&metric(berth_proto::any::pack(&v1))).unwrap();
        assert_eq!(kind, "io.containerd.cgroups.v1.Metrics");
        let find = |name: &str| rows.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        assert_eq!(find("pids.current"), Some(json!(1)));
        assert_eq!(find("pids.limit"), Some(json!(32)));
        assert_eq!(find("memory.usage_in_bytes"), Some(json!(1 << 20)));
        assert_eq!(find("memory.limit_in_bytes"), Some(json!(64 << 20)));
        assert_eq!(find("memory.stat.cache"), Some(json!(4096)));
        assert_eq!(cell(&find("cpuacct.usage_percpu").unwrap()), "[200 300]");
    }

    #[test]
    fn cgroups_v2_metrics_are_decoded() {
        let v2 = v2::Metrics {
            pids: Some(v2::PidsStat {
                current: 3,
                limit: 0,
            }),
            memory: Some(v2::MemoryStat {
                usage: 2048,
                usage_limit: 4096,
                ..Default::default()
            }),
            ..Default::default()
        };
        let (_, rows) = decode(&metric(berth_proto::any::pack(&v2))).unwrap();
        assert!(rows.contains(&("pids.current".to_string(), json!(3))));
        assert!(rows.contains(&("memory.usage_limit".to_string(), json!(4096))));
    }

    #[test]
    fn unknown_payloads_are_a_clear_error() {
        let err = decode(&metric(prost_types::Any {
            type_url: "windows.Stats".into(),
            value: vec![],
        }))
        .unwrap_err();
        assert!(err.contains("windows.Stats"), "{err}");
        let empty = Metric::default();
        assert!(decode(&empty).is_err());
    }
}
