//! Durations as people type them: `90s`, `15m`, `2h`, `1d`, `1h30m`.

use std::time::Duration;

/// Parses a duration of one or more `<number><unit>` parts (units `s`, `m`,
/// `h`, `d`).
pub fn parse(text: &str) -> Result<Duration, String> {
    let usage =
        || format!("invalid duration {text:?}: expected a number with a unit, like 30s, 15m, 2h or 1h30m");
    let text = text.trim();
    if text.is_empty() {
        return Err(usage());
    }
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(usage());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| usage())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let seconds_per_unit = match &rest[..unit_len] {
            "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            _ => return Err(usage()),
        };
        rest = &rest[unit_len..];
        total = number
            .checked_mul(seconds_per_unit)
            .and_then(|seconds| total.checked_add(seconds))
            .ok_or_else(|| format!("duration {text:?} is too long"))?;
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_the_way_people_write_them() {
        assert_eq!(parse("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7_200)));
        assert_eq!(parse("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse(" 0s "), Ok(Duration::ZERO));
    }

    #[test]
    fn bad_durations_say_what_is_expected() {
        for bad in [
            "",
            "10",
            "-5m",
            "5 parsecs",
            "m",
            "1.5h",
            "3w",
            "99999999999999999999d",
        ] {
            let error = parse(bad).unwrap_err();
            assert!(error.contains(&format!("{:?}", bad.trim())), "{error}");
        }
    }
}
