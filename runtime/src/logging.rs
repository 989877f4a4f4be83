//! Logging in runc's formats.
//!
//! containerd's runc shim starts the runtime with `--log B/log.json
//! --log-format json` and, when a command fails, shows its user the `msg` of
//! the last `error` line of that file. So the format is an interface:
//! one JSON object per line with `level`, `msg` and `time`, or logrus' text
//! form `time="…" level=error msg="…"`. Events come from the `tracing` crate;
//! this module only formats them.

use std::fmt;
use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Mutex;
use std::time::SystemTime;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
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

struct RuncFormat(LogFormat);

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// Collects an event's `message` field (and appends any other fields as
/// `key=value`, the way logrus shows structured fields).
#[derive(Default)]
struct MessageVisitor(String);

impl tracing::field::Visit for MessageVisitor {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        use fmt::Write;
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            self.0.push_str(&format!(" {}={value}", field.name()));
        }
    }
}

impl<S, N> FormatEvent<S, N> for RuncFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut msg = MessageVisitor::default();
        event.record(&mut msg);
        let level = level_name(event.metadata().level());
        let time = crate::utils::rfc3339_seconds(SystemTime::now());
        match self.0 {
            LogFormat::Json => {
                let line = serde_json::json!({"level": level, "msg": msg.0, "time": time});
                writeln!(writer, "{line}")
            }
            LogFormat::Text => {
                let quoted = serde_json::to_string(&msg.0).map_err(|_| fmt::Error)?;
                writeln!(writer, "time=\"{time}\" level={level} msg={quoted}")
            }
        }
    }
}

/// Set up the global logger. Without `--log`, messages go to stderr.
/// Returns whether a log file is in use (errors are then also printed on
/// stderr by the caller, as runc does).
pub fn init(log: Option<&Path>, format: LogFormat, debug: bool) -> std::io::Result<bool> {
    let level = if debug { Level::DEBUG } else { Level::WARN };
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .event_format(RuncFormat(format));
    match log {
        Some(path) if !path.as_os_str().is_empty() => {
            let file = OpenOptions::new().create(true).append(true).open(path)?;
            let _ = builder.with_writer(Mutex::new(file)).try_init();
            Ok(true)
        }
        _ => {
            let _ = builder.with_writer(std::io::stderr).try_init();
            Ok(false)
        }
    }
}
