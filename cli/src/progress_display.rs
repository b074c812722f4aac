//! The live table a pull, push, import or export draws while it runs.
//!
//! One line per object (kind and short digest, state, a bar, bytes done of total), then
//! a total line with the elapsed time and rate. On a terminal the table is redrawn in
//! place about ten times a second; when stdout is not a terminal nothing is drawn while
//! the transfer runs and the command prints only its final summary, so logs and pipes
//! stay clean.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use berth_client::progress::{ItemKind, ItemProgress, ItemState, ProgressEvent};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::output::{human_size, Format};

/// How often the table is redrawn on a terminal.
const REDRAW_EVERY: Duration = Duration::from_millis(100);
/// Width of the progress bar, in characters.
const BAR_WIDTH: usize = 30;
/// Hex digits of a digest shown on a line.
const SHORT_DIGEST_HEX: usize = 12;

/// What the display tracks: one line per object, in the order they were first seen.
#[derive(Debug, Default)]
pub struct Board {
    items: Vec<Line>,
    index: HashMap<String, usize>,
    notes: Vec<String>,
}

/// One object's latest progress, and what it went through on the way.
#[derive(Debug)]
struct Line {
    progress: ItemProgress,
    /// It was reported as already present at some point.
    was_present: bool,
    /// Its bytes were moved by this transfer (it was transferring or done).
    was_moved: bool,
}

impl Line {
    fn note(&mut self, state: ItemState) {
        self.was_present |= state == ItemState::Exists;
        self.was_moved |= matches!(state, ItemState::Transferring | ItemState::Done);
    }
}

/// What a finished transfer adds up to, for the command's summary line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Objects the transfer touched.
    pub objects: usize,
    /// Of those, objects already present that were not transferred.
    pub already_present: usize,
    /// Bytes moved by this transfer (objects already present count nothing).
    pub bytes_transferred: u64,
    /// Bytes of every object, moved or not.
    pub bytes_total: u64,
    /// How long the transfer took.
    pub elapsed: Duration,
}

impl Totals {
    /// `3 objects (1 already present), 1.0 MiB transferred in 0.4 s`.
    pub fn describe(&self) -> String {
        let mut text = format!("{} objects", self.objects);
        if self.already_present > 0 {
            text.push_str(&format!(" ({} already present)", self.already_present));
        }
        text.push_str(&format!(
            ", {} transferred in {:.1} s",
            human_size(self.bytes_transferred),
            self.elapsed.as_secs_f64()
        ));
        text
    }
}

impl Board {
    /// Takes one event into account.
    pub fn apply(&mut self, event: ProgressEvent) {
        match event {
            ProgressEvent::Note(text) => self.notes.push(text),
            ProgressEvent::Item(item) => match self.index.get(&item.digest) {
                Some(&at) => {
                    let line = &mut self.items[at];
                    line.note(item.state);
                    // A line keeps the kind it was first given.
                    let progress = &mut line.progress;
                    progress.state = item.state;
                    progress.done = item.done;
                    progress.total = item.total.max(progress.total);
                }
                None => {
                    self.index.insert(item.digest.clone(), self.items.len());
                    let mut line = Line {
                        progress: item,
                        was_present: false,
                        was_moved: false,
                    };
                    line.note(line.progress.state);
                    self.items.push(line);
                }
            },
        }
    }

    /// What the board adds up to after `elapsed`.
    pub fn totals(&self, elapsed: Duration) -> Totals {
        let already_present = self.items.iter().filter(|l| l.was_present).count();
        Totals {
            objects: self.items.len(),
            already_present,
            bytes_transferred: self
                .items
                .iter()
                .filter(|l| l.was_moved && !l.was_present)
                .map(|l| l.progress.done)
                .sum(),
            bytes_total: self.items.iter().map(|l| l.progress.total).sum(),
            elapsed,
        }
    }

    /// The table's lines: notes, one line per object, the total line.
    pub fn render(&self, active_word: &str, elapsed: Duration) -> Vec<String> {
        let mut lines: Vec<String> = self.notes.clone();
        // Indexes, manifests and configs first, then layers; each in the order seen.
        let mut ordered: Vec<&ItemProgress> = self.items.iter().map(|l| &l.progress).collect();
        ordered.sort_by_key(|item| kind_rank(item.kind));
        let labels: Vec<String> = ordered.iter().map(|item| item_label(item)).collect();
        let label_width = labels.iter().map(String::len).max().unwrap_or(0);
        for (item, label) in ordered.into_iter().zip(&labels) {
            lines.push(format!(
                "{label:<label_width$}  {:<12}  {}  {}",
                state_word(item.state, active_word),
                bar(item),
                byte_counts(item)
            ));
        }
        let totals = self.totals(elapsed);
        let done: u64 = self
            .items
            .iter()
            .map(|l| l.progress.done.min(l.progress.total))
            .sum();
        let seconds = elapsed.as_secs_f64();
        let rate = if seconds > 0.0 {
            format!(
                "{}/s",
                human_size((totals.bytes_transferred as f64 / seconds) as u64)
            )
        } else {
            "-".to_string()
        };
        lines.push(format!(
            "elapsed: {seconds:.1} s  total: {}/{}  ({rate})",
            human_size(done),
            human_size(totals.bytes_total)
        ));
        lines
    }
}

/// Where lines of a kind go in the table.
fn kind_rank(kind: ItemKind) -> u8 {
    match kind {
        ItemKind::Index => 0,
        ItemKind::Manifest => 1,
        ItemKind::Config => 2,
        ItemKind::Layer => 3,
    }
}

/// `layer sha256:0123456789ab`.
fn item_label(item: &ItemProgress) -> String {
    let kind = match item.kind {
        ItemKind::Index => "index",
        ItemKind::Manifest => "manifest",
        ItemKind::Config => "config",
        ItemKind::Layer => "layer",
    };
    let short = match item.digest.split_once(':') {
        Some((algorithm, hex)) => {
            format!("{algorithm}:{}", &hex[..hex.len().min(SHORT_DIGEST_HEX)])
        }
        None => item.digest.chars().take(SHORT_DIGEST_HEX + 7).collect(),
    };
    format!("{kind} {short}")
}

fn state_word(state: ItemState, active_word: &str) -> String {
    match state {
        ItemState::Waiting => "waiting",
        ItemState::Transferring => active_word,
        ItemState::WaitingForOther => "waiting (other)",
        ItemState::Exists => "exists",
        ItemState::Done => "done",
        ItemState::Unpacking => "unpacking",
        ItemState::Unpacked => "unpacked",
        ItemState::Failed => "failed",
    }
    .to_string()
}

/// `|++++++-------|`, full once the object is complete.
fn bar(item: &ItemProgress) -> String {
    let complete = matches!(
        item.state,
        ItemState::Exists | ItemState::Done | ItemState::Unpacking | ItemState::Unpacked
    );
    let filled = if complete {
        BAR_WIDTH
    } else if item.total == 0 {
        0
    } else {
        ((item.done.min(item.total) as f64 / item.total as f64) * BAR_WIDTH as f64) as usize
    };
    format!("|{}{}|", "+".repeat(filled), "-".repeat(BAR_WIDTH - filled))
}

fn byte_counts(item: &ItemProgress) -> String {
    format!(
        "{}/{}",
        human_size(item.done.min(item.total.max(item.done))),
        human_size(item.total)
    )
}

/// A running display; [`ProgressDisplay::finish`] draws the last frame and returns the
/// totals.
#[derive(Debug)]
pub struct ProgressDisplay {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Totals>,
}

impl ProgressDisplay {
    /// Starts rendering `events`; `active_word` names bytes in motion (`downloading`,
    /// `uploading`, `importing`, `exporting`). Draws only for table output on a
    /// terminal: JSON output stays machine-readable.
    pub fn start(
        events: mpsc::UnboundedReceiver<ProgressEvent>,
        active_word: &'static str,
        format: Format,
    ) -> ProgressDisplay {
        let draw = format == Format::Table && std::io::stdout().is_terminal();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(render_loop(events, stopped, active_word, draw));
        ProgressDisplay {
            stop: Some(stop),
            task,
        }
    }

    /// Stops the display after the events already sent, draws the final frame (on a
    /// terminal) and returns what the transfer added up to.
    pub async fn finish(mut self) -> Totals {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.unwrap_or(Totals {
            objects: 0,
            already_present: 0,
            bytes_transferred: 0,
            bytes_total: 0,
            elapsed: Duration::ZERO,
        })
    }
}

/// Collects events, redraws on a timer when drawing, and returns the totals once told
/// to stop (or once every sender is gone).
async fn render_loop(
    mut events: mpsc::UnboundedReceiver<ProgressEvent>,
    mut stopped: oneshot::Receiver<()>,
    active_word: &'static str,
    draw: bool,
) -> Totals {
    let started = Instant::now();
    let mut board = Board::default();
    let mut screen = Screen::default();
    let mut ticker = tokio::time::interval(REDRAW_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(event) => board.apply(event),
                None => break,
            },
            _ = &mut stopped => {
                while let Ok(event) = events.try_recv() {
                    board.apply(event);
                }
                break;
            }
            _ = ticker.tick(), if draw => {
                screen.draw(&board.render(active_word, started.elapsed()));
            }
        }
    }
    let elapsed = started.elapsed();
    if draw {
        screen.draw(&board.render(active_word, elapsed));
    }
    board.totals(elapsed)
}

/// The lines last drawn on the terminal, so the next frame overwrites them in place.
#[derive(Debug, Default)]
struct Screen {
    lines_drawn: usize,
}

impl Screen {
    fn draw(&mut self, lines: &[String]) {
        let width = terminal_width().unwrap_or(usize::MAX);
        let mut frame = String::new();
        if self.lines_drawn > 0 {
            // Back to the first line of the previous frame.
            frame.push_str(&format!("\x1b[{}F", self.lines_drawn));
        }
        for line in lines {
            // A line wider than the terminal would wrap and break the cursor arithmetic.
            let shown: String = line.chars().take(width.saturating_sub(1).max(1)).collect();
            frame.push_str("\x1b[2K");
            frame.push_str(&shown);
            frame.push('\n');
        }
        // Clear whatever the previous, longer frame left below.
        frame.push_str("\x1b[J");
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(frame.as_bytes());
        let _ = out.flush();
        self.lines_drawn = lines.len();
    }
}

/// The terminal's width in columns, if stdout is a terminal that says.
fn terminal_width() -> Option<usize> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` into the pointed-to struct, which lives on
    // this stack frame for the whole call; fd 1 is only read from.
    let rc = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) };
    (rc == 0 && size.ws_col > 0).then_some(usize::from(size.ws_col))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(
        digest: &str,
        kind: ItemKind,
        state: ItemState,
        done: u64,
        total: u64,
    ) -> ProgressEvent {
        ProgressEvent::Item(ItemProgress {
            digest: digest.into(),
            kind,
            state,
            done,
            total,
        })
    }

    const LAYER: &str = "sha256:32b2315284457421c67125ec0df9ecbc9da842b0db2679dfd4ea598dce16e483";
    const CONFIG: &str = "sha256:e398920a74cf44635015d2bd2ec634799d783dcab9aa062ce9b2bfb199c85861";

    #[test]
    fn one_line_per_object_updated_in_place() {
        let mut board = Board::default();
        board.apply(item(LAYER, ItemKind::Layer, ItemState::Waiting, 0, 2048));
        board.apply(item(CONFIG, ItemKind::Config, ItemState::Exists, 284, 284));
        board.apply(item(
            LAYER,
            ItemKind::Layer,
            ItemState::Transferring,
            1024,
            2048,
        ));
        let lines = board.render("downloading", Duration::from_secs(2));
        assert_eq!(lines.len(), 3, "{lines:#?}");
        // The config comes before the layer although it was seen after it.
        assert!(
            lines[0].starts_with("config sha256:e398920a74cf "),
            "{}",
            lines[0]
        );
        assert!(lines[0].contains("exists"), "{}", lines[0]);
        assert!(
            lines[1].starts_with("layer sha256:32b231528445 "),
            "{}",
            lines[1]
        );
        assert!(lines[1].contains("downloading"), "{}", lines[1]);
        assert!(
            lines[1].contains("|+++++++++++++++---------------|"),
            "{}",
            lines[1]
        );
        assert!(lines[1].ends_with("1.0 KiB/2.0 KiB"), "{}", lines[1]);
        assert!(lines[2].starts_with("elapsed: 2.0 s"), "{}", lines[2]);
    }

    #[test]
    fn totals_leave_out_what_was_already_there() {
        let mut board = Board::default();
        board.apply(item(LAYER, ItemKind::Layer, ItemState::Done, 2048, 2048));
        board.apply(item(CONFIG, ItemKind::Config, ItemState::Exists, 284, 284));
        let totals = board.totals(Duration::from_millis(400));
        assert_eq!(totals.objects, 2);
        assert_eq!(totals.already_present, 1);
        assert_eq!(totals.bytes_transferred, 2048);
        assert_eq!(totals.bytes_total, 2048 + 284);
        assert_eq!(
            totals.describe(),
            "2 objects (1 already present), 2.0 KiB transferred in 0.4 s"
        );
    }

    #[test]
    fn an_object_found_present_then_unpacked_counts_as_present_not_moved() {
        let mut board = Board::default();
        board.apply(item(LAYER, ItemKind::Layer, ItemState::Exists, 2048, 2048));
        board.apply(item(
            LAYER,
            ItemKind::Layer,
            ItemState::Unpacking,
            2048,
            2048,
        ));
        board.apply(item(
            LAYER,
            ItemKind::Layer,
            ItemState::Unpacked,
            2048,
            2048,
        ));
        board.apply(item(
            CONFIG,
            ItemKind::Config,
            ItemState::Transferring,
            100,
            284,
        ));
        let totals = board.totals(Duration::from_secs(1));
        assert_eq!(totals.already_present, 1);
        assert_eq!(totals.bytes_transferred, 100);
    }

    #[test]
    fn notes_are_shown_above_the_objects() {
        let mut board = Board::default();
        board.apply(ProgressEvent::Note("resolved to sha256:ab".into()));
        board.apply(item(LAYER, ItemKind::Layer, ItemState::Unpacked, 10, 10));
        let lines = board.render("downloading", Duration::ZERO);
        assert_eq!(lines[0], "resolved to sha256:ab");
        assert!(lines[1].contains("unpacked"));
        assert!(lines[1].contains(&format!("|{}|", "+".repeat(BAR_WIDTH))));
    }

    #[tokio::test]
    async fn finishing_returns_the_totals_of_every_event_sent() {
        let (progress, receiver) = berth_client::progress::Progress::channel();
        let display = ProgressDisplay::start(receiver, "downloading", Format::Table);
        progress.item(LAYER, ItemKind::Layer, ItemState::Done, 100, 100);
        progress.item(CONFIG, ItemKind::Config, ItemState::Done, 5, 5);
        let totals = display.finish().await;
        assert_eq!(totals.objects, 2);
        assert_eq!(totals.bytes_transferred, 105);
    }
}
