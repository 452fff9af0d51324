//! `egressor top`: the live, keyboard-driven view (ratatui). [`App`] is the whole state and is
//! driven by [`App::on_key`] and [`App::on_tick`], and [`draw`] renders it: tests feed events and
//! ticks to a `TestBackend` without sleeping. [`run`] is the one place that owns the terminal.

use crate::engines::classify::Class;
use crate::engines::live::{LiveEdge, LiveModel};
use crate::model::human_bytes;
use crate::views::cost::money;
use crate::views::graph::human_rate;
use ratatui::Frame;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::layout::{Constraint, Direction as LDir, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Clear, Paragraph, Row, Table, TableState, Wrap};
use rust_decimal::Decimal;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortBy {
    Rate,
    Total,
    Cost,
}

impl SortBy {
    fn next(self) -> SortBy {
        match self {
            SortBy::Rate => SortBy::Total,
            SortBy::Total => SortBy::Cost,
            SortBy::Cost => SortBy::Rate,
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            SortBy::Rate => "rate",
            SortBy::Total => "total",
            SortBy::Cost => "cost",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Popup {
    None,
    Help,
    Drill,
}

/// What the caller must do after a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    Quit,
    /// The level changed: the model was reset.
    LevelChanged,
}

pub struct App {
    pub model: LiveModel,
    /// Where the data comes from, for the title ("local capture on host", "replay 1.0x", ...).
    pub source: String,
    pub sort: SortBy,
    pub filter: String,
    editing_filter: Option<String>,
    pub paused: bool,
    selected: usize,
    popup: Popup,
    pub status: Option<String>,
    /// Open anomalies of the workspace (last 24 hours), costliest first: the anomalies pane.
    pub anomalies: Vec<AnomalyLine>,
}

/// One finding as the anomalies pane shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct AnomalyLine {
    pub id: String,
    pub kind: &'static str,
    pub subject: String,
    pub cost_per_day: Option<Decimal>,
}

impl App {
    pub fn new(model: LiveModel, source: impl Into<String>) -> Self {
        App {
            model,
            source: source.into(),
            sort: SortBy::Rate,
            filter: String::new(),
            editing_filter: None,
            paused: false,
            selected: 0,
            popup: Popup::None,
            status: None,
            anomalies: Vec::new(),
        }
    }

    /// The edges as shown: filtered and sorted (ties by name, so the order is stable).
    pub fn visible(&self) -> Vec<&LiveEdge> {
        self.visible_top(usize::MAX).1
    }

    /// How many edges pass the filter, and the first `k` of them in display order: a draw needs
    /// only the rows up to the selection plus a screen, not 10,000 sorted edges four times a second.
    pub fn visible_top(&self, k: usize) -> (usize, Vec<&LiveEdge>) {
        let f = self.filter.to_lowercase();
        let mut v: Vec<&LiveEdge> = self
            .model
            .edges
            .iter()
            .filter(|e| {
                f.is_empty()
                    || e.src.to_lowercase().contains(&f)
                    || e.dst.to_lowercase().contains(&f)
                    || e.class.as_str().contains(&f)
            })
            .collect();
        let order = |a: &&LiveEdge, b: &&LiveEdge| {
            let o = match self.sort {
                SortBy::Rate => b.rate.total_cmp(&a.rate).then(b.total_bytes.cmp(&a.total_bytes)),
                SortBy::Total => b.total_bytes.cmp(&a.total_bytes),
                SortBy::Cost => b.total_cost.cmp(&a.total_cost).then(b.total_bytes.cmp(&a.total_bytes)),
            };
            o.then_with(|| a.src.cmp(&b.src)).then_with(|| a.dst.cmp(&b.dst))
        };
        let n = v.len();
        if k < n {
            // The order is total (names break ties), so the first k are the same as a full sort's.
            v.select_nth_unstable_by(k, order);
            v.truncate(k);
        }
        v.sort_by(order);
        (n, v)
    }

    pub fn on_key(&mut self, key: KeyEvent) -> Action {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return Action::Quit;
        }
        if let Some(buf) = &mut self.editing_filter {
            match key.code {
                KeyCode::Enter => {
                    self.filter = self.editing_filter.take().unwrap_or_default();
                    self.selected = 0;
                }
                KeyCode::Esc => self.editing_filter = None,
                KeyCode::Backspace => {
                    buf.pop();
                }
                KeyCode::Char(c) => buf.push(c),
                _ => {}
            }
            return Action::Continue;
        }
        if self.popup != Popup::None {
            if matches!(key.code, KeyCode::Esc | KeyCode::Enter | KeyCode::Char('q') | KeyCode::Char('?')) {
                self.popup = Popup::None;
            }
            return Action::Continue;
        }
        let n = self.visible_top(0).0;
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => return Action::Quit,
            KeyCode::Down | KeyCode::Char('j') => {
                self.selected = (self.selected + 1).min(n.saturating_sub(1))
            }
            KeyCode::Up | KeyCode::Char('k') => self.selected = self.selected.saturating_sub(1),
            KeyCode::PageDown => self.selected = (self.selected + 10).min(n.saturating_sub(1)),
            KeyCode::PageUp => self.selected = self.selected.saturating_sub(10),
            KeyCode::Home | KeyCode::Char('g') => self.selected = 0,
            KeyCode::End | KeyCode::Char('G') => self.selected = n.saturating_sub(1),
            KeyCode::Enter if n > 0 => self.popup = Popup::Drill,
            KeyCode::Char('/') => self.editing_filter = Some(self.filter.clone()),
            KeyCode::Char('s') => self.sort = self.sort.next(),
            KeyCode::Char('p') | KeyCode::Char(' ') => self.paused = !self.paused,
            KeyCode::Char('?') | KeyCode::Char('h') => self.popup = Popup::Help,
            KeyCode::Char('l') => {
                let next = self.model.level.next();
                self.model.set_level(next);
                self.selected = 0;
                self.status = Some(format!("level {}: totals restart now", next.as_str()));
                return Action::LevelChanged;
            }
            _ => {}
        }
        Action::Continue
    }

    pub fn selected_edge(&self) -> Option<&LiveEdge> {
        self.visible_top(self.selected + 1).1.get(self.selected).copied()
    }
}

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// A sparkline of the last `width` ticks as text (a blank for zero).
fn sparkline(history: &std::collections::VecDeque<u64>, width: usize) -> String {
    let tail: Vec<u64> = history.iter().rev().take(width).rev().copied().collect();
    let max = tail.iter().copied().max().unwrap_or(0);
    let mut s: String = std::iter::repeat_n(' ', width - tail.len()).collect();
    for v in tail {
        s.push(if v == 0 || max == 0 { ' ' } else { BARS[((v * 7) / max) as usize] });
    }
    s
}

/// The part of a name that tells edges apart in a narrow column: `shop/Deployment/web` -> `web`,
/// `internet 203.0.113.9` -> `203.0.113.9`, `aws:S3 us-east-1` -> `S3 us-east-1`.
fn short_name(s: &str) -> &str {
    if let Some(rest) = s.strip_prefix("internet ") {
        return rest;
    }
    if let Some((_, rest)) = s.split_once(':')
        && !s.contains('/')
        && s.parse::<std::net::IpAddr>().is_err()
    {
        return rest;
    }
    if s.parse::<std::net::IpAddr>().is_ok() {
        return s;
    }
    s.rsplit('/').next().unwrap_or(s)
}

fn class_style(c: Class) -> Style {
    match c {
        Class::CrossZone | Class::PeeringCrossZone | Class::TransitGateway => {
            Style::default().fg(Color::Yellow)
        }
        Class::CrossRegion | Class::Internet | Class::NatInternet | Class::NatCloudService => {
            Style::default().fg(Color::Red)
        }
        Class::Unknown => Style::default().fg(Color::Magenta),
        _ => Style::default().fg(Color::Green),
    }
}

fn per_hour(d: Decimal) -> String {
    if d.is_zero() {
        "0".into()
    } else if d < Decimal::new(1, 2) {
        format!("{:.4}", d.round_dp(4))
    } else {
        money(d)
    }
}

pub fn draw(f: &mut Frame, app: &App) {
    let area = f.area();
    let rows = Layout::default()
        .direction(LDir::Vertical)
        .constraints([Constraint::Length(1), Constraint::Min(5), Constraint::Length(1)])
        .split(area);
    let m = &app.model;
    let title = Line::from(vec![
        Span::styled(" egressor top ", Style::default().add_modifier(Modifier::BOLD | Modifier::REVERSED)),
        Span::raw(format!(
            " {} · level {} · sort {} · {} {}",
            app.source,
            m.level.as_str(),
            app.sort.as_str(),
            human_rate(m.bytes_per_sec),
            if app.paused { "· PAUSED" } else { "" }
        )),
    ]);
    f.render_widget(Paragraph::new(title), rows[0]);

    let wide = area.width >= 100;
    let body = Layout::default()
        .direction(LDir::Horizontal)
        .constraints(if wide {
            [Constraint::Percentage(68), Constraint::Percentage(32)]
        } else {
            [Constraint::Min(40), Constraint::Length(24)]
        })
        .split(rows[1]);
    draw_edges(f, app, body[0]);
    let anomalies_h = if app.anomalies.is_empty() { 0 } else { (app.anomalies.len() as u16 * 2 + 2).min(8) };
    let right = Layout::default()
        .direction(LDir::Vertical)
        .constraints([
            Constraint::Length((m.class_rate.len() as u16 + 5).min(body[1].height / 2 + 2)),
            Constraint::Length(anomalies_h),
            Constraint::Min(3),
        ])
        .split(body[1]);
    draw_cost(f, app, right[0]);
    if anomalies_h > 0 {
        draw_anomalies(f, app, right[1]);
    }
    draw_graph(f, app, right[2]);

    let footer = match &app.editing_filter {
        Some(buf) => format!(" filter: {buf}▏ (Enter apply, Esc cancel)"),
        None => match &app.status {
            Some(s) => format!(" {s} · ? help"),
            None => " ↑↓ move · ⏎ drill · / filter · s sort · l level · p pause · ? help · q quit".into(),
        },
    };
    f.render_widget(Paragraph::new(footer).style(Style::default().add_modifier(Modifier::DIM)), rows[2]);

    match app.popup {
        Popup::Help => draw_help(f, area),
        Popup::Drill => draw_drill(f, app, area),
        Popup::None => {}
    }
}

fn draw_edges(f: &mut Frame, app: &App, area: Rect) {
    let height = area.height.saturating_sub(3).max(1) as usize;
    let (total, visible) = app.visible_top(app.selected + height);
    let cur = &app.model.currency;
    let spark_w: usize = if area.width >= 90 { 16 } else { 6 };
    // Full names where there is room for them; the drill-down always shows them in full.
    let full = area.width >= 120;
    let name = |s: &str| if full { s.to_string() } else { short_name(s).to_string() };
    let header = Row::new(vec!["from", "to", "rate", "total", "/h", "trend"])
        .style(Style::default().add_modifier(Modifier::BOLD));
    // Only the rows that fit are built: with 10,000 edges the rest would be formatted for nothing.
    let selected = app.selected.min(total.saturating_sub(1));
    let offset = selected.saturating_sub(height - 1);
    let rows: Vec<Row> = visible
        .iter()
        .skip(offset)
        .take(height)
        .map(|e| {
            Row::new(vec![
                Cell::from(name(&e.src)),
                Cell::from(name(&e.dst)).style(class_style(e.class)),
                Cell::from(if full {
                    human_rate(e.rate)
                } else {
                    human_rate(e.rate).replace("bit/s", "b/s")
                }),
                Cell::from(human_bytes(e.total_bytes)),
                Cell::from(per_hour(e.cost_per_hour)),
                Cell::from(sparkline(&e.history, spark_w)),
            ])
        })
        .collect();
    let title = format!(
        " edges {}{} · {} {cur} so far ",
        total,
        if app.filter.is_empty() { String::new() } else { format!(" matching \"{}\"", app.filter) },
        money(app.model.total_cost)
    );
    let table = Table::new(
        rows,
        [
            Constraint::Fill(1),
            Constraint::Fill(1),
            Constraint::Length(if full { 11 } else { 10 }),
            Constraint::Length(if full { 9 } else { 8 }),
            Constraint::Length(if full { 7 } else { 5 }),
            Constraint::Length(spark_w as u16),
        ],
    )
    .header(header)
    .block(Block::default().borders(Borders::ALL).title(title))
    .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED))
    .highlight_symbol("›");
    let mut state = TableState::default();
    if !visible.is_empty() {
        state.select(Some(selected - offset));
    }
    f.render_stateful_widget(table, area, &mut state);
}

fn draw_cost(f: &mut Frame, app: &App, area: Rect) {
    let m = &app.model;
    let cur = &m.currency;
    let mut lines: Vec<Line> = Vec::new();
    let mut classes: Vec<_> = m.class_rate.iter().filter(|(_, v)| !v.is_zero()).collect();
    classes.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let inner = area.width.saturating_sub(2) as usize;
    for (c, v) in classes {
        let value = format!("{}/h", per_hour(*v));
        let pad = inner.saturating_sub(value.chars().count() + 1).max(1);
        let label: String = c.as_str().chars().take(pad).collect();
        lines.push(Line::from(vec![
            Span::styled(format!("{label:<pad$} "), class_style(*c)),
            Span::raw(value),
        ]));
    }
    if lines.is_empty() {
        lines.push(Line::from("no priced traffic yet"));
    }
    lines.push(Line::from(format!("now   {} {cur}/h", per_hour(m.cost_per_hour))));
    lines.push(Line::from(format!(
        "month ≈ {} {cur}",
        money(m.cost_per_hour * Decimal::from(crate::engines::cost::HOURS_PER_MONTH))
    )));
    f.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" cost rate ")),
        area,
    );
}

/// Open anomalies (from the workspace, last 24 hours): type, cost a day, subject, id for
/// `egressor anomalies show`.
fn draw_anomalies(f: &mut Frame, app: &App, area: Rect) {
    let cur = &app.model.currency;
    let inner = area.width.saturating_sub(2) as usize;
    let mut lines = Vec::new();
    for a in app.anomalies.iter().take(area.height.saturating_sub(2) as usize / 2) {
        let cost = a.cost_per_day.map(|c| format!("{} {cur}/day", money(c))).unwrap_or_default();
        lines.push(Line::from(vec![
            Span::styled(
                format!("{} ", a.kind),
                Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
            ),
            Span::raw(cost),
            Span::styled(format!(" {}", a.id), Style::default().add_modifier(Modifier::DIM)),
        ]));
        let subject: String = a.subject.chars().take(inner.saturating_sub(2)).collect();
        lines.push(Line::from(format!("  {subject}")));
    }
    f.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" anomalies ")),
        area,
    );
}

/// The top edges drawn as arrows whose weight says how much moves.
fn draw_graph(f: &mut Frame, app: &App, area: Rect) {
    let mut edges: Vec<&LiveEdge> = app.model.edges.iter().filter(|e| e.rate > 0.0).collect();
    let order = |a: &&LiveEdge, b: &&LiveEdge| {
        b.rate.total_cmp(&a.rate).then_with(|| a.src.cmp(&b.src)).then_with(|| a.dst.cmp(&b.dst))
    };
    let shown = area.height.saturating_sub(2) as usize / 2;
    if shown < edges.len() {
        edges.select_nth_unstable_by(shown, order);
        edges.truncate(shown);
    }
    edges.sort_by(order);
    let max = edges.first().map(|e| e.rate).unwrap_or(1.0).max(1e-9);
    let inner_w = area.width.saturating_sub(2) as usize;
    let short = |s: &str, n: usize| -> String {
        let name = short_name(s);
        if name.chars().count() <= n {
            name.to_string()
        } else {
            name.chars().take(n.saturating_sub(1)).collect::<String>() + "…"
        }
    };
    let mut lines = Vec::new();
    for e in edges.iter().take(area.height.saturating_sub(2) as usize / 2) {
        let weight = ((e.rate / max) * 4.0).ceil() as usize;
        let arrow = format!("{}▶", "━".repeat(weight.max(1)));
        let name_w = inner_w.saturating_sub(arrow.chars().count() + 2) / 2;
        lines.push(Line::from(vec![
            Span::raw(short(&e.src, name_w)),
            Span::styled(format!(" {arrow} "), class_style(e.class)),
            Span::raw(short(&e.dst, name_w)),
        ]));
        lines.push(Line::from(Span::styled(
            format!("  {} {}", human_rate(e.rate), e.class.as_str()),
            Style::default().add_modifier(Modifier::DIM),
        )));
    }
    f.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" top edges ")),
        area,
    );
}

fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect { x: area.x + (area.width - w) / 2, y: area.y + (area.height - h) / 2, width: w, height: h }
}

fn draw_help(f: &mut Frame, area: Rect) {
    let text = vec![
        Line::from("↑/↓ or j/k   move         PgUp/PgDn  page"),
        Line::from("Enter        drill into the edge (its pods and processes)"),
        Line::from("/            filter by name or class; Enter applies"),
        Line::from("s            sort: rate -> total -> cost"),
        Line::from("l            level: pod, workload, service, namespace, node, zone, process"),
        Line::from("p or space   pause / resume"),
        Line::from("q or Esc     quit (Esc closes this first)"),
        Line::from(""),
        Line::from("Costs are marginal list prices (first tier, no free allowance)."),
    ];
    let r = centered(area, 70, text.len() as u16 + 2);
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(text)
            .block(Block::default().borders(Borders::ALL).title(" help "))
            .wrap(Wrap { trim: false }),
        r,
    );
}

fn draw_drill(f: &mut Frame, app: &App, area: Rect) {
    let Some(e) = app.selected_edge() else { return };
    let cur = &app.model.currency;
    let mut lines = vec![
        Line::from(format!("{} -> {}", e.src, e.dst)),
        Line::from(vec![
            Span::raw("class "),
            Span::styled(e.class.as_str(), class_style(e.class)),
            Span::raw(format!(
                " · {} · {} total · {} {cur} so far · {} {cur}/h",
                human_rate(e.rate),
                human_bytes(e.total_bytes),
                money(e.total_cost),
                per_hour(e.cost_per_hour)
            )),
        ]),
        Line::from(""),
    ];
    let mut detail: Vec<_> = e.detail.iter().collect();
    detail.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let room = area.height.saturating_sub(7) as usize;
    for (k, v) in detail.iter().take(room) {
        lines.push(Line::from(format!("{:>10}  {k}", human_bytes(**v))));
    }
    if detail.len() > room {
        lines.push(Line::from(format!("… {} more", detail.len() - room)));
    }
    let r = centered(
        area,
        area.width.saturating_sub(4),
        (lines.len() as u16 + 2).min(area.height.saturating_sub(2)),
    );
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" edge (Esc to close) ")),
        r,
    );
}

/// Set by SIGTERM: the loop ends and the terminal is restored. SIGHUP keeps its default (exit):
/// the terminal it would restore is gone.
static TERMINATE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    TERMINATE.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Owns the terminal: alternate screen and raw mode, restored on quit, on error, on panic
/// (ratatui's hook) and on SIGTERM. Ticks pull the feed every `interval`; keys are handled
/// as they come, so a key press is drawn at once rather than at the next tick.
/// The anomalies pane's findings while they are being analysed (see `commands::top`).
pub type PendingAnomalies = std::sync::mpsc::Receiver<anyhow::Result<Vec<AnomalyLine>>>;

pub fn run(
    mut app: App,
    feed: &mut dyn crate::model::FlowFeed,
    interval: std::time::Duration,
    book: &crate::engines::pricing::PriceBook,
    topology: Option<&crate::engines::topology::Topology>,
    mut anomalies: Option<PendingAnomalies>,
) -> anyhow::Result<()> {
    use ratatui::crossterm::event::{self, Event, KeyEventKind};
    use std::time::Instant;
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    // Watchdog: if the loop is stuck inside terminal I/O (a hung-up tty can make input polling spin),
    // SIGTERM must still end the process; give the loop a second to restore the terminal first.
    std::thread::spawn(|| {
        while !TERMINATE.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
        let _ = ratatui::try_restore();
        // SAFETY: exiting without unwinding is what a default SIGTERM would have done.
        unsafe { libc::_exit(143) };
    });
    let mut terminal = ratatui::try_init()?;
    let result = (|| -> anyhow::Result<()> {
        let mut next_tick = Instant::now() + interval;
        loop {
            terminal.draw(|f| draw(f, &app))?;
            let wait = next_tick
                .saturating_duration_since(Instant::now())
                .min(std::time::Duration::from_millis(100));
            if event::poll(wait)? {
                match event::read()? {
                    Event::Key(k) if k.kind == KeyEventKind::Press && app.on_key(k) == Action::Quit => {
                        return Ok(());
                    }
                    _ => {} // resize: the next draw lays out for the new size
                }
            }
            if TERMINATE.load(std::sync::atomic::Ordering::SeqCst) {
                return Ok(());
            }
            if let Some(pending) = &anomalies {
                match pending.try_recv() {
                    Err(std::sync::mpsc::TryRecvError::Empty) => {}
                    Ok(Ok(found)) => (app.anomalies, anomalies) = (found, None),
                    Ok(Err(e)) => (app.status, anomalies) = (Some(format!("anomalies: {e:#}")), None),
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                        (app.status, anomalies) = (Some("anomalies: the analysis stopped".into()), None)
                    }
                }
            }
            if Instant::now() >= next_tick {
                next_tick += interval;
                match feed.tick()? {
                    Some(t) if !app.paused => {
                        app.model.tick(&t.records, t.start, t.end, book, topology)?;
                        app.source = feed.describe();
                    }
                    Some(_) => {}
                    None => app.status = Some("replay finished: q to quit".into()),
                }
            }
        }
    })();
    ratatui::try_restore()?;
    result
}
