//! A network coordinate: a point in D-dimensional Euclidean space plus a height.
//!
//! The model is Vivaldi's "height vector" (Dabek et al., "Vivaldi: A Decentralized Network
//! Coordinate System", SIGCOMM 2004, §5.4): the predicted round-trip time between two peers is
//! the Euclidean distance between their vectors plus both heights. The Euclidean part models
//! the Internet core, where latency follows geography; the height models a peer's access link,
//! which every packet to or from that peer crosses. Serf additionally carries an `adjustment`
//! (Lee et al., "On Suitability of Euclidean Embedding for Host-Based Network Coordinate
//! Systems", IEEE/ACM ToN 2010): a per-peer offset added to the prediction when the adjusted
//! sum stays positive. The `vecino` profile keeps it at zero.
//!
//! All lengths are in **seconds**, as in Serf, so that the two profiles exchange comparable
//! values and the reference constants (height min 10 µs, gravity rho 150) keep their meaning.

use std::time::Duration;

use nalgebra::SVector;
use thiserror::Error;

/// The default number of Euclidean dimensions (Serf's, after Ledlie et al. NSDI 2007).
pub const DEFAULT_DIMENSIONS: usize = 8;

/// The largest round-trip time accepted as a measurement or predicted as a distance.
pub const MAX_RTT: Duration = Duration::from_secs(10);

/// The largest norm of a coordinate's vector accepted from anyone, in seconds. No two peers
/// are more than [`MAX_RTT`] apart, so a centred embedding never needs more than that; twice
/// that leaves room for drift of the whole frame.
pub const MAX_VECTOR_NORM_SECS: f64 = 20.0;

/// The largest height or |adjustment| accepted, in seconds: one full [`MAX_RTT`].
pub const MAX_OFFSET_SECS: f64 = 10.0;

/// The largest error estimate accepted. Error is a relative error, dimensionless; Serf caps
/// its own at 1.5 and so does every profile here.
pub const MAX_ERROR: f64 = 1.5;

/// Why a coordinate (received from a peer, decoded from the wire or produced locally) was
/// refused. Every check is about the value alone; nothing is modified.
#[derive(Debug, Clone, Copy, PartialEq, Error)]
pub enum CoordinateError {
    /// The vector has a different number of dimensions than this build uses.
    #[error("dimension mismatch: expected {expected}, got {got}")]
    DimensionMismatch {
        /// Dimensions of the local coordinate space.
        expected: usize,
        /// Dimensions of the offered vector.
        got: usize,
    },
    /// A component is NaN or infinite.
    #[error("non-finite {0}")]
    NonFinite(Field),
    /// A component is finite but outside the range any honest peer can produce.
    #[error("{0} out of range")]
    OutOfRange(Field),
}

/// Names a part of a coordinate in a [`CoordinateError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The Euclidean vector.
    Vector,
    /// The height.
    Height,
    /// The error estimate.
    Error,
    /// The adjustment term.
    Adjustment,
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Field::Vector => "vector",
            Field::Height => "height",
            Field::Error => "error",
            Field::Adjustment => "adjustment",
        })
    }
}

/// A network coordinate. Lengths in seconds.
///
/// Fields are public so that hosts can build one from the wire; anything received must pass
/// [`Coordinate::check`] (done by [`Coordinate::from_parts`] and by every `Client` entry
/// point) before it is used.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Coordinate<const D: usize = DEFAULT_DIMENSIONS> {
    /// The Euclidean part.
    pub vec: SVector<f64, D>,
    /// The non-Euclidean access-link part; never negative.
    pub height: f64,
    /// The owner's estimate of its own relative error, in `[0, MAX_ERROR]`.
    pub error: f64,
    /// Serf's adjustment term (zero in the `vecino` profile).
    pub adjustment: f64,
}

impl<const D: usize> Coordinate<D> {
    /// A coordinate at the origin with the given starting height and error.
    pub fn origin(height: f64, error: f64) -> Self {
        Self { vec: SVector::zeros(), height, error, adjustment: 0.0 }
    }

    /// Builds and checks a coordinate from plain values (for example a decoded wire message).
    pub fn from_parts(
        vec: &[f64],
        height: f64,
        error: f64,
        adjustment: f64,
    ) -> Result<Self, CoordinateError> {
        if vec.len() != D {
            return Err(CoordinateError::DimensionMismatch { expected: D, got: vec.len() });
        }
        let c = Self { vec: SVector::from_column_slice(vec), height, error, adjustment };
        c.check()?;
        Ok(c)
    }

    /// As [`Coordinate::from_parts`], from the single-precision values the wire carries.
    pub fn from_f32_parts(
        vec: &[f32],
        height: f32,
        error: f32,
        adjustment: f32,
    ) -> Result<Self, CoordinateError> {
        if vec.len() != D {
            return Err(CoordinateError::DimensionMismatch { expected: D, got: vec.len() });
        }
        let wide: SVector<f64, D> = SVector::from_iterator(vec.iter().map(|&x| f64::from(x)));
        Self::from_parts(
            wide.as_slice(),
            f64::from(height),
            f64::from(error),
            f64::from(adjustment),
        )
    }

    /// The single-precision values the wire carries: `(vec, height, error, adjustment)`.
    /// Every value of a checked coordinate fits `f32` without overflow.
    #[allow(clippy::cast_possible_truncation)]
    pub fn to_f32_parts(&self) -> (Vec<f32>, f32, f32, f32) {
        (
            self.vec.iter().map(|&x| x as f32).collect(),
            self.height as f32,
            self.error as f32,
            self.adjustment as f32,
        )
    }

    /// Checks every component: finite, and within the ranges any honest peer produces.
    pub fn check(&self) -> Result<(), CoordinateError> {
        if !self.vec.iter().all(|x| x.is_finite()) {
            return Err(CoordinateError::NonFinite(Field::Vector));
        }
        for (v, f) in [
            (self.height, Field::Height),
            (self.error, Field::Error),
            (self.adjustment, Field::Adjustment),
        ] {
            if !v.is_finite() {
                return Err(CoordinateError::NonFinite(f));
            }
        }
        if self.vec.norm() > MAX_VECTOR_NORM_SECS {
            return Err(CoordinateError::OutOfRange(Field::Vector));
        }
        if !(0.0..=MAX_OFFSET_SECS).contains(&self.height) {
            return Err(CoordinateError::OutOfRange(Field::Height));
        }
        if !(0.0..=MAX_ERROR).contains(&self.error) {
            return Err(CoordinateError::OutOfRange(Field::Error));
        }
        if self.adjustment.abs() > MAX_OFFSET_SECS {
            return Err(CoordinateError::OutOfRange(Field::Adjustment));
        }
        Ok(())
    }

    /// `true` when [`Coordinate::check`] passes.
    pub fn is_valid(&self) -> bool {
        self.check().is_ok()
    }

    /// Predicted RTT in seconds without adjustments: Euclidean distance plus both heights.
    #[inline]
    pub fn raw_distance_secs(&self, other: &Self) -> f64 {
        (self.vec - other.vec).norm() + self.height + other.height
    }

    /// Predicted RTT in seconds: [`Coordinate::raw_distance_secs`] plus both adjustments
    /// when that sum is positive (Serf's rule; with zero adjustments it is the raw distance).
    #[inline]
    pub fn distance_secs(&self, other: &Self) -> f64 {
        let raw = self.raw_distance_secs(other);
        let adjusted = raw + self.adjustment + other.adjustment;
        if adjusted > 0.0 { adjusted } else { raw }
    }

    /// Predicted RTT as a [`Duration`], saturating at [`MAX_RTT`] (and at zero for an
    /// unchecked coordinate that would predict something negative or NaN).
    pub fn distance_to(&self, other: &Self) -> Duration {
        let secs = self.distance_secs(other);
        if secs.is_nan() || secs <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(secs.min(MAX_RTT.as_secs_f64()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c2(x: f64, y: f64, h: f64) -> Coordinate<2> {
        Coordinate { vec: SVector::from([x, y]), height: h, error: 1.0, adjustment: 0.0 }
    }

    #[test]
    fn distance_is_euclidean_plus_heights() {
        let a = c2(0.0, 0.0, 0.001);
        let b = c2(0.003, 0.004, 0.002);
        assert!((a.distance_secs(&b) - 0.008).abs() < 1e-12);
        assert_eq!(a.distance_secs(&b), b.distance_secs(&a));
        assert_eq!(a.distance_to(&b), Duration::from_millis(8));
    }

    #[test]
    fn adjustment_applies_only_when_sum_positive() {
        let mut a = c2(0.0, 0.0, 0.0);
        let mut b = c2(0.010, 0.0, 0.0);
        a.adjustment = 0.002;
        b.adjustment = 0.001;
        assert!((a.distance_secs(&b) - 0.013).abs() < 1e-12);
        a.adjustment = -0.020;
        assert!((a.distance_secs(&b) - 0.010).abs() < 1e-12);
    }

    #[test]
    fn from_parts_rejects_bad_input() {
        assert_eq!(
            Coordinate::<2>::from_parts(&[0.0], 0.0, 0.5, 0.0),
            Err(CoordinateError::DimensionMismatch { expected: 2, got: 1 })
        );
        assert_eq!(
            Coordinate::<2>::from_parts(&[f64::NAN, 0.0], 0.0, 0.5, 0.0),
            Err(CoordinateError::NonFinite(Field::Vector))
        );
        assert_eq!(
            Coordinate::<2>::from_parts(&[1e6, 0.0], 0.0, 0.5, 0.0),
            Err(CoordinateError::OutOfRange(Field::Vector))
        );
        assert_eq!(
            Coordinate::<2>::from_parts(&[0.0, 0.0], -1.0, 0.5, 0.0),
            Err(CoordinateError::OutOfRange(Field::Height))
        );
        assert_eq!(
            Coordinate::<2>::from_parts(&[0.0, 0.0], 0.0, 2.0, 0.0),
            Err(CoordinateError::OutOfRange(Field::Error))
        );
        assert_eq!(
            Coordinate::<2>::from_parts(&[0.0, 0.0], 0.0, 0.5, f64::INFINITY),
            Err(CoordinateError::NonFinite(Field::Adjustment))
        );
        assert!(Coordinate::<2>::from_parts(&[0.01, -0.02], 0.001, 0.5, -0.001).is_ok());
    }

    #[test]
    fn f32_round_trip_keeps_meaning() {
        let c = Coordinate::<3>::from_parts(&[0.0123, -0.05, 0.2], 0.0004, 0.3, 0.0).unwrap();
        let (v, h, e, a) = c.to_f32_parts();
        let back = Coordinate::<3>::from_f32_parts(&v, h, e, a).unwrap();
        assert!((back.distance_secs(&c) - 2.0 * c.height).abs() < 1e-6);
        assert_eq!(
            Coordinate::<3>::from_f32_parts(&v[..2], h, e, a),
            Err(CoordinateError::DimensionMismatch { expected: 3, got: 2 })
        );
    }
}
