//! Applying an OCI image's configuration (`config` of the image config JSON) to a spec: the
//! command line from `Entrypoint` and `Cmd`, the environment, the working directory and the
//! user. Nothing from the image is used as a host path: the user is resolved inside the rootfs.

use std::path::Path;

use oci_spec::image::Config as ImageConfig;
use oci_spec::runtime::Spec;

use super::options::{merge_env, process_mut, with_args, with_cwd};
use super::user::with_user;
use crate::error::{Error, Result};

/// Applies `config` to `spec` for a container whose root filesystem is at `rootfs`:
/// - command line: `Entrypoint` followed by `args` if any were given, else by `Cmd`;
///   [`Error::InvalidArgument`] if that leaves nothing to run;
/// - environment: the image's entries override the spec's (same key) or are appended;
/// - `WorkingDir`, when set, becomes the working directory;
/// - `User` is resolved against the rootfs's `/etc/passwd` and `/etc/group` (see
///   [`super::resolve_user`]); without one the process is root, still with root's supplementary
///   groups from the image.
pub fn apply_image_config(
    spec: &mut Spec,
    config: &ImageConfig,
    rootfs: &Path,
    args: &[String],
) -> Result<()> {
    let mut command: Vec<String> = config.entrypoint().clone().unwrap_or_default();
    if args.is_empty() {
        command.extend(config.cmd().clone().unwrap_or_default());
    } else {
        command.extend(args.iter().cloned());
    }
    if command.is_empty() {
        return Err(Error::InvalidArgument(
            "no command: the image has no Entrypoint or Cmd and no arguments were given".into(),
        ));
    }
    with_args(spec, command);

    if let Some(image_env) = config.env() {
        let process = process_mut(spec);
        let mut env = process.env().clone().unwrap_or_default();
        merge_env(&mut env, image_env);
        process.set_env(Some(env));
    }

    if let Some(dir) = config.working_dir().as_deref().filter(|d| !d.is_empty()) {
        with_cwd(spec, dir);
    }

    let user = config.user().as_deref().unwrap_or_default().trim();
    let user = if user.is_empty() { "0" } else { user };
    with_user(spec, rootfs, user)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{default_spec, DEFAULT_PATH_ENV};

    fn image_config(json: &str) -> ImageConfig {
        serde_json::from_str(json).unwrap()
    }

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33::/var/www:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\nwww:x:33:\nlogs:x:4:www\nwheel:x:10:root\n",
        )
        .unwrap();
        dir
    }

    fn args_of(spec: &Spec) -> Vec<String> {
        spec.process().as_ref().unwrap().args().clone().unwrap()
    }

    #[test]
    fn entrypoint_and_cmd_and_overriding_args() {
        let rootfs = rootfs();
        let config = image_config(r#"{"Entrypoint":["/bin/app","--serve"],"Cmd":["--port","80"]}"#);
        let mut spec = default_spec();
        apply_image_config(&mut spec, &config, rootfs.path(), &[]).unwrap();
        assert_eq!(args_of(&spec), ["/bin/app", "--serve", "--port", "80"]);

        let mut spec = default_spec();
        let args = vec!["--port".to_string(), "8080".to_string()];
        apply_image_config(&mut spec, &config, rootfs.path(), &args).unwrap();
        assert_eq!(args_of(&spec), ["/bin/app", "--serve", "--port", "8080"]);

        let config = image_config(r#"{"Cmd":["sh"]}"#);
        let mut spec = default_spec();
        let args = vec!["echo".to_string(), "hello".to_string()];
        apply_image_config(&mut spec, &config, rootfs.path(), &args).unwrap();
        assert_eq!(args_of(&spec), ["echo", "hello"]);
    }

    #[test]
    fn nothing_to_run_is_an_error() {
        let rootfs = rootfs();
        let mut spec = default_spec();
        let err = apply_image_config(&mut spec, &image_config("{}"), rootfs.path(), &[]);
        assert!(matches!(err, Err(Error::InvalidArgument(_))));
    }

    #[test]
    fn env_workdir_and_user() {
        let rootfs = rootfs();
        let config = image_config(
            r#"{"Env":["PATH=/app/bin:/bin","LANG=C.UTF-8"],"Cmd":["app"],
                "WorkingDir":"/var/www","User":"www"}"#,
        );
        let mut spec = default_spec();
        apply_image_config(&mut spec, &config, rootfs.path(), &[]).unwrap();
        let process = spec.process().as_ref().unwrap();
        assert_eq!(
            process.env().as_deref().unwrap(),
            ["PATH=/app/bin:/bin", "LANG=C.UTF-8"]
        );
        assert_eq!(process.cwd().to_str(), Some("/var/www"));
        assert_eq!((process.user().uid(), process.user().gid()), (33, 33));
        assert_eq!(process.user().additional_gids().as_deref(), Some(&[4][..]));
    }

    #[test]
    fn no_user_means_root_with_roots_groups_and_defaults_stay() {
        let rootfs = rootfs();
        let config = image_config(r#"{"Cmd":["sh"]}"#);
        let mut spec = default_spec();
        apply_image_config(&mut spec, &config, rootfs.path(), &[]).unwrap();
        let process = spec.process().as_ref().unwrap();
        assert_eq!((process.user().uid(), process.user().gid()), (0, 0));
        assert_eq!(process.user().additional_gids().as_deref(), Some(&[10][..]));
        assert_eq!(process.cwd().to_str(), Some("/"));
        assert_eq!(process.env().as_deref().unwrap(), [DEFAULT_PATH_ENV]);

        // An image without /etc/passwd still runs as root.
        let bare = tempfile::tempdir().unwrap();
        let mut spec = default_spec();
        apply_image_config(&mut spec, &config, bare.path(), &[]).unwrap();
        let user = spec.process().as_ref().unwrap().user().clone();
        assert_eq!(
            (user.uid(), user.gid(), user.additional_gids().clone()),
            (0, 0, None)
        );
    }

    #[test]
    fn an_unknown_image_user_is_an_error() {
        let rootfs = rootfs();
        let config = image_config(r#"{"Cmd":["sh"],"User":"ghost"}"#);
        let mut spec = default_spec();
        let err = apply_image_config(&mut spec, &config, rootfs.path(), &[]);
        assert!(matches!(err, Err(Error::UserNotFound { .. })));
    }
}
