//! berthctl's global behaviour and its small command groups: version, plugins,
//! namespaces, leases, completion; and how every error looks.

use berth_tests::berthctl::{
    berthctl, berthctl_binary, berthctl_error, berthctl_fails, berthctl_json, berthctl_ok,
    table_cells,
};
use berth_tests::ctr::run_with_timeout;
use berth_tests::steps::namespace_names;
use berth_tests::{unique_id, Daemon};

#[test]
fn version_names_client_and_server() {
    let daemon = Daemon::start();
    let text = berthctl_ok(&daemon, &["version"]);
    assert!(
        text.contains("Client:") && text.contains("Server:"),
        "{text}"
    );
    let json = berthctl_json(&daemon, &["version"]);
    assert!(
        json["client"]["version"]
            .as_str()
            .is_some_and(|v| !v.is_empty()),
        "{json}"
    );
    assert!(
        json["server"]["version"]
            .as_str()
            .is_some_and(|v| !v.is_empty()),
        "{json}"
    );
}

#[test]
fn plugins_ls_lists_the_snapshotter_and_services_as_ctr_does() {
    let daemon = Daemon::start();
    let table = berthctl_ok(&daemon, &["plugins", "ls"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["TYPE", "ID", "PLATFORMS", "STATUS"]);
    let rows = table_cells(&table);
    let overlay = rows
        .iter()
        .find(|r| r[0] == "io.containerd.snapshotter.v1" && r[1] == "overlayfs")
        .unwrap_or_else(|| panic!("no overlayfs snapshotter in:\n{table}"));
    assert_eq!(overlay[3], "ok", "{table}");
    assert!(overlay[2].starts_with("linux/"), "{table}");

    let json = berthctl_json(&daemon, &["plugins", "ls"]);
    let plugins = json.as_array().expect("an array");
    assert_eq!(plugins.len(), rows.len());
    assert!(plugins.iter().any(|p| p["type"] == "io.containerd.grpc.v1"
        && p["id"] == "images"
        && p["status"] == "ok"));

    let ids = berthctl_ok(&daemon, &["plugins", "ls", "-q"]);
    assert!(ids.lines().any(|l| l == "overlayfs"), "{ids}");
}

#[test]
fn namespaces_are_created_labelled_listed_and_removed() {
    let daemon = Daemon::start();
    let ns = unique_id("ns");
    berthctl_ok(
        &daemon,
        &["namespaces", "create", &ns, "team=infra", "tier=1"],
    );
    assert!(
        namespace_names(&daemon).contains(&ns),
        "ctr does not see {ns}"
    );

    let listed = berthctl_json(&daemon, &["namespaces", "ls"]);
    let entry = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == ns.as_str())
        .unwrap_or_else(|| panic!("{ns} not listed: {listed}"));
    assert_eq!(
        entry["labels"],
        serde_json::json!({"team": "infra", "tier": "1"})
    );

    // An empty value clears a label; the others stay.
    let labels = berthctl_ok(&daemon, &["namespaces", "label", &ns, "tier=", "owner=me"]);
    assert_eq!(labels, "owner=me\nteam=infra\n");
    let table = berthctl_ok(&daemon, &["namespaces", "ls"]);
    let row = table_cells(&table)
        .into_iter()
        .find(|r| r[0] == ns)
        .unwrap_or_else(|| panic!("{table}"));
    assert_eq!(row[1], "owner=me,team=infra");
    assert!(berthctl_ok(&daemon, &["namespaces", "ls", "-q"])
        .lines()
        .any(|l| l == ns));

    assert_eq!(
        berthctl_ok(&daemon, &["namespaces", "rm", &ns]),
        format!("{ns}\n")
    );
    assert!(!namespace_names(&daemon).contains(&ns));
}

#[test]
fn leases_are_created_with_an_expiry_listed_and_removed() {
    let daemon = Daemon::start();
    let id = unique_id("lease");
    let printed = berthctl_ok(&daemon, &["leases", "create", "--id", &id, "purpose=test"]);
    assert_eq!(printed.trim(), id);

    let leases = berthctl_json(&daemon, &["leases", "ls"]);
    let lease = leases
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} not listed: {leases}"));
    assert_eq!(lease["labels"]["purpose"], "test");
    let expires = lease["labels"]["containerd.io/gc.expire"]
        .as_str()
        .expect("a default expiry label");
    assert!(expires.ends_with('Z') && expires.len() == 20, "{expires}");

    // `--expires 0` leaves the expiry out; a generated id is printed.
    let generated = berthctl_ok(&daemon, &["leases", "create", "--expires", "0"]);
    let generated = generated.trim();
    assert!(!generated.is_empty());
    let json = berthctl_json(&daemon, &["leases", "ls", &format!("id=={generated}")]);
    assert_eq!(json.as_array().unwrap().len(), 1, "{json}");
    assert!(
        json[0]["labels"].get("containerd.io/gc.expire").is_none(),
        "{json}"
    );

    let quiet = berthctl_ok(&daemon, &["leases", "ls", "-q"]);
    assert!(quiet.lines().any(|l| l == id), "{quiet}");
    berthctl_ok(&daemon, &["leases", "rm", &id, generated]);
    assert!(berthctl_json(&daemon, &["leases", "ls"])
        .as_array()
        .unwrap()
        .is_empty());
}

#[test]
fn completion_scripts_are_printed_for_each_shell() {
    let daemon = Daemon::start();
    let bash = berthctl_ok(&daemon, &["completion", "bash"]);
    assert!(bash.contains("berthctl"), "{bash}");
    assert!(bash.contains("snapshots"), "subcommands are completed");
    for shell in ["zsh", "fish"] {
        assert!(!berthctl_ok(&daemon, &["completion", shell]).is_empty());
    }
    let failure = berthctl_fails(&daemon, &["completion", "cmd.exe"]);
    assert_eq!(failure.code, Some(2), "usage errors exit with 2");
}

#[test]
fn an_unreachable_socket_is_one_line_and_exit_code_1() {
    let daemon = Daemon::start();
    let missing = daemon.dir().join("nothing-here.sock");
    let mut cmd = std::process::Command::new(berthctl_binary());
    cmd.arg("--address").arg(&missing).args(["images", "ls"]);
    let out = run_with_timeout(cmd, std::time::Duration::from_secs(60)).expect("berthctl ran");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("berthctl: cannot connect to berthd at ")
            && stderr.contains("nothing-here.sock"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn the_environment_chooses_address_and_namespace() {
    let daemon = Daemon::start();
    let ns = unique_id("ns");
    berthctl_ok(&daemon, &["namespaces", "create", &ns]);
    let mut cmd = std::process::Command::new(berthctl_binary());
    cmd.env("BERTH_ADDRESS", daemon.socket())
        .env("BERTH_NAMESPACE", &ns)
        .args(["leases", "create", "--id", "from-env"]);
    let out = run_with_timeout(cmd, std::time::Duration::from_secs(60)).expect("berthctl ran");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let in_ns = berthctl_json(&daemon, &["-n", &ns, "leases", "ls"]);
    assert_eq!(in_ns[0]["id"], "from-env", "{in_ns}");
    assert!(berthctl_json(&daemon, &["leases", "ls"])
        .as_array()
        .unwrap()
        .is_empty());
}

#[test]
fn bad_input_is_one_line_exit_1_and_changes_nothing() {
    let daemon = Daemon::start();
    let before = namespace_names(&daemon);

    let message = berthctl_error(&daemon, &["namespaces", "create", "bad name!"]);
    assert!(
        message.starts_with("creating namespace bad name!: "),
        "{message}"
    );
    let message = berthctl_error(&daemon, &["-n", "no/slashes", "images", "ls"]);
    assert!(message.contains("no/slashes"), "{message}");
    let message = berthctl_error(&daemon, &["namespaces", "rm", "never-made"]);
    assert!(
        message.contains("never-made") && message.contains("not found"),
        "{message}"
    );
    assert_eq!(namespace_names(&daemon), before);

    // Several targets: the good one is done, each failure is named on the one line.
    let ns = unique_id("ns");
    berthctl_ok(&daemon, &["namespaces", "create", &ns]);
    let out = berthctl(&daemon, &["namespaces", "rm", "gone-1", &ns, "gone-2"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{ns}\n"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("gone-1") && stderr.contains("gone-2"),
        "{stderr}"
    );

    // A malformed label or duration is a usage error (exit 2) and nothing is created.
    let failure = berthctl_fails(&daemon, &["leases", "create", "--id", "x1", "=v"]);
    assert_eq!(failure.code, Some(2));
    assert_eq!(
        failure.message(),
        "label \"=v\" has no key: write key=value"
    );
    let failure = berthctl_fails(
        &daemon,
        &["leases", "create", "--id", "x2", "--expires", "soon"],
    );
    assert_eq!(failure.code, Some(2));
    assert!(berthctl_json(&daemon, &["leases", "ls"])
        .as_array()
        .unwrap()
        .is_empty());
}
