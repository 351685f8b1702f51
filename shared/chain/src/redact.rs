//! Redaction of RPC URLs, which routinely carry API keys.

use url::Url;

/// Path segments longer than this are treated as secrets (Infura, Alchemy, QuickNode and Ankr
/// keys are 32 to 64 characters).
const MAX_PLAIN_SEGMENT: usize = 20;

/// What replaces a hidden part of a URL.
const HIDDEN: &str = "***";

/// Returns `url` with everything that may be a credential hidden, fit for logs, errors and
/// status pages.
///
/// Keeps the scheme, host and port. Hides user info (basic auth) entirely, every query value
/// (names are kept: `?apikey=***`), the fragment, and each path segment that is longer than 20
/// characters or looks like a token (at least 12 characters mixing letters and digits).
/// A string that does not parse as a URL is hidden whole.
pub fn redact_rpc_url(url: &str) -> String {
    let Ok(parsed) = Url::parse(url) else {
        return "<unparseable RPC URL>".to_owned();
    };
    let mut out = format!("{}://", parsed.scheme());
    if !parsed.username().is_empty() || parsed.password().is_some() {
        out.push_str(HIDDEN);
        out.push('@');
    }
    if let Some(host) = parsed.host_str() {
        out.push_str(host);
    }
    if let Some(port) = parsed.port() {
        out.push(':');
        out.push_str(&port.to_string());
    }
    if let Some(segments) = parsed.path_segments() {
        let segments: Vec<&str> = segments.collect();
        if segments != [""] {
            for segment in segments {
                out.push('/');
                out.push_str(if looks_secret(segment) {
                    HIDDEN
                } else {
                    segment
                });
            }
        }
    }
    if parsed.query().is_some() {
        let names: Vec<String> = parsed
            .query_pairs()
            .map(|(name, _)| {
                let name = if looks_secret(&name) { HIDDEN } else { &name };
                format!("{name}={HIDDEN}")
            })
            .collect();
        out.push('?');
        out.push_str(&names.join("&"));
    }
    out
}

fn looks_secret(segment: &str) -> bool {
    if segment.len() > MAX_PLAIN_SEGMENT {
        return true;
    }
    let has_digit = segment.chars().any(|c| c.is_ascii_digit());
    let has_alpha = segment.chars().any(|c| c.is_ascii_alphabetic());
    segment.len() >= 12 && has_digit && has_alpha
}

/// Replaces every spelling of `raw` that a library may print (as given, normalised by `url`)
/// in `text` by `redacted`. Used on error messages from the HTTP and WebSocket clients, which
/// include the request URL.
pub(crate) fn scrub(text: &str, raw: &str, redacted: &str) -> String {
    let mut out = text.to_owned();
    let mut spellings = vec![raw.to_owned(), raw.trim_end_matches('/').to_owned()];
    if let Ok(parsed) = Url::parse(raw) {
        spellings.push(parsed.to_string());
        spellings.push(parsed.to_string().trim_end_matches('/').to_owned());
    }
    spellings.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for spelling in spellings.iter().filter(|s| !s.is_empty()) {
        out = out.replace(spelling.as_str(), redacted);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infura_key_in_path_is_hidden() {
        assert_eq!(
            redact_rpc_url("https://mainnet.infura.io/v3/9aa3d95b3bc440fa88ea12eaa4456161"),
            "https://mainnet.infura.io/v3/***"
        );
    }

    #[test]
    fn alchemy_key_in_path_is_hidden() {
        assert_eq!(
            redact_rpc_url("wss://eth-mainnet.g.alchemy.com/v2/docs-demo-Xy1AbCdEf2GhIjKl"),
            "wss://eth-mainnet.g.alchemy.com/v2/***"
        );
        assert_eq!(
            redact_rpc_url("https://example.quiknode.pro/abcdef0123456789abcd/"),
            "https://example.quiknode.pro/***/"
        );
    }

    #[test]
    fn query_values_are_hidden_names_kept() {
        assert_eq!(
            redact_rpc_url("https://rpc.example.org/eth?apikey=SECRET&x=1"),
            "https://rpc.example.org/eth?apikey=***&x=***"
        );
    }

    #[test]
    fn basic_auth_is_hidden() {
        let redacted = redact_rpc_url("https://alice:s3cret@node.example.org:8545/rpc");
        assert_eq!(redacted, "https://***@node.example.org:8545/rpc");
        assert!(!redacted.contains("alice") && !redacted.contains("s3cret"));
    }

    #[test]
    fn plain_urls_are_kept() {
        assert_eq!(
            redact_rpc_url("http://127.0.0.1:8545"),
            "http://127.0.0.1:8545"
        );
        assert_eq!(
            redact_rpc_url("ws://localhost:8546/"),
            "ws://localhost:8546"
        );
        assert_eq!(
            redact_rpc_url("https://arb1.arbitrum.io/rpc"),
            "https://arb1.arbitrum.io/rpc"
        );
    }

    #[test]
    fn garbage_is_hidden_whole() {
        assert_eq!(
            redact_rpc_url("not a url with key abc"),
            "<unparseable RPC URL>"
        );
    }

    #[test]
    fn scrub_replaces_normalised_spellings() {
        let raw = "http://127.0.0.1:1/v3/9aa3d95b3bc440fa88ea12eaa4456161";
        let text = format!("error sending request for url ({raw})");
        let out = scrub(&text, raw, &redact_rpc_url(raw));
        assert_eq!(
            out,
            "error sending request for url (http://127.0.0.1:1/v3/***)"
        );
        let out = scrub("for url (http://h:1/)", "http://h:1", "R");
        assert_eq!(out, "for url (R)");
    }
}
