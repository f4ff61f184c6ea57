//! Calendar dates of Unix times, UTC: what the report and the command-line tool print
//! (no time zone database, no dependency).

/// A moment in UTC, split into its calendar fields (proleptic Gregorian calendar).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UtcDateTime {
    /// The year (negative before year 1 BCE, as astronomers count).
    pub year: i64,
    /// 1 to 12.
    pub month: u32,
    /// 1 to 31.
    pub day: u32,
    /// 0 to 23.
    pub hour: u32,
    /// 0 to 59.
    pub minute: u32,
    /// 0 to 59.
    pub second: u32,
}

impl UtcDateTime {
    /// The date and time `secs` seconds after 1970-01-01 00:00:00 UTC (before it when
    /// negative). Every `i64` works: the arithmetic cannot overflow.
    ///
    /// ```
    /// use agent_profiler_report::date::UtcDateTime;
    ///
    /// let t = UtcDateTime::from_unix_seconds(951_782_400);
    /// assert_eq!((t.year, t.month, t.day), (2000, 2, 29));
    /// ```
    pub fn from_unix_seconds(secs: i64) -> Self {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        // Howard Hinnant's `civil_from_days`: days since 1970-01-01 to a civil date, by
        // 400-year eras counted from 0000-03-01 (so the leap day ends each year).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        Self {
            year: yoe + era * 400 + i64::from(month <= 2),
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: (rem % 3600 / 60) as u32,
            second: (rem % 60) as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
        let t = UtcDateTime::from_unix_seconds(secs);
        (t.year, t.month, t.day, t.hour, t.minute, t.second)
    }

    #[test]
    fn known_dates() {
        assert_eq!(fields(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(fields(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(fields(1_735_689_599), (2024, 12, 31, 23, 59, 59));
        assert_eq!(fields(253_402_300_799), (9999, 12, 31, 23, 59, 59));
        assert_eq!(fields(-1), (1969, 12, 31, 23, 59, 59));
    }

    #[test]
    fn extremes_do_not_overflow() {
        let _ = UtcDateTime::from_unix_seconds(i64::MAX);
        let _ = UtcDateTime::from_unix_seconds(i64::MIN);
    }
}
