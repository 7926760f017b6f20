//! What a run's invocations cost on Lambda, from the `REPORT` lines' billed durations and memory
//! sizes: billed GB-seconds × price per GB-second + requests × price per request.
//!
//! Pure arithmetic over [`FunctionUsage`]. Lambda's pricing:
//! <https://aws.amazon.com/lambda/pricing/>. The defaults are the first pricing tier in US East
//! (N. Virginia), read on 2026-11-30; the volume tiers (beyond 6 billion GB-s a month on x86,
//! 7.5 billion on arm64), the free tier, ephemeral storage above 512 MB and provisioned
//! concurrency are not modelled: a load test is far below the first tier's end, and the free tier
//! is per account and month, not per run.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::FunctionUsage;

/// A function's instruction set architecture, as Lambda's `Architectures` names it. It picks the
/// default price per GB-second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Architecture {
    #[default]
    #[serde(rename = "x86_64")]
    X86_64,
    #[serde(rename = "arm64")]
    Arm64,
}

impl Architecture {
    pub fn as_str(self) -> &'static str {
        match self {
            Architecture::X86_64 => "x86_64",
            Architecture::Arm64 => "arm64",
        }
    }

    /// USD per GB-second of billed duration, first tier, US East (N. Virginia), 2026-11-30.
    pub fn default_gb_second(self) -> f64 {
        match self {
            Architecture::X86_64 => 0.000_016_666_7,
            Architecture::Arm64 => 0.000_013_333_4,
        }
    }
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Architecture {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "x86_64" => Ok(Architecture::X86_64),
            "arm64" => Ok(Architecture::Arm64),
            _ => Err(format!("`{s}` is not an architecture (x86_64 or arm64)")),
        }
    }
}

/// USD per million requests, both architectures, US East (N. Virginia), 2026-11-30.
pub const DEFAULT_PER_MILLION_REQUESTS: f64 = 0.20;

/// The prices a run's cost is estimated with.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Prices {
    pub architecture: Architecture,
    /// USD per GB-second of billed duration.
    pub gb_second: f64,
    /// USD per million requests.
    pub per_million_requests: f64,
}

impl Prices {
    /// The published prices for `architecture`.
    pub fn of(architecture: Architecture) -> Prices {
        Prices {
            architecture,
            gb_second: architecture.default_gb_second(),
            per_million_requests: DEFAULT_PER_MILLION_REQUESTS,
        }
    }
}

impl Default for Prices {
    fn default() -> Self {
        Prices::of(Architecture::default())
    }
}

/// The estimated cost of the invocations that returned a `REPORT` line, in USD.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Cost {
    /// Billed GB-seconds × price per GB-second.
    pub compute: f64,
    /// Invocations × price per request.
    pub requests: f64,
    pub total: f64,
    /// `total` scaled to a million invocations; `None` without invocations.
    pub per_million_invocations: Option<f64>,
}

impl Cost {
    pub fn of(usage: &FunctionUsage, prices: &Prices) -> Cost {
        let compute = usage.billed_gb_seconds() * prices.gb_second;
        let requests = usage.invocations as f64 * prices.per_million_requests / 1e6;
        let total = compute + requests;
        Cost {
            compute,
            requests,
            total,
            per_million_invocations: (usage.invocations > 0)
                .then(|| total / usage.invocations as f64 * 1e6),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_is_billed_gb_seconds_and_requests() {
        // 1000 invocations billed 100 ms each at 512 MB: 50 GB-s.
        let usage = FunctionUsage {
            invocations: 1000,
            billed_ms: 100_000,
            billed_mb_ms: 100_000 * 512,
            ..FunctionUsage::default()
        };
        assert_eq!(usage.billed_gb_seconds(), 50.0);
        let x86 = Cost::of(&usage, &Prices::default());
        assert!((x86.compute - 50.0 * 0.000_016_666_7).abs() < 1e-15);
        assert!((x86.requests - 0.0002).abs() < 1e-15);
        assert_eq!(x86.total, x86.compute + x86.requests);
        // Per million: the run's cost × 1000 (it had a thousand invocations).
        let per_million = x86.per_million_invocations.unwrap();
        assert!((per_million - x86.total * 1000.0).abs() < 1e-9);
        // arm64 costs 20 % less per GB-second, the same per request.
        let arm = Cost::of(&usage, &Prices::of(Architecture::Arm64));
        assert!(arm.compute < x86.compute * 0.81);
        assert_eq!(arm.requests, x86.requests);
        assert_eq!(
            Cost::of(&FunctionUsage::default(), &Prices::default()).per_million_invocations,
            None
        );
    }

    #[test]
    fn architectures_are_named_as_lambda_names_them() {
        assert_eq!("arm64".parse(), Ok(Architecture::Arm64));
        assert_eq!("x86_64".parse(), Ok(Architecture::X86_64));
        assert!(
            "aarch64"
                .parse::<Architecture>()
                .unwrap_err()
                .contains("x86_64 or arm64")
        );
    }
}
