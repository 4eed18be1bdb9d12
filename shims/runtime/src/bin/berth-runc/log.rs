//! Error reporting as runc's callers expect it: the message on stderr, and, with
//! `--log`, a line in the log file in text or JSON (`{"level","msg","time"}`).

use std::io::Write;
use std::path::Path;

use crate::cli::LogFormat;

pub fn report_error(message: &str, log: Option<&Path>, format: LogFormat) {
    eprintln!("berth-runc: {message}");
    let Some(path) = log else { return };
    let time = berth_runtime::state::now_rfc3339();
    let line = match format {
        LogFormat::Json => serde_json::json!({"level": "error", "msg": message, "time": time}).to_string(),
        LogFormat::Text => format!("time=\"{time}\" level=error msg={message:?}"),
    };
    if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(file, "{line}");
    }
}
