//! A pod's traffic shaping from its annotations, as kubelet's and containerd's: the quantities
//! `kubernetes.io/ingress-bandwidth` and `kubernetes.io/egress-bandwidth` (bits per second,
//! "10M", "1Gi", "500k"), each between 1 kbit/s and 1 Pbit/s. The burst is not configurable
//! there; like containerd, it is set to 2^32-1 bits, so bursts are not what is limited.

use std::collections::HashMap;

use super::cni::Bandwidth;

pub const INGRESS_ANNOTATION: &str = "kubernetes.io/ingress-bandwidth";
pub const EGRESS_ANNOTATION: &str = "kubernetes.io/egress-bandwidth";

/// The burst given with a rate (containerd's).
const BURST: u64 = u32::MAX as u64;
/// kubelet's bounds of a reasonable rate.
const MIN_RATE: u64 = 1_000;
const MAX_RATE: u64 = 1_000_000_000_000_000;

#[derive(Debug, thiserror::Error)]
#[error("annotation {annotation}: {value:?}: {reason}")]
pub struct BandwidthError {
    pub annotation: &'static str,
    pub value: String,
    pub reason: String,
}

impl Bandwidth {
    /// The shaping a pod's annotations ask for; `None` when they ask for none.
    pub fn from_pod_annotations(annotations: &HashMap<String, String>) -> Result<Option<Bandwidth>, BandwidthError> {
        let rate = |annotation: &'static str| -> Result<Option<u64>, BandwidthError> {
            let Some(value) = annotations.get(annotation) else { return Ok(None) };
            let err = |reason: String| BandwidthError { annotation, value: value.clone(), reason };
            let rate = parse_quantity(value).map_err(err)?;
            if rate < MIN_RATE {
                return Err(err("under 1 kbit/s".into()));
            }
            if rate > MAX_RATE {
                return Err(err("over 1 Pbit/s".into()));
            }
            Ok(Some(rate))
        };
        let (ingress, egress) = (rate(INGRESS_ANNOTATION)?, rate(EGRESS_ANNOTATION)?);
        if ingress.is_none() && egress.is_none() {
            return Ok(None);
        }
        let burst = |rate: Option<u64>| if rate.is_some() { BURST } else { 0 };
        Ok(Some(Bandwidth {
            ingress_rate: ingress.unwrap_or(0),
            ingress_burst: burst(ingress),
            egress_rate: egress.unwrap_or(0),
            egress_burst: burst(egress),
        }))
    }
}

/// A Kubernetes quantity (a non-negative decimal number, then a binary suffix Ki..Ei, a decimal
/// one n, u, m, k, M, G, T, P, E, or an exponent eN / EN), as an integer rounded up.
fn parse_quantity(text: &str) -> Result<u64, String> {
    let number_len = text.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+')).unwrap_or(text.len());
    let (number, suffix) = text.split_at(number_len);
    let number = number.strip_prefix('+').unwrap_or(number);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || !(whole.chars().chain(fraction.chars()).all(|c| c.is_ascii_digit())) {
        return Err("not a quantity (a number, then a suffix such as k, M, Gi)".into());
    }
    // value = mantissa * mul / div
    let too_big = || "too large".to_string();
    let mut mantissa: u128 = 0;
    for digit in whole.chars().chain(fraction.chars()) {
        mantissa = mantissa.checked_mul(10).and_then(|m| m.checked_add(u128::from(digit as u8 - b'0'))).ok_or_else(too_big)?;
    }
    let pow = |base: u128, exp: u32| base.checked_pow(exp).ok_or_else(too_big);
    let mut div = pow(10, u32::try_from(fraction.len()).map_err(|_| too_big())?)?;
    let mut mul: u128 = 1;
    let binary = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    let decimal = ["k", "M", "G", "T", "P", "E"];
    let small = ["m", "u", "n"];
    if let Some(i) = binary.iter().position(|s| *s == suffix) {
        mul = pow(1024, i as u32 + 1)?;
    } else if let Some(i) = decimal.iter().position(|s| *s == suffix) {
        mul = pow(1000, i as u32 + 1)?;
    } else if let Some(i) = small.iter().position(|s| *s == suffix) {
        div = div.checked_mul(pow(1000, i as u32 + 1)?).ok_or_else(too_big)?;
    } else if let Some(exp) = suffix.strip_prefix(['e', 'E']) {
        let (negative, digits) = match exp.strip_prefix('-') {
            Some(d) => (true, d),
            None => (false, exp.strip_prefix('+').unwrap_or(exp)),
        };
        let exp: u32 = digits.parse().map_err(|_| format!("exponent {exp:?} is not a number"))?;
        if negative {
            div = div.checked_mul(pow(10, exp)?).ok_or_else(too_big)?;
        } else {
            mul = pow(10, exp)?;
        }
    } else if !suffix.is_empty() {
        return Err(format!("unknown suffix {suffix:?}"));
    }
    let scaled = mantissa.checked_mul(mul).ok_or_else(too_big)?;
    let value = scaled.div_ceil(div);
    u64::try_from(value).map_err(|_| too_big())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_as_kubernetes_writes_them() {
        for (text, value) in [
            ("1000", 1000),
            ("10M", 10_000_000),
            ("1.5k", 1500),
            ("1Ki", 1024),
            ("2Gi", 2 << 30),
            ("1e3", 1000),
            ("1E6", 1_000_000),
            ("1E", 1_000_000_000_000_000_000),
            ("+5k", 5000),
            ("1500m", 2),
            (".5k", 500),
            ("1.0001k", 1001),
        ] {
            assert_eq!(parse_quantity(text), Ok(value), "{text}");
        }
        for bad in ["", "k", "-1k", "1x", "1.2.3", "1e", "1ee3", "99999999999999999999999999999999999999999E"] {
            assert!(parse_quantity(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn annotations_give_rates_with_the_maximum_burst() {
        let annotations = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert_eq!(Bandwidth::from_pod_annotations(&annotations(&[("other", "1")])).expect("none"), None);
        let both = Bandwidth::from_pod_annotations(&annotations(&[(INGRESS_ANNOTATION, "10M"), (EGRESS_ANNOTATION, "1Gi")]))
            .expect("parse")
            .expect("some");
        assert_eq!(both, Bandwidth { ingress_rate: 10_000_000, ingress_burst: BURST, egress_rate: 1 << 30, egress_burst: BURST });
        let ingress = Bandwidth::from_pod_annotations(&annotations(&[(INGRESS_ANNOTATION, "1k")])).expect("parse").expect("some");
        assert_eq!((ingress.egress_rate, ingress.egress_burst), (0, 0), "egress not shaped");
        for (value, reason) in [("999", "under"), ("2P", "over"), ("fast", "not a quantity")] {
            let e = Bandwidth::from_pod_annotations(&annotations(&[(EGRESS_ANNOTATION, value)])).expect_err(value).to_string();
            assert!(e.contains(EGRESS_ANNOTATION) && e.contains(reason), "{e}");
        }
    }
}
