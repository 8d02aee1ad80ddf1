//! URI reference resolution (RFC 3986 §5.2, strict) and a comparison key for `http`/`https`
//! URIs. `http::Uri` parses URIs but does not resolve references, and IRD entries may be
//! relative to the IRD's own URI (RFC 7285 §9.2.2).

use http::Uri;

/// Resolves `reference` against `base` into an absolute `http` or `https` URI. The fragment
/// is dropped (it never reaches a server). `None` when the result is not an absolute `http(s)`
/// URI with a host.
pub fn resolve(base: &Uri, reference: &str) -> Option<Uri> {
    let target = resolve_str(base, reference.trim())?;
    let uri: Uri = target.parse().ok()?;
    let scheme_ok =
        matches!(uri.scheme_str().map(str::to_ascii_lowercase).as_deref(), Some("http" | "https"));
    (scheme_ok && uri.host().is_some_and(|h| !h.is_empty())).then_some(uri)
}

/// The components of a URI reference (RFC 3986 Appendix B), without the fragment.
struct Parts<'a> {
    scheme: Option<&'a str>,
    authority: Option<&'a str>,
    path: &'a str,
    query: Option<&'a str>,
}

fn split(s: &str) -> Parts<'_> {
    let s = s.split_once('#').map_or(s, |(before, _)| before);
    let (s, query) = match s.split_once('?') {
        Some((before, q)) => (before, Some(q)),
        None => (s, None),
    };
    let (scheme, rest) = match s.find(':') {
        Some(i) if i > 0 && !s[..i].contains('/') && is_scheme(&s[..i]) => (Some(&s[..i]), &s[i + 1..]),
        _ => (None, s),
    };
    let (authority, path) = match rest.strip_prefix("//") {
        Some(after) => {
            let end = after.find('/').unwrap_or(after.len());
            (Some(&after[..end]), &after[end..])
        }
        None => (None, rest),
    };
    Parts { scheme, authority, path, query }
}

fn is_scheme(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// RFC 3986 §5.2.2 over strings; `None` when `base` is not absolute.
fn resolve_str(base: &Uri, reference: &str) -> Option<String> {
    let base_scheme = base.scheme_str()?;
    let base_authority = base.authority()?.as_str();
    let base_path = base.path();
    let r = split(reference);
    let (scheme, authority, path, query) = if let Some(scheme) = r.scheme {
        (scheme, r.authority, remove_dot_segments(r.path), r.query)
    } else if r.authority.is_some() {
        (base_scheme, r.authority, remove_dot_segments(r.path), r.query)
    } else if r.path.is_empty() {
        (base_scheme, Some(base_authority), base_path.to_string(), r.query.or(base.query()))
    } else if r.path.starts_with('/') {
        (base_scheme, Some(base_authority), remove_dot_segments(r.path), r.query)
    } else {
        (base_scheme, Some(base_authority), remove_dot_segments(&merge(base_path, r.path)), r.query)
    };
    let mut out = format!("{scheme}:");
    if let Some(authority) = authority {
        out.push_str("//");
        out.push_str(authority);
    }
    out.push_str(&path);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Some(out)
}

/// RFC 3986 §5.2.3, for a base that always has an authority.
fn merge(base_path: &str, reference_path: &str) -> String {
    match base_path.rfind('/') {
        Some(i) => format!("{}{}", &base_path[..=i], reference_path),
        None => format!("/{reference_path}"),
    }
}

/// RFC 3986 §5.2.4.
fn remove_dot_segments(path: &str) -> String {
    let mut input = path;
    let mut output = String::with_capacity(path.len());
    let pop = |output: &mut String| match output.rfind('/') {
        Some(i) => output.truncate(i),
        None => output.clear(),
    };
    while !input.is_empty() {
        if let Some(rest) = input.strip_prefix("../").or_else(|| input.strip_prefix("./")) {
            input = rest;
        } else if input.starts_with("/./") {
            input = &input[2..];
        } else if input == "/." {
            input = "/";
        } else if input.starts_with("/../") {
            input = &input[3..];
            pop(&mut output);
        } else if input == "/.." {
            input = "/";
            pop(&mut output);
        } else if input == "." || input == ".." {
            input = "";
        } else {
            let start = usize::from(input.starts_with('/'));
            let end = input[start..].find('/').map_or(input.len(), |i| i + start);
            output.push_str(&input[..end]);
            input = &input[end..];
        }
    }
    output
}

/// A key under which equal `http(s)` URIs compare equal: scheme and host lower-cased, the
/// default port made explicit, path and query as they are.
pub fn canonical(uri: &Uri) -> String {
    let scheme = uri.scheme_str().unwrap_or("").to_ascii_lowercase();
    let host = uri.host().unwrap_or("").to_ascii_lowercase();
    let port = uri.port_u16().unwrap_or(if scheme == "https" { 443 } else { 80 });
    let path = if uri.path().is_empty() { "/" } else { uri.path() };
    match uri.query() {
        Some(q) => format!("{scheme}://{host}:{port}{path}?{q}"),
        None => format!("{scheme}://{host}:{port}{path}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3986_examples() {
        let base: Uri = "http://a/b/c/d;p?q".parse().expect("base");
        // RFC 3986 §5.4.1 and §5.4.2 (fragments dropped; non-http results excluded).
        let cases = [
            ("g", "http://a/b/c/g"),
            ("./g", "http://a/b/c/g"),
            ("g/", "http://a/b/c/g/"),
            ("/g", "http://a/g"),
            // An empty http path is "/" (RFC 9110 §4.2.3), which is how `http::Uri` prints it.
            ("//g", "http://g/"),
            ("?y", "http://a/b/c/d;p?y"),
            ("g?y", "http://a/b/c/g?y"),
            ("#s", "http://a/b/c/d;p?q"),
            ("g#s", "http://a/b/c/g"),
            ("g?y#s", "http://a/b/c/g?y"),
            (";x", "http://a/b/c/;x"),
            ("g;x", "http://a/b/c/g;x"),
            ("g;x?y#s", "http://a/b/c/g;x?y"),
            ("", "http://a/b/c/d;p?q"),
            (".", "http://a/b/c/"),
            ("./", "http://a/b/c/"),
            ("..", "http://a/b/"),
            ("../", "http://a/b/"),
            ("../g", "http://a/b/g"),
            ("../..", "http://a/"),
            ("../../", "http://a/"),
            ("../../g", "http://a/g"),
            ("../../../g", "http://a/g"),
            ("../../../../g", "http://a/g"),
            ("/./g", "http://a/g"),
            ("/../g", "http://a/g"),
            ("g.", "http://a/b/c/g."),
            (".g", "http://a/b/c/.g"),
            ("g..", "http://a/b/c/g.."),
            ("..g", "http://a/b/c/..g"),
            ("./../g", "http://a/b/g"),
            ("./g/.", "http://a/b/c/g/"),
            ("g/./h", "http://a/b/c/g/h"),
            ("g/../h", "http://a/b/c/h"),
            ("g;x=1/./y", "http://a/b/c/g;x=1/y"),
            ("g;x=1/../y", "http://a/b/c/y"),
            ("g?y/./x", "http://a/b/c/g?y/./x"),
            ("g#s/../x", "http://a/b/c/g"),
            ("https://other.example:8443/x/../y", "https://other.example:8443/y"),
        ];
        for (reference, expected) in cases {
            let got = resolve(&base, reference).map(|u| u.to_string());
            assert_eq!(got.as_deref(), Some(expected), "reference {reference:?}");
        }
        assert_eq!(resolve(&base, "g:h"), None, "not http");
        assert_eq!(resolve(&base, "mailto:alto@example.com"), None);
    }

    #[test]
    fn base_without_path() {
        let base: Uri = "https://alto.example.com".parse().expect("base");
        assert_eq!(
            resolve(&base, "maps").map(|u| u.to_string()).as_deref(),
            Some("https://alto.example.com/maps")
        );
    }

    #[test]
    fn canonical_forms_compare_equal() {
        let a: Uri = "http://ALTO.example.com/networkmap".parse().expect("a");
        let b: Uri = "http://alto.example.com:80/networkmap".parse().expect("b");
        let c: Uri = "https://alto.example.com/networkmap".parse().expect("c");
        assert_eq!(canonical(&a), canonical(&b));
        assert_ne!(canonical(&a), canonical(&c));
    }
}
