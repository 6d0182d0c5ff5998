//! The one `host:port` parser of the project (Rust and, through `_core.split_host_port`,
//! Python): name servers, brokers, listen and admin addresses.

/// Splits `host:port` or `[v6]:port` into the host (without brackets) and the port.
/// The error says what was expected and what was given; callers prefix the field name.
pub fn split_host_port(addr: &str) -> Result<(&str, u16), String> {
    let bad = |why: &str| format!("expected HOST:PORT ({why}), got {addr:?}");
    let (host, port) = addr.rsplit_once(':').ok_or_else(|| bad("no ':'"))?;
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("the port is not a number"));
    }
    let port: u16 = port.parse().map_err(|_| bad("the port is above 65535"))?;
    let host = match host.strip_prefix('[') {
        Some(h) => h.strip_suffix(']').ok_or_else(|| bad("'[' without ']'"))?,
        None if host.contains(':') => return Err(bad("an IPv6 host needs [brackets]")),
        None => host,
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    Ok((host, port))
}

/// The host part of an address for display and TLS names: `split_host_port`'s host, or the
/// whole string when it has no port.
pub fn host_of(addr: &str) -> &str {
    split_host_port(addr).map(|(h, _)| h).unwrap_or(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_ports() {
        assert_eq!(split_host_port("127.0.0.1:9876"), Ok(("127.0.0.1", 9876)));
        assert_eq!(
            split_host_port("ns.example.com:0"),
            Ok(("ns.example.com", 0))
        );
        assert_eq!(split_host_port("[::1]:10911"), Ok(("::1", 10911)));
        for bad in [
            "", "9876", "host:", ":9876", "h:x1", "h:65536", "::1:80", "[::1:80", "h:-1",
        ] {
            let e = split_host_port(bad).unwrap_err();
            assert!(
                e.starts_with("expected HOST:PORT (") && e.contains(&format!("{bad:?}")),
                "{e}"
            );
        }
        assert_eq!(host_of("[::1]:80"), "::1");
        assert_eq!(host_of("broker.example.com"), "broker.example.com");
    }
}
