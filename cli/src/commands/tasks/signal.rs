//! Signal names and numbers as `tasks kill -s` takes them, and the signals berthctl
//! passes on to the process it is attached to.

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

/// Linux signal names (without `SIG`) and numbers.
const SIGNALS: [(&str, u32); 31] = [
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("STKFLT", 16),
    ("CHLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("PWR", 30),
    ("SYS", 31),
];

/// Parses a signal: a number (`9`), a name with or without `SIG` in any case (`SIGKILL`,
/// `kill`), or a real-time signal (`SIGRTMIN+3`, `RTMAX-1`). Used as a clap value parser.
pub fn parse_signal(text: &str) -> Result<u32, String> {
    let bad = || format!("{text:?} is not a signal: give a name such as SIGTERM or a number");
    let trimmed = text.trim();
    if let Ok(number) = trimmed.parse::<u32>() {
        return if (1..=64).contains(&number) {
            Ok(number)
        } else {
            Err(bad())
        };
    }
    let upper = trimmed.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(&(_, number)) = SIGNALS.iter().find(|(known, _)| *known == name) {
        return Ok(number);
    }
    let realtime = |base: u32, rest: &str| -> Option<u32> {
        let number = if rest.is_empty() {
            base
        } else if let Some(offset) = rest.strip_prefix('+') {
            base.checked_add(offset.parse().ok()?)?
        } else if let Some(offset) = rest.strip_prefix('-') {
            base.checked_sub(offset.parse().ok()?)?
        } else {
            return None;
        };
        (34..=64).contains(&number).then_some(number)
    };
    if let Some(rest) = name.strip_prefix("RTMIN") {
        return realtime(34, rest).ok_or_else(bad);
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        return realtime(64, rest).ok_or_else(bad);
    }
    Err(bad())
}

/// The name of signal `number` (`SIGTERM`), or its number as text.
pub fn signal_name(number: u32) -> String {
    SIGNALS
        .iter()
        .find(|(_, n)| *n == number)
        .map(|(name, _)| format!("SIG{name}"))
        .unwrap_or_else(|| number.to_string())
}

/// The signals berthctl passes on to the process it is attached to, instead of dying
/// of them: what a person or a supervisor sends to stop or poke a foreground program.
const FORWARDED: [SignalKind; 6] = [
    SignalKind::interrupt(),
    SignalKind::terminate(),
    SignalKind::hangup(),
    SignalKind::quit(),
    SignalKind::user_defined1(),
    SignalKind::user_defined2(),
];

/// Starts catching the [`FORWARDED`] signals; each one received is sent (as its number)
/// on the returned channel. Once called, these signals no longer end berthctl, so the
/// caller must act on them (pass them on, or stop and clean up).
pub fn catch_forwarded_signals() -> std::io::Result<mpsc::UnboundedReceiver<u32>> {
    let (tx, rx) = mpsc::unbounded_channel();
    for kind in FORWARDED {
        let mut stream = signal(kind)?;
        let tx = tx.clone();
        let number = kind.as_raw_value() as u32;
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                if tx.send(number).is_err() {
                    break;
                }
            }
        });
    }
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_numbers_and_realtime_signals() {
        assert_eq!(parse_signal("SIGKILL"), Ok(9));
        assert_eq!(parse_signal("kill"), Ok(9));
        assert_eq!(parse_signal("sigterm"), Ok(15));
        assert_eq!(parse_signal("9"), Ok(9));
        assert_eq!(parse_signal("SIGRTMIN"), Ok(34));
        assert_eq!(parse_signal("SIGRTMIN+3"), Ok(37));
        assert_eq!(parse_signal("RTMAX-1"), Ok(63));
        for bad in ["", "0", "65", "SIGNOPE", "RTMIN+40", "RTMAX-40", "RTMINx"] {
            assert!(parse_signal(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn every_name_round_trips() {
        for (name, number) in SIGNALS {
            assert_eq!(parse_signal(name), Ok(number));
            assert_eq!(signal_name(number), format!("SIG{name}"));
        }
        assert_eq!(signal_name(40), "40");
        assert_eq!(libc::SIGUSR1 as u32, parse_signal("USR1").unwrap());
        assert_eq!(libc::SIGSYS as u32, parse_signal("SYS").unwrap());
    }

    #[tokio::test]
    async fn a_caught_signal_arrives_on_the_channel() {
        let mut caught = catch_forwarded_signals().unwrap();
        // SAFETY: raise(3) sends a signal to this process; the handler installed above
        // turns it into a message instead of ending the test.
        unsafe {
            libc::raise(libc::SIGUSR2);
        }
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), caught.recv())
            .await
            .unwrap();
        assert_eq!(got, Some(libc::SIGUSR2 as u32));
    }
}
