//! Task events delivered to berthd (`containerd.services.events.v1.Events/Publish` on
//! `--publish-address`), in order, from a queue that is retried with backoff while berthd is
//! away. Publishing only appends to the queue, so the task API never waits for berthd.
//!
//! The connection to berthd is kept for [`CONNECTION_LINGER`] after the last event, so the
//! events of one operation (a `run --rm` publishes create, start, exit and delete within
//! tens of milliseconds) share one connection; then it is dropped: an idle shim holds no
//! connection (and no memory for one).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use berth_proto::containerd::services::events::v1::events_client::EventsClient;
use berth_proto::containerd::services::events::v1::PublishRequest;
use hyper_util::rt::TokioIo;
use prost_types::Any;
use tokio::sync::Notify;
use tonic::transport::{Channel, Endpoint, Uri};

/// Topics of the events a shim publishes (containerd's names).
pub mod topics {
    /// A task was created.
    pub const TASK_CREATE: &str = "/tasks/create";
    /// A task's init started.
    pub const TASK_START: &str = "/tasks/start";
    /// A process (init or exec) exited.
    pub const TASK_EXIT: &str = "/tasks/exit";
    /// An exec process was added.
    pub const TASK_EXEC_ADDED: &str = "/tasks/exec-added";
    /// An exec process started.
    pub const TASK_EXEC_STARTED: &str = "/tasks/exec-started";
    /// The task was paused.
    pub const TASK_PAUSED: &str = "/tasks/paused";
    /// The task was resumed.
    pub const TASK_RESUMED: &str = "/tasks/resumed";
    /// A task or exec process was deleted.
    pub const TASK_DELETE: &str = "/tasks/delete";
    /// The task's cgroup hit its memory limit and the OOM killer ran.
    pub const TASK_OOM: &str = "/tasks/oom";
}

/// gRPC metadata key carrying the namespace.
const NAMESPACE_HEADER: &str = "containerd-namespace";

/// Events kept while berthd is away; beyond this the oldest are dropped (berthd asks the
/// shim for its state when it comes back, so nothing essential is lost).
const MAX_QUEUED_EVENTS: usize = 1024;

/// First and longest pause between delivery attempts.
const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(2);

/// Longest wait for berthd to accept one connection or one event.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the connection to berthd outlives the last event delivered on it.
const CONNECTION_LINGER: Duration = Duration::from_secs(1);

/// Placeholder URI for the channel; the connector dials the unix socket.
const CHANNEL_URI: &str = "http://berthd.invalid";

/// One event waiting to be delivered.
#[derive(Debug, Clone)]
struct QueuedEvent {
    topic: &'static str,
    event: Any,
}

/// The ordered queue of task events and the task that delivers them.
#[derive(Debug)]
pub struct EventPublisher {
    namespace: String,
    address: PathBuf,
    queue: Mutex<VecDeque<QueuedEvent>>,
    /// Wakes the delivery loop when an event is queued.
    queued: Notify,
    /// Wakes [`EventPublisher::flush`] when the queue empties.
    drained: Notify,
}

impl EventPublisher {
    /// A publisher for namespace `namespace` to the events service on unix socket `address`.
    pub fn new(namespace: &str, address: &Path) -> EventPublisher {
        EventPublisher {
            namespace: namespace.to_string(),
            address: address.to_path_buf(),
            queue: Mutex::new(VecDeque::new()),
            queued: Notify::new(),
            drained: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<QueuedEvent>> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `event` on `topic`; it is sent after every event queued before it.
    pub fn publish<M: prost::Name>(&self, topic: &'static str, event: &M) {
        let mut queue = self.lock();
        if queue.len() >= MAX_QUEUED_EVENTS {
            if let Some(dropped) = queue.pop_front() {
                tracing::warn!(
                    topic = dropped.topic,
                    "event queue full; dropped the oldest event"
                );
            }
        }
        queue.push_back(QueuedEvent {
            topic,
            event: berth_proto::any::pack(event),
        });
        drop(queue);
        self.queued.notify_one();
    }

    /// Number of events not yet delivered.
    pub fn pending(&self) -> usize {
        self.lock().len()
    }

    /// Waits until every queued event is delivered, for at most `limit`; returns whether the
    /// queue is empty.
    pub async fn flush(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let mut drained = std::pin::pin!(self.drained.notified());
            // Registered before the check, so a drain right after it still wakes us.
            drained.as_mut().enable();
            if self.pending() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, drained).await.is_err() {
                return self.pending() == 0;
            }
        }
    }

    /// Delivers queued events forever, in order, retrying each until berthd accepts it.
    pub async fn run(&self) {
        let mut channel: Option<Channel> = None;
        let mut pause = FIRST_RETRY;
        loop {
            let next = self.lock().front().cloned();
            let Some(next) = next else {
                self.drained.notify_waiters();
                // Idle: keep the connection a moment for the next event, then let it go.
                if channel.is_some() {
                    let woken =
                        tokio::time::timeout(CONNECTION_LINGER, self.queued.notified()).await;
                    if woken.is_err() {
                        channel = None;
                        continue;
                    }
                } else {
                    self.queued.notified().await;
                }
                // The event was queued by a task call whose reply is on its way: on this
                // one-thread runtime, let that reply go out before the delivery's work.
                tokio::task::yield_now().await;
                continue;
            };
            match self.deliver(&mut channel, &next).await {
                Ok(()) => {
                    pause = FIRST_RETRY;
                    self.lock().pop_front();
                }
                Err(Failure::Rejected(status)) => {
                    tracing::warn!(topic = next.topic, %status, "berthd rejected an event; dropped it");
                    self.lock().pop_front();
                }
                Err(Failure::Retry(why)) => {
                    tracing::debug!(topic = next.topic, %why, ?pause, "berthd unreachable; will retry");
                    channel = None;
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_RETRY);
                }
            }
        }
    }

    /// One delivery attempt of `event`, connecting first if needed.
    async fn deliver(
        &self,
        channel: &mut Option<Channel>,
        event: &QueuedEvent,
    ) -> Result<(), Failure> {
        let connected = match channel {
            Some(connected) => connected.clone(),
            None => {
                let connected = connect(&self.address).await?;
                *channel = Some(connected.clone());
                connected
            }
        };
        let mut request = tonic::Request::new(PublishRequest {
            topic: event.topic.to_string(),
            event: Some(event.event.clone()),
        });
        request.set_timeout(DELIVERY_TIMEOUT);
        let namespace = self
            .namespace
            .parse()
            .map_err(|_| Failure::Rejected(tonic::Status::invalid_argument("bad namespace")))?;
        request.metadata_mut().insert(NAMESPACE_HEADER, namespace);
        let sent = tokio::time::timeout(
            DELIVERY_TIMEOUT,
            EventsClient::new(connected).publish(request),
        )
        .await;
        match sent {
            Err(_) => Err(Failure::Retry("no answer in time".into())),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(status)) if is_permanent(status.code()) => Err(Failure::Rejected(status)),
            Ok(Err(status)) => Err(Failure::Retry(status.to_string())),
        }
    }
}

/// Why a delivery attempt failed.
enum Failure {
    /// berthd is away or busy: try again later.
    Retry(String),
    /// berthd answered that it will never accept this event.
    Rejected(tonic::Status),
}

/// Codes that mean "this event will never be accepted", as opposed to "not now".
fn is_permanent(code: tonic::Code) -> bool {
    use tonic::Code;
    matches!(
        code,
        Code::InvalidArgument
            | Code::NotFound
            | Code::AlreadyExists
            | Code::PermissionDenied
            | Code::FailedPrecondition
            | Code::OutOfRange
            | Code::Unimplemented
            | Code::Unauthenticated
    )
}

/// Opens a channel to the events service on unix socket `address`.
async fn connect(address: &Path) -> Result<Channel, Failure> {
    let path = address.to_path_buf();
    let connector = tower::service_fn(move |_: Uri| {
        let path = path.clone();
        async move {
            let stream = tokio::net::UnixStream::connect(&path).await?;
            Ok::<_, std::io::Error>(TokioIo::new(stream))
        }
    });
    let endpoint = Endpoint::from_static(CHANNEL_URI).connect_timeout(DELIVERY_TIMEOUT);
    endpoint
        .connect_with_connector(connector)
        .await
        .map_err(|error| Failure::Retry(format!("connect to {}: {error}", address.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_refusals_drop_an_event() {
        assert!(is_permanent(tonic::Code::Unimplemented));
        assert!(is_permanent(tonic::Code::InvalidArgument));
        assert!(!is_permanent(tonic::Code::Unavailable));
        assert!(!is_permanent(tonic::Code::Unknown));
        assert!(!is_permanent(tonic::Code::DeadlineExceeded));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_queue_keeps_order_and_drops_the_oldest_when_full() {
        let publisher = EventPublisher::new("default", Path::new("/nonexistent/berthd.sock"));
        for n in 0..(MAX_QUEUED_EVENTS + 2) {
            publisher.publish(
                topics::TASK_OOM,
                &berth_proto::containerd::events::TaskOom {
                    container_id: n.to_string(),
                },
            );
        }
        assert_eq!(publisher.pending(), MAX_QUEUED_EVENTS);
        let first = publisher.lock().front().cloned().unwrap();
        let first: berth_proto::containerd::events::TaskOom =
            berth_proto::any::unpack(&first.event).unwrap();
        assert_eq!(first.container_id, "2");
        assert!(!publisher.flush(Duration::from_millis(10)).await);
    }
}
