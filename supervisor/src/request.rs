//! What every request carries besides its message: the namespace and the lease, in gRPC
//! metadata under containerd's keys.

use tonic::Request;

use crate::error::{ApiError, ApiResult};

/// Metadata key holding the namespace of a request.
pub const NAMESPACE_KEY: &str = "containerd-namespace";
/// Metadata key holding the lease new resources are added to.
pub const LEASE_KEY: &str = "containerd-lease";

fn header<T>(req: &Request<T>, key: &str) -> ApiResult<Option<String>> {
    match req.metadata().get(key) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.to_string()))
            .map_err(|_| ApiError::InvalidArgument(format!("{key} is not valid text"))),
    }
}

/// The request's namespace, checked against the identifier grammar. Missing is an error,
/// as in containerd (clients such as ctr always send one).
pub fn namespace<T>(req: &Request<T>) -> ApiResult<String> {
    match header(req, NAMESPACE_KEY)? {
        None => Err(ApiError::FailedPrecondition(format!(
            "namespace is required: set the {NAMESPACE_KEY} gRPC metadata key"
        ))),
        Some(ns) => {
            crate::ident::validate(&ns)?;
            Ok(ns)
        }
    }
}

/// The lease named by the request, if any (checked against the lease id grammar).
pub fn lease<T>(req: &Request<T>) -> ApiResult<Option<String>> {
    let lease = header(req, LEASE_KEY)?;
    if let Some(id) = &lease {
        crate::ident::validate_lease_id(id)?;
    }
    Ok(lease)
}
