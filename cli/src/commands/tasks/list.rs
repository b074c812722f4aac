//! `tasks ls` (every task with its pid and status) and `tasks ps` (a task's processes).

use berth_proto::containerd::runc::v1::ProcessDetails;
use berth_proto::containerd::services::tasks::v1::{ListPidsRequest, ListTasksRequest};
use berth_proto::containerd::v1::types::{Process, ProcessInfo};

use super::status_text;
use crate::context::Context;
use crate::error::CliError;
use crate::output::{print_json, timestamp_text, Format, Table};

/// Arguments of `tasks ls`.
#[derive(Debug, clap::Args)]
pub struct LsArgs {
    /// Print only the task ids.
    #[arg(short, long)]
    pub quiet: bool,
    /// A filter such as `status==running` or `id==c1`.
    #[arg(long)]
    pub filter: Option<String>,
}

/// Arguments of `tasks ps`.
#[derive(Debug, clap::Args)]
pub struct PsArgs {
    /// The task whose processes to list.
    pub id: String,
}

/// Lists tasks: `TASK PID STATUS`, as ctr prints them.
pub async fn ls(context: &Context, args: LsArgs) -> Result<(), CliError> {
    let api = context.api().await?;
    let mut tasks = api
        .tasks()
        .list(ListTasksRequest {
            filter: args.filter.unwrap_or_default(),
        })
        .await
        .map_err(CliError::rpc("listing tasks"))?
        .into_inner()
        .tasks;
    tasks.sort_by(|a, b| task_id(a).cmp(task_id(b)));
    match context.format {
        Format::Json => print_json(&serde_json::Value::Array(
            tasks
                .iter()
                .map(|task| {
                    let stopped =
                        task.status == berth_proto::containerd::v1::types::Status::Stopped as i32;
                    serde_json::json!({
                        "id": task_id(task),
                        "pid": task.pid,
                        "status": status_text(task.status),
                        "terminal": task.terminal,
                        "exit_status": stopped.then_some(task.exit_status),
                        "exited_at": stopped.then(|| timestamp_text(task.exited_at.as_ref())),
                    })
                })
                .collect(),
        )),
        Format::Table if args.quiet => {
            for task in &tasks {
                println!("{}", task_id(task));
            }
        }
        Format::Table => {
            let mut table = Table::new(&["TASK", "PID", "STATUS"]);
            for task in &tasks {
                table.row(vec![
                    task_id(task).to_string(),
                    task.pid.to_string(),
                    status_text(task.status).to_string(),
                ]);
            }
            table.print();
        }
    }
    Ok(())
}

/// A listed task's id: `id` as ctr prints it (containerd leaves `container_id` empty in
/// listings), else `container_id`.
fn task_id(task: &Process) -> &str {
    if task.id.is_empty() {
        &task.container_id
    } else {
        &task.id
    }
}

/// The exec id a runtime reports for a process, if it is an exec.
fn exec_id_of(process: &ProcessInfo) -> Option<String> {
    let info = process.info.as_ref()?;
    berth_proto::any::unpack::<ProcessDetails>(info)
        .ok()
        .map(|details| details.exec_id)
        .filter(|id| !id.is_empty())
}

/// Lists the processes of a task: `PID INFO`, INFO naming the exec a process belongs to.
pub async fn ps(context: &Context, args: PsArgs) -> Result<(), CliError> {
    let api = context.api().await?;
    let mut processes = api
        .tasks()
        .list_pids(ListPidsRequest {
            container_id: args.id.clone(),
        })
        .await
        .map_err(CliError::rpc(format!(
            "listing the processes of task {}",
            args.id
        )))?
        .into_inner()
        .processes;
    processes.sort_by_key(|p| p.pid);
    match context.format {
        Format::Json => print_json(&serde_json::Value::Array(
            processes
                .iter()
                .map(|p| serde_json::json!({ "pid": p.pid, "exec_id": exec_id_of(p) }))
                .collect(),
        )),
        Format::Table => {
            let mut table = Table::new(&["PID", "INFO"]);
            for process in &processes {
                let info = exec_id_of(process)
                    .map(|id| format!("exec_id={id}"))
                    .unwrap_or_else(|| "-".to_string());
                table.row(vec![process.pid.to_string(), info]);
            }
            table.print();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_is_listed_by_its_id_or_else_its_container_id() {
        let from_containerd = Process {
            id: "t1".into(),
            ..Default::default()
        };
        assert_eq!(task_id(&from_containerd), "t1");
        let only_container = Process {
            container_id: "t2".into(),
            ..Default::default()
        };
        assert_eq!(task_id(&only_container), "t2");
    }

    #[test]
    fn exec_processes_are_named_and_others_are_not() {
        let exec = ProcessInfo {
            pid: 7,
            info: Some(berth_proto::any::pack(&ProcessDetails {
                exec_id: "e1".into(),
            })),
        };
        assert_eq!(exec_id_of(&exec).as_deref(), Some("e1"));
        let init = ProcessInfo { pid: 1, info: None };
        assert_eq!(exec_id_of(&init), None);
        let foreign = ProcessInfo {
            pid: 2,
            info: Some(prost_types::Any {
                type_url: "something.Else".into(),
                value: vec![1, 2, 3],
            }),
        };
        assert_eq!(exec_id_of(&foreign), None);
    }
}
