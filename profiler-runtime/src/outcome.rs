//! How a profiled call ended, and the probe that tells an `Err` return from any other value.

use serde::{Deserialize, Serialize};

/// How one call of a profiled node ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Outcome {
    /// The node returned normally with a value that is not a `Result::Err`.
    Ok = 0,
    /// The node returned a `Result::Err` (through `?`, `return` or its tail).
    Error = 1,
    /// The node unwound because of a panic; the panic continued unchanged.
    Panicked = 2,
    /// An async node was dropped after its first poll and before it finished.
    Cancelled = 3,
}

impl Outcome {
    /// Every outcome, in the order of their counters.
    pub const ALL: [Outcome; 4] = [
        Outcome::Ok,
        Outcome::Error,
        Outcome::Panicked,
        Outcome::Cancelled,
    ];

    /// The lower-case name used in reports and JSON (`"ok"`, `"error"`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Panicked => "panicked",
            Outcome::Cancelled => "cancelled",
        }
    }

    pub(crate) const fn index(self) -> usize {
        self as usize
    }

    /// The inverse of `self as u8`; out-of-range values (never written) read as `Ok`.
    pub(crate) const fn from_u8(value: u8) -> Self {
        match value {
            1 => Outcome::Error,
            2 => Outcome::Panicked,
            3 => Outcome::Cancelled,
            _ => Outcome::Ok,
        }
    }
}

/// Classifies a `Result` by its variant. Chosen by method resolution before [`OkProbe`]
/// because it matches the receiver `&Result<T, E>` without an extra auto-reference; this
/// is what makes `io::Result` and other aliases work without naming `Result` in the macro.
#[doc(hidden)]
pub trait ErrProbe {
    /// `Error` for `Err`, `Ok` for `Ok`.
    fn __ap_outcome(&self) -> Outcome;
}

impl<T, E> ErrProbe for Result<T, E> {
    #[inline(always)]
    fn __ap_outcome(&self) -> Outcome {
        if self.is_err() {
            Outcome::Error
        } else {
            Outcome::Ok
        }
    }
}

/// The fallback probe: any value that is not a `Result` counts as a success.
#[doc(hidden)]
pub trait OkProbe {
    /// Always `Ok`.
    #[inline(always)]
    fn __ap_outcome(&self) -> Outcome {
        Outcome::Ok
    }
}

impl<T: ?Sized> OkProbe for &T {}

#[cfg(test)]
mod tests {
    use super::{ErrProbe as _, OkProbe as _, Outcome};

    type IoResult = std::io::Result<u8>;

    /// Probes through a reference binding, as the macro's expansion does.
    macro_rules! probe {
        ($value:expr) => {{
            let reference = &$value;
            reference.__ap_outcome()
        }};
    }

    #[test]
    fn results_are_classified_by_variant_through_aliases() {
        let ok: IoResult = Ok(1);
        let err: IoResult = Err(std::io::Error::other("x"));
        assert_eq!(probe!(ok), Outcome::Ok);
        assert_eq!(probe!(err), Outcome::Error);
    }

    #[test]
    fn other_values_are_ok() {
        let v = 5_u32;
        assert_eq!(probe!(v), Outcome::Ok);
        let o: Option<u8> = None;
        assert_eq!(probe!(o), Outcome::Ok);
        assert_eq!(probe!(()), Outcome::Ok);
    }
}
