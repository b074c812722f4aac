//! Dialing berthd (or any containerd v1 API daemon) on its unix socket.
//!
//! Every call made through an [`Api`] carries the `containerd-namespace` header, the
//! way containerd clients name the namespace they work in.

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_proto::containerd::services as svc;
use hyper_util::rt::TokioIo;
use tonic::metadata::AsciiMetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint, Uri};

/// The largest message either side may send: listings of big namespaces and image
/// manifests can exceed tonic's 4 MiB default.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// How long [`connect`] waits for the daemon to accept the connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The gRPC metadata key that names the namespace of a request.
pub const NAMESPACE_HEADER: &str = "containerd-namespace";

/// The gRPC metadata key that puts what a request creates into a lease.
pub const LEASE_HEADER: &str = "containerd-lease";

/// Placeholder URI for the channel: the connector ignores it and dials the socket.
const CHANNEL_URI: &str = "http://berthd.invalid";

/// Why the daemon could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The namespace is not a valid header value (the daemon checks the grammar).
    #[error("namespace {0:?} cannot be sent: it must be printable ASCII")]
    BadNamespace(String),
    /// The socket could not be dialed.
    #[error("cannot connect to berthd at {address}: {detail}")]
    Dial {
        /// The socket path that was dialed.
        address: PathBuf,
        /// The transport error and its causes.
        detail: String,
    },
}

/// Adds the namespace (and, when set, the lease) header to every request.
#[derive(Clone, Debug)]
pub struct ContextHeaders {
    namespace: AsciiMetadataValue,
    lease: Option<AsciiMetadataValue>,
}

impl tonic::service::Interceptor for ContextHeaders {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        let headers = request.metadata_mut();
        headers.insert(NAMESPACE_HEADER, self.namespace.clone());
        if let Some(lease) = &self.lease {
            headers.insert(LEASE_HEADER, lease.clone());
        }
        Ok(request)
    }
}

/// The channel type every client of an [`Api`] runs over.
pub type ApiChannel = InterceptedService<Channel, ContextHeaders>;

/// A connection to the daemon bound to one namespace (and optionally one lease).
///
/// Cheap to clone: clones share the one HTTP/2 connection, so many calls (parallel
/// layer ingests, a `Wait` while `Start` runs) go over it at once.
#[derive(Clone, Debug)]
pub struct Api {
    channel: Channel,
    headers: ContextHeaders,
    namespace: String,
}

/// Connects to the daemon's socket at `address`, working in `namespace`.
pub async fn connect(address: &Path, namespace: &str) -> Result<Api, ConnectError> {
    let namespace_value: AsciiMetadataValue = namespace
        .parse()
        .map_err(|_| ConnectError::BadNamespace(namespace.to_string()))?;
    let path = address.to_path_buf();
    let connector = tower::service_fn(move |_: Uri| {
        let path = path.clone();
        async move {
            let stream = tokio::net::UnixStream::connect(&path).await?;
            Ok::<_, std::io::Error>(TokioIo::new(stream))
        }
    });
    let failed = |detail: String| ConnectError::Dial {
        address: address.to_path_buf(),
        detail,
    };
    let endpoint = Endpoint::from_static(CHANNEL_URI).connect_timeout(CONNECT_TIMEOUT);
    let channel = tokio::time::timeout(CONNECT_TIMEOUT, endpoint.connect_with_connector(connector))
        .await
        .map_err(|_| failed(format!("no answer within {CONNECT_TIMEOUT:?}")))?
        .map_err(|e| failed(describe(&e)))?;
    Ok(Api {
        channel,
        headers: ContextHeaders {
            namespace: namespace_value,
            lease: None,
        },
        namespace: namespace.to_string(),
    })
}

/// Defines one accessor per service client, each wrapped with the context headers and
/// the message size limits.
macro_rules! service_clients {
    ($($(#[$doc:meta])* $name:ident => $client:ty;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(&self) -> $client {
                <$client>::new(self.intercepted())
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES)
            }
        )*
    };
}

impl Api {
    /// The namespace every call of this connection works in.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The same connection working in another namespace.
    pub fn in_namespace(&self, namespace: &str) -> Result<Api, ConnectError> {
        let value = namespace
            .parse()
            .map_err(|_| ConnectError::BadNamespace(namespace.to_string()))?;
        Ok(Api {
            channel: self.channel.clone(),
            headers: ContextHeaders {
                namespace: value,
                lease: self.headers.lease.clone(),
            },
            namespace: namespace.to_string(),
        })
    }

    /// The same connection with every call also tagged with `lease`, so what the calls
    /// create is held by that lease until it is deleted.
    pub fn with_lease(&self, lease: &str) -> Api {
        let mut api = self.clone();
        // Lease ids come from the daemon or from us; an unsendable one is dropped rather
        // than failing every later call.
        api.headers.lease = lease.parse().ok();
        api
    }

    /// The lease every call of this connection is tagged with, if any.
    pub fn lease(&self) -> Option<&str> {
        self.headers
            .lease
            .as_ref()
            .and_then(|value| value.to_str().ok())
    }

    fn intercepted(&self) -> ApiChannel {
        InterceptedService::new(self.channel.clone(), self.headers.clone())
    }

    service_clients! {
        /// The Version service.
        version => svc::version::v1::version_client::VersionClient<ApiChannel>;
        /// The Namespaces service.
        namespaces => svc::namespaces::v1::namespaces_client::NamespacesClient<ApiChannel>;
        /// The Content service (blobs by digest, ingests).
        content => svc::content::v1::content_client::ContentClient<ApiChannel>;
        /// The Images service (name → target descriptor records).
        images => svc::images::v1::images_client::ImagesClient<ApiChannel>;
        /// The Snapshots service.
        snapshots => svc::snapshots::v1::snapshots_client::SnapshotsClient<ApiChannel>;
        /// The Diff service (apply a layer onto mounts, compute a diff).
        diff => svc::diff::v1::diff_client::DiffClient<ApiChannel>;
        /// The Leases service.
        leases => svc::leases::v1::leases_client::LeasesClient<ApiChannel>;
        /// The Events service.
        events => svc::events::v1::events_client::EventsClient<ApiChannel>;
        /// The Introspection service (plugins, server uuid).
        introspection => svc::introspection::v1::introspection_client::IntrospectionClient<ApiChannel>;
        /// The Containers service.
        containers => svc::containers::v1::containers_client::ContainersClient<ApiChannel>;
        /// The Tasks service.
        tasks => svc::tasks::v1::tasks_client::TasksClient<ApiChannel>;
    }
}

/// The transport error with its causes, which hold the useful part ("Connection refused").
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
