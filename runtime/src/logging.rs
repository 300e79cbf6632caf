//! Logging in runc's formats, so shims that read `--log` understand it:
//! text (`time="..." level=error msg="..."`) or JSON lines
//! (`{"level":"error","msg":"...","time":"..."}`).

use std::fmt::Write as _;
use std::fs::File;
use std::io::Write;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Writes one line per event to a file or to stderr.
struct RuncLayer {
    out: Mutex<Box<dyn Write + Send>>,
    format: Format,
    max: Level,
}

#[derive(Default)]
struct Fields {
    msg: String,
    rest: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.msg = value.to_owned();
        } else {
            self.rest.push((field.name().to_owned(), value.to_owned()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.msg = format!("{value:?}");
        } else {
            self.rest.push((field.name().to_owned(), format!("{value:?}")));
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

impl<S: Subscriber> Layer<S> for RuncLayer {
    fn enabled(&self, metadata: &tracing::Metadata<'_>, _: Context<'_, S>) -> bool {
        *metadata.level() <= self.max
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut f = Fields::default();
        event.record(&mut f);
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let level = level_name(event.metadata().level());
        let mut msg = f.msg;
        for (k, v) in &f.rest {
            let _ = write!(msg, " {k}={v}");
        }
        let line = match self.format {
            Format::Json => serde_json::json!({ "level": level, "msg": msg, "time": time }).to_string(),
            Format::Text => format!("time={time:?} level={level} msg={msg:?}"),
        };
        if let Ok(mut out) = self.out.lock() {
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }
}

/// Install the logger; `path` appends to a file (as runc does), otherwise
/// stderr. Returns an error message if the file cannot be opened.
pub fn init(path: Option<&std::path::Path>, format: Format, debug: bool) -> Result<(), String> {
    let out: Box<dyn Write + Send> = match path {
        Some(p) => Box::new(
            File::options().create(true).append(true).open(p).map_err(|e| format!("open log file {}: {e}", p.display()))?,
        ),
        None => Box::new(std::io::stderr()),
    };
    let max = if debug { Level::DEBUG } else { Level::WARN };
    tracing_subscriber::registry().with(RuncLayer { out: Mutex::new(out), format, max }).init();
    Ok(())
}
