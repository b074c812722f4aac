//! What a long transfer (pull, push, import, export, unpack) reports as it goes.
//!
//! Library code sends [`ProgressEvent`]s into a [`Progress`] handle; a display (the
//! CLI's progress table) or nothing at all receives them. Sending never blocks and never
//! fails the transfer: a display that went away is simply not told any more.

use tokio::sync::mpsc;

/// What kind of object a progress line is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ItemKind {
    /// An image index or manifest list.
    Index,
    /// An image manifest.
    Manifest,
    /// An image config blob.
    Config,
    /// A layer blob.
    Layer,
}

/// Where one object is in its transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItemState {
    /// Known, not started yet.
    Waiting,
    /// Bytes are moving (`done` of `total`).
    Transferring,
    /// Another client is fetching or unpacking the same object; waiting for it.
    WaitingForOther,
    /// Already present: nothing was transferred.
    Exists,
    /// All bytes arrived and were committed.
    Done,
    /// The layer is being applied to a snapshot.
    Unpacking,
    /// The layer's snapshot is committed.
    Unpacked,
    /// The transfer of this object failed (the error is returned by the call).
    Failed,
}

/// One update about one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemProgress {
    /// The object's digest, `sha256:<hex>`; the key a display groups lines by.
    pub digest: String,
    /// What the object is.
    pub kind: ItemKind,
    /// Where it is.
    pub state: ItemState,
    /// Bytes done so far (for a resumed ingest, counting what was there before).
    pub done: u64,
    /// The object's full size in bytes.
    pub total: u64,
}

/// An update sent while a transfer runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProgressEvent {
    /// A new state or byte count for one object.
    Item(ItemProgress),
    /// A line of text for the person watching (e.g. "resolved to sha256:…").
    Note(String),
}

/// Where progress goes: a channel to a display, or nowhere.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    sender: Option<mpsc::UnboundedSender<ProgressEvent>>,
}

impl Progress {
    /// Progress that nobody watches.
    pub fn none() -> Progress {
        Progress { sender: None }
    }

    /// Progress delivered to the returned receiver.
    pub fn channel() -> (Progress, mpsc::UnboundedReceiver<ProgressEvent>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        (
            Progress {
                sender: Some(sender),
            },
            receiver,
        )
    }

    /// Reports an event; a receiver that is gone is ignored.
    pub fn send(&self, event: ProgressEvent) {
        if let Some(sender) = &self.sender {
            let _ = sender.send(event);
        }
    }

    /// Reports a new state or byte count for one object.
    pub fn item(&self, digest: &str, kind: ItemKind, state: ItemState, done: u64, total: u64) {
        self.send(ProgressEvent::Item(ItemProgress {
            digest: digest.to_string(),
            kind,
            state,
            done,
            total,
        }));
    }

    /// Reports a line of text.
    pub fn note(&self, text: impl Into<String>) {
        self.send(ProgressEvent::Note(text.into()));
    }
}
