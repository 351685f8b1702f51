//! Concentration of stake in an operator set: shares, HHI, Nakamoto coefficients.

/// Each stake's share of the total, in basis points (rounded down).
pub fn shares_bps(stakes: &[u128]) -> Vec<u32> {
    let total: u128 = stakes.iter().sum();
    stakes
        .iter()
        .map(|s| (s * 10_000).checked_div(total).unwrap_or(0) as u32)
        .collect()
}

/// Herfindahl–Hirschman index on shares in percent: Σ(100·sᵢ)², 0 (spread) to 10 000 (one
/// holder). Above 2 500 is highly concentrated.
pub fn hhi(stakes: &[u128]) -> f64 {
    let total: u128 = stakes.iter().sum();
    if total == 0 {
        return 0.0;
    }
    stakes
        .iter()
        .map(|&s| {
            let p = s as f64 * 100.0 / total as f64;
            p * p
        })
        .sum()
}

/// HHI rescaled to 0..1 against the number of holders: 0 when all hold the same, 1 when one
/// holds everything. 0 for fewer than two holders with stake.
pub fn hhi_normalised(stakes: &[u128]) -> f64 {
    let n = stakes.iter().filter(|&&s| s > 0).count();
    if n < 2 {
        return if n == 1 { 1.0 } else { 0.0 };
    }
    let h = hhi(stakes) / 10_000.0;
    let floor = 1.0 / n as f64;
    ((h - floor) / (1.0 - floor)).clamp(0.0, 1.0)
}

/// The fewest holders whose stake together exceeds `numerator/denominator` of the total.
pub fn nakamoto(stakes: &[u128], numerator: u128, denominator: u128) -> u32 {
    let total: u128 = stakes.iter().sum();
    if total == 0 {
        return 0;
    }
    let mut sorted: Vec<u128> = stakes.to_vec();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    let mut acc = 0u128;
    for (k, s) in sorted.iter().enumerate() {
        acc += s;
        // acc / total > numerator / denominator, in integers.
        if acc * denominator > numerator * total {
            return k as u32 + 1;
        }
    }
    sorted.len() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_cases() {
        // Four equal holders: HHI 4 × 25² = 2500, normalised 0, Nakamoto 2 (50% is not more
        // than half), 3, 3.
        let eq = [25u128, 25, 25, 25];
        assert_eq!(hhi(&eq), 2500.0);
        assert_eq!(hhi_normalised(&eq), 0.0);
        assert_eq!(nakamoto(&eq, 1, 3), 2);
        assert_eq!(nakamoto(&eq, 1, 2), 3);
        assert_eq!(nakamoto(&eq, 2, 3), 3);
        // 50/30/20: HHI 2500 + 900 + 400 = 3800; normalised (0.38 − 1/3)/(2/3) = 0.07.
        let s = [50u128, 30, 20];
        assert_eq!(hhi(&s), 3800.0);
        assert!((hhi_normalised(&s) - 0.07).abs() < 1e-9);
        assert_eq!(nakamoto(&s, 1, 3), 1);
        assert_eq!(nakamoto(&s, 1, 2), 2);
        assert_eq!(nakamoto(&s, 2, 3), 2);
        // One holder.
        assert_eq!(hhi(&[7]), 10_000.0);
        assert_eq!(hhi_normalised(&[7, 0]), 1.0);
        assert_eq!(shares_bps(&[1, 1, 2]), vec![2500, 2500, 5000]);
        assert_eq!(nakamoto(&[], 1, 2), 0);
    }
}
