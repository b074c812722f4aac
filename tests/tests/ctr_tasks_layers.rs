//! A container on a 128-layer image sees exactly the files the layers leave: later
//! layers win, whiteouts delete, opaque directories hide what lies below.

use std::collections::BTreeMap;

use berth_tests::fixtures::many_layers::ExpectedNode;
use berth_tests::fixtures::many_layers_on_busybox_archive;
use berth_tests::steps::import_archive;
use berth_tests::tasks::{container_ids, TaskCleanup};
use berth_tests::{ctr_ok, unique_id, Daemon};

const LAYERS: usize = 128;
const IMAGE: &str = "localhost/layers-on-busybox:128";

/// Prints every entry under the layers' top directories, one a line: `D <path>` for a
/// directory, `F <path> <contents>` for a file, `L`/`O` for anything else (a whiteout
/// leaking through would be a character device).
const WALK: &str = r#"
walk() {
  local p
  for p in "$1"/* "$1"/.[!.]* "$1"/..?*; do
    if [ -L "$p" ]; then echo "L $p"
    elif [ -d "$p" ]; then echo "D $p"; walk "$p"
    elif [ -f "$p" ]; then echo "F $p $(cat "$p")"
    elif [ -e "$p" ]; then echo "O $p"
    fi
  done
}
for top in layers shared opq gone; do
  if [ -d "/$top" ]; then echo "D /$top"; walk "/$top"; fi
done
"#;

/// Parses WALK's output into relative path → description.
fn parse_walk(output: &str) -> BTreeMap<String, String> {
    output
        .lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let (kind, rest) = line.split_once(' ').unwrap_or((line, ""));
            let (path, contents) = match kind {
                "F" => rest.split_once(' ').unwrap_or((rest, "")),
                _ => (rest, ""),
            };
            let path = path.trim_start_matches('/').to_string();
            (path, format!("{kind} {contents}"))
        })
        .collect()
}

#[test]
fn a_container_on_a_128_layer_image_sees_exactly_the_layered_files() {
    let daemon = Daemon::start();
    let mut cleanup = TaskCleanup::new(&daemon);
    let ns = unique_id("ns");
    ctr_ok(&daemon, &["namespaces", "create", &ns]);
    let archive = daemon.dir().join("layers.tar");
    let (image, expected) = many_layers_on_busybox_archive(&archive, IMAGE, LAYERS).unwrap();
    assert_eq!(image.layer_digests.len(), LAYERS);
    import_archive(&daemon, &ns, &archive);

    cleanup.track(&ns, "deep");
    let out = ctr_ok(
        &daemon,
        &["-n", &ns, "run", "--rm", IMAGE, "deep", "sh", "-c", WALK],
    );
    let seen = parse_walk(&out);
    let wanted: BTreeMap<String, String> = expected
        .nodes
        .iter()
        .map(|(path, node)| {
            let description = match node {
                ExpectedNode::Dir => "D ".to_string(),
                ExpectedNode::File(bytes) => {
                    format!(
                        "F {}",
                        String::from_utf8_lossy(bytes).trim_end_matches('\n')
                    )
                }
            };
            (path.clone(), description)
        })
        .collect();
    let missing: Vec<_> = wanted
        .iter()
        .filter(|(p, d)| seen.get(*p) != Some(d))
        .collect();
    let unexpected: Vec<_> = seen.keys().filter(|p| !wanted.contains_key(*p)).collect();
    assert!(
        missing.is_empty() && unexpected.is_empty(),
        "missing or different: {missing:#?}\nunexpected: {unexpected:#?}"
    );

    // The busybox layer at the very bottom is there too: the shell ran from it.
    let out = ctr_ok(
        &daemon,
        &["-n", &ns, "run", "--rm", IMAGE, "deep", "cat", "/etc/group"],
    );
    assert_eq!(out, berth_tests::fixtures::busybox::GROUP);
    assert!(container_ids(&daemon, &ns).is_empty());
}
