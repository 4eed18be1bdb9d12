//! Signal names and numbers as runc's `kill` accepts them: `KILL`, `SIGKILL`, `9`,
//! `RTMIN+3`, `SIGRTMAX-1`.

use thiserror::Error;

#[derive(Debug, Error)]
#[error("unknown signal {0:?}")]
pub struct UnknownSignal(pub String);

const NAMED: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP), ("INT", libc::SIGINT), ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL), ("TRAP", libc::SIGTRAP), ("ABRT", libc::SIGABRT),
    ("IOT", libc::SIGIOT), ("BUS", libc::SIGBUS), ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL), ("USR1", libc::SIGUSR1), ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2), ("PIPE", libc::SIGPIPE), ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM), ("STKFLT", libc::SIGSTKFLT), ("CHLD", libc::SIGCHLD),
    ("CLD", libc::SIGCHLD), ("CONT", libc::SIGCONT), ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP), ("TTIN", libc::SIGTTIN), ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG), ("XCPU", libc::SIGXCPU), ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM), ("PROF", libc::SIGPROF), ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO), ("POLL", libc::SIGPOLL), ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];

/// Parses a signal given by name (with or without `SIG`, any case) or by number.
pub fn parse_signal(text: &str) -> Result<i32, UnknownSignal> {
    let unknown = || UnknownSignal(text.to_string());
    if let Ok(number) = text.parse::<i32>() {
        return if (1..=libc::SIGRTMAX()).contains(&number) { Ok(number) } else { Err(unknown()) };
    }
    let upper = text.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(&(_, number)) = NAMED.iter().find(|(n, _)| *n == name) {
        return Ok(number);
    }
    realtime_signal(name).ok_or_else(unknown)
}

fn realtime_signal(name: &str) -> Option<i32> {
    let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
    let (base, rest) = if let Some(rest) = name.strip_prefix("RTMIN") {
        (min, rest)
    } else {
        (max, name.strip_prefix("RTMAX")?)
    };
    let number = match rest {
        "" => base,
        _ if rest.starts_with('+') => base + rest[1..].parse::<i32>().ok()?,
        _ if rest.starts_with('-') => base - rest[1..].parse::<i32>().ok()?,
        _ => return None,
    };
    (min..=max).contains(&number).then_some(number)
}

#[cfg(test)]
mod tests {
    use super::parse_signal;

    #[test]
    fn names_numbers_and_realtime() {
        assert_eq!(parse_signal("KILL").unwrap(), libc::SIGKILL);
        assert_eq!(parse_signal("sigterm").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert_eq!(parse_signal("RTMIN+2").unwrap(), libc::SIGRTMIN() + 2);
        assert_eq!(parse_signal("SIGRTMAX").unwrap(), libc::SIGRTMAX());
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("0").is_err());
        assert!(parse_signal("RTMAX+1").is_err());
    }
}
