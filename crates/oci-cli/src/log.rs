//! runc's log lines: `--log FILE --log-format json` writes
//! `{"level":"…","msg":"…","time":"…"}` per line, the text format is
//! logrus's `time="…" level=… msg="…"`. A tiny tracing subscriber, no
//! threads, no buffering beyond one line.

use std::fs::File;
use std::io::Write;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};

pub struct Logger {
    file: Mutex<Option<File>>,
    json: bool,
    max: Level,
}

struct Msg(String);

impl Visit for Msg {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        } else {
            self.0.push_str(&format!(" {}={value:?}", field.name()));
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0 = value.to_string();
        } else {
            self.0.push_str(&format!(" {}={value:?}", field.name()));
        }
    }
}

fn level_name(l: &Level) -> &'static str {
    match *l {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

pub fn format_line(level: &str, msg: &str, json: bool) -> String {
    let time = cove_engine::state::now_rfc3339();
    if json {
        serde_json::json!({"level": level, "msg": msg, "time": time}).to_string()
    } else {
        format!("time={:?} level={} msg={:?}", time, level, msg)
    }
}

impl Logger {
    pub fn new(path: Option<&std::path::Path>, json: bool, debug: bool) -> std::io::Result<Logger> {
        let file = path
            .map(|p| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
            })
            .transpose()?;
        Ok(Logger {
            file: Mutex::new(file),
            json,
            max: if debug { Level::DEBUG } else { Level::WARN },
        })
    }

    /// Writes one line at `level` to the log file (or stderr without one).
    pub fn write(&self, level: &str, msg: &str) {
        let line = format_line(level, msg, self.json);
        let mut guard = match self.file.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        match guard.as_mut() {
            Some(f) => {
                let _ = writeln!(f, "{line}");
            }
            None => eprintln!("{line}"),
        }
    }

    pub fn has_file(&self) -> bool {
        self.file.lock().map(|g| g.is_some()).unwrap_or(false)
    }
}

pub struct Layer(pub &'static Logger);

impl Subscriber for Layer {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        *m.level() <= self.0.max
    }
    // With these two, a disabled callsite (every debug! without --debug)
    // costs one comparison: tracing caches the answer per callsite.
    fn register_callsite(&self, m: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        if self.enabled(m) {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }
    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::from_level(self.0.max))
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, e: &Event<'_>) {
        let mut m = Msg(String::new());
        e.record(&mut m);
        self.0.write(level_name(e.metadata().level()), &m.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}
