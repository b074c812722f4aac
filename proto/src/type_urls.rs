//! `Any` type URLs that containerd clients use for payloads that are JSON
//! documents rather than protobuf messages. For protobuf payloads the type URL
//! is the message's full name: use [`prost::Name::full_name`].

/// An OCI runtime spec (config.json) as JSON, e.g. `Container.spec`.
pub const OCI_SPEC: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";

/// An OCI process spec as JSON, e.g. `ExecProcessRequest.spec`.
pub const OCI_PROCESS: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";

/// OCI Linux resources as JSON, e.g. `UpdateTaskRequest.resources`.
pub const OCI_LINUX_RESOURCES: &str =
    "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources";
