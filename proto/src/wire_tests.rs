//! Checks that our `.proto` files put every field where containerd's clients
//! expect it: hand-computed bytes for the messages `ctr` leans on most, and a
//! field-by-field comparison with the descriptors compiled into Debian's
//! `ctr` binary (package `containerd`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use prost::Message;
use prost_types::{DescriptorProto, EnumDescriptorProto, FileDescriptorProto, FileDescriptorSet};

use crate::containerd::services::content::v1::{
    ReadContentRequest, WriteAction, WriteContentRequest, WriteContentResponse,
};
use crate::containerd::services::events::v1::Envelope;

#[test]
fn write_content_request_fields_sit_at_containerds_numbers() {
    let request = WriteContentRequest {
        action: WriteAction::Commit as i32,
        r#ref: "r".into(),
        total: 5,
        expected: "sha256:x".into(),
        offset: 3,
        data: b"ab".to_vec(),
        labels: [("k".to_string(), "v".to_string())].into(),
    };
    let expected: Vec<u8> = [
        &[0x08, 0x02][..],                                 // 1 action = COMMIT (varint 2)
        &[0x12, 0x01, b'r'],                               // 2 ref
        &[0x18, 0x05],                                     // 3 total
        &[0x22, 0x08],                                     // 4 expected ...
        b"sha256:x",                                       //   ... its bytes
        &[0x28, 0x03],                                     // 5 offset
        &[0x32, 0x02, b'a', b'b'],                         // 6 data
        &[0x3a, 0x06, 0x0a, 0x01, b'k', 0x12, 0x01, b'v'], // 7 labels{k: v}
    ]
    .concat();
    assert_eq!(request.encode_to_vec(), expected);
}

#[test]
fn write_content_response_decodes_from_containerds_numbers() {
    let bytes = [
        0x08, 0x02, // 1 action = COMMIT
        0x20, 0x07, // 4 offset
        0x28, 0x09, // 5 total
        0x32, 0x03, b's', b':', b'd', // 6 digest
    ];
    let response = WriteContentResponse::decode(&bytes[..]).unwrap();
    assert_eq!(response.action(), WriteAction::Commit);
    assert_eq!(response.offset, 7);
    assert_eq!(response.total, 9);
    assert_eq!(response.digest, "s:d");
    assert_eq!(response.started_at, None);
}

#[test]
fn read_content_request_decodes_from_containerds_numbers() {
    let bytes = [0x0a, 0x01, b'd', 0x10, 0x80, 0x01, 0x18, 0x02];
    let request = ReadContentRequest::decode(&bytes[..]).unwrap();
    assert_eq!(request.digest, "d");
    assert_eq!(request.offset, 128);
    assert_eq!(request.size, 2);
}

#[test]
fn envelope_fields_sit_at_containerds_numbers() {
    let envelope = Envelope {
        timestamp: Some(prost_types::Timestamp {
            seconds: 1,
            nanos: 2,
        }),
        namespace: "ns".into(),
        topic: "/t".into(),
        event: Some(prost_types::Any {
            type_url: "x".into(),
            value: vec![1],
        }),
    };
    let expected = [
        0x0a, 0x04, 0x08, 0x01, 0x10, 0x02, // 1 timestamp {seconds 1, nanos 2}
        0x12, 0x02, b'n', b's', // 2 namespace
        0x1a, 0x02, b'/', b't', // 3 topic
        0x22, 0x06, 0x0a, 0x01, b'x', 0x12, 0x01, 0x01, // 4 event Any
    ];
    assert_eq!(envelope.encode_to_vec(), expected);
}

/// Where Debian installs the containerd client whose wire format we must match.
const CTR_BINARY: &str = "/usr/bin/ctr";

/// Go protobuf registers each file descriptor gzipped; every such member in
/// the binary starts with these bytes (gzip magic, deflate, no flags/mtime).
const GZIP_MEMBER_START: &[u8] = &[0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0];

/// Upper bound on one decompressed descriptor, to keep the scan bounded.
const MAX_DESCRIPTOR_BYTES: u64 = 4 << 20;

/// Every `FileDescriptorProto` embedded in the binary at `path`.
fn descriptors_in_binary(path: &str) -> Vec<FileDescriptorProto> {
    let binary = std::fs::read(path).unwrap_or_else(|e| {
        panic!("{path}: {e}; install the Debian package `containerd` to run this check")
    });
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(pos) = find(&binary[at..], GZIP_MEMBER_START) {
        let start = at + pos;
        at = start + 1;
        let mut inflated = Vec::new();
        let decoder = flate2::read::GzDecoder::new(&binary[start..]);
        if decoder
            .take(MAX_DESCRIPTOR_BYTES)
            .read_to_end(&mut inflated)
            .is_err()
        {
            continue;
        }
        if let Ok(file) = FileDescriptorProto::decode(inflated.as_slice()) {
            if file.name().ends_with(".proto") {
                found.push(file);
            }
        }
    }
    found
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// One comparable line per field, enum value and rpc, keyed by full name.
fn flatten(file: &FileDescriptorProto, out: &mut BTreeMap<String, String>) {
    let prefix = format!(".{}", file.package());
    for message in &file.message_type {
        flatten_message(&prefix, message, out);
    }
    for enumeration in &file.enum_type {
        flatten_enum(&prefix, enumeration, out);
    }
    for service in &file.service {
        let service_name = format!("{prefix}.{}", service.name());
        out.insert(service_name.clone(), "service".into());
        for method in &service.method {
            out.insert(
                format!("{service_name}/{}", method.name()),
                format!(
                    "({}{}) -> {}{}",
                    if method.client_streaming() {
                        "stream "
                    } else {
                        ""
                    },
                    method.input_type(),
                    if method.server_streaming() {
                        "stream "
                    } else {
                        ""
                    },
                    method.output_type(),
                ),
            );
        }
    }
}

fn flatten_message(prefix: &str, message: &DescriptorProto, out: &mut BTreeMap<String, String>) {
    let name = format!("{prefix}.{}", message.name());
    out.insert(name.clone(), "message".into());
    for field in &message.field {
        out.insert(
            format!("{name}#{}", field.name()),
            format!(
                "{} {:?} {:?} {}",
                field.number(),
                field.label(),
                field.r#type(),
                field.type_name()
            ),
        );
    }
    for nested in &message.nested_type {
        flatten_message(&name, nested, out);
    }
    for enumeration in &message.enum_type {
        flatten_enum(&name, enumeration, out);
    }
}

fn flatten_enum(
    prefix: &str,
    enumeration: &EnumDescriptorProto,
    out: &mut BTreeMap<String, String>,
) {
    let name = format!("{prefix}.{}", enumeration.name());
    out.insert(name.clone(), "enum".into());
    for value in &enumeration.value {
        out.insert(
            format!("{name}={}", value.name()),
            value.number().to_string(),
        );
    }
}

#[test]
fn every_field_and_rpc_matches_debians_ctr() {
    let ours = FileDescriptorSet::decode(crate::FILE_DESCRIPTOR_SET).unwrap();
    let our_packages: BTreeSet<&str> = ours.file.iter().map(|f| f.package()).collect();
    let mut our_items = BTreeMap::new();
    for file in &ours.file {
        flatten(file, &mut our_items);
    }

    let mut reference = BTreeMap::new();
    for file in descriptors_in_binary(CTR_BINARY) {
        // Well-known types come from protoc; google.rpc also holds error
        // details and codes, which we do not use.
        let package = file.package();
        let mirrored = our_packages.contains(package)
            && package != "google.protobuf"
            && (package != "google.rpc" || file.name() == "google/rpc/status.proto");
        if mirrored {
            flatten(&file, &mut reference);
        }
    }
    assert!(
        reference.len() > 500,
        "found only {} items in {CTR_BINARY}; did the descriptor scan break?",
        reference.len()
    );

    let mismatches: Vec<String> = reference
        .iter()
        .filter(|(key, theirs)| our_items.get(*key) != Some(*theirs))
        .map(|(key, theirs)| format!("{key}: ctr has {theirs}, we have {:?}", our_items.get(key)))
        .collect();
    assert!(
        mismatches.is_empty(),
        "wire mismatches:\n{}",
        mismatches.join("\n")
    );
}
