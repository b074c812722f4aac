//! What a container needs of its image: the process defaults of its config and the
//! snapshot of its top layer (its chain ID), unpacked for the snapshotter if it is not
//! yet (an image pulled or imported without unpacking, or for another snapshotter).

use berth_client::image::{is_unpacked, resolve_named_image};
use berth_client::oci::ProcessConfig;
use berth_client::platform::Platform;
use berth_client::progress::Progress;
use berth_client::unpack::unpack_image;
use berth_client::{Api, ClientError};
use berth_runtime::oci_spec::image::Config as ImageConfig;

use crate::error::CliError;

/// The parts of an image a container is made from.
#[derive(Debug, Clone)]
pub struct ImageToRun {
    /// The image's process defaults (`config` of its config), if it has any.
    pub config: Option<ImageConfig>,
    /// The chain ID of its top layer: the snapshot a container's snapshot is made on.
    pub top_layer: String,
}

/// The image's process defaults in the OCI types a spec is built from.
fn process_defaults(config: &ProcessConfig) -> ImageConfig {
    let mut defaults = ImageConfig::default();
    defaults
        .set_user(config.user.clone())
        .set_env(config.env.clone())
        .set_entrypoint(config.entrypoint.clone())
        .set_cmd(config.cmd.clone())
        .set_working_dir(config.working_dir.clone());
    defaults
}

/// Reads image `name` from the store for this host's platform and makes sure its layers
/// are unpacked in `snapshotter`, unpacking them if they are not.
pub async fn image_to_run(
    api: &Api,
    name: &str,
    snapshotter: &str,
) -> Result<ImageToRun, CliError> {
    let failed = |e: ClientError| match e {
        // The record itself is missing (a missing blob of it is reported as it is).
        ClientError::NotFound { what } if what.starts_with("image ") => CliError::Failed(format!(
            "image {name} not found: pull or import it first (berthctl images ls lists the images)"
        )),
        other => CliError::Failed(format!("image {name}: {other}")),
    };
    let (_, image) = resolve_named_image(api, name, &Platform::host())
        .await
        .map_err(failed)?;
    let top_layer = image
        .top_chain_id()
        .ok_or_else(|| CliError::Failed(format!("image {name} has no layers")))?;
    if !is_unpacked(api, &image, snapshotter)
        .await
        .map_err(failed)?
    {
        unpack_image(api, &image, snapshotter, &Progress::none())
            .await
            .map_err(|e| {
                CliError::Failed(format!("unpacking image {name} into {snapshotter}: {e}"))
            })?;
    }
    Ok(ImageToRun {
        config: image.config.config.as_ref().map(process_defaults),
        top_layer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_defaults_carry_over() {
        let config: ProcessConfig = serde_json::from_str(
            r#"{"User":"app","Env":["A=1"],"Entrypoint":["/bin/app"],"Cmd":["--serve"],
                "WorkingDir":"/srv","Labels":{"x":"y"}}"#,
        )
        .unwrap();
        let defaults = process_defaults(&config);
        assert_eq!(defaults.user().as_deref(), Some("app"));
        assert_eq!(defaults.env().as_deref(), Some(&["A=1".to_string()][..]));
        assert_eq!(
            defaults.entrypoint().as_deref(),
            Some(&["/bin/app".to_string()][..])
        );
        assert_eq!(
            defaults.cmd().as_deref(),
            Some(&["--serve".to_string()][..])
        );
        assert_eq!(defaults.working_dir().as_deref(), Some("/srv"));
    }
}
