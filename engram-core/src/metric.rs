//! The similarity metric a database is created for.

/// The longest vector accepted anywhere vectors come in. Dot products and squared distances
/// of vectors this long stay below 4e36, far inside the f32 range (3.4e38) the kernels sum
/// in, and so does every partial sum (each is bounded the same way, by Cauchy–Schwarz on its
/// terms).
pub(crate) const MAX_NORM: f32 = 1e18;

/// `InvalidArgument` naming `what` if a vector of squared norm `squared` is longer than
/// [`MAX_NORM`].
pub(crate) fn check_norm(what: &dyn std::fmt::Display, squared: f64) -> crate::Result<()> {
    match squared <= f64::from(MAX_NORM).powi(2) {
        true => Ok(()),
        false => Err(crate::Error::InvalidArgument(format!(
            "{what} has norm {:.3e}; similarities are summed in f32, which holds norms up to {MAX_NORM:e}",
            squared.sqrt()
        ))),
    }
}

/// Similarity metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub enum Metric {
    /// Cosine similarity (the default; embeddings are compared by angle).
    #[default]
    Cosine,
    /// Inner product.
    Dot,
    /// Squared Euclidean distance (scores are its negation, so higher is nearer).
    L2,
}

#[cfg_attr(not(unix), allow(dead_code))] // used by the store, which needs unix
impl Metric {
    pub(crate) fn code(self) -> u32 {
        match self {
            Metric::Cosine => 0,
            Metric::Dot => 1,
            Metric::L2 => 2,
        }
    }

    pub(crate) fn from_code(c: u32) -> Option<Self> {
        [Metric::Cosine, Metric::Dot, Metric::L2]
            .into_iter()
            .find(|m| m.code() == c)
    }
}
