//! Text every request writes (the audit record's time, the client's address), written without
//! `fmt` where its cost showed in the per-request profile (`docs/performance.md`, "Formatting and
//! hashing per request"). Each function gives the same bytes as the `Display` or `time` format
//! it replaces; the tests compare them.

/// The current UTC time as RFC 3339 with millisecond precision.
pub fn now_rfc3339() -> String {
    rfc3339_millis(time::OffsetDateTime::now_utc())
}

/// `ip` as its `Display` writes it. Two a request (the audit record, `X-Forwarded-For`), and
/// std's IPv4 display runs `fmt` once per octet (≈ 1,300 instructions an address); `itoa`'s
/// digits cost a tenth of that. IPv6 is left to std.
pub fn ip_text(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let mut out = String::with_capacity(15);
            let mut digits = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                out.push_str(digits.format(octet));
            }
            out
        }
        std::net::IpAddr::V6(v6) => v6.to_string(),
    }
}

/// `t`, converted to UTC, as `2026-01-02T03:04:05.678Z`. Every request's audit record takes
/// one, and a `time` format description costs ≈ 2,000 instructions a call; the part up to the
/// second is formatted once per second per thread, the milliseconds are three digits appended.
fn rfc3339_millis(t: time::OffsetDateTime) -> String {
    use std::cell::RefCell;
    let to_second =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    thread_local! {
        /// The Unix second last formatted on this thread, and its text.
        static SECOND: RefCell<(i64, String)> = const { RefCell::new((i64::MIN, String::new())) };
    }
    let t = t.to_offset(time::UtcOffset::UTC);
    let second = t.unix_timestamp();
    let millis = t.millisecond();
    SECOND.with_borrow_mut(|(at, text)| {
        if *at != second {
            *text = t.format(&to_second).unwrap_or_default();
            *at = second;
        }
        let mut out = String::with_capacity(text.len() + 5);
        out.push_str(text);
        out.push('.');
        for digit in [millis / 100, millis / 10 % 10, millis % 10] {
            // A digit: `millis` < 1000.
            out.push(char::from(b'0' + digit as u8));
        }
        out.push('Z');
        out
    })
}

#[cfg(test)]
mod tests {
    proptest::proptest! {
        /// `ip_text` writes what `Display` writes, for any address.
        #[test]
        fn ip_text_is_display(
            v4 in proptest::prelude::any::<u32>(),
            v6 in proptest::prelude::any::<u128>(),
        ) {
            for ip in [
                std::net::IpAddr::from(std::net::Ipv4Addr::from(v4)),
                std::net::IpAddr::from(std::net::Ipv6Addr::from(v6)),
            ] {
                proptest::prop_assert_eq!(super::ip_text(ip), ip.to_string());
            }
        }
    }

    /// The per-second cache gives what formatting the whole time each call gives, across
    /// second, day and year boundaries and in any order.
    #[test]
    fn rfc3339_millis_matches_a_full_format() {
        let full = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        );
        let start = time::macros::datetime!(2026-12-31 23:59:58.990 UTC);
        let mut times: Vec<time::OffsetDateTime> = (0..3000)
            .map(|ms| start + time::Duration::milliseconds(ms))
            .collect();
        // Going back in time too (the clock can), and a zone other than UTC.
        times.push(start);
        times.push(time::macros::datetime!(1999-01-01 00:00:00.001 +02:00));
        // Before 1970 the Unix second rounds down (-0.5 s is second -1 and 500 ms).
        times.push(time::macros::datetime!(1969-12-31 23:59:59.500 UTC));
        times.push(time::macros::datetime!(1970-01-01 00:00:00.000 UTC));
        times.push(time::macros::datetime!(2027-01-01 00:00:00.000 UTC));
        for t in times {
            let expected = t.to_offset(time::UtcOffset::UTC).format(&full).unwrap();
            assert_eq!(super::rfc3339_millis(t), expected, "{t}");
        }
    }
}
