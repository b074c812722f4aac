//! Packing messages into `google.protobuf.Any` the way containerd clients do.
//!
//! containerd names the type of an `Any` by the message's bare full name
//! ("containerd.events.TaskExit"), not by a "type.googleapis.com/..." URL,
//! and its clients cannot decode the latter. `prost_types::Any::from_msg`
//! writes the URL form, so use [`pack`] and [`unpack`] instead.

use prost::Name;
use prost_types::Any;

/// Why an `Any` could not be turned into the requested message.
#[derive(Debug, thiserror::Error)]
pub enum AnyError {
    /// The `Any` holds a different type than the caller asked for.
    #[error("Any holds {actual:?}, expected {expected:?}")]
    WrongType {
        /// The full name the caller asked for.
        expected: String,
        /// The type URL found in the `Any`.
        actual: String,
    },
    /// The type matched but the bytes are not a valid message.
    #[error("cannot decode {type_name}: {source}")]
    Decode {
        /// The full name of the message being decoded.
        type_name: String,
        /// What prost reported.
        #[source]
        source: prost::DecodeError,
    },
}

/// Wraps `message` in an `Any` whose type URL is its bare full name.
pub fn pack<M: Name>(message: &M) -> Any {
    Any {
        type_url: M::full_name(),
        value: message.encode_to_vec(),
    }
}

/// True if `type_url` names message `M`, in bare ("pkg.Msg") or URL
/// (`<domain>/pkg.Msg`) form.
pub fn is<M: Name>(type_url: &str) -> bool {
    let name = M::full_name();
    let bare = type_url.rsplit_once('/').map_or(type_url, |(_, tail)| tail);
    bare == name
}

/// Decodes the message of type `M` held in `any`.
pub fn unpack<M: Name + Default>(any: &Any) -> Result<M, AnyError> {
    if !is::<M>(&any.type_url) {
        return Err(AnyError::WrongType {
            expected: M::full_name(),
            actual: any.type_url.clone(),
        });
    }
    M::decode(any.value.as_slice()).map_err(|source| AnyError::Decode {
        type_name: M::full_name(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::containerd::events::{TaskExit, TaskOom};
    use crate::containerd::services::images::v1::ImageCreate;

    #[test]
    fn pack_uses_the_bare_full_name_containerd_clients_expect() {
        let any = pack(&TaskExit {
            container_id: "web".into(),
            exit_status: 3,
            ..Default::default()
        });
        assert_eq!(any.type_url, "containerd.events.TaskExit");
        // Image events keep the images service package on the wire.
        assert_eq!(
            pack(&ImageCreate::default()).type_url,
            "containerd.services.images.v1.ImageCreate"
        );
    }

    #[test]
    fn unpack_round_trips_and_accepts_the_url_form() {
        let exit = TaskExit {
            container_id: "web".into(),
            pid: 42,
            exit_status: 3,
            ..Default::default()
        };
        let mut any = pack(&exit);
        assert_eq!(unpack::<TaskExit>(&any).unwrap(), exit);
        any.type_url = "type.googleapis.com/containerd.events.TaskExit".into();
        assert_eq!(unpack::<TaskExit>(&any).unwrap(), exit);
    }

    #[test]
    fn unpack_rejects_another_type_and_bad_bytes() {
        let any = pack(&TaskExit::default());
        assert!(matches!(
            unpack::<TaskOom>(&any),
            Err(AnyError::WrongType { .. })
        ));
        let corrupt = Any {
            type_url: "containerd.events.TaskExit".into(),
            value: vec![0x0a, 0x05, b'a'],
        };
        assert!(matches!(
            unpack::<TaskExit>(&corrupt),
            Err(AnyError::Decode { .. })
        ));
    }
}
