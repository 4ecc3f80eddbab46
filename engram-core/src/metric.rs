//! The similarity metric a database is created for.

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
