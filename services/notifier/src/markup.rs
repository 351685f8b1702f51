//! Telegram markup that cannot be broken by what it shows.
//!
//! Telegram templates are written as plain text; formatting comes only from helpers
//! (`{{#bold}}`, `{{link}}`, `{{address}}`…), which emit private-use marker characters
//! instead of markup. After rendering, [`to_telegram`] turns the whole text into MarkdownV2 or
//! HTML: every character that is not a marker is escaped — the template's own words as
//! well as every value it inserted — and the markers become the markup. A value can never
//! open a link or a bold run, since markers are stripped from values when they are inserted
//! ([`strip_markers`]).

use steward_config::ParseMode;

pub const BOLD_OPEN: char = '\u{E000}';
pub const BOLD_CLOSE: char = '\u{E001}';
pub const ITALIC_OPEN: char = '\u{E002}';
pub const ITALIC_CLOSE: char = '\u{E003}';
pub const CODE_OPEN: char = '\u{E004}';
pub const CODE_CLOSE: char = '\u{E005}';
/// `LINK_OPEN text LINK_URL url LINK_CLOSE`.
pub const LINK_OPEN: char = '\u{E006}';
pub const LINK_URL: char = '\u{E007}';
pub const LINK_CLOSE: char = '\u{E008}';

fn is_marker(c: char) -> bool {
    ('\u{E000}'..='\u{E008}').contains(&c)
}

/// A value as inserted into a Telegram template: markers removed, nothing else changed.
pub fn strip_markers(s: &str) -> String {
    s.chars().filter(|c| !is_marker(*c)).collect()
}

/// A link in marker form.
pub fn link(text: &str, url: &str) -> String {
    format!(
        "{LINK_OPEN}{}{LINK_URL}{}{LINK_CLOSE}",
        strip_markers(text),
        strip_markers(url)
    )
}

/// Characters MarkdownV2 reserves outside entities.
const MD_RESERVED: &str = "_*[]()~`>#+-=|{}.!\\";

/// `s` escaped as MarkdownV2 text.
pub fn escape_markdown_v2(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if MD_RESERVED.contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `s` escaped for Telegram's HTML (text and attribute values).
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// The rendered text (with markers) as Telegram markup.
pub fn to_telegram(rendered: &str, mode: ParseMode) -> String {
    let mut out = String::with_capacity(rendered.len() + rendered.len() / 8);
    let mut text = String::new();
    let mut in_code = false;
    let mut link_text: Option<String> = None;
    let mut link_url: Option<String> = None;
    let flush = |text: &mut String, out: &mut String, in_code: bool| {
        if text.is_empty() {
            return;
        }
        match mode {
            ParseMode::MarkdownV2 if in_code => {
                for c in text.chars() {
                    if c == '`' || c == '\\' {
                        out.push('\\');
                    }
                    out.push(c);
                }
            }
            ParseMode::MarkdownV2 => out.push_str(&escape_markdown_v2(text)),
            ParseMode::Html => out.push_str(&escape_html(text)),
        }
        text.clear();
    };
    for c in rendered.chars() {
        if let Some(url) = link_url.as_mut() {
            if c == LINK_CLOSE {
                let label = link_text.take().unwrap_or_default();
                let url = std::mem::take(url);
                link_url = None;
                out.push_str(&render_link(&label, &url, mode));
            } else if !is_marker(c) {
                url.push(c);
            }
            continue;
        }
        if let Some(label) = link_text.as_mut() {
            if c == LINK_URL {
                link_url = Some(String::new());
            } else if !is_marker(c) {
                label.push(c);
            }
            continue;
        }
        if !is_marker(c) {
            text.push(c);
            continue;
        }
        flush(&mut text, &mut out, in_code);
        let tag = match (c, mode) {
            (BOLD_OPEN, ParseMode::MarkdownV2) | (BOLD_CLOSE, ParseMode::MarkdownV2) => "*",
            (ITALIC_OPEN, ParseMode::MarkdownV2) | (ITALIC_CLOSE, ParseMode::MarkdownV2) => "_",
            (CODE_OPEN, ParseMode::MarkdownV2) | (CODE_CLOSE, ParseMode::MarkdownV2) => "`",
            (BOLD_OPEN, ParseMode::Html) => "<b>",
            (BOLD_CLOSE, ParseMode::Html) => "</b>",
            (ITALIC_OPEN, ParseMode::Html) => "<i>",
            (ITALIC_CLOSE, ParseMode::Html) => "</i>",
            (CODE_OPEN, ParseMode::Html) => "<code>",
            (CODE_CLOSE, ParseMode::Html) => "</code>",
            (LINK_OPEN, _) => {
                link_text = Some(String::new());
                ""
            }
            _ => "",
        };
        match c {
            CODE_OPEN => in_code = true,
            CODE_CLOSE => in_code = false,
            _ => {}
        }
        out.push_str(tag);
    }
    // An unterminated link (a template cannot produce one, but be safe): its text as text.
    if let Some(label) = link_text {
        text.push_str(&label);
    }
    flush(&mut text, &mut out, in_code);
    out
}

fn render_link(label: &str, url: &str, mode: ParseMode) -> String {
    let label = if label.is_empty() { url } else { label };
    match mode {
        ParseMode::MarkdownV2 => {
            let mut u = String::with_capacity(url.len());
            for c in url.chars() {
                if c == ')' || c == '\\' {
                    u.push('\\');
                }
                u.push(c);
            }
            format!("[{}]({u})", escape_markdown_v2(label))
        }
        ParseMode::Html => format!(
            "<a href=\"{}\">{}</a>",
            escape_html(url),
            escape_html(label)
        ),
    }
}

/// The rendered text (with markers) as plain text: links become `text (url)`.
pub fn to_plain(rendered: &str) -> String {
    let mut out = String::with_capacity(rendered.len());
    let mut in_url = false;
    for c in rendered.chars() {
        match c {
            LINK_URL => {
                out.push_str(" (");
                in_url = true;
            }
            LINK_CLOSE if in_url => {
                out.push(')');
                in_url = false;
            }
            c if is_marker(c) => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = "_*[]()~`>#+-=|{}.!\\ <b>&amp;</b> \"q\"";

    #[test]
    fn markdown_escapes_every_reserved_character() {
        let s = to_telegram(HOSTILE, ParseMode::MarkdownV2);
        assert_eq!(
            s,
            "\\_\\*\\[\\]\\(\\)\\~\\`\\>\\#\\+\\-\\=\\|\\{\\}\\.\\!\\\\ <b\\>&amp;</b\\> \"q\""
        );
    }

    #[test]
    fn html_escapes_tags_and_entities() {
        let s = to_telegram(HOSTILE, ParseMode::Html);
        assert_eq!(
            s,
            "_*[]()~`&gt;#+-=|{}.!\\ &lt;b&gt;&amp;amp;&lt;/b&gt; &quot;q&quot;"
        );
    }

    #[test]
    fn markers_become_markup() {
        let r = format!(
            "{BOLD_OPEN}Alert!{BOLD_CLOSE} see {} and {CODE_OPEN}a`b{CODE_CLOSE}",
            link("the tx (1)", "https://x.io/tx/0x1?a=(b)")
        );
        assert_eq!(
            to_telegram(&r, ParseMode::MarkdownV2),
            "*Alert\\!* see [the tx \\(1\\)](https://x.io/tx/0x1?a=(b\\)) and `a\\`b`"
        );
        assert_eq!(
            to_telegram(&r, ParseMode::Html),
            "<b>Alert!</b> see <a href=\"https://x.io/tx/0x1?a=(b)\">the tx (1)</a> and <code>a`b</code>"
        );
        assert_eq!(
            to_plain(&r),
            "Alert! see the tx (1) (https://x.io/tx/0x1?a=(b)) and a`b"
        );
    }

    #[test]
    fn values_cannot_inject_markers() {
        let evil = format!("x{BOLD_OPEN}y{LINK_OPEN}z");
        assert_eq!(strip_markers(&evil), "xyz");
    }
}
