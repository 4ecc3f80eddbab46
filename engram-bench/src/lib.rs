//! Pieces shared by the report binary and the criterion benches.

pub mod lookup;
pub mod stall;
