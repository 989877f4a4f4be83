//! Logging in runc's formats.
//!
//! containerd's runc shim starts the runtime with `--log B/log.json
//! --log-format json` and, when a command fails, shows its user the `msg` of
//! the last `error` line of that file. So the format is an interface:
//! one JSON object per line with `level`, `msg` and `time`, or logrus' text
//! form `time="…" level=error msg="…"`.
//!
//! Events come from the `tracing` macros; this module is the small
//! `tracing::Subscriber` that writes them. The runtime has no spans and no
//! threads worth tracking, so a subscriber of a few lines does the job of
//! `tracing-subscriber` without its weight in the binary (which matters:
//! `create` starts the binary twice).

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::SystemTime;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// logrus' text form: `time="…" level=error msg="…"`.
    Text,
    /// One JSON object per line, with `level`, `msg` and `time`.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("invalid log-format: {other}")),
        }
    }
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// The message of the last `error` line in a JSON log (`--log-format
/// json`): what a caller shows its user when a runtime command failed, as
/// containerd does with runc's log.
pub fn last_error(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["level"] == "error")
        .and_then(|v| v["msg"].as_str().map(str::to_string))
}

/// One log line in runc's format, stamped with the current time and ending
/// in a newline.
pub fn format_line(format: LogFormat, level: &str, msg: &str) -> String {
    let time = crate::utils::rfc3339_seconds(SystemTime::now());
    match format {
        LogFormat::Json => {
            format!(
                "{}\n",
                serde_json::json!({"level": level, "msg": msg, "time": time})
            )
        }
        LogFormat::Text => {
            // logrus quotes a message unless it is a plain word.
            let plain = !msg.is_empty()
                && msg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._/@^+".contains(&b));
            let quoted = if plain {
                msg.to_string()
            } else {
                serde_json::to_string(msg).unwrap_or_default()
            };
            format!("time=\"{time}\" level={level} msg={quoted}\n")
        }
    }
}

/// Collects an event's `message` field, and other fields as ` key=value`.
#[derive(Default)]
struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        use fmt::Write;
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            self.0.push_str(&format!(" {}={value}", field.name()));
        }
    }
}

enum Sink {
    Stderr,
    File(Mutex<File>),
}

struct RuncLogger {
    format: LogFormat,
    max: Level,
    sink: Sink,
}

impl Subscriber for RuncLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= self.max
    }
    fn new_span(&self, _span: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _span: &Id, _values: &Record<'_>) {}
    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut msg = Message::default();
        event.record(&mut msg);
        let line = format_line(self.format, level_name(event.metadata().level()), &msg.0);
        // Logging must never fail the operation being logged.
        let _ = match &self.sink {
            Sink::Stderr => std::io::stderr().write_all(line.as_bytes()),
            Sink::File(f) => f
                .lock()
                .map(|mut f| f.write_all(line.as_bytes()))
                .unwrap_or(Ok(())),
        };
    }
    fn enter(&self, _span: &Id) {}
    fn exit(&self, _span: &Id) {}
}

/// Set up the global logger. Without `--log`, messages go to stderr.
/// Returns whether a log file is in use (errors are then also printed on
/// stderr by the caller, as runc does).
pub fn init(log: Option<&Path>, format: LogFormat, debug: bool) -> std::io::Result<bool> {
    let max = if debug { Level::DEBUG } else { Level::WARN };
    let (sink, to_file) = match log {
        Some(path) if !path.as_os_str().is_empty() => {
            let file = OpenOptions::new().create(true).append(true).open(path)?;
            (Sink::File(Mutex::new(file)), true)
        }
        _ => (Sink::Stderr, false),
    };
    let _ = tracing::subscriber::set_global_default(RuncLogger { format, max, sink });
    Ok(to_file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_look_like_logrus() {
        let j = format_line(LogFormat::Json, "error", "boom \"x\"");
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "boom \"x\"");
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["level", "msg", "time"]);
        let t = format_line(LogFormat::Text, "error", "container does not exist");
        assert!(
            t.starts_with("time=\"")
                && t.ends_with(" level=error msg=\"container does not exist\"\n"),
            "{t}"
        );
        assert!(format_line(LogFormat::Text, "error", "EOF").ends_with("msg=EOF\n"));
    }
}
