//! `containerd.services.events.v1.Events`: clients publish events onto the daemon's bus
//! (Publish stamps them, Forward relays already-stamped envelopes) and subscribe to what
//! happens in every namespace, narrowed by filters such as `topic=="/tasks/exit"` or
//! `namespace==default`.

use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use berth_proto::containerd::events::TaskDelete;
use berth_proto::containerd::services::events::v1::{
    events_server::{Events, EventsServer},
    Envelope, ForwardRequest, PublishRequest, SubscribeRequest,
};
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;
use tonic::{Request, Response, Status};

use crate::error::{ApiError, ApiResult};
use crate::events::{validate_topic, Event};
use crate::filters::Filter;
use crate::ident;
use crate::request;
use crate::services::{reply, MAX_MESSAGE_BYTES};
use crate::state::Daemon;

/// Longest type URL accepted on a published event, in bytes.
pub const MAX_TYPE_URL_LEN: usize = 1024;

/// The Events service.
pub struct EventsService {
    daemon: Arc<Daemon>,
}

/// The service, ready to add to the router.
pub fn service(daemon: Arc<Daemon>) -> EventsServer<EventsService> {
    EventsServer::new(EventsService { daemon })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// The stream of envelopes a subscriber receives.
pub type EnvelopeStream = Pin<Box<dyn Stream<Item = Result<Envelope, Status>> + Send>>;

/// Builds a bus event from what a client sent, checking topic and payload.
fn event_from_wire(
    timestamp: SystemTime,
    namespace: String,
    topic: String,
    event: Option<prost_types::Any>,
) -> ApiResult<Event> {
    validate_topic(&topic).map_err(ApiError::InvalidArgument)?;
    let event = event
        .ok_or_else(|| ApiError::InvalidArgument(format!("event on {topic:?} must be set")))?;
    if event.type_url.is_empty()
        || event.type_url.len() > MAX_TYPE_URL_LEN
        || event.type_url.chars().any(char::is_control)
    {
        return Err(ApiError::InvalidArgument(format!(
            "event on {topic:?}: type URL must be printable, 1 to {MAX_TYPE_URL_LEN} bytes"
        )));
    }
    Ok(Event {
        timestamp,
        namespace,
        topic,
        type_url: event.type_url,
        payload: event.value,
    })
}

/// The wire envelope of a bus event.
fn envelope(event: &Event) -> Envelope {
    Envelope {
        timestamp: reply::timestamp(event.timestamp),
        namespace: event.namespace.clone(),
        topic: event.topic.clone(),
        event: Some(prost_types::Any {
            type_url: event.type_url.clone(),
            value: event.payload.clone(),
        }),
    }
}

impl EventsService {
    fn publish_event(&self, ns: String, req: PublishRequest) -> ApiResult<()> {
        let event = event_from_wire(SystemTime::now(), ns, req.topic, req.event)?;
        if self.announced_by_berthd(&event) {
            tracing::debug!(namespace = %event.namespace, topic = %event.topic,
                "dropped a shim's event berthd announced itself");
            return Ok(());
        }
        tracing::info!(namespace = %event.namespace, topic = %event.topic, type_url = %event.type_url, "event published");
        self.daemon.events.publish_raw(event);
        Ok(())
    }

    /// True for a shim's `/tasks/delete` of a task whose deletion berthd announces itself.
    fn announced_by_berthd(&self, event: &Event) -> bool {
        if event.topic != crate::tasks::TOPIC_DELETE {
            return false;
        }
        match <TaskDelete as prost::Message>::decode(event.payload.as_slice()) {
            Ok(deleted) => self
                .daemon
                .tasks
                .announces_delete_of(&event.namespace, &deleted.container_id),
            Err(_) => false,
        }
    }

    fn forward_event(&self, req: ForwardRequest) -> ApiResult<()> {
        let envelope = req
            .envelope
            .ok_or_else(|| ApiError::InvalidArgument("envelope must be set".to_string()))?;
        ident::validate(&envelope.namespace)?;
        let timestamp = match envelope.timestamp {
            Some(ts) => SystemTime::try_from(ts).map_err(|e| {
                ApiError::InvalidArgument(format!("envelope timestamp is out of range: {e}"))
            })?,
            None => SystemTime::now(),
        };
        let event = event_from_wire(
            timestamp,
            envelope.namespace,
            envelope.topic,
            envelope.event,
        )?;
        tracing::info!(namespace = %event.namespace, topic = %event.topic, type_url = %event.type_url, "event forwarded");
        self.daemon.events.publish_raw(event);
        Ok(())
    }

    fn subscribe_events(&self, req: SubscribeRequest) -> ApiResult<EnvelopeStream> {
        let filter = Filter::parse(&req.filters)?;
        tracing::info!(filters = ?req.filters, "event subscriber joined");
        let mut receiver = self.daemon.events.subscribe();
        let mut closed = self.daemon.events.closed();
        let stream = async_stream::stream! {
            loop {
                if *closed.borrow_and_update() {
                    tracing::debug!("event bus closed; ending subscription");
                    break;
                }
                let received = tokio::select! {
                    received = receiver.recv() => received,
                    changed = closed.changed() => {
                        if changed.is_err() {
                            break; // the daemon itself is gone
                        }
                        continue;
                    }
                };
                match received {
                    Ok(event) => {
                        if filter.matches(event.as_ref()) {
                            yield Ok(envelope(&event));
                        }
                    }
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "event subscriber is too slow; it lost events");
                    }
                    Err(RecvError::Closed) => break,
                }
            }
        };
        Ok(Box::pin(stream))
    }
}

#[tonic::async_trait]
impl Events for EventsService {
    async fn publish(&self, req: Request<PublishRequest>) -> Result<Response<()>, Status> {
        let ns = request::namespace(&req)?;
        self.publish_event(ns, req.into_inner())?;
        Ok(Response::new(()))
    }

    async fn forward(&self, req: Request<ForwardRequest>) -> Result<Response<()>, Status> {
        self.forward_event(req.into_inner())?;
        Ok(Response::new(()))
    }

    type SubscribeStream = EnvelopeStream;

    async fn subscribe(
        &self,
        req: Request<SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        Ok(Response::new(self.subscribe_events(req.into_inner())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::test_support::{daemon, request, TestDaemon};
    use berth_proto::containerd::events::TaskExit;
    use futures::StreamExt;
    use std::time::Duration;
    use tonic::Code;

    fn service(t: &TestDaemon) -> EventsService {
        EventsService {
            daemon: t.daemon.clone(),
        }
    }

    async fn subscribe(svc: &EventsService, filters: &[&str]) -> EnvelopeStream {
        svc.subscribe(request(
            "default",
            SubscribeRequest {
                filters: filters.iter().map(|f| f.to_string()).collect(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
    }

    async fn next(stream: &mut EnvelopeStream) -> Option<Envelope> {
        tokio::time::timeout(Duration::from_millis(200), stream.next())
            .await
            .ok()
            .flatten()
            .map(|r| r.unwrap())
    }

    fn exit_event() -> Option<prost_types::Any> {
        Some(berth_proto::any::pack(&TaskExit {
            container_id: "web".into(),
            exit_status: 3,
            ..Default::default()
        }))
    }

    #[tokio::test]
    async fn published_events_reach_matching_subscribers_only() {
        let t = daemon();
        let svc = service(&t);
        let mut all = subscribe(&svc, &[]).await;
        let mut exits = subscribe(&svc, &[r#"topic=="/tasks/exit""#]).await;

        svc.publish(request(
            "ns1",
            PublishRequest {
                topic: "/tasks/start".into(),
                event: exit_event(),
            },
        ))
        .await
        .unwrap();
        svc.publish(request(
            "ns1",
            PublishRequest {
                topic: "/tasks/exit".into(),
                event: exit_event(),
            },
        ))
        .await
        .unwrap();

        let first = next(&mut all).await.unwrap();
        assert_eq!(
            (first.namespace.as_str(), first.topic.as_str()),
            ("ns1", "/tasks/start")
        );
        assert_eq!(next(&mut all).await.unwrap().topic, "/tasks/exit");
        let exit = next(&mut exits).await.unwrap();
        assert_eq!(exit.topic, "/tasks/exit");
        assert!(exit.timestamp.is_some());
        let payload: TaskExit = berth_proto::any::unpack(&exit.event.unwrap()).unwrap();
        assert_eq!(payload.exit_status, 3);
        assert!(
            next(&mut exits).await.is_none(),
            "the start event was filtered out"
        );
    }

    #[tokio::test]
    async fn forward_keeps_the_envelope() {
        let t = daemon();
        let svc = service(&t);
        let mut all = subscribe(&svc, &["namespace==other"]).await;
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        svc.forward(Request::new(ForwardRequest {
            envelope: Some(Envelope {
                timestamp: reply::timestamp(at),
                namespace: "other".into(),
                topic: "/tasks/exit".into(),
                event: exit_event(),
            }),
        }))
        .await
        .unwrap();
        let got = next(&mut all).await.unwrap();
        assert_eq!(got.timestamp, reply::timestamp(at));
        assert_eq!(got.namespace, "other");
    }

    #[tokio::test]
    async fn bad_topics_events_and_filters_are_refused() {
        let t = daemon();
        let svc = service(&t);
        for topic in ["", "tasks/exit", "/a/../b", "/a//b"] {
            let err = svc
                .publish(request(
                    "ns",
                    PublishRequest {
                        topic: topic.into(),
                        event: exit_event(),
                    },
                ))
                .await
                .unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "{topic:?}");
        }
        let err = svc
            .publish(request(
                "ns",
                PublishRequest {
                    topic: "/x".into(),
                    event: None,
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        let err = svc
            .forward(Request::new(ForwardRequest {
                envelope: Some(Envelope {
                    timestamp: None,
                    namespace: "../x".into(),
                    topic: "/x".into(),
                    event: exit_event(),
                }),
            }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        let err = svc
            .subscribe(request(
                "ns",
                SubscribeRequest {
                    filters: vec!["topic==".into()],
                },
            ))
            .await
            .err()
            .unwrap();
        assert_eq!(err.code(), Code::InvalidArgument);
    }

    #[tokio::test]
    async fn subscriptions_end_when_the_bus_closes() {
        let t = daemon();
        let svc = service(&t);
        let mut stream = subscribe(&svc, &[]).await;
        t.daemon.events.close();
        let end = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("the stream ends instead of waiting for events");
        assert!(end.is_none());
        // A subscription opened after the close ends at once too.
        let mut late = subscribe(&svc, &[]).await;
        assert!(tokio::time::timeout(Duration::from_secs(5), late.next())
            .await
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn a_lagging_subscriber_keeps_receiving() {
        let t = daemon();
        let svc = service(&t);
        let mut slow = subscribe(&svc, &[]).await;
        for _ in 0..crate::events::SUBSCRIBER_BACKLOG + 10 {
            svc.publish_event(
                "ns".into(),
                PublishRequest {
                    topic: "/tasks/exit".into(),
                    event: exit_event(),
                },
            )
            .unwrap();
        }
        svc.publish_event(
            "ns".into(),
            PublishRequest {
                topic: "/last".into(),
                event: exit_event(),
            },
        )
        .unwrap();
        let mut count = 0;
        let mut last = String::new();
        while let Some(e) = next(&mut slow).await {
            count += 1;
            last = e.topic;
        }
        assert_eq!(last, "/last", "the stream went on after losing events");
        assert!(count <= crate::events::SUBSCRIBER_BACKLOG, "{count}");
    }
}
