//! Temporary leases: while a pull, import or unpack runs, everything it creates (blobs,
//! ingests, snapshots) is held by a lease, so the daemon's collector never removes half
//! of it. The lease carries `containerd.io/gc.expire`, so a client that dies without
//! deleting it does not pin its leftovers for ever; until then they make a retry cheap.

use std::collections::HashMap;
use std::time::Duration;

use berth_proto::containerd::services::leases::v1::{
    AddResourceRequest, CreateRequest, DeleteRequest, Resource,
};

use crate::connection::Api;
use crate::error::{ClientError, Result};
use crate::labels::{expiry_in, GC_EXPIRE};

/// How long a temporary lease outlives a client that died holding it (containerd's
/// clients use the same).
pub const TEMPORARY_LEASE_EXPIRY: Duration = Duration::from_secs(24 * 3600);

/// A lease this client created for one operation, deleted when the operation ends.
#[derive(Debug)]
pub struct TemporaryLease {
    id: String,
    leased: Api,
    plain: Api,
}

impl TemporaryLease {
    /// Creates a lease (id chosen by the daemon) that expires after `expire_after`.
    pub async fn create(api: &Api, expire_after: Duration) -> Result<TemporaryLease> {
        let request = CreateRequest {
            id: String::new(),
            labels: HashMap::from([(GC_EXPIRE.to_string(), expiry_in(expire_after))]),
        };
        let lease = api
            .leases()
            .create(request)
            .await
            .map_err(ClientError::rpc("creating a temporary lease"))?
            .into_inner()
            .lease
            .ok_or_else(|| {
                ClientError::rpc("creating a temporary lease")(tonic::Status::internal(
                    "the daemon answered without a lease",
                ))
            })?;
        Ok(TemporaryLease {
            leased: api.with_lease(&lease.id),
            plain: api.clone(),
            id: lease.id,
        })
    }

    /// The lease's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The connection whose calls are held by this lease.
    pub fn api(&self) -> &Api {
        &self.leased
    }

    /// Deletes the lease. With `collect`, the daemon also runs its collector before
    /// answering, so what only the lease held (a failed operation's blobs) is gone.
    pub async fn delete(self, collect: bool) -> Result<()> {
        delete_lease(&self.plain, &self.id, collect).await
    }
}

/// The lease an operation runs in: the caller's, when its connection carries one (the
/// caller then decides when it ends), or a temporary one of our own.
#[derive(Debug)]
pub struct LeaseScope {
    api: Api,
    owned: Option<TemporaryLease>,
}

impl LeaseScope {
    /// Uses the lease of `api`, or creates a temporary one.
    pub async fn enter(api: &Api) -> Result<LeaseScope> {
        if api.lease().is_some() {
            return Ok(LeaseScope {
                api: api.clone(),
                owned: None,
            });
        }
        let lease = TemporaryLease::create(api, TEMPORARY_LEASE_EXPIRY).await?;
        Ok(LeaseScope {
            api: lease.api().clone(),
            owned: Some(lease),
        })
    }

    /// The connection whose calls are held by the lease.
    pub fn api(&self) -> &Api {
        &self.api
    }

    /// Ends the scope: deletes a lease of our own (after a failure, collecting what only
    /// it held). A failure to delete is logged; the lease expires on its own.
    pub async fn finish(self, succeeded: bool) {
        if let Some(lease) = self.owned {
            let id = lease.id().to_string();
            if let Err(e) = lease.delete(!succeeded).await {
                tracing::warn!(lease = %id, error = %e, "could not delete a temporary lease; it expires by itself");
            }
        }
    }
}

/// Deletes the lease `id`; one that is gone already is fine.
pub async fn delete_lease(api: &Api, id: &str, collect: bool) -> Result<()> {
    let request = DeleteRequest {
        id: id.to_string(),
        sync: collect,
    };
    match api.leases().delete(request).await {
        Ok(_) => Ok(()),
        Err(status) if status.code() == tonic::Code::NotFound => Ok(()),
        Err(status) => Err(ClientError::rpc(format!("deleting lease {id:?}"))(status)),
    }
}

/// Adds the snapshot `key` of `snapshotter` to the lease `id` (a snapshot found
/// committed by someone else is then held for us too).
pub async fn lease_snapshot(api: &Api, id: &str, snapshotter: &str, key: &str) -> Result<()> {
    let request = AddResourceRequest {
        id: id.to_string(),
        resource: Some(Resource {
            id: key.to_string(),
            r#type: format!("snapshots/{snapshotter}"),
        }),
    };
    api.leases()
        .add_resource(request)
        .await
        .map_err(ClientError::rpc(format!(
            "adding snapshot {key:?} to lease {id:?}"
        )))?;
    Ok(())
}
