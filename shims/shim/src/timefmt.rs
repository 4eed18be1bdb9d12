//! Wall-clock times: protobuf timestamps, and the RFC 3339 nanosecond UTC form the
//! CRI log format uses (`2016-10-06T00:17:09.669794202Z`).

use std::time::{SystemTime, UNIX_EPOCH};

use protobuf::well_known_types::timestamp::Timestamp;

/// Nanoseconds since the epoch.
pub fn now_nanos() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

pub fn timestamp(nanos: u128) -> Timestamp {
    let mut ts = Timestamp::new();
    ts.seconds = (nanos / 1_000_000_000) as i64;
    ts.nanos = (nanos % 1_000_000_000) as i32;
    ts
}

/// `nanos` since the epoch as `YYYY-MM-DDTHH:MM:SS.NNNNNNNNNZ`.
pub fn rfc3339_nanos(nanos: u128) -> String {
    let secs = (nanos / 1_000_000_000) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        nanos % 1_000_000_000
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
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
    fn formats_the_cri_example() {
        // 2016-10-06T00:17:09.669794202Z
        let nanos = 1_475_713_029_669_794_202u128;
        assert_eq!(rfc3339_nanos(nanos), "2016-10-06T00:17:09.669794202Z");
    }

    #[test]
    fn epoch_and_leap_day() {
        assert_eq!(rfc3339_nanos(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339_nanos(951_782_400_000_000_000), "2000-02-29T00:00:00.000000000Z");
    }
}
