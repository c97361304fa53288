//! Durations as people write them in flags, env vars and TOML: `30`, `30s`, `2m`, `1500ms`.

use std::time::Duration;

/// Parse `N` (seconds), `Nms`, `Ns`, `Nm` or `Nh`.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let bad =
        || format!("'{text}' is not a duration: write seconds like 30, or 500ms, 30s, 5m, 1h");
    let number: u64 = number.parse().map_err(|_| bad())?;
    let millis = match unit {
        "" | "s" => number.checked_mul(1000),
        "ms" => Some(number),
        "m" => number.checked_mul(60_000),
        "h" => number.checked_mul(3_600_000),
        _ => None,
    }
    .ok_or_else(bad)?;
    Ok(Duration::from_millis(millis))
}

/// Print a duration the way `parse` reads it back.
pub fn display(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis.is_multiple_of(1000) {
        format!("{}s", millis / 1000)
    } else {
        format!("{millis}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit() {
        assert_eq!(parse("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
    }

    #[test]
    fn rejects_nonsense_with_a_hint() {
        for bad in ["", "s", "-1", "1.5s", "10 days", "99999999999999999999h"] {
            let error = parse(bad).unwrap_err();
            assert!(error.contains("not a duration"), "{bad}: {error}");
        }
    }

    #[test]
    fn display_round_trips() {
        for text in ["25s", "1500ms", "0s"] {
            assert_eq!(display(parse(text).unwrap()), text);
        }
    }
}
