//! Times for people: unix milliseconds as UTC timestamps and as "in 5m".

/// `2026-11-26T03:04:05Z`, or `-` for zero (unset).
pub fn timestamp(unix_ms: i64) -> String {
    if unix_ms == 0 {
        return "-".into();
    }
    let seconds = unix_ms.div_euclid(1000);
    let (days, second_of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    )
}

/// `in 59m`, `3h ago`: the distance from `now_ms` to `unix_ms`, roughly.
pub fn relative(unix_ms: i64, now_ms: i64) -> String {
    let delta = (unix_ms - now_ms) / 1000;
    let magnitude = delta.unsigned_abs();
    let text = match magnitude {
        0..=119 => format!("{magnitude}s"),
        120..=7_199 => format!("{}m", magnitude / 60),
        7_200..=172_799 => format!("{}h", magnitude / 3600),
        _ => format!("{}d", magnitude / 86_400),
    };
    if delta >= 0 {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

/// Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        assert_eq!(timestamp(1), "1970-01-01T00:00:00Z");
        assert_eq!(timestamp(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(timestamp(1_795_662_245_000), "2026-11-26T03:04:05Z");
        assert_eq!(timestamp(0), "-");
    }

    #[test]
    fn relative_times_round_to_a_readable_unit() {
        assert_eq!(relative(61_000, 0), "in 61s");
        assert_eq!(relative(0, 3_600_000), "60m ago");
        assert_eq!(relative(10_800_000, 0), "in 3h");
    }
}
