//! Applying a [`RuleSet`] to text: whole texts ([`scan_text`]) and streamed texts delta by
//! delta ([`TextStream`]), with the verdict and the findings (rule ids and counts, never the
//! matched text).

use regex_automata::hybrid::dfa::Cache;

use super::detect::{Hit, RuleSet, Side, MAX_HOLD_BYTES};
use super::normalize::Normalized;
use super::spec::{Action, Location};

/// One rule that fired `count` times with `action` (rule index into [`RuleSet::rules`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fired {
    /// Rule index.
    pub rule: usize,
    /// What was done.
    pub action: Action,
    /// How many matches.
    pub count: u32,
}

/// Rule id of the finding made when an in-progress match outgrows [`MAX_HOLD_BYTES`].
pub const HOLD_LIMIT_RULE: &str = "guardrails.hold_limit";

/// The outcome of scanning one piece of text.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Scanned {
    /// The text to forward or relay (redactions applied); `None` when unchanged (whole texts)
    /// — streams always fill it.
    pub text: Option<String>,
    /// The first rule whose action is `block` (input) or `stop` (output), if any.
    pub refused: Option<usize>,
    /// Everything that fired.
    pub fired: Vec<Fired>,
    /// Bytes redacted because an in-progress match outgrew the hold limit.
    pub overflowed: bool,
}

impl Scanned {
    /// Counts one match of `rule` with `action`.
    fn fire(&mut self, rule: usize, action: Action) {
        if matches!(action, Action::Block | Action::Stop) && self.refused.is_none() {
            self.refused = Some(rule);
        }
        match self
            .fired
            .iter_mut()
            .find(|f| f.rule == rule && f.action == action)
        {
            Some(f) => f.count += 1,
            None => self.fired.push(Fired {
                rule,
                action,
                count: 1,
            }),
        }
    }

    /// Adds what another scan fired (its text is the caller's business).
    pub(super) fn absorb(&mut self, other: &Scanned) {
        if self.refused.is_none() {
            self.refused = other.refused;
        }
        self.overflowed |= other.overflowed;
        for f in &other.fired {
            match self
                .fired
                .iter_mut()
                .find(|g| g.rule == f.rule && g.action == f.action)
            {
                Some(g) => g.count = g.count.saturating_add(f.count),
                None => self.fired.push(*f),
            }
        }
    }
}

/// Scans a complete text (a request message, a whole event's field).
pub fn scan_text(rs: &RuleSet, text: &str, side: Side, location: Location) -> Scanned {
    let mut out = Scanned::default();
    if rs.has_normalized(side, location) {
        let mut hits = Vec::new();
        Normalized::with(text, |norm| {
            rs.norm_hits(norm, 0, side, location, &mut hits)
        });
        for (rule, action) in hits {
            out.fire(rule, action);
        }
    }
    let mut hits = Vec::new();
    rs.raw_hits(text, side, location, &mut hits);
    for h in &hits {
        out.fire(h.rule, h.action);
    }
    if hits.iter().any(|h| h.action == Action::Redact) {
        out.text = Some(redact(rs, text, &hits));
    }
    out
}

/// `text` with every `redact` hit replaced by its placeholder.
fn redact(rs: &RuleSet, text: &str, hits: &[Hit]) -> String {
    redact_range(rs, text, 0, text.len(), hits)
}

/// One streamed text (an AG-UI message, reasoning message or tool call's arguments): the raw
/// tail held back because a match may still be in progress, and the normalized tail carried
/// over so a phrase split across deltas (or TCP chunks) is caught.
#[derive(Debug, Default)]
pub struct TextStream {
    /// `buf[..ctx]` was relayed already and is kept as context (the current word, for word
    /// boundaries and URLs); `buf[ctx..]` is held back.
    buf: String,
    ctx: usize,
    norm_tail: Normalized,
}

/// Longest context kept before the held text.
const CONTEXT_BYTES: usize = 256;

impl TextStream {
    /// Feeds one delta; `Scanned::text` is what may be relayed now (possibly empty).
    pub fn push(
        &mut self,
        rs: &RuleSet,
        cache: Option<&mut Cache>,
        delta: &str,
        location: Location,
    ) -> Scanned {
        let mut out = Scanned::default();
        if rs.has_normalized(Side::Output, location) {
            let from = self.norm_tail.len();
            self.norm_tail.push(delta);
            let mut hits = Vec::new();
            rs.norm_hits(&self.norm_tail, from, Side::Output, location, &mut hits);
            for (rule, action) in hits {
                out.fire(rule, action);
            }
            self.norm_tail.keep_last(rs.window);
        }
        self.buf.push_str(delta);
        let live = match cache {
            Some(cache) => rs.live_from(cache, &self.buf, self.ctx),
            None => self.buf.len(),
        };
        let mut hits = Vec::new();
        rs.raw_hits_from(&self.buf, self.ctx, Side::Output, location, &mut hits);
        // A match starting before the live point can no longer grow: it is final.
        hits.retain(|h| h.start < live);
        let cut = hits.iter().map(|h| h.end).fold(live, usize::max);
        for h in &hits {
            out.fire(h.rule, h.action);
        }
        let mut emit = redact_range(rs, &self.buf, self.ctx, cut, &hits);
        // Keep the current word (bounded) as context for the next delta.
        let mut keep_from = self.buf[..cut]
            .rfind(char::is_whitespace)
            .map_or(0, |i| i + 1)
            .max(cut.saturating_sub(CONTEXT_BYTES));
        while !self.buf.is_char_boundary(keep_from) {
            keep_from += 1;
        }
        self.buf.drain(..keep_from);
        self.ctx = cut - keep_from;
        if self.buf.len() - self.ctx > MAX_HOLD_BYTES {
            // Never relay part of what may be a secret: redact the whole overgrown tail.
            self.buf.clear();
            self.ctx = 0;
            emit.push_str("[REDACTED]");
            out.overflowed = true;
        }
        out.text = Some(emit);
        out
    }

    /// Ends the text: everything held is final now.
    pub fn finish(&mut self, rs: &RuleSet, location: Location) -> Scanned {
        let buf = std::mem::take(&mut self.buf);
        let ctx = std::mem::take(&mut self.ctx);
        self.norm_tail = Normalized::default();
        let mut hits = Vec::new();
        rs.raw_hits_from(&buf, ctx, Side::Output, location, &mut hits);
        let mut out = Scanned::default();
        for h in &hits {
            out.fire(h.rule, h.action);
        }
        out.text = Some(redact_range(rs, &buf, ctx, buf.len(), &hits));
        out
    }

    /// Bytes held back right now.
    pub fn held(&self) -> usize {
        self.buf.len() - self.ctx
    }
}

/// `text[from..to]` with the `redact` hits (absolute spans inside it) replaced.
fn redact_range(rs: &RuleSet, text: &str, from: usize, to: usize, hits: &[Hit]) -> String {
    let mut s = String::with_capacity(to - from);
    let mut at = from;
    for h in hits.iter().filter(|h| h.action == Action::Redact) {
        if h.start < at || h.end > to {
            continue;
        }
        s.push_str(&text[at..h.start]);
        s.push_str(&rs.rules[h.rule].placeholder());
        at = h.end;
    }
    s.push_str(&text[at..to]);
    s
}
