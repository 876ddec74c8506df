//! Durations as kops and kubectl write them: `18h`, `10m`, `1h30m`, `90s`, `500ms`.

use std::time::Duration;

/// clap value parser for duration flags.
pub fn parse(s: &str) -> Result<Duration, String> {
    let bad =
        || format!("{s:?} is not a duration; use a number with a unit, like 30s, 10m, 1h or 1m30s");
    let mut total = Duration::ZERO;
    // Units from the largest down, each once: `1s2m` is more likely a typo than
    // a duration.
    let mut last_rank = 0;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (rank, unit) = match &rest[..unit_len] {
            "d" => (1, Duration::from_secs(86400)),
            "h" => (2, Duration::from_secs(3600)),
            "m" => (3, Duration::from_secs(60)),
            "s" => (4, Duration::from_secs(1)),
            "ms" => (5, Duration::from_millis(1)),
            _ => return Err(bad()),
        };
        if rank <= last_rank {
            return Err(bad());
        }
        last_rank = rank;
        total += unit
            .checked_mul(n.try_into().map_err(|_| bad())?)
            .ok_or_else(bad)?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// The inverse, for messages: `18h`, `1h30m`, `45s`.
pub fn show(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, sec) = (s / 3600, s % 3600 / 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out += &format!("{h}h");
    }
    if m > 0 {
        out += &format!("{m}m");
    }
    if sec > 0 || out.is_empty() {
        out += &format!("{sec}s");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_shows() {
        assert_eq!(parse("18h").unwrap(), Duration::from_secs(18 * 3600));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse("1h2m3s").unwrap(), Duration::from_secs(3723));
        for bad in ["", "h", "10", "10x", "1.5h", "-1h", "1s2m", "1m1m", "5x"] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains("like 30s, 10m"), "{bad}: {e}");
        }
        assert_eq!(show(Duration::from_secs(5400)), "1h30m");
        assert_eq!(show(Duration::from_secs(0)), "0s");
    }
}
