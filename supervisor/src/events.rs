//! The in-process event bus: services publish what happened (containerd's topics such as
//! `/images/create`), `Events.Subscribe` streams them to clients through filters.
//!
//! Events are not persisted (as in containerd): a subscriber sees what happens while it
//! is subscribed. A subscriber that falls too far behind loses the oldest events and is
//! told so in the log, rather than slowing the daemon down.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{broadcast, watch};

use crate::filters::Fields;

/// How many events a slow subscriber may lag before it starts losing them.
pub const SUBSCRIBER_BACKLOG: usize = 4096;

/// One published event: what, where, when, and the encoded event message.
#[derive(Debug, Clone)]
pub struct Event {
    /// When it was published.
    pub timestamp: SystemTime,
    /// Namespace it happened in.
    pub namespace: String,
    /// Topic, e.g. `/images/create`.
    pub topic: String,
    /// Type URL of the payload, e.g. `containerd.events.ImageCreate`.
    pub type_url: String,
    /// The protobuf-encoded event message.
    pub payload: Vec<u8>,
}

impl Fields for Event {
    fn field(&self, path: &[String]) -> Option<String> {
        match path.first().map(String::as_str) {
            Some("topic") if path.len() == 1 => Some(self.topic.clone()),
            Some("namespace") if path.len() == 1 => Some(self.namespace.clone()),
            _ => None,
        }
    }
}

/// Fan-out of events to every subscriber.
#[derive(Clone)]
pub struct EventBus {
    sender: broadcast::Sender<Arc<Event>>,
    /// Turns true when the daemon shuts down, so endless subscriptions end.
    closed: Arc<watch::Sender<bool>>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    /// A bus with the default subscriber backlog.
    pub fn new() -> Self {
        let (sender, _) = broadcast::channel(SUBSCRIBER_BACKLOG);
        let (closed, _) = watch::channel(false);
        Self {
            sender,
            closed: Arc::new(closed),
        }
    }

    /// Publishes an event encoded from `message` (a `prost::Name` gives its type URL).
    pub fn publish<M: prost::Message + prost::Name>(
        &self,
        namespace: &str,
        topic: &str,
        message: &M,
    ) {
        self.publish_raw(Event {
            timestamp: SystemTime::now(),
            namespace: namespace.to_string(),
            topic: topic.to_string(),
            type_url: M::full_name(),
            payload: message.encode_to_vec(),
        });
    }

    /// Publishes an already-encoded event (from `Events.Publish` / `Forward`).
    pub fn publish_raw(&self, event: Event) {
        tracing::debug!(namespace = %event.namespace, topic = %event.topic, "event");
        // An error only means nobody is subscribed right now.
        let _ = self.sender.send(Arc::new(event));
    }

    /// A new subscription that sees every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.sender.subscribe()
    }

    /// Tells every subscription to end (at shutdown: an open `Events.Subscribe` stream
    /// would otherwise keep the server from stopping).
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// Watches for [`EventBus::close`]: the value turns `true` once the bus is closed.
    pub fn closed(&self) -> watch::Receiver<bool> {
        self.closed.subscribe()
    }
}

/// Checks a topic given by a client: `/`-separated, non-empty parts, at most 255 bytes.
pub fn validate_topic(topic: &str) -> Result<(), String> {
    if topic.len() > 255 {
        return Err(format!("topic longer than 255 bytes: {topic:.64}…"));
    }
    let Some(rest) = topic.strip_prefix('/') else {
        return Err(format!("topic {topic:?} must start with '/'"));
    };
    for part in rest.split('/') {
        if crate::ident::validate(part).is_err() {
            return Err(format!(
                "topic {topic:?} must be '/'-separated identifiers (letters, digits, '.', '_', '-')"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics() {
        assert!(validate_topic("/images/create").is_ok());
        assert!(validate_topic("/tasks/exec-added").is_ok());
        for bad in ["", "/", "images/create", "/a//b", "/a/../b", "/a/"] {
            assert!(validate_topic(bad).is_err(), "{bad:?}");
        }
    }
}
