//! The text of leaf values written straight into a byte buffer, without `std::fmt`: dates and
//! times by calendar arithmetic and a table of digit pairs, integers by `itoa`, floats by `ryu`.
//! The bytes are exactly those `std::fmt` would give for the same values (unit tests compare
//! both); profiling showed the formatting machinery taking half the time of CSV and JSON encoding.
//!
//! Pure functions over `Vec<u8>`; nothing here knows about Arrow.

/// `00`, `01`, … `99`: two ASCII digits per entry.
const DIGIT_PAIRS: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Days from 1970-01-01 to 0001-01-01 and to 9999-12-31: BigQuery's DATE range.
const MIN_DAYS: i64 = -719_162;
const MAX_DAYS: i64 = 2_932_896;
pub(super) const MICROS_PER_DAY: i64 = 86_400_000_000;

/// The two digits of `n` (below 100).
fn pair(n: u32) -> [u8; 2] {
    let i = (n as usize % 100) * 2;
    [DIGIT_PAIRS[i], DIGIT_PAIRS[i + 1]]
}

/// Year, month and day of the day `days` after 1970-01-01 in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`: eras of 400 years, years starting in March so that the
/// leap day comes last).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    // Both fit in u32: 1..=31 and 1..=12.
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Appends `YYYY-MM-DD` for the day `days` after 1970-01-01; `false` (nothing written) outside
/// years 1 to 9999, which the four-digit form cannot hold.
pub(super) fn write_date(out: &mut Vec<u8>, days: i64) -> bool {
    if !(MIN_DAYS..=MAX_DAYS).contains(&days) {
        return false;
    }
    let (year, month, day) = civil_from_days(days);
    // 1..=9999 in this range.
    let year = year as u32;
    let [y0, y1] = pair(year / 100);
    let [y2, y3] = pair(year % 100);
    let [m0, m1] = pair(month);
    let [d0, d1] = pair(day);
    out.extend_from_slice(&[y0, y1, y2, y3, b'-', m0, m1, b'-', d0, d1]);
    true
}

/// Appends `HH:MM:SS.ffffff` (always six fractional digits) for `micros` after midnight;
/// `false` (nothing written) outside one day.
pub(super) fn write_time(out: &mut Vec<u8>, micros: i64) -> bool {
    if !(0..MICROS_PER_DAY).contains(&micros) {
        return false;
    }
    // Below 86_400_000_000: every part fits in u32.
    let seconds = (micros / 1_000_000) as u32;
    let fraction = (micros % 1_000_000) as u32;
    let [h0, h1] = pair(seconds / 3600);
    let [m0, m1] = pair(seconds / 60 % 60);
    let [s0, s1] = pair(seconds % 60);
    let [f0, f1] = pair(fraction / 10_000);
    let [f2, f3] = pair(fraction / 100 % 100);
    let [f4, f5] = pair(fraction % 100);
    out.extend_from_slice(&[
        h0, h1, b':', m0, m1, b':', s0, s1, b'.', f0, f1, f2, f3, f4, f5,
    ]);
    true
}

/// Appends `YYYY-MM-DDTHH:MM:SS.ffffff` for `micros` since 1970-01-01T00:00:00; `false`
/// (nothing written) outside years 1 to 9999.
pub(super) fn write_datetime(out: &mut Vec<u8>, micros: i64) -> bool {
    let days = micros.div_euclid(MICROS_PER_DAY);
    if !write_date(out, days) {
        return false;
    }
    out.push(b'T');
    // rem_euclid is always within one day.
    write_time(out, micros.rem_euclid(MICROS_PER_DAY))
}

/// Appends an integer in decimal, as `Display` writes it.
pub(super) fn write_int(out: &mut Vec<u8>, value: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// Appends the unscaled decimal `unscaled` at `scale` in its shortest exact form (trailing
/// fractional zeros removed), as BigQuery prints NUMERIC: `1500000000` at scale 9 is `1.5`.
pub(super) fn write_decimal128(out: &mut Vec<u8>, unscaled: i128, scale: i8) {
    let mut digits = itoa::Buffer::new();
    write_decimal(
        out,
        unscaled < 0,
        digits.format(unscaled.unsigned_abs()).as_bytes(),
        scale,
    );
}

/// [`write_decimal128`] from the text of a signed integer (`-42`), for types `itoa` does not
/// know (BIGNUMERIC's 256 bits).
pub(super) fn write_decimal_text(out: &mut Vec<u8>, signed: &str, scale: i8) {
    match signed.strip_prefix('-') {
        Some(magnitude) => write_decimal(out, true, magnitude.as_bytes(), scale),
        None => write_decimal(out, false, signed.as_bytes(), scale),
    }
}

/// `magnitude` holds ASCII digits without leading zeros (`0` for zero).
fn write_decimal(out: &mut Vec<u8>, negative: bool, magnitude: &[u8], scale: i8) {
    if negative {
        out.push(b'-');
    }
    if scale <= 0 {
        out.extend_from_slice(magnitude);
        out.extend(std::iter::repeat_n(b'0', usize::from(scale.unsigned_abs())));
        return;
    }
    let scale = usize::from(scale.unsigned_abs());
    let (int, fraction) = magnitude.split_at(magnitude.len().saturating_sub(scale));
    if int.is_empty() {
        out.push(b'0');
    } else {
        out.extend_from_slice(int);
    }
    let significant = fraction
        .iter()
        .rposition(|&d| d != b'0')
        .map_or(0, |i| i + 1);
    if significant > 0 {
        out.push(b'.');
        // Zeros the magnitude's digits start below the decimal point (`-1` at scale 9).
        out.extend(std::iter::repeat_n(b'0', scale - fraction.len()));
        out.extend_from_slice(&fraction[..significant]);
    }
}

/// Appends a finite float as Rust's `Debug` writes it: the shortest text that reads back to the
/// same bits, plain between 1e-4 and 1e16 (`0.1`, `1.0`), with an exponent outside (`1e300`,
/// `1.5e-7`). `ryu` writes the same digits in the same forms but in two cases: magnitudes in
/// [1e-5, 1e-4), which it writes plain (`0.00001`) where `Debug` has `1e-5` (those go through
/// `Debug`), and a value exactly halfway between two shortest candidates, where `ryu` takes the
/// even one and `Debug` the larger (corrected here).
pub(super) fn write_finite_float(out: &mut Vec<u8>, value: f64) {
    let magnitude = value.abs();
    if (1e-5..1e-4).contains(&magnitude) {
        use std::io::Write as _;
        // Writing into a Vec cannot fail.
        let _ = write!(out, "{value:?}");
        return;
    }
    let start = out.len();
    out.extend_from_slice(ryu::Buffer::new().format_finite(value).as_bytes());
    if let Some(at) = tie_taken_down(magnitude, &out[start..]) {
        // An even digit (2 to 8): one more never carries.
        out[start + at] += 1;
    }
}

/// Where `ryu` wrote `magnitude` (finite, as `text`) as the smaller of two shortest candidates
/// it lies exactly halfway between: the position of the last significant digit, which `Debug`
/// (rounding half up) writes one higher. `None` otherwise, which is nearly always: being exactly
/// halfway needs a value with few binary fraction digits and 17 or more significant digits.
fn tie_taken_down(magnitude: f64, text: &[u8]) -> Option<usize> {
    // magnitude = odd * 2^twos, exactly.
    let bits = magnitude.to_bits();
    let (exponent_bits, fraction) = (bits >> 52, bits & ((1 << 52) - 1));
    let (mantissa, exponent) = match exponent_bits {
        0 => (fraction, -1074),
        // Below 2048: fits i64.
        e => (fraction | 1 << 52, e as i64 - 1075),
    };
    if mantissa == 0 {
        return None;
    }
    let odd = mantissa >> mantissa.trailing_zeros();
    let twos = exponent + i64::from(mantissa.trailing_zeros());
    // Halfway (below) is an odd number of at most 19 digits times 10^twos: with 5^-twos above
    // 10^19, or odd (below 2^53) less than 5^twos, no tie exists. This rules out nearly every
    // value before its text is looked at.
    if !(-27..=22).contains(&twos) {
        return None;
    }
    // The text as digits * 10^power: `-1.25e-7`, `1234.5`, `0.001`, `100.0`.
    let (mantissa_text, mut power) = match text.iter().position(|&b| b == b'e') {
        Some(e) => (
            &text[..e],
            std::str::from_utf8(&text[e + 1..])
                .ok()?
                .parse::<i64>()
                .ok()?,
        ),
        None => (text, 0),
    };
    let (mut digits, mut after_point, mut last_significant) = (0u64, false, None);
    for (i, &b) in mantissa_text.iter().enumerate() {
        match b {
            b'.' => after_point = true,
            b'0'..=b'9' => {
                // At most 17 significant digits plus zeros: below 10^18.
                digits = digits.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
                power -= i64::from(after_point);
                if b != b'0' {
                    last_significant = Some(i);
                }
            }
            _ => {}
        }
    }
    while digits != 0 && digits % 10 == 0 {
        digits /= 10;
        power += 1;
    }
    if digits % 2 != 0 {
        // An odd last digit is never ryu's pick from a tie.
        return None;
    }
    // Halfway up to the next candidate: (10 * digits + 5) * 10^(power - 1), an odd number times
    // 5^q times 2^q; it equals odd * 2^twos when both the powers of two and the odd parts match.
    let halfway = u128::from(digits) * 10 + 5;
    let q = power - 1;
    if twos != q {
        return None;
    }
    let fives = 5u128.checked_pow(u32::try_from(q.unsigned_abs()).ok()?)?;
    let equal = if q >= 0 {
        halfway.checked_mul(fives) == Some(u128::from(odd))
    } else {
        u128::from(odd).checked_mul(fives) == Some(halfway)
    };
    if equal { last_significant } else { None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, NaiveDate};

    fn text(f: impl FnOnce(&mut Vec<u8>) -> bool) -> Option<String> {
        let mut out = b"prefix".to_vec();
        let written = f(&mut out);
        let text = String::from_utf8(out).unwrap();
        let rest = text.strip_prefix("prefix").unwrap().to_string();
        if written {
            Some(rest)
        } else {
            assert_eq!(rest, "", "nothing is written for a value out of range");
            None
        }
    }

    fn date(days: i64) -> Option<String> {
        text(|out| write_date(out, days))
    }

    fn chrono_date(days: i64) -> String {
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        (epoch + chrono::Days::new(0) + chrono::TimeDelta::days(days))
            .format("%Y-%m-%d")
            .to_string()
    }

    #[test]
    fn dates_are_written_from_year_1_to_year_9999() {
        assert_eq!(date(0).as_deref(), Some("1970-01-01"));
        assert_eq!(date(-1).as_deref(), Some("1969-12-31"));
        assert_eq!(date(MIN_DAYS).as_deref(), Some("0001-01-01"));
        assert_eq!(date(MAX_DAYS).as_deref(), Some("9999-12-31"));
        assert_eq!(date(MIN_DAYS - 1), None);
        assert_eq!(date(MAX_DAYS + 1), None);
        assert_eq!(date(i64::from(i32::MIN)), None);
        assert_eq!(date(i64::from(i32::MAX)), None);
    }

    #[test]
    fn leap_days_follow_the_gregorian_rules() {
        let days = |y, m, d| {
            (NaiveDate::from_ymd_opt(y, m, d).unwrap()
                - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap())
            .num_days()
        };
        // Every fourth year, but not centuries, except every fourth century.
        assert_eq!(date(days(2024, 2, 29)).as_deref(), Some("2024-02-29"));
        assert_eq!(date(days(2024, 2, 29) + 1).as_deref(), Some("2024-03-01"));
        assert_eq!(date(days(2000, 2, 29)).as_deref(), Some("2000-02-29"));
        assert_eq!(date(days(1900, 2, 28) + 1).as_deref(), Some("1900-03-01"));
        assert_eq!(date(days(2100, 2, 28) + 1).as_deref(), Some("2100-03-01"));
        assert_eq!(date(days(4, 2, 29)).as_deref(), Some("0004-02-29"));
        assert_eq!(date(days(400, 2, 29)).as_deref(), Some("0400-02-29"));
        assert_eq!(date(days(9996, 2, 29)).as_deref(), Some("9996-02-29"));
        assert_eq!(date(days(1, 12, 31)).as_deref(), Some("0001-12-31"));
    }

    #[test]
    fn every_date_matches_chrono() {
        // Every day of the first and last centuries, of the years around 1970 and 2000, and a
        // stride over the whole range.
        let ranges = [
            MIN_DAYS..MIN_DAYS + 36_600,
            -800..800,
            10_500..11_500,
            MAX_DAYS - 36_600..MAX_DAYS + 1,
        ];
        let strided = (MIN_DAYS..=MAX_DAYS).step_by(97);
        for days in ranges.into_iter().flatten().chain(strided) {
            assert_eq!(date(days), Some(chrono_date(days)), "day {days}");
        }
    }

    #[test]
    fn times_have_six_fractional_digits() {
        let time = |micros| text(|out| write_time(out, micros));
        assert_eq!(time(0).as_deref(), Some("00:00:00.000000"));
        assert_eq!(time(1).as_deref(), Some("00:00:00.000001"));
        assert_eq!(time(10).as_deref(), Some("00:00:00.000010"));
        assert_eq!(time(123_456).as_deref(), Some("00:00:00.123456"));
        assert_eq!(time(1_000_000).as_deref(), Some("00:00:01.000000"));
        assert_eq!(time(45_296_000_001).as_deref(), Some("12:34:56.000001"));
        assert_eq!(time(MICROS_PER_DAY - 1).as_deref(), Some("23:59:59.999999"));
        assert_eq!(time(MICROS_PER_DAY), None);
        assert_eq!(time(-1), None);
    }

    #[test]
    fn datetimes_match_chrono_across_the_range() {
        let datetime = |micros| text(|out| write_datetime(out, micros));
        let chrono_text = |micros: i64| {
            DateTime::from_timestamp_micros(micros)
                .unwrap()
                .naive_utc()
                .format("%Y-%m-%dT%H:%M:%S%.6f")
                .to_string()
        };
        let first = MIN_DAYS * MICROS_PER_DAY;
        let last = (MAX_DAYS + 1) * MICROS_PER_DAY - 1;
        assert_eq!(
            datetime(first).as_deref(),
            Some("0001-01-01T00:00:00.000000")
        );
        assert_eq!(
            datetime(last).as_deref(),
            Some("9999-12-31T23:59:59.999999")
        );
        assert_eq!(datetime(first - 1), None);
        assert_eq!(datetime(last + 1), None);
        assert_eq!(datetime(i64::MIN), None);
        assert_eq!(datetime(i64::MAX), None);
        // Just before and after the epoch, where truncating division would go wrong.
        assert_eq!(datetime(-1).as_deref(), Some("1969-12-31T23:59:59.999999"));
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let micros = first + (state % (last - first + 1) as u64) as i64;
            assert_eq!(datetime(micros), Some(chrono_text(micros)), "{micros}");
        }
    }

    fn decimal(unscaled: i128, scale: i8) -> String {
        let mut out = Vec::new();
        write_decimal128(&mut out, unscaled, scale);
        let text = String::from_utf8(out).unwrap();
        let mut other = Vec::new();
        write_decimal_text(&mut other, &unscaled.to_string(), scale);
        assert_eq!(text.as_bytes(), other, "both entry points agree");
        text
    }

    #[test]
    fn decimals_are_written_in_their_shortest_exact_form() {
        assert_eq!(decimal(1_500_000_000, 9), "1.5");
        assert_eq!(decimal(-1, 9), "-0.000000001");
        assert_eq!(decimal(0, 9), "0");
        assert_eq!(decimal(-3_000_000_000, 9), "-3");
        assert_eq!(decimal(12, 0), "12");
        assert_eq!(decimal(12, -2), "1200");
        assert_eq!(decimal(100_000_000, 9), "0.1");
        assert_eq!(decimal(123_456_789_012, 9), "123.456789012");
        assert_eq!(
            decimal(i128::MAX, 9),
            "170141183460469231731687303715.884105727"
        );
        assert_eq!(
            decimal(i128::MIN, 9),
            "-170141183460469231731687303715.884105728"
        );
        assert_eq!(
            decimal(10_i128.pow(38) - 1, 9),
            "99999999999999999999999999999.999999999"
        );
    }

    #[test]
    fn integers_match_display() {
        for value in [0, 1, -1, 42, i64::MAX, i64::MIN, 1_000_000, -999] {
            let mut out = Vec::new();
            write_int(&mut out, value);
            assert_eq!(out, value.to_string().as_bytes());
        }
    }

    fn float_matches_debug(value: f64) {
        let mut out = Vec::new();
        write_finite_float(&mut out, value);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            format!("{value:?}"),
            "bits {:#x}",
            value.to_bits()
        );
    }

    #[test]
    fn floats_are_written_as_debug_writes_them() {
        let edges = [
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.1,
            0.3,
            1.5,
            1e-4,
            1e-4_f64.next_down(),
            1e-5,
            1e-5_f64.next_down(),
            2e-5,
            9.999e-5,
            1e-7,
            1.5e-7,
            1e15,
            1e16,
            1e16_f64.next_down(),
            123_456_789_012_345_680.0,
            1e300,
            -1e300,
            f64::MAX,
            f64::MIN,
            f64::MIN_POSITIVE,
            f64::EPSILON,
            5e-324,
            9_007_199_254_740_993.0,
            // 1658206780088562.25 exactly, halfway between the two shortest candidates (…562.2
            // and …562.3): Debug rounds up. As bits, since the literal has more digits than
            // the shortest form.
            f64::from_bits(0x4317_9085_685d_83c9),
            0.125,
            2.5,
        ];
        for value in edges {
            float_matches_debug(value);
        }
        // Random bit patterns cover every exponent; random magnitudes cover typical values.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let bits = f64::from_bits(state);
            if bits.is_finite() {
                float_matches_debug(bits);
            }
            let scaled = (state >> 11) as f64 / (1u64 << 53) as f64;
            float_matches_debug(scaled * 2e6 - 1e6);
            float_matches_debug(scaled * 1e-3);
            // Few binary fraction digits and many decimal ones: where ties happen.
            let dyadic = (state >> (state % 12)) as f64 / f64::from(1u32 << (state % 7));
            float_matches_debug(dyadic);
            float_matches_debug(-dyadic);
        }
    }
}
