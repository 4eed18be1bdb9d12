//! Wall-clock times as protobuf timestamps. (The CRI log's RFC 3339 times come from
//! `berth_runtime::state::now_rfc3339`.)

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
