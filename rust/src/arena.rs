//! A reserve of pre-touched memory arenas for CPython's small-object allocator (pymalloc).
//!
//! Why: pymalloc takes its memory from the operating system in arenas (1 MiB on 64-bit CPython
//! 3.10+, 256 KiB before), through the *arena allocator* (`mmap` / `munmap` by default). A fresh
//! arena's pages are mapped on first touch, one page fault per 4 KiB page, and an arena whose last
//! object is freed goes back to the OS. A trading loop that keeps orders and fills grows its heap
//! steadily, so some of its tick-to-order paths pay those faults: measured on the P2 path (one
//! pass of the real BTC spot + perp replay, SIMPLE_ARBITRAGE trading on every wake), ~3,600 page
//! faults inside the measured samples, on 26 % of the samples, all of them in pymalloc's
//! `pymalloc_pool_extend` (`perf record -e page-faults`).
//!
//! What: [`ArenaCache`] stands between pymalloc and the previous arena allocator. It keeps freed
//! arenas (up to `max_cached_bytes`) instead of unmapping them, hands them out again before asking for
//! new memory, and [`ArenaCache::top_up`] fills the cache with arenas whose pages are already
//! touched, a bounded number of pages per call. The caller tops it up at its safe points (outside any tick-to-order path), so heap
//! growth on the hot path finds mapped pages.
//!
//! The arena allocator interface is CPython's `PyObjectArenaAllocator` (`{ctx, alloc, free}`,
//! `PyObject_GetArenaAllocator` / `PyObject_SetArenaAllocator`; Python docs, "Memory Management",
//! "Customize pymalloc Arena Allocator"). pymalloc calls it with the GIL held; the state is still
//! behind a mutex, and nothing here can panic across the C boundary.

use std::ffi::c_void;
use std::sync::Mutex;

/// Bytes between two touches when pre-faulting an arena: the smallest page size of the targets
/// (x86-64 and aarch64 Linux with 4 KiB pages; larger pages are touched more than once, harmlessly).
pub const TOUCH_STRIDE: usize = 4096;

/// `alloc(ctx, size)` of an arena allocator: `size` bytes or null.
pub type AllocFn = unsafe extern "C" fn(*mut c_void, usize) -> *mut c_void;
/// `free(ctx, ptr, size)` of an arena allocator: `ptr` came from `alloc(ctx, size)`.
pub type FreeFn = unsafe extern "C" fn(*mut c_void, *mut c_void, usize);

/// CPython's `PyObjectArenaAllocator`, field for field.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ArenaAllocator {
    pub ctx: *mut c_void,
    pub alloc: Option<AllocFn>,
    pub free: Option<FreeFn>,
}

/// Counters of an [`ArenaCache`], for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArenaStats {
    /// Arena size in bytes, learnt from pymalloc's first request (0 until then).
    pub arena_size: usize,
    /// Arenas held now, ready to hand out (a partly touched one being filled not counted).
    pub cached: usize,
    /// Requests served from the cache.
    pub hits: u64,
    /// Requests passed to the previous allocator (cache empty or another size).
    pub misses: u64,
    /// Frees kept in the cache.
    pub kept: u64,
    /// Frees passed to the previous allocator (cache full or another size).
    pub released: u64,
    /// Arenas allocated and fully touched ahead of need by [`ArenaCache::top_up`].
    pub prefaulted: u64,
    /// Pages touched by [`ArenaCache::top_up`] (one page fault each).
    pub pages_touched: u64,
}

/// An arena being touched page by page over several [`ArenaCache::top_up`] calls.
#[derive(Clone, Copy, Debug)]
struct Filling {
    addr: usize,
    touched: usize, // bytes from the start already touched
}

/// The cache proper; the previous allocator is called for everything it does not hold.
#[derive(Debug)]
pub struct ArenaCache {
    prev: ArenaAllocator,
    max_cached_bytes: usize,
    // arena addresses as integers: raw pointers are not Send, and these are only ever handed
    // back to pymalloc or to the allocator that made them
    cache: Vec<usize>,
    filling: Option<Filling>,
    stats: ArenaStats,
}

impl ArenaCache {
    /// A cache in front of `prev` holding arenas of at most `max_cached_bytes` in all (0: pass
    /// everything on).
    ///
    /// Returns None when `prev` lacks its `alloc` or `free` function.
    pub fn new(prev: ArenaAllocator, max_cached_bytes: usize) -> Option<Self> {
        prev.alloc?;
        prev.free?;
        Some(Self { prev, max_cached_bytes, cache: Vec::new(), filling: None, stats: ArenaStats::default() })
    }

    /// Arenas held, the one being filled included.
    fn held(&self) -> usize {
        self.cache.len() + usize::from(self.filling.is_some())
    }

    /// Whether one more arena fits under `limit_bytes` and `max_cached_bytes` (and the arena
    /// size is known).
    fn room_for_one(&self, limit_bytes: usize) -> bool {
        let size = self.stats.arena_size;
        size > 0 && (self.held() + 1).saturating_mul(size) <= limit_bytes.min(self.max_cached_bytes)
    }

    /// Counters.
    pub fn stats(&self) -> ArenaStats {
        ArenaStats { cached: self.cache.len(), ..self.stats }
    }

    /// An arena of `size` bytes: a cached one when the size is the arena size (the one being
    /// filled when no other is left: partly touched beats untouched), else the previous
    /// allocator's (null when it fails).
    ///
    /// # Safety
    /// The previous allocator's `alloc` must be safe to call with its `ctx`.
    pub unsafe fn alloc(&mut self, size: usize) -> *mut c_void {
        if self.stats.arena_size == 0 {
            self.stats.arena_size = size;
        }
        if size == self.stats.arena_size {
            if let Some(addr) = self.cache.pop().or_else(|| self.filling.take().map(|f| f.addr)) {
                self.stats.hits += 1;
                return addr as *mut c_void;
            }
        }
        self.stats.misses += 1;
        // `new` checked that alloc is present
        match self.prev.alloc {
            Some(alloc) => alloc(self.prev.ctx, size),
            None => std::ptr::null_mut(),
        }
    }

    /// Takes back an arena: kept while the cache has room (`max_cached_bytes`) and the size is
    /// the arena size, else returned to the previous allocator.
    ///
    /// # Safety
    /// `ptr` must come from [`ArenaCache::alloc`] (or the previous allocator) with this `size`.
    pub unsafe fn free(&mut self, ptr: *mut c_void, size: usize) {
        if ptr.is_null() {
            return;
        }
        if size == self.stats.arena_size && self.room_for_one(usize::MAX) {
            self.cache.push(ptr as usize);
            self.stats.kept += 1;
            return;
        }
        self.stats.released += 1;
        if let Some(free) = self.prev.free {
            free(self.prev.ctx, ptr, size);
        }
    }

    /// Touches at most `max_pages` pages of arenas taken ahead of need, while the cache holds
    /// less than `target_bytes` (and `max_cached_bytes`): an arena is allocated when none is
    /// being filled and one more fits, and joins the cache once all its pages are touched, so
    /// the work of one call is bounded whatever the arena size. Returns the pages touched.
    /// Does nothing before the arena size is known (pymalloc's first request after
    /// installation) or when allocation fails.
    ///
    /// Cost: one page fault per page, measured 4 µs (pages the guest had freed) to 15-22 µs
    /// (pages the host had reclaimed) on the 2-vCPU VM of the benchmarks, ~0.25 µs on bare
    /// metal; call it at a safe point, never on a tick-to-order path.
    ///
    /// # Safety
    /// The previous allocator's `alloc` must be safe to call with its `ctx`.
    pub unsafe fn top_up(&mut self, target_bytes: usize, max_pages: usize) -> usize {
        let size = self.stats.arena_size;
        let Some(alloc) = self.prev.alloc else { return 0 };
        let mut pages = 0;
        while pages < max_pages {
            let mut f = match self.filling {
                Some(f) => f,
                None => {
                    if !self.room_for_one(target_bytes) {
                        break;
                    }
                    let p = alloc(self.prev.ctx, size);
                    if p.is_null() {
                        break;
                    }
                    Filling { addr: p as usize, touched: 0 }
                }
            };
            let bytes = f.addr as *mut u8;
            while f.touched < size && pages < max_pages {
                // a write maps the page (a read would map the shared zero page, and the first
                // write would fault again); the memory is zero already, so is its content
                std::ptr::write_volatile(bytes.add(f.touched), 0);
                f.touched += TOUCH_STRIDE;
                pages += 1;
            }
            if f.touched >= size {
                self.filling = None;
                self.cache.push(f.addr);
                self.stats.prefaulted += 1;
            } else {
                self.filling = Some(f);
            }
        }
        self.stats.pages_touched += pages as u64;
        pages
    }
}

// SAFETY: the only raw pointer is the previous allocator's `ctx`, which is never dereferenced
// here, only handed back to that allocator's functions; CPython calls the arena allocator from
// whichever thread holds the GIL, so it must accept any thread already.
unsafe impl Send for ArenaCache {}

/// The process's cache, once installed (pymalloc has one arena allocator per process).
static INSTALLED: Mutex<Option<ArenaCache>> = Mutex::new(None);

fn with_installed<R>(f: impl FnOnce(&mut Option<ArenaCache>) -> R) -> R {
    // a poisoned lock only means a panic elsewhere while holding it; the state is still whole
    // (every mutation above is a single push/pop/increment)
    let mut guard = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
    f(&mut guard)
}

/// The allocator to hand to `PyObject_SetArenaAllocator` once [`install`] has run.
pub fn cache_allocator() -> ArenaAllocator {
    ArenaAllocator { ctx: std::ptr::null_mut(), alloc: Some(cache_alloc), free: Some(cache_free) }
}

/// Installs the process's cache in front of `prev` (the allocator `PyObject_GetArenaAllocator`
/// returned). Returns false, changing nothing, when one is installed already or `prev` lacks a
/// function. The caller then sets [`cache_allocator`] as pymalloc's arena allocator.
pub fn install(prev: ArenaAllocator, max_cached_bytes: usize) -> bool {
    with_installed(|slot| {
        if slot.is_some() {
            return false;
        }
        match ArenaCache::new(prev, max_cached_bytes) {
            Some(cache) => {
                *slot = Some(cache);
                true
            }
            None => false,
        }
    })
}

/// [`ArenaCache::top_up`] on the installed cache (0 when none is).
pub fn top_up(target_bytes: usize, max_pages: usize) -> usize {
    // SAFETY: the installed cache's previous allocator came from PyObject_GetArenaAllocator
    with_installed(|slot| slot.as_mut().map_or(0, |c| unsafe { c.top_up(target_bytes, max_pages) }))
}

/// Counters of the installed cache (None when none is).
pub fn stats() -> Option<ArenaStats> {
    with_installed(|slot| slot.as_ref().map(ArenaCache::stats))
}

unsafe extern "C" fn cache_alloc(_ctx: *mut c_void, size: usize) -> *mut c_void {
    with_installed(|slot| match slot.as_mut() {
        Some(c) => c.alloc(size),
        None => std::ptr::null_mut(),
    })
}

unsafe extern "C" fn cache_free(_ctx: *mut c_void, ptr: *mut c_void, size: usize) {
    with_installed(|slot| {
        if let Some(c) = slot.as_mut() {
            c.free(ptr, size)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::{alloc_zeroed, dealloc, Layout};
    use std::sync::atomic::{AtomicUsize, Ordering};

    static FREES: AtomicUsize = AtomicUsize::new(0);

    unsafe extern "C" fn sys_alloc(_ctx: *mut c_void, size: usize) -> *mut c_void {
        alloc_zeroed(Layout::from_size_align(size, 4096).unwrap()) as *mut c_void
    }
    unsafe extern "C" fn sys_free(_ctx: *mut c_void, ptr: *mut c_void, size: usize) {
        FREES.fetch_add(1, Ordering::SeqCst);
        dealloc(ptr as *mut u8, Layout::from_size_align(size, 4096).unwrap())
    }
    fn system() -> ArenaAllocator {
        ArenaAllocator { ctx: std::ptr::null_mut(), alloc: Some(sys_alloc), free: Some(sys_free) }
    }

    #[test]
    fn keeps_freed_arenas_and_hands_them_out_first() {
        let size = 64 * 1024;
        let mut c = ArenaCache::new(system(), 2 * size).unwrap();
        unsafe {
            let a = c.alloc(size);
            let b = c.alloc(size);
            let d = c.alloc(size);
            assert_eq!(c.stats().misses, 3);
            c.free(a, size);
            c.free(b, size);
            c.free(d, size); // cache full: released
            let s = c.stats();
            assert_eq!((s.cached, s.kept, s.released), (2, 2, 1));
            let again = c.alloc(size);
            assert!(again == a || again == b);
            assert_eq!(c.stats().hits, 1);
            c.free(again, size);
            // drain what is left back to the system
            let x = c.alloc(size);
            let y = c.alloc(size);
            dealloc(x as *mut u8, Layout::from_size_align(size, 4096).unwrap());
            dealloc(y as *mut u8, Layout::from_size_align(size, 4096).unwrap());
        }
    }

    #[test]
    fn another_size_passes_through() {
        let size = 64 * 1024;
        let mut c = ArenaCache::new(system(), 4 * size).unwrap();
        unsafe {
            let a = c.alloc(size); // learns the arena size
            let odd = c.alloc(size / 2);
            c.free(odd, size / 2);
            assert_eq!(c.stats().cached, 0);
            assert_eq!(c.stats().released, 1);
            c.free(a, size);
            assert_eq!(c.stats().cached, 1);
            let back = c.alloc(size);
            assert_eq!(back, a);
            c.free(back, size);
            let x = c.alloc(size);
            dealloc(x as *mut u8, Layout::from_size_align(size, 4096).unwrap());
        }
    }

    #[test]
    fn top_up_waits_for_the_size_then_fills_to_the_target() {
        let size = 3 * TOUCH_STRIDE + 100; // not a multiple: 4 pages, the last one partial
        let pages = 4;
        let mut c = ArenaCache::new(system(), 3 * size + size / 2).unwrap(); // room for 3
        unsafe {
            assert_eq!(c.top_up(3 * size, 100), 0, "arena size unknown yet");
            let a = c.alloc(size);
            assert_eq!(c.top_up(2 * size, 100), 2 * pages, "up to the target");
            assert_eq!(c.top_up(5 * size, 100), pages, "never beyond max_cached_bytes");
            assert_eq!(c.stats().cached, 3);
            assert_eq!(c.stats().prefaulted, 3);
            assert_eq!(c.top_up(5 * size, 100), 0);
            let hit0 = c.alloc(size);
            // at most max_pages per call: the arena is filled over two calls
            assert_eq!(c.top_up(5 * size, 3), 3);
            assert_eq!(c.stats().cached, 2, "a partly touched arena is not cached yet");
            assert_eq!(c.top_up(5 * size, 3), 1);
            assert_eq!(c.stats().cached, 3);
            assert_eq!(c.stats().pages_touched, 4 * pages as u64);
            dealloc(hit0 as *mut u8, Layout::from_size_align(size, 4096).unwrap());
            let hit = c.alloc(size);
            assert_eq!(c.stats().hits, 2);
            assert_eq!(*(hit as *const u8), 0, "touched arenas stay zero");
            for p in [a, hit, c.alloc(size), c.alloc(size)] {
                dealloc(p as *mut u8, Layout::from_size_align(size, 4096).unwrap());
            }
        }
    }

    #[test]
    fn a_partly_touched_arena_is_handed_out_when_the_cache_is_empty() {
        let size = 8 * TOUCH_STRIDE;
        let mut c = ArenaCache::new(system(), 4 * size).unwrap();
        unsafe {
            let a = c.alloc(size);
            assert_eq!(c.top_up(4 * size, 3), 3); // 3 of the 8 pages of a new arena
            assert_eq!(c.stats().cached, 0);
            let b = c.alloc(size);
            assert_eq!(c.stats().hits, 1, "the arena being filled, not a fresh one");
            assert_eq!(c.top_up(4 * size, 8), 8, "the next top-up starts a new arena");
            for p in [a, b, c.alloc(size)] {
                dealloc(p as *mut u8, Layout::from_size_align(size, 4096).unwrap());
            }
        }
    }

    #[test]
    fn an_allocator_without_functions_is_refused() {
        let broken = ArenaAllocator { ctx: std::ptr::null_mut(), alloc: None, free: Some(sys_free) };
        assert!(ArenaCache::new(broken, 1 << 20).is_none());
        assert!(ArenaCache::new(system(), 0).is_some());
    }

    #[test]
    fn zero_capacity_passes_everything_through() {
        let size = 8192;
        let mut c = ArenaCache::new(system(), 0).unwrap();
        let frees_before = FREES.load(Ordering::SeqCst);
        unsafe {
            let a = c.alloc(size);
            c.free(a, size);
            assert_eq!(c.top_up(4 * size, 4), 0);
        }
        assert_eq!(c.stats().released, 1);
        assert!(FREES.load(Ordering::SeqCst) > frees_before);
    }
}
