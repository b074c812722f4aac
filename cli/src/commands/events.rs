//! `berthctl events`: the daemon's event stream, one line per event, until interrupted.
//!
//! Event payloads arrive as `google.protobuf.Any`; they are decoded generically against
//! the compiled descriptors of the whole API, so every event type the daemon publishes
//! prints as JSON without a hand-written case per type.

use std::io::Write;
use std::sync::OnceLock;

use berth_proto::containerd::services::events::v1::{Envelope, SubscribeRequest};
use futures::StreamExt;
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};

use crate::context::Context;
use crate::error::CliError;
use crate::output::{print_json_line, timestamp_text, Format};

/// Options of `events`.
#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// Filters such as `topic=="/tasks/exit"` or `namespace==default` (any may match).
    filters: Vec<String>,
}

/// Prints events as they happen until Ctrl-C (exit 0) or the daemon ends the stream
/// (an error).
pub async fn run(context: &Context, args: EventsArgs) -> Result<(), CliError> {
    let api = context.api().await?;
    let mut stream = api
        .events()
        .subscribe(SubscribeRequest {
            filters: args.filters,
        })
        .await
        .map_err(CliError::rpc("subscribing to events"))?
        .into_inner();
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        tokio::select! {
            _ = &mut interrupted => return Ok(()),
            next = stream.next() => match next {
                Some(Ok(envelope)) => {
                    if !print_event(context.format, &envelope) {
                        // stdout is gone (the reader quit): nothing more to do.
                        return Ok(());
                    }
                }
                Some(Err(status)) => return Err(CliError::rpc("receiving events")(status)),
                None => return Err(CliError::Failed("berthd closed the event stream".into())),
            },
        }
    }
}

/// Prints one event; false if stdout can no longer be written.
fn print_event(format: Format, envelope: &Envelope) -> bool {
    let payload = envelope.event.as_ref().map(decode_payload);
    let timestamp = timestamp_text(envelope.timestamp.as_ref());
    match format {
        Format::Json => {
            print_json_line(&serde_json::json!({
                "timestamp": timestamp,
                "namespace": envelope.namespace,
                "topic": envelope.topic,
                "type": envelope.event.as_ref().map(|any| bare_type_name(&any.type_url)),
                "event": payload,
            }));
            true
        }
        Format::Table => {
            let body = payload.map(|p| p.to_string()).unwrap_or_default();
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "{timestamp} {} {} {body}",
                envelope.namespace, envelope.topic
            )
            .and_then(|()| out.flush())
            .is_ok()
        }
    }
}

/// Every message type of the API, from the descriptors compiled into berth-proto.
fn descriptor_pool() -> Option<&'static DescriptorPool> {
    static POOL: OnceLock<Option<DescriptorPool>> = OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::decode(berth_proto::FILE_DESCRIPTOR_SET).ok())
        .as_ref()
}

/// `containerd.events.TaskExit` from either `containerd.events.TaskExit` or a
/// `type.googleapis.com/…` URL.
fn bare_type_name(type_url: &str) -> &str {
    type_url.rsplit_once('/').map_or(type_url, |(_, name)| name)
}

/// The payload as JSON (proto field names, defaults left out); a payload of a type this
/// client does not know, or that does not decode, is shown by its type and size.
fn decode_payload(any: &prost_types::Any) -> serde_json::Value {
    let name = bare_type_name(&any.type_url);
    let undecoded = || serde_json::json!({"type_url": any.type_url, "bytes": any.value.len()});
    let Some(descriptor) = descriptor_pool().and_then(|pool| pool.get_message_by_name(name)) else {
        return undecoded();
    };
    let Ok(message) = DynamicMessage::decode(descriptor, any.value.as_slice()) else {
        return undecoded();
    };
    let options = SerializeOptions::new().use_proto_field_name(true);
    message
        .serialize_with_options(serde_json::value::Serializer, &options)
        .unwrap_or_else(|_| undecoded())
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::containerd::events::TaskExit;

    #[test]
    fn known_payloads_decode_to_json_with_proto_field_names() {
        let any = berth_proto::any::pack(&TaskExit {
            container_id: "web".into(),
            pid: 42,
            exit_status: 3,
            ..Default::default()
        });
        let json = decode_payload(&any);
        assert_eq!(json["container_id"], "web");
        assert_eq!(json["pid"], 42);
        assert_eq!(json["exit_status"], 3);
    }

    #[test]
    fn unknown_payloads_are_named_not_dropped() {
        let any = prost_types::Any {
            type_url: "example.com/some.Unknown".into(),
            value: vec![1, 2, 3],
        };
        let json = decode_payload(&any);
        assert_eq!(json["type_url"], "example.com/some.Unknown");
        assert_eq!(json["bytes"], 3);
    }
}
