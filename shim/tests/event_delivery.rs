//! How the shim delivers its events to berthd: the events of one burst share a
//! connection, and an idle shim lets the connection go.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use berth_proto::containerd::events::TaskOom;
use berth_shim::server::events::{topics, EventPublisher};
use common::{serve_events, wait_for_events};

fn oom(id: &str) -> TaskOom {
    TaskOom {
        container_id: id.to_string(),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_burst_shares_one_connection_and_an_idle_publisher_lets_it_go() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("berthd.sock");
    let (events, server) = serve_events(&socket);
    let publisher = Arc::new(EventPublisher::new("default", &socket));
    let delivery = tokio::spawn({
        let publisher = publisher.clone();
        async move { publisher.run().await }
    });

    // Events a few milliseconds apart, as a task's create, start and exit come.
    for (n, id) in ["a", "b", "c"].into_iter().enumerate() {
        publisher.publish(topics::TASK_OOM, &oom(id));
        assert_eq!(wait_for_events(&events, n + 1).await.len(), n + 1);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(events.connections.load(Ordering::SeqCst), 1);

    // Idle for longer than the connection lingers: the next event needs a new one.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    publisher.publish(topics::TASK_OOM, &oom("d"));
    assert_eq!(wait_for_events(&events, 4).await.len(), 4);
    assert_eq!(events.connections.load(Ordering::SeqCst), 2);

    delivery.abort();
    server.abort();
}
