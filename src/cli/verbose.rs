//! `-v` and `-vv` through `tracing`. `-v` prints keelson's own diagnostics (what
//! it reads, discovers, decides and waits for: the `tracing` events of keelson's
//! modules); `-vv` also prints each AWS request, timed from the SDK's own
//! operation span (`EC2.DescribeVpcs`) with the attempts it took.
//!
//! Only keelson's event messages and the SDK's service and operation names are
//! ever printed: never the SDK's events, a request's headers or body, or any
//! Debug structure of the SDK, so neither credentials nor user-data can leak.

use std::fmt::Write as _;
use std::time::Instant;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber, span};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;

/// Installs the printer of diagnostics; with no `-v`, nothing (and `tracing`
/// costs nothing).
pub fn init(verbose: u8) {
    if verbose == 0 {
        return;
    }
    let layer = Diagnostics {
        requests: verbose >= 2,
        start: Instant::now(),
    };
    // Fails only when a subscriber is already set (a second call): keep that one.
    let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer));
}

struct Diagnostics {
    requests: bool,
    start: Instant,
}

/// The SDK's span around one operation, from its start, with its attempts.
struct Operation {
    start: Instant,
    attempts: u32,
}

/// The SDK names an operation's span `SERVICE.Operation` and gives it the
/// `rpc.method` field; each attempt inside it is a `try_attempt` span.
fn is_operation(m: &Metadata<'_>) -> bool {
    m.target().starts_with("aws_sdk_") && m.fields().field("rpc.method").is_some()
}

fn is_attempt(m: &Metadata<'_>) -> bool {
    m.name() == "try_attempt" && m.target().starts_with("aws_smithy_runtime")
}

impl Diagnostics {
    fn line(&self, text: &str) {
        super::output::err_line(&format!(
            "[{:>8.3}s] {text}",
            self.start.elapsed().as_secs_f64()
        ));
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Diagnostics {
    fn enabled(&self, m: &Metadata<'_>, _: Context<'_, S>) -> bool {
        if m.target().starts_with("keelson") {
            return m.is_span() || *m.level() <= Level::DEBUG;
        }
        // The SDK's spans only (never its events), and only for -vv.
        self.requests && m.is_span() && (is_operation(m) || is_attempt(m))
    }

    fn on_new_span(&self, _: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        if is_operation(span.metadata()) {
            span.extensions_mut().insert(Operation {
                start: Instant::now(),
                attempts: 0,
            });
        } else if is_attempt(span.metadata()) {
            for parent in span.scope().skip(1) {
                if let Some(op) = parent.extensions_mut().get_mut::<Operation>() {
                    op.attempts += 1;
                    break;
                }
            }
        }
    }

    fn on_close(&self, id: span::Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let ext = span.extensions();
        let Some(op) = ext.get::<Operation>() else {
            return;
        };
        let mut text = format!(
            "aws {} {}",
            span.metadata().name(),
            crate::apply::critical::human(op.start.elapsed())
        );
        if op.attempts > 1 {
            let _ = write!(text, " ({} attempts)", op.attempts);
        }
        self.line(&text);
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut v = Fields::default();
        event.record(&mut v);
        self.line(&v.text);
    }
}

/// An event's message, then its other fields as `name=value`.
#[derive(Default)]
struct Fields {
    text: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_debug(field, &format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let sep = if self.text.is_empty() { "" } else { " " };
        if field.name() == "message" {
            let _ = write!(self.text, "{sep}{value:?}");
        } else {
            let _ = write!(self.text, "{sep}{}={value:?}", field.name());
        }
    }
}
