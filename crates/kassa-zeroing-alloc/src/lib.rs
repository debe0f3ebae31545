//! A global allocator wrapper that zeroes every block as it is freed (ADR 71).
//!
//! A card number typed on Kassa's card page passes through many short-lived buffers: the
//! HTTP body, the form's fields, the ISO 8583 message and its frame, the 3-D Secure AReq.
//! Each is dropped within the request, but a freed block keeps its bytes until the
//! allocator hands it out again, so the PAN would linger in the heap and in any core dump
//! or swapped page (PCI DSS 3.3 and 3.5 keep it out of storage; a dump is storage). Zeroing
//! on free removes every such copy at once, where zeroing each type by hand would miss the
//! ones inside crates we do not own (hyper, serde, reqwest).
//!
//! It costs a `memset` of each freed block, so it is a switch ([`set_zero_on_free`]):
//! `kassa serve` turns it on for nodes that handle card numbers (an `iso8583` account or
//! the vault) unless the config says otherwise. Off, every call goes straight to the
//! wrapped allocator.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether freed blocks are zeroed; off until the server decides.
static ZERO_ON_FREE: AtomicBool = AtomicBool::new(false);

/// Turns zeroing of freed memory on or off for the whole process.
pub fn set_zero_on_free(on: bool) {
    ZERO_ON_FREE.store(on, Ordering::SeqCst);
}

/// Whether freed memory is zeroed now.
pub fn zero_on_free() -> bool {
    ZERO_ON_FREE.load(Ordering::Relaxed)
}

/// Wraps a global allocator, zeroing blocks as they are freed while the switch is on.
pub struct ZeroOnFree<A>(pub A);

/// Overwrites `size` bytes at `ptr` with zeroes in a way the optimiser keeps: the block is
/// about to be freed, so a plain store before the free is a dead store it may remove.
///
/// # Safety
/// `ptr` must be valid for writes of `size` bytes.
unsafe fn scrub(ptr: *mut u8, size: usize) {
    // SAFETY: the caller guarantees `ptr` is valid for `size` bytes of writes.
    unsafe { std::ptr::write_bytes(ptr, 0, size) };
    // The opaque use makes the zeroes observable, so the stores above cannot be dropped.
    std::hint::black_box(ptr);
}

// SAFETY: every method forwards to the wrapped allocator with the layout it was given; the
// only additions write zeroes into a block the caller still owns (before it is freed) and,
// for `realloc` while zeroing, replace the move by alloc + copy + free of the old block,
// which is what `GlobalAlloc::realloc`'s own contract describes.
unsafe impl<A: GlobalAlloc> GlobalAlloc for ZeroOnFree<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        unsafe { self.0.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        unsafe { self.0.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if zero_on_free() {
            // SAFETY: the block is the caller's, `layout.size()` bytes long, until freed below.
            unsafe { scrub(ptr, layout.size()) };
        }
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { self.0.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !zero_on_free() {
            // SAFETY: forwarded with the caller's arguments.
            return unsafe { self.0.realloc(ptr, layout, new_size) };
        }
        // The wrapped allocator may move the block and free the old one unzeroed, so move
        // it ourselves.
        // SAFETY: `GlobalAlloc::realloc`'s caller guarantees `new_size`, rounded up to the
        // alignment, does not overflow `isize`, so this layout is valid.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: `new_layout` has a non-zero size (realloc's contract).
        let new_ptr = unsafe { self.0.alloc(new_layout) };
        if !new_ptr.is_null() {
            let kept = layout.size().min(new_size);
            // SAFETY: both blocks are valid for `kept` bytes and are distinct allocations.
            unsafe { std::ptr::copy_nonoverlapping(ptr, new_ptr, kept) };
            // SAFETY: the old block is the caller's, with this layout; it is freed (zeroed) once.
            unsafe { self.dealloc(ptr, layout) };
        }
        new_ptr
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::System;

    /// An allocator that remembers the bytes of every block as it is freed, to see what a
    /// free leaves behind.
    struct Recording {
        freed: std::sync::Mutex<Vec<Vec<u8>>>,
    }

    // SAFETY: forwards to `System`; reads a block it is given only before freeing it.
    unsafe impl GlobalAlloc for Recording {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: forwarded.
            unsafe { System.alloc(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: the block is valid for `layout.size()` bytes until freed below.
            let bytes = unsafe { std::slice::from_raw_parts(ptr, layout.size()) }.to_vec();
            self.freed.lock().unwrap().push(bytes);
            // SAFETY: forwarded.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    /// The bytes of each block freed after a PAN was written into one and it was freed
    /// (or grown, then freed).
    fn freed_after(zeroing: bool, grow: bool) -> Vec<Vec<u8>> {
        let alloc = ZeroOnFree(Recording {
            freed: std::sync::Mutex::new(Vec::new()),
        });
        set_zero_on_free(zeroing);
        let layout = Layout::from_size_align(16, 1).unwrap();
        // SAFETY: a 16-byte block is allocated, written within bounds, and freed or grown once.
        unsafe {
            let ptr = alloc.alloc(layout);
            std::ptr::copy_nonoverlapping(b"4111111111111111".as_ptr(), ptr, 16);
            if grow {
                let grown = alloc.realloc(ptr, layout, 64);
                assert_eq!(std::slice::from_raw_parts(grown, 16), b"4111111111111111");
                alloc.dealloc(grown, Layout::from_size_align(64, 1).unwrap());
            } else {
                alloc.dealloc(ptr, layout);
            }
        }
        set_zero_on_free(false);
        let freed = alloc.0.freed.lock().unwrap().clone();
        freed
    }

    // One test, so the process-wide switch is never flipped by two tests at once.
    #[test]
    fn freed_blocks_keep_their_bytes_only_while_the_switch_is_off() {
        let zeroed = |blocks: &[Vec<u8>]| blocks.iter().flatten().all(|&b| b == 0);
        assert_eq!(freed_after(false, false), [b"4111111111111111".to_vec()]);
        assert!(
            !zeroed(&freed_after(false, true)),
            "unzeroed, a moved block keeps the PAN"
        );
        assert!(zeroed(&freed_after(true, false)));
        let grown = freed_after(true, true);
        assert_eq!(grown.len(), 2, "the old block and the grown one");
        assert_eq!(grown[1].len(), 64);
        assert!(zeroed(&grown), "both were freed zeroed");
    }
}
