//! Building OCI runtime specs (`config.json`) with the `oci-spec` types: containerd-like
//! defaults, an image's configuration applied on top, and small edits for the rest.

mod defaults;
mod image_config;
mod options;
mod rootfs_file;
mod user;

pub use defaults::{
    default_spec, DEFAULT_CAPABILITIES, DEFAULT_PATH_ENV, MASKED_PATHS, OCI_VERSION, READONLY_PATHS,
};
pub use image_config::apply_image_config;
pub use options::{
    with_args, with_cgroups_path, with_cpu_quota, with_cpu_shares, with_cwd, with_env,
    with_host_network, with_hostname, with_memory_limit, with_mount, with_pids_limit, with_rootfs,
    with_tty,
};
pub use rootfs_file::read_rootfs_file;
pub use user::{
    parse_group, parse_passwd, resolve_user, resolve_user_in, with_user, GroupEntry, PasswdEntry,
    ResolvedUser,
};
