//! berth-mkimage: writes the test images as OCI archives for `ctr images import`.
//!
//! ```text
//! berth-mkimage busybox OUT.tar [NAME]     one layer from the host's /bin/busybox
//! berth-mkimage layers N OUT.tar [NAME]    N layers with whiteouts and opaque dirs
//! berth-mkimage multiarch OUT.tar [NAME]   an index of linux/amd64 (busybox) and linux/arm64
//! ```

use std::path::Path;

use anyhow::{bail, Context};
use berth_tests::fixtures::{
    busybox_oci_archive, many_layers_archive, multiarch_oci_archive, BuiltImage, MultiarchImage,
};

const USAGE: &str = "usage: berth-mkimage busybox OUT.tar [NAME]\n       \
                     berth-mkimage layers N OUT.tar [NAME]\n       \
                     berth-mkimage multiarch OUT.tar [NAME]";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let image = match args.as_slice() {
        ["busybox", out, rest @ ..] if rest.len() <= 1 => {
            let name = rest.first().copied().unwrap_or("localhost/busybox:latest");
            busybox_oci_archive(Path::new(out), name).with_context(|| format!("writing {out}"))?
        }
        ["layers", count, out, rest @ ..] if rest.len() <= 1 => {
            let count: usize = count
                .parse()
                .with_context(|| format!("layer count {count:?}"))?;
            if count == 0 {
                bail!("an image needs at least one layer");
            }
            let default_name = format!("localhost/layers{count}:latest");
            let name = rest.first().copied().unwrap_or(&default_name);
            many_layers_archive(Path::new(out), name, count)
                .with_context(|| format!("writing {out}"))?
                .0
        }
        ["multiarch", out, rest @ ..] if rest.len() <= 1 => {
            let name = rest
                .first()
                .copied()
                .unwrap_or("localhost/multiarch:latest");
            let image = multiarch_oci_archive(Path::new(out), name)
                .with_context(|| format!("writing {out}"))?;
            report_multiarch(&image);
            return Ok(());
        }
        _ => bail!("{USAGE}"),
    };
    report(&image);
    Ok(())
}

/// Prints what was written, one `key: value` a line.
fn report(image: &BuiltImage) {
    println!("name: {}", image.name);
    println!("manifest: {}", image.manifest_digest);
    println!("config: {}", image.config_digest);
    println!("layers: {}", image.layer_digests.len());
    println!("size: {}", image.total_size());
}

/// Prints what a multi-platform archive holds, one `key: value` a line.
fn report_multiarch(image: &MultiarchImage) {
    println!("name: {}", image.name);
    println!("index: {}", image.index_digest);
    for (platform, built) in &image.images {
        println!("manifest {platform}: {}", built.manifest_digest);
    }
    println!("size: {}", image.total_size());
}
