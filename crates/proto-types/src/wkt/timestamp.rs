use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, SecondsFormat};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `google.protobuf.Timestamp`: a point in time, seconds and nanoseconds since the Unix epoch.
///
/// Its JSON form is RFC 3339 in UTC ending in `Z`, with 0, 3, 6 or 9 fractional digits (as few
/// as show every non-zero digit). Reading accepts any offset and up to 9 digits.
///
/// ```
/// use yc_proto_types::wkt::Timestamp;
///
/// let t: Timestamp = "2024-06-20T11:54:05.12+03:00".parse().unwrap();
/// assert_eq!(t, Timestamp { seconds: 1_718_873_645, nanos: 120_000_000 });
/// assert_eq!(t.to_rfc3339().unwrap(), "2024-06-20T08:54:05.120Z");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Message)]
pub struct Timestamp {
    /// Seconds since 1970-01-01T00:00:00Z, from 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Fractions of a second in nanoseconds, 0 to 999,999,999.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

super::well_known_name!(Timestamp);

/// A [`Timestamp`] outside the range that RFC 3339 can write, or text that is not one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimestampError {
    /// The value lies outside 0001-01-01T00:00:00Z ..= 9999-12-31T23:59:59.999999999Z, or its
    /// `nanos` outside 0 ..= 999,999,999.
    OutOfRange {
        /// The `seconds` field.
        seconds: i64,
        /// The `nanos` field.
        nanos: i32,
    },
    /// The text is not an RFC 3339 timestamp.
    Invalid(String),
}

impl fmt::Display for TimestampError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfRange { seconds, nanos } => write!(
                f,
                "timestamp {seconds}s {nanos}ns is out of range 0001-01-01T00:00:00Z to \
                 9999-12-31T23:59:59.999999999Z"
            ),
            Self::Invalid(text) => write!(f, "{text:?} is not an RFC 3339 timestamp"),
        }
    }
}

impl std::error::Error for TimestampError {}

impl Timestamp {
    /// 0001-01-01T00:00:00Z, the smallest value JSON can carry.
    pub const MIN_SECONDS: i64 = -62_135_596_800;
    /// 9999-12-31T23:59:59Z, the largest whole second JSON can carry.
    pub const MAX_SECONDS: i64 = 253_402_300_799;

    /// The current time.
    pub fn now() -> Self {
        SystemTime::now().into()
    }

    /// Whether the value lies in the range JSON can carry.
    pub fn is_valid(&self) -> bool {
        (Self::MIN_SECONDS..=Self::MAX_SECONDS).contains(&self.seconds)
            && (0..1_000_000_000).contains(&self.nanos)
    }

    /// The RFC 3339 form: UTC, `Z`, and 0, 3, 6 or 9 fractional digits.
    pub fn to_rfc3339(&self) -> Result<String, TimestampError> {
        let out_of_range = || TimestampError::OutOfRange {
            seconds: self.seconds,
            nanos: self.nanos,
        };
        if !self.is_valid() {
            return Err(out_of_range());
        }
        let nanos = u32::try_from(self.nanos).map_err(|_| out_of_range())?;
        let time = DateTime::from_timestamp(self.seconds, nanos).ok_or_else(out_of_range)?;
        Ok(time.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || TimestampError::Invalid(text.to_owned());
        // chrono would read more than nine fractional digits by dropping the rest.
        let fraction_digits = text
            .split_once('.')
            .map(|(_, rest)| rest.chars().take_while(char::is_ascii_digit).count());
        if fraction_digits.is_some_and(|n| n == 0 || n > 9) {
            return Err(invalid());
        }
        let time = DateTime::parse_from_rfc3339(text).map_err(|_| invalid())?;
        let nanos = time.timestamp_subsec_nanos();
        // A leap second (`:60`) has no Timestamp.
        let nanos = i32::try_from(nanos)
            .ok()
            .filter(|n| *n < 1_000_000_000)
            .ok_or_else(invalid)?;
        let value = Timestamp {
            seconds: time.timestamp(),
            nanos,
        };
        if value.is_valid() {
            Ok(value)
        } else {
            Err(TimestampError::OutOfRange {
                seconds: value.seconds,
                nanos: value.nanos,
            })
        }
    }
}

impl From<SystemTime> for Timestamp {
    fn from(time: SystemTime) -> Self {
        let (seconds, nanos) = match time.duration_since(UNIX_EPOCH) {
            Ok(after) => (after.as_secs() as i64, after.subsec_nanos() as i32),
            Err(before) => {
                let before = before.duration();
                let (secs, nanos) = (before.as_secs() as i64, before.subsec_nanos() as i32);
                if nanos == 0 {
                    (-secs, 0)
                } else {
                    (-secs - 1, 1_000_000_000 - nanos)
                }
            }
        };
        Timestamp { seconds, nanos }
    }
}

impl TryFrom<Timestamp> for SystemTime {
    type Error = TimestampError;

    fn try_from(t: Timestamp) -> Result<Self, Self::Error> {
        let out_of_range = TimestampError::OutOfRange {
            seconds: t.seconds,
            nanos: t.nanos,
        };
        let nanos = u32::try_from(t.nanos)
            .ok()
            .filter(|n| *n < 1_000_000_000)
            .ok_or(out_of_range.clone())?;
        let since_epoch = Duration::new(t.seconds.unsigned_abs(), 0);
        let whole = if t.seconds >= 0 {
            UNIX_EPOCH.checked_add(since_epoch)
        } else {
            UNIX_EPOCH.checked_sub(since_epoch)
        };
        whole
            .and_then(|w| w.checked_add(Duration::from_nanos(nanos.into())))
            .ok_or(out_of_range)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text = self.to_rfc3339().map_err(serde::ser::Error::custom)?;
        serializer.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TimestampVisitor;
        impl Visitor<'_> for TimestampVisitor {
            type Value = Timestamp;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp string")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Timestamp, E> {
                text.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(TimestampVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_time_round_trips_on_both_sides_of_the_epoch() {
        for t in [
            Timestamp {
                seconds: 0,
                nanos: 0,
            },
            Timestamp {
                seconds: 1,
                nanos: 5,
            },
            Timestamp {
                seconds: -1,
                nanos: 999_999_999,
            },
            Timestamp {
                seconds: -2,
                nanos: 0,
            },
        ] {
            let system = SystemTime::try_from(t).unwrap();
            assert_eq!(Timestamp::from(system), t);
        }
    }

    #[test]
    fn range_ends_are_written_and_beyond_them_is_an_error() {
        let min = Timestamp {
            seconds: Timestamp::MIN_SECONDS,
            nanos: 0,
        };
        let max = Timestamp {
            seconds: Timestamp::MAX_SECONDS,
            nanos: 999_999_999,
        };
        assert_eq!(min.to_rfc3339().as_deref(), Ok("0001-01-01T00:00:00Z"));
        assert_eq!(
            max.to_rfc3339().as_deref(),
            Ok("9999-12-31T23:59:59.999999999Z")
        );
        for bad in [
            Timestamp {
                seconds: Timestamp::MIN_SECONDS - 1,
                nanos: 0,
            },
            Timestamp {
                seconds: Timestamp::MAX_SECONDS + 1,
                nanos: 0,
            },
            Timestamp {
                seconds: 0,
                nanos: -1,
            },
            Timestamp {
                seconds: 0,
                nanos: 1_000_000_000,
            },
        ] {
            assert!(bad.to_rfc3339().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rejects_text_that_is_not_rfc3339() {
        for text in [
            "",
            "2024-06-20",
            "2024-06-20T08:54:05",
            "2024-06-20T08:54:05.Z",
            "2024-06-20T08:54:05.1234567891Z",
            "2024-06-20T08:54:60Z",
            "2024-13-20T08:54:05Z",
        ] {
            assert!(text.parse::<Timestamp>().is_err(), "{text:?}");
        }
    }
}
