//! Building replies: wire timestamps, and the check that a reply stays within the gRPC
//! message limit (a List over a huge namespace gets a clear error, not a broken stream).

use std::time::SystemTime;

use crate::error::{ApiError, ApiResult};
use crate::services::MAX_MESSAGE_BYTES;

/// A stored time as a wire timestamp.
pub fn timestamp(at: SystemTime) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp::from(at))
}

/// Refuses a reply that would exceed [`MAX_MESSAGE_BYTES`]; `what` names the call.
pub fn ensure_fits<M: prost::Message>(what: &str, reply: &M) -> ApiResult<()> {
    let len = reply.encoded_len();
    if len > MAX_MESSAGE_BYTES {
        return Err(ApiError::ResourceExhausted(format!(
            "{what}: the reply would be {len} bytes, over the {MAX_MESSAGE_BYTES}-byte message \
             limit; narrow it with filters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::containerd::services::namespaces::v1::{ListNamespacesResponse, Namespace};

    #[test]
    fn oversized_replies_are_refused() {
        let small = ListNamespacesResponse {
            namespaces: vec![Namespace {
                name: "default".into(),
                labels: Default::default(),
            }],
        };
        assert!(ensure_fits("list", &small).is_ok());
        let huge = ListNamespacesResponse {
            namespaces: vec![Namespace {
                name: "x".repeat(MAX_MESSAGE_BYTES + 1),
                labels: Default::default(),
            }],
        };
        let err = ensure_fits("list", &huge).unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    }
}
