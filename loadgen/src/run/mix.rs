//! Picking the next request kind by weight.

/// Smooth weighted round-robin (as in nginx): over any `sum(weights)` consecutive picks, entry i is
/// chosen exactly `weights[i]` times, spread out rather than in runs. Deterministic, so a 9:1 mix
/// is exactly 9:1 even in a short run.
#[derive(Debug, Clone)]
pub struct Mix {
    weights: Vec<i64>,
    current: Vec<i64>,
    total: i64,
}

impl Mix {
    /// `weights` must not be empty and must be at least 1 each (the scenario checks this).
    pub fn new(weights: impl IntoIterator<Item = u32>) -> Mix {
        let weights: Vec<i64> = weights.into_iter().map(i64::from).collect();
        assert!(!weights.is_empty(), "a mix needs at least one entry");
        Mix {
            current: vec![0; weights.len()],
            total: weights.iter().sum(),
            weights,
        }
    }

    /// Index of the next entry.
    pub fn next_index(&mut self) -> usize {
        if self.weights.len() == 1 {
            return 0;
        }
        let mut best = 0;
        for i in 0..self.weights.len() {
            self.current[i] += self.weights[i];
            if self.current[i] > self.current[best] {
                best = i;
            }
        }
        self.current[best] -= self.total;
        best
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn picks_are_interleaved() {
        let mut mix = Mix::new([2, 1]);
        let picks: Vec<_> = (0..6).map(|_| mix.next_index()).collect();
        assert_eq!(picks, [0, 1, 0, 0, 1, 0]);
    }

    proptest! {
        #[test]
        fn every_round_matches_the_weights(weights in prop::collection::vec(1u32..20, 1..6), rounds in 1usize..4) {
            let total: u32 = weights.iter().sum();
            let mut mix = Mix::new(weights.clone());
            let mut counts = vec![0u32; weights.len()];
            for _ in 0..(total as usize * rounds) {
                counts[mix.next_index()] += 1;
            }
            let expected: Vec<u32> = weights.iter().map(|w| w * rounds as u32).collect();
            prop_assert_eq!(counts, expected);
        }
    }
}
