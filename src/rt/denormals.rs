//! Flush-to-zero and denormals-are-zero for the span of one callback, on the RT thread.
//!
//! A value that decays towards zero (a filter's state, the tail of a fade) passes through the
//! subnormal range, where every x86 operation on it costs around a hundred times more. Audio
//! never needs those values, so the engine runs with them flushed to zero and restores the
//! thread's previous mode when the callback ends.
//!
//! ```
//! use autotuned::rt::denormals::{flushing, DenormalGuard};
//! let guard = DenormalGuard::new();
//! assert!(flushing() || cfg!(not(any(target_arch = "x86_64", target_arch = "aarch64"))));
//! drop(guard);
//! ```

/// Sets FTZ/DAZ while alive; restores the previous floating-point mode on drop.
pub struct DenormalGuard {
    saved: Option<usize>,
}

impl DenormalGuard {
    #[allow(clippy::new_without_default)]
    pub fn new() -> DenormalGuard {
        let saved = arch::mode();
        if let Some(mode) = saved {
            arch::set_mode(mode | arch::FLUSH_BITS);
        }
        DenormalGuard { saved }
    }
}

impl Drop for DenormalGuard {
    fn drop(&mut self) {
        if let Some(mode) = self.saved {
            arch::set_mode(mode);
        }
    }
}

/// Whether subnormals are flushed to zero on this thread now.
pub fn flushing() -> bool {
    arch::mode().is_some_and(|mode| mode & arch::FLUSH_BITS == arch::FLUSH_BITS)
}

#[cfg(target_arch = "x86_64")]
mod arch {
    use std::arch::asm;

    /// MXCSR: flush-to-zero (bit 15) and denormals-are-zero (bit 6).
    pub const FLUSH_BITS: usize = 0x8040;

    pub fn mode() -> Option<usize> {
        let mut csr: u32 = 0;
        // SAFETY: stmxcsr stores the 32-bit MXCSR register to the valid, aligned local `csr`.
        unsafe { asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack, preserves_flags)) };
        Some(csr as usize)
    }

    pub fn set_mode(mode: usize) {
        let csr = mode as u32;
        // SAFETY: ldmxcsr loads MXCSR from the valid local `csr`; `mode` came from `stmxcsr`
        // with only the FTZ/DAZ bits added, so no reserved bit is set.
        unsafe { asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack, readonly, preserves_flags)) };
    }
}

#[cfg(target_arch = "aarch64")]
mod arch {
    use std::arch::asm;

    /// FPCR: flush-to-zero (bit 24), which covers inputs and outputs on AArch64.
    pub const FLUSH_BITS: usize = 1 << 24;

    pub fn mode() -> Option<usize> {
        let fpcr: usize;
        // SAFETY: reading FPCR has no side effects.
        unsafe { asm!("mrs {}, fpcr", out(reg) fpcr, options(nomem, nostack, preserves_flags)) };
        Some(fpcr)
    }

    pub fn set_mode(mode: usize) {
        // SAFETY: `mode` is a value read from FPCR with only the FZ bit added.
        unsafe { asm!("msr fpcr, {}", in(reg) mode, options(nomem, nostack, preserves_flags)) };
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
mod arch {
    pub const FLUSH_BITS: usize = 0;

    pub fn mode() -> Option<usize> {
        None
    }

    pub fn set_mode(_: usize) {}
}

#[cfg(all(test, any(target_arch = "x86_64", target_arch = "aarch64")))]
mod tests {
    use super::*;
    use std::hint::black_box;

    #[test]
    fn subnormals_flush_to_zero_inside_the_guard_only() {
        let half_of_smallest = || black_box(f32::MIN_POSITIVE) * black_box(0.5);
        assert!(half_of_smallest() > 0.0, "subnormals exist outside the guard");
        let guard = DenormalGuard::new();
        assert!(flushing());
        assert_eq!(half_of_smallest(), 0.0);
        drop(guard);
        assert!(!flushing());
        assert!(half_of_smallest() > 0.0);
    }
}
