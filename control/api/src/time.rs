//! RFC 3339 timestamps as the API writes them (`2026-11-22T10:00:00Z`: UTC, whole seconds).
//!
//! Heartbeats, transition times and scale times are stored as strings; the controllers need
//! to compare them with `now`. The calendar arithmetic is small enough to keep here rather
//! than pull in a date crate.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SECONDS_PER_DAY: i64 = 86_400;

/// Formats `t` as `YYYY-MM-DDTHH:MM:SSZ` (sub-second parts are dropped).
pub fn rfc3339(t: SystemTime) -> String {
    let seconds = match t.duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_secs() as i64,
        // Round towards the past so a time just before the epoch is not shown as after it.
        Err(before) => {
            let d = before.duration();
            -(d.as_secs() as i64) - i64::from(d.subsec_nanos() > 0)
        }
    };
    let (days, second_of_day) = (
        seconds.div_euclid(SECONDS_PER_DAY),
        seconds.rem_euclid(SECONDS_PER_DAY),
    );
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    )
}

/// Reads what [`rfc3339`] writes, and also what other clients send: fractional seconds and
/// numeric offsets (`+02:00`). `None` for anything that is not a real date and time.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let year = digits(&b[0..4])?;
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let hour = digits(&b[11..13])?;
    let minute = digits(&b[14..16])?;
    let second = digits(&b[17..19])?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut rest = &b[19..];
    let mut nanos = 0u32;
    if rest.first() == Some(&b'.') {
        let fraction_len = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if fraction_len == 0 {
            return None;
        }
        for (i, c) in rest[1..=fraction_len].iter().take(9).enumerate() {
            nanos += u32::from(c - b'0') * 10u32.pow(8 - i as u32);
        }
        rest = &rest[1 + fraction_len..];
    }
    let offset_seconds = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let hours = digits(&[*h1, *h2])?;
            let minutes = digits(&[*m1, *m2])?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = hours * 3600 + minutes * 60;
            if *sign == b'+' {
                offset
            } else {
                -offset
            }
        }
        _ => return None,
    };
    let seconds =
        days_from_civil(year, month, day) * SECONDS_PER_DAY + hour * 3600 + minute * 60 + second
            - offset_seconds;
    let since_epoch = Duration::new(seconds.unsigned_abs(), 0);
    if seconds >= 0 {
        UNIX_EPOCH.checked_add(since_epoch + Duration::from_nanos(nanos.into()))
    } else {
        UNIX_EPOCH
            .checked_sub(since_epoch)?
            .checked_add(Duration::from_nanos(nanos.into()))
    }
}

fn digits(b: &[u8]) -> Option<i64> {
    b.iter().try_fold(0i64, |n, c| {
        c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
    })
}

fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's algorithms (http://howardhinnant.github.io/date_algorithms.html): exact
// for the proleptic Gregorian calendar, with eras of 400 years so no table is needed.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(at(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(at(1_709_164_800)), "2024-02-29T00:00:00Z");
        assert_eq!(rfc3339(at(1_798_761_599)), "2026-12-31T23:59:59Z");
        assert_eq!(rfc3339(at(1_798_761_600)), "2027-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(at(1_795_341_600) + Duration::from_millis(999)),
            "2026-11-22T10:00:00Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH - Duration::from_millis(1)),
            "1969-12-31T23:59:59Z"
        );
    }

    #[test]
    fn every_day_round_trips() {
        // Four centuries cover every leap-year rule (÷4, ÷100, ÷400) and month end.
        let start = days_from_civil(1899, 12, 31);
        let mut previous: Option<(i64, i64, i64)> = None;
        for days in start..start + 146_097 + 2 {
            let date = civil_from_days(days);
            assert_eq!(days_from_civil(date.0, date.1, date.2), days);
            if let Some((y, m, d)) = previous {
                let next = if d < days_in_month(y, m) {
                    (y, m, d + 1)
                } else if m < 12 {
                    (y, m + 1, 1)
                } else {
                    (y + 1, 1, 1)
                };
                assert_eq!(date, next);
            }
            previous = Some(date);
        }
        for seconds in [0, 1, 59, 86_399, 86_400, 1_795_341_600, 4_102_444_800] {
            assert_eq!(parse_rfc3339(&rfc3339(at(seconds))), Some(at(seconds)));
        }
    }

    #[test]
    fn parses_leap_days_and_rejects_impossible_dates() {
        assert_eq!(parse_rfc3339("2000-02-29T00:00:00Z"), Some(at(951_782_400)));
        assert!(parse_rfc3339("2024-02-29T12:00:00Z").is_some());
        assert_eq!(parse_rfc3339("1900-02-29T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("2026-02-29T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("2026-04-31T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("2026-13-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("2026-11-22T24:00:00Z"), None);
        assert_eq!(parse_rfc3339("2026-11-22T10:00:00"), None);
        assert_eq!(parse_rfc3339("2026-11-22 10:00:00Z"), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn parses_fractions_and_offsets() {
        let base = at(1_795_341_600);
        assert_eq!(parse_rfc3339("2026-11-22T10:00:00Z"), Some(base));
        assert_eq!(
            parse_rfc3339("2026-11-22T10:00:00.250Z"),
            Some(base + Duration::from_millis(250))
        );
        assert_eq!(parse_rfc3339("2026-11-22T12:00:00+02:00"), Some(base));
        assert_eq!(parse_rfc3339("2026-11-22T09:30:00-00:30"), Some(base));
        assert_eq!(parse_rfc3339("2026-11-22T10:00:00.Z"), None);
    }
}
