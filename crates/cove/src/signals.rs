//! Signal names as users and init systems write them: `SIGUSR2`, `USR2`,
//! `12`, `SIGRTMIN+3`.

use std::str::FromStr;

use nix::sys::signal::Signal;

use crate::error::{Error, Result};

/// The real-time signal range, which nix's `Signal` enum does not cover.
fn rtmin() -> i32 {
    libc::SIGRTMIN()
}

fn rtmax() -> i32 {
    libc::SIGRTMAX()
}

pub fn parse(s: &str) -> Result<i32> {
    let bad = || {
        Error::BadInput(format!(
            "unknown signal {s:?}: use a name such as SIGTERM, SIGUSR2 or SIGRTMIN+3, or a number"
        ))
    };
    let t = s.trim();
    if let Ok(n) = t.parse::<i32>() {
        return if (1..=rtmax()).contains(&n) {
            Ok(n)
        } else {
            Err(bad())
        };
    }
    let upper = t.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(rest) = name.strip_prefix("RTMIN") {
        let off = if rest.is_empty() {
            0
        } else {
            rest.strip_prefix('+')
                .and_then(|n| n.parse::<i32>().ok())
                .ok_or_else(bad)?
        };
        let n = rtmin() + off;
        return if n <= rtmax() { Ok(n) } else { Err(bad()) };
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        let off = if rest.is_empty() {
            0
        } else {
            rest.strip_prefix('-')
                .and_then(|n| n.parse::<i32>().ok())
                .ok_or_else(bad)?
        };
        let n = rtmax() - off;
        return if n >= rtmin() { Ok(n) } else { Err(bad()) };
    }
    Signal::from_str(&format!("SIG{name}"))
        .map(|s| s as i32)
        .map_err(|_| bad())
}

/// `SIGUSR2`, `SIGRTMIN+3`, or the number when it has no name.
pub fn name(sig: i32) -> String {
    if (rtmin()..=rtmax()).contains(&sig) {
        return format!("SIGRTMIN+{}", sig - rtmin());
    }
    Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| sig.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse("SIGUSR2").unwrap(), libc::SIGUSR2);
        assert_eq!(parse("usr2").unwrap(), libc::SIGUSR2);
        assert_eq!(parse("15").unwrap(), libc::SIGTERM);
        assert_eq!(parse("SIGRTMIN+3").unwrap(), libc::SIGRTMIN() + 3);
        assert_eq!(name(libc::SIGRTMIN() + 3), "SIGRTMIN+3");
        assert_eq!(name(libc::SIGPWR), "SIGPWR");
        assert!(parse("SIGNOPE").is_err());
        assert!(parse("0").is_err());
        assert!(parse("RTMIN+99").is_err());
    }
}
