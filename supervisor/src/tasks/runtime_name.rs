//! Which runtimes a container may name. Both runc shim names that containerd clients use
//! run under berth-shim with runc (or the binary named in the runtime options).

use super::TaskError;

/// Runtime names Berth runs: ctr's default and its predecessor.
pub const SUPPORTED_RUNTIMES: &[&str] = &["io.containerd.runc.v2", "io.containerd.runc.v1"];

/// Refuses a container whose runtime Berth does not provide, saying which ones it does.
pub fn check_runtime(name: &str) -> Result<(), TaskError> {
    if SUPPORTED_RUNTIMES.contains(&name) {
        return Ok(());
    }
    Err(TaskError::FailedPrecondition(format!(
        "runtime {name:?} is not supported: Berth runs containers whose runtime is one of {}",
        SUPPORTED_RUNTIMES.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_runc_shim_names_are_accepted() {
        assert!(check_runtime("io.containerd.runc.v2").is_ok());
        assert!(check_runtime("io.containerd.runc.v1").is_ok());
    }

    #[test]
    fn other_runtimes_are_refused_with_the_supported_names() {
        for name in [
            "io.containerd.kata.v2",
            "",
            "io.containerd.runc.v2 ",
            "runc",
        ] {
            let err = check_runtime(name).unwrap_err();
            assert_eq!(err.code(), tonic::Code::FailedPrecondition);
            let text = err.to_string();
            assert!(text.contains("io.containerd.runc.v2"), "{text}");
            assert!(text.contains(&format!("{name:?}")), "{text}");
        }
    }
}
