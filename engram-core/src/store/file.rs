//! Files as the engine sees them: a read-write handle for the single writer and shared
//! memory maps for everyone. All `unsafe` of the mapped store lives in this module.
//!
//! The contract that keeps the maps sound (argued in `docs/architecture.md`):
//! * a file is never shrunk or truncated while it can be mapped; compaction writes new files
//!   and only unlinks old ones, which stay valid for whoever still maps them;
//! * bytes below a committed length are never rewritten, except the 8-byte stamp words
//!   that are only ever accessed as `AtomicU64`;
//! * so `bytes()` hands out `&[u8]` only for committed, immutable ranges, and every
//!   mutable word is reached through `atomic_u64()`.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use memmap2::{MmapOptions, MmapRaw};

use crate::store::fault::{self, IoOp};

use crate::error::{Error, Result};

/// One memory map of a file, at the length the file had when it was mapped.
pub(crate) struct Mapping {
    raw: Option<MmapRaw>,
    len: u64,
    path: PathBuf,
    /// One bit per record index of a slot file: "this record passed its checksum in this
    /// process". Committed bytes never change under a map, so a record is checked once.
    /// Indexed by record (not byte) so the bitmap stays small enough to live in cache.
    verified: Box<[AtomicU64]>,
    /// One bit per MiB: "a scan has asked the kernel to read this MiB ahead through this
    /// map" ([`Mapping::scan_ahead`]), so that each is asked for once, not once per scan.
    read_ahead: Box<[AtomicU64]>,
    /// One bit per page: "a read spanning pages has read this page through this map"
    /// ([`Mapping::read_range`]).
    pages_read: Box<[AtomicU64]>,
    /// Whether the last first read of a few pages through this map waited for the disk
    /// ([`Mapping::read_range`]).
    cold: AtomicBool,
}

/// The system's page size (what `mincore` addresses must be a multiple of).
fn page_size() -> u64 {
    static SIZE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SIZE.get_or_init(|| {
        // SAFETY: sysconf has no preconditions; it returns -1 when the value is unknown.
        let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        u64::try_from(n).unwrap_or(4096).max(1)
    })
}

/// Pages past which [`Mapping::read_range`] checks residency before asking.
const CHECK_PAST: u64 = 16;

/// A read that took longer than this waited for the disk: a page fault served from memory
/// costs about a microsecond, one from this machine's disk ~45 µs.
const DISK_WAIT: Duration = Duration::from_micros(20);

/// The unit [`Mapping::scan_ahead`] advises and remembers.
const AHEAD_WINDOW: u64 = 1 << 20;

/// How far past what it reads a scan has the kernel reading: 16 MiB is ~10 ms of this
/// disk's sequential bandwidth, about what scanning it from memory takes one core.
const SCAN_AHEAD: u64 = 16 << 20;

impl Mapping {
    pub(crate) fn new(file: &File, path: &Path, len: u64, writable: bool) -> Result<Self> {
        let raw = if len == 0 {
            None
        } else {
            let mut opts = MmapOptions::new();
            opts.len(usize::try_from(len).map_err(|_| {
                Error::InvalidArgument(format!("file {} too large to map", path.display()))
            })?);
            let raw = fault::io(IoOp::Map, "mmap")
                .and_then(|()| {
                    if writable {
                        opts.map_raw(file)
                    } else {
                        opts.map_raw_read_only(file)
                    }
                })
                .map_err(|e| Error::io("mmap", path, e))?;
            Some(raw)
        };
        let units = len.div_ceil(64 * 64) as usize; // enough bits for 64-byte records
        Ok(Mapping {
            raw,
            len,
            path: path.to_path_buf(),
            verified: zeroed_words(units),
            read_ahead: zeroed_words(len.div_ceil(AHEAD_WINDOW * 64) as usize),
            pages_read: zeroed_words(len.div_ceil(page_size() * 64) as usize),
            cold: AtomicBool::new(false),
        })
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn check(&self, off: u64, len: u64, align: u64) -> Result<*mut u8> {
        let end = off.checked_add(len);
        match (&self.raw, end) {
            (Some(raw), Some(end)) if end <= self.len && off.is_multiple_of(align) => {
                // SAFETY: off + len <= self.len == the mapped length, so the offset stays
                // inside the mapping.
                Ok(unsafe { raw.as_mut_ptr().add(off as usize) })
            }
            _ => Err(Error::corrupt(
                &self.path,
                off,
                format!("range of {len} bytes outside the file's {} bytes", self.len),
            )),
        }
    }

    /// The bytes `off..off + len`. Callers ask only for committed ranges, which are never
    /// written again while any map of the file exists (module contract).
    pub(crate) fn bytes(&self, off: u64, len: usize) -> Result<&[u8]> {
        if len == 0 && off <= self.len {
            return Ok(&[]); // also for a file too empty to have been mapped
        }
        let ptr = self.check(off, len as u64, 1)?;
        // SAFETY: the range is inside the live mapping (checked) and immutable for the life of
        // `self` by the module contract, so a shared slice over it is never aliased by a write.
        Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
    }

    /// The 8-byte word at `off`, which may be stamped concurrently by the writer.
    pub(crate) fn atomic_u64(&self, off: u64) -> Result<&AtomicU64> {
        let ptr = self.check(off, 8, 8)?;
        // SAFETY: in bounds and 8-byte aligned (checked; maps are page aligned); the word is
        // only ever accessed atomically, by this and every other process (module contract).
        Ok(unsafe { AtomicU64::from_ptr(ptr.cast::<u64>()) })
    }

    /// Starts fetching every cache line of `off..off + len` into the cache at once, so a cold
    /// record costs about one memory latency instead of one per prefetcher stream. A hint:
    /// out-of-range requests are ignored.
    pub(crate) fn prefetch(&self, off: u64, len: u64) {
        let Some(raw) = &self.raw else { return };
        if off.checked_add(len).is_none_or(|end| end > self.len) {
            return;
        }
        crate::prefetch::lines(raw.as_ptr().wrapping_add(off as usize), len as usize);
    }

    /// Whether record `index` already passed its checksum here.
    pub(crate) fn is_verified(&self, index: u64) -> bool {
        let unit = index;
        self.verified
            .get((unit / 64) as usize)
            .is_some_and(|w| w.load(Ordering::Relaxed) & (1 << (unit % 64)) != 0)
    }

    pub(crate) fn mark_verified(&self, index: u64) {
        let unit = index;
        if let Some(w) = self.verified.get((unit / 64) as usize) {
            w.fetch_or(1 << (unit % 64), Ordering::Relaxed);
        }
    }

    /// Prefetch hint for a random read about to happen.
    pub(crate) fn advise_random(&self) {
        if let Some(raw) = &self.raw {
            // Advice only: a failure changes speed, never results.
            let _ = raw.advise(memmap2::Advice::Random);
        }
    }

    /// Asks the kernel to start reading `off..off + len` into the page cache now, without
    /// waiting: a cold record then arrives while something else is read. A syscall, so only
    /// for records this process has not read yet.
    pub(crate) fn start_reading(&self, off: u64, len: u64) {
        if let Some(raw) = &self.raw
            && off.checked_add(len).is_some_and(|end| end <= self.len)
        {
            // Advice only, as above.
            let _ = raw.advise_range(memmap2::Advice::WillNeed, off as usize, len as usize);
        }
    }

    /// For a scan about to read `off..off + len` in order: asks the kernel to read that range
    /// and the [`SCAN_AHEAD`] bytes after it into the page cache in the background, each MiB
    /// once per map. Maps are advised random (a cold point lookup then reads one page, not a
    /// readahead window), which alone would make a cold scan fault in one 4 KiB page at a
    /// time. Costs one bit test per MiB once the range was asked for.
    pub(crate) fn scan_ahead(&self, off: u64, len: u64) {
        let end = off
            .saturating_add(len)
            .saturating_add(SCAN_AHEAD)
            .min(self.len);
        for w in off / AHEAD_WINDOW..end.div_ceil(AHEAD_WINDOW) {
            if !self.ask_window(w) {
                return;
            }
        }
    }

    /// [`Mapping::scan_ahead`] for a scan going down: `off..off + len` and the
    /// [`SCAN_AHEAD`] bytes before it, nearest first.
    pub(crate) fn scan_behind(&self, off: u64, len: u64) {
        let end = off.saturating_add(len).min(self.len);
        for w in (off.saturating_sub(SCAN_AHEAD) / AHEAD_WINDOW..end.div_ceil(AHEAD_WINDOW)).rev() {
            if !self.ask_window(w) {
                return;
            }
        }
    }

    /// Asks for MiB `w` unless it was asked for before or its first page is resident;
    /// `false` past the map.
    fn ask_window(&self, w: u64) -> bool {
        let (word, bit) = ((w / 64) as usize, 1u64 << (w % 64));
        let Some(bits) = self.read_ahead.get(word) else {
            return false;
        };
        if bits.load(Ordering::Relaxed) & bit != 0
            || bits.fetch_or(bit, Ordering::Relaxed) & bit != 0
        {
            return true;
        }
        let start = w * AHEAD_WINDOW;
        // A resident first page most likely means a resident MiB: asking would only walk
        // its pages (~30 µs).
        if start < self.len && !self.page_resident(start) {
            self.will_need(start, AHEAD_WINDOW.min(self.len - start));
        }
        true
    }

    /// Whether the page at `off` (a multiple of the page size, inside the map) is in the page
    /// cache; `false` if the kernel cannot tell.
    fn page_resident(&self, off: u64) -> bool {
        let Some(raw) = &self.raw else { return false };
        let mut vec = [0u8; 1];
        // SAFETY: `off` is page aligned and below the mapped length (callers' invariant), so
        // the one page asked about lies in our mapping, and `vec` has the one byte mincore
        // writes for one page.
        let rc = unsafe {
            libc::mincore(
                raw.as_mut_ptr().wrapping_add(off as usize).cast(),
                1,
                // `unsigned char *` on Linux, `char *` on the BSDs and macOS.
                vec.as_mut_ptr().cast(),
            )
        };
        rc == 0 && vec[0] & 1 == 1
    }

    /// Runs `read`, which reads `off..off + len` through this map, having the kernel read
    /// the range's pages all at once where the map (advised random) would fault them in one
    /// page, and one disk read, after another. Only a range spanning pages this map has not
    /// read before is looked at; the rest cost a few bit tests.
    ///
    /// Whether to ask ([`Mapping::will_need`]): asking costs ~0.6 µs when the pages are in
    /// memory, as much as checking (`mincore`, ~0.7 µs), and more than a first read of a
    /// few resident pages takes. So a range of up to [`CHECK_PAST`] pages is asked for while
    /// the map is `cold`: while the last such read took longer than [`DISK_WAIT`], which
    /// only a fault served from the disk does. A longer range is checked first.
    pub(crate) fn read_range<T>(&self, off: u64, len: u64, read: impl FnOnce() -> T) -> T {
        if len == 0 || off.checked_add(len).is_none_or(|end| end > self.len) {
            return read();
        }
        let page = page_size();
        let (first, last) = (off / page, (off + len - 1) / page);
        if first == last || self.mark_read(first, last) {
            return read();
        }
        if last - first >= CHECK_PAST {
            if !self.page_resident(first * page) {
                self.will_need(off, len);
            }
            return read();
        }
        if self.cold.load(Ordering::Relaxed) {
            self.will_need(off, len);
        }
        let start = Instant::now();
        let out = read();
        self.cold
            .store(start.elapsed() > DISK_WAIT, Ordering::Relaxed);
        out
    }

    /// Marks pages `first..=last` read; whether all of them already were.
    fn mark_read(&self, first: u64, last: u64) -> bool {
        let mut all = true;
        for word in first / 64..=last / 64 {
            let lo = if word == first / 64 { first % 64 } else { 0 };
            let hi = if word == last / 64 { last % 64 } else { 63 };
            let mask = (u64::MAX >> (63 - hi)) & (u64::MAX << lo);
            let Some(bits) = self.pages_read.get(word as usize) else {
                return true;
            };
            if bits.load(Ordering::Relaxed) & mask != mask {
                all &= bits.fetch_or(mask, Ordering::Relaxed) & mask == mask;
            }
        }
        all
    }

    /// Asks the kernel to read the map's first `len` bytes into the page cache in the
    /// background.
    pub(crate) fn advise_will_need(&self, len: u64) {
        self.will_need(0, len.min(self.len));
    }

    /// `MADV_WILLNEED` over `off..off + len` (inside the map). One call reads ahead only as
    /// far as the device's readahead window (8 MiB here, 128 KiB by default), so the range
    /// is advised [`AHEAD_WINDOW`] at a time.
    fn will_need(&self, off: u64, len: u64) {
        let Some(raw) = &self.raw else { return };
        let end = off + len;
        let mut at = off;
        while at < end {
            let n = AHEAD_WINDOW.min(end - at);
            // Advice only, as above.
            let _ = raw.advise_range(memmap2::Advice::WillNeed, at as usize, n as usize);
            at += n;
        }
    }
}

/// Reads ahead for a pass over records of one size (at `index × size`) taken in mostly
/// ascending order, or mostly descending: it asks ([`Mapping::scan_ahead`], or
/// [`Mapping::scan_behind`] when it enters a group below the last two) whenever the pass
/// enters another group of 256 records, so the records between cost a comparison, and a
/// jump (a concept's newer version near the end of its file) asks from where it lands
/// rather than for the whole file. It remembers the last two groups, so a pass alternating
/// between two regions (old versions in order, and newer ones appended at the end) asks
/// once per group in each.
pub(crate) struct ReadAhead<'m> {
    map: &'m Mapping,
    size: u64,
    groups: [u64; 2],
}

impl<'m> ReadAhead<'m> {
    const GROUP: u64 = 256;

    pub(crate) fn new(map: &'m Mapping, size: u64) -> Self {
        ReadAhead {
            map,
            size,
            groups: [u64::MAX; 2],
        }
    }

    /// The pass is about to read record `index`. Entering a group below the last two
    /// means going down: the group up to this record and what lies before it are asked
    /// for; otherwise this record and what follows (on a pass's first record, its whole
    /// group, whichever way the pass goes).
    #[inline]
    pub(crate) fn at(&mut self, index: u64) {
        let group = index / Self::GROUP;
        if self.groups[0] != group {
            self.enter(group, index);
        }
    }

    /// Out of line: once per group entered.
    #[inline(never)]
    fn enter(&mut self, group: u64, index: u64) {
        if self.groups[1] != group {
            let len = Self::GROUP * self.size;
            let at = |i: u64| i.saturating_mul(self.size);
            let start = at(group * Self::GROUP);
            match self.groups[0] {
                u64::MAX => self.map.scan_ahead(start, len),
                // Below both groups remembered: a forward pass jumping back from the end
                // lands above the group it left there.
                last if group < last.min(self.groups[1]) => {
                    self.map.scan_behind(start, at(index + 1) - start)
                }
                _ => self.map.scan_ahead(at(index), len),
            }
        }
        self.groups = [group, self.groups[0]];
    }
}

/// `n` zero words from a zeroed allocation: the OS hands out untouched zero pages, so the
/// bitmap costs no resident memory until bits are set.
fn zeroed_words(n: usize) -> Box<[AtomicU64]> {
    if n == 0 {
        return Box::new([]);
    }
    let layout = std::alloc::Layout::array::<AtomicU64>(n).expect("bitmap size fits in memory");
    // SAFETY: the layout is non-zero-sized; an all-zero AtomicU64 is a valid 0, so the zeroed
    // block is an initialised [AtomicU64; n] allocated with exactly the layout Box frees with.
    unsafe {
        let ptr = std::alloc::alloc_zeroed(layout).cast::<AtomicU64>();
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, n))
    }
}

/// A small file another process overwrites in place (the `head`), kept open so that a read
/// costs one `pread` (~0.3 µs here) where opening, reading and closing it cost ~3 µs. If its
/// name comes to point at another file (someone removed it and a writer wrote a new one),
/// the new one is opened; that is checked at most every [`WatchedFile::RECHECK`].
pub(crate) struct WatchedFile {
    path: PathBuf,
    open: parking_lot::Mutex<Watched>,
}

struct Watched {
    file: Arc<File>,
    /// (device, inode) of `file`.
    id: (u64, u64),
    checked: std::time::Instant,
}

fn file_id(m: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino())
}

impl WatchedFile {
    const RECHECK: std::time::Duration = std::time::Duration::from_millis(100);

    pub(crate) fn open(path: &Path) -> Result<WatchedFile> {
        Ok(WatchedFile {
            path: path.to_path_buf(),
            open: parking_lot::Mutex::new(Self::watch(path)?),
        })
    }

    fn watch(path: &Path) -> Result<Watched> {
        let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
        let meta = file.metadata().map_err(|e| Error::io("stat", path, e))?;
        Ok(Watched {
            file: Arc::new(file),
            id: file_id(&meta),
            checked: std::time::Instant::now(),
        })
    }

    /// Reads from offset 0 into `buf`; returns the bytes read (fewer at the end of the file).
    pub(crate) fn read(&self, buf: &mut [u8]) -> Result<usize> {
        use std::os::unix::fs::FileExt;
        let file = {
            let mut w = self.open.lock();
            if w.checked.elapsed() >= Self::RECHECK {
                w.checked = std::time::Instant::now();
                // A name that is gone or unreadable keeps the file already open.
                if let Ok(m) = std::fs::metadata(&self.path)
                    && file_id(&m) != w.id
                    && let Ok(fresh) = Self::watch(&self.path)
                {
                    *w = fresh;
                }
            }
            w.file.clone()
        };
        let mut n = 0;
        while n < buf.len() {
            match file.read_at(&mut buf[n..], n as u64) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("read", &self.path, e)),
            }
        }
        Ok(n)
    }
}

/// Writes `bytes` at offset 0 of `path` (created if missing) and makes them durable.
pub(crate) fn write_durable(path: &Path, bytes: &[u8]) -> Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| Error::io("open", path, e))?;
    fault::write_all_at(&file, bytes, 0, "write_durable")
        .map_err(|e| Error::io("write", path, e))?;
    fault::io(IoOp::Sync, "write_durable")
        .and_then(|()| file.sync_data())
        .map_err(|e| Error::io("fsync", path, e))?;
    fault::synced(path);
    Ok(())
}

/// Writes `bytes` at `off` of `path` without syncing (published heads are rebuilt
/// by recovery, so they need no durability of their own).
pub(crate) fn write_unsynced(path: &Path, off: u64, bytes: &[u8]) -> Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| Error::io("open", path, e))?;
    fault::write_all_at(&file, bytes, off, "write_unsynced")
        .map_err(|e| Error::io("write", path, e))
}

/// Makes the directory entries (created, renamed or removed files) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    fault::io(IoOp::Sync, "sync_dir")
        .and_then(|()| File::open(dir))
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("fsync directory", dir, e))
}

/// A data file shared by every version that uses it: the open descriptor (valid even after
/// compaction unlinks the name) and its newest map. Snapshots keep the map they started
/// with and ask the handle for a longer one only when a pointer reaches past it.
pub(crate) struct FileHandle {
    file: File,
    path: PathBuf,
    writable: bool,
    map: parking_lot::RwLock<Arc<Mapping>>,
}

impl FileHandle {
    pub(crate) fn open(path: &Path, writable: bool, create: bool) -> Result<Arc<Self>> {
        let file = OpenOptions::new()
            .read(true)
            .write(writable)
            .create(create && writable)
            .truncate(false)
            .open(path)
            .map_err(|e| Error::io("open", path, e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::io("stat", path, e))?
            .len();
        let map = Arc::new(Mapping::new(&file, path, len, writable)?);
        map.advise_random();
        Ok(Arc::new(FileHandle {
            file,
            path: path.to_path_buf(),
            writable,
            map: parking_lot::RwLock::new(map),
        }))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn current(&self) -> Arc<Mapping> {
        self.map.read().clone()
    }

    /// A map covering at least `end` bytes, remapping if the file has grown since.
    pub(crate) fn covering(&self, end: u64) -> Result<Arc<Mapping>> {
        let map = self.current();
        if map.len() >= end {
            return Ok(map);
        }
        let mut slot = self.map.write();
        if slot.len() < end {
            let len = self
                .file
                .metadata()
                .map_err(|e| Error::io("stat", &self.path, e))?
                .len();
            if len < end {
                return Err(Error::corrupt(
                    &self.path,
                    end,
                    format!("pointer past the end of the {len}-byte file"),
                ));
            }
            let fresh = Arc::new(Mapping::new(&self.file, &self.path, len, self.writable)?);
            fresh.advise_random();
            *slot = fresh;
        }
        Ok(slot.clone())
    }

    /// Grows the file to at least `needed` bytes (geometrically) and remaps it.
    pub(crate) fn reserve(&self, needed: u64) -> Result<()> {
        let cur = self.current().len();
        if needed <= cur {
            return Ok(());
        }
        let new_len = (cur + cur / 2)
            .max(needed)
            .max(1 << 20)
            .next_multiple_of(1 << 20);
        fault::io(IoOp::Grow, "reserve")
            .and_then(|()| self.file.set_len(new_len))
            .map_err(|e| Error::io("grow", &self.path, e))?;
        self.covering(new_len).map(|_| ())
    }

    pub(crate) fn write_at(&self, off: u64, bytes: &[u8]) -> Result<()> {
        self.write_unhinted(off, bytes)?;
        self.start_writeback(off, bytes.len() as u64);
        Ok(())
    }

    /// Writes `bytes` at `off` and syncs the file. The sync writes the range back itself,
    /// so no writeback is started ahead of it.
    pub(crate) fn write_synced(&self, off: u64, bytes: &[u8]) -> Result<()> {
        self.write_unhinted(off, bytes)?;
        self.sync()
    }

    pub(crate) fn write_unhinted(&self, off: u64, bytes: &[u8]) -> Result<()> {
        self.reserve(off + bytes.len() as u64)?;
        fault::write_all_at(&self.file, bytes, off, "write_at")
            .map_err(|e| Error::io("write", &self.path, e))
    }

    /// Asks the kernel to start writing a range back now, so the disk works while the
    /// writer keeps serializing; the commit's fsync still waits for it. Only a hint.
    pub(crate) fn start_writeback(&self, off: u64, len: u64) {
        start_writeback(&self.file, off, len);
    }

    pub(crate) fn sync(&self) -> Result<()> {
        fault::io(IoOp::Sync, "sync")
            .and_then(|()| self.file.sync_data())
            .map_err(|e| Error::io("fsync", &self.path, e))?;
        fault::synced(&self.path);
        Ok(())
    }
}

/// Asks the kernel to start writing `len` bytes of `file` at `off` (0: to the end) back to
/// the disk now; an fsync still waits for them. Only a hint: errors show at that fsync.
#[cfg(target_os = "linux")]
pub(crate) fn start_writeback(file: &File, off: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: plain syscall on a descriptor the caller owns; no memory is passed.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            off as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        )
    };
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn start_writeback(_file: &File, _off: u64, _len: u64) {}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked(map: &Mapping) -> Vec<u64> {
        let windows = map.len.div_ceil(AHEAD_WINDOW);
        (0..windows)
            .filter(|w| {
                map.read_ahead[(w / 64) as usize].load(Ordering::Relaxed) & (1 << (w % 64)) != 0
            })
            .collect()
    }

    #[test]
    fn a_scan_asks_for_its_range_and_what_follows_once_within_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        file.set_len(40 * AHEAD_WINDOW + 5).unwrap();
        let map = Mapping::new(&file, &path, 40 * AHEAD_WINDOW + 5, false).unwrap();
        map.scan_ahead(AHEAD_WINDOW + 7, 10);
        let ahead = SCAN_AHEAD / AHEAD_WINDOW;
        assert_eq!(asked(&map), (1..=1 + ahead).collect::<Vec<_>>());
        // Up to the end of the file, the last partial MiB included, and no further.
        map.scan_ahead(39 * AHEAD_WINDOW, AHEAD_WINDOW);
        assert_eq!(asked(&map).last(), Some(&40));
        assert_eq!(asked(&map).len() as u64, ahead + 1 + 2);
        // A pass asks when it enters another group of 256 records, from where it is.
        let last = |index: u64| (index * 4096 + 256 * 4096 + SCAN_AHEAD).div_ceil(AHEAD_WINDOW) - 1;
        let fresh = Mapping::new(&file, &path, 40 * AHEAD_WINDOW + 5, false).unwrap();
        let mut pass = ReadAhead::new(&fresh, 4096);
        pass.at(0);
        assert_eq!(asked(&fresh), (0..=last(0)).collect::<Vec<_>>());
        pass.at(255);
        assert_eq!(asked(&fresh).last(), Some(&last(0)));
        pass.at(256);
        assert_eq!(asked(&fresh).last(), Some(&last(256)));
        pass.at(5000); // a jump
        assert_eq!(asked(&fresh).last(), Some(&last(5000)));
        // Past the file, or in an empty one: nothing, and no panic.
        fresh.scan_ahead(u64::MAX - 3, 10);
        let empty = Mapping::new(&file, &path, 0, false).unwrap();
        empty.scan_ahead(0, 100);
        empty.scan_behind(0, 100);
    }

    #[test]
    fn a_scan_going_down_asks_for_its_range_and_what_precedes_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = File::create_new(&path).unwrap();
        file.set_len(40 * AHEAD_WINDOW + 5).unwrap();
        let map = Mapping::new(&file, &path, 40 * AHEAD_WINDOW + 5, false).unwrap();
        let behind = SCAN_AHEAD / AHEAD_WINDOW;
        map.scan_behind(30 * AHEAD_WINDOW + 7, 10);
        assert_eq!(asked(&map), (30 - behind..=30).collect::<Vec<_>>());
        // Down to the start of the file, and no further; past the end, nothing.
        map.scan_behind(2 * AHEAD_WINDOW, 10);
        assert_eq!(asked(&map).first(), Some(&0));
        map.scan_behind(u64::MAX - 3, 10);
        assert_eq!(asked(&map).last(), Some(&30));
        // A pass going down (records of 4 KiB) asks, entering each group, for the group up
        // to its record and what lies before.
        let fresh = Mapping::new(&file, &path, 40 * AHEAD_WINDOW + 5, false).unwrap();
        let mut pass = ReadAhead::new(&fresh, 4096);
        let window = |index: u64| index * 4096 / AHEAD_WINDOW;
        // The first record: its whole group, and what follows to the end of the file.
        pass.at(8_000);
        assert_eq!(asked(&fresh), (window(7_936)..=40).collect::<Vec<_>>());
        pass.at(7_999);
        pass.at(7_800);
        assert_eq!(
            asked(&fresh).first(),
            Some(&window(7_680).saturating_sub(behind))
        );
        pass.at(5_000);
        assert_eq!(
            asked(&fresh).first(),
            Some(&window(4_864).saturating_sub(behind))
        );
    }

    /// A forward pass that jumps to the end of its file and back (a concept pass meeting
    /// updated concepts' newest versions) keeps reading ahead where it lands back.
    #[test]
    fn a_pass_jumping_back_from_the_end_reads_ahead_where_it_lands() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = File::create_new(&path).unwrap();
        let len = 400 * AHEAD_WINDOW;
        file.set_len(len).unwrap();
        let map = Mapping::new(&file, &path, len, false).unwrap();
        // Records of 4 KiB: a group of 256 is one MiB window.
        let mut pass = ReadAhead::new(&map, 4096);
        let ahead = SCAN_AHEAD / AHEAD_WINDOW;
        pass.at(0);
        pass.at(300 * 256); // the end
        pass.at(20 * 256 + 5); // back, above the group it left
        let asked = asked(&map);
        assert!((20..=20 + ahead).all(|w| asked.contains(&w)), "{asked:?}");
        assert!(!asked.contains(&(ahead + 1)), "nothing behind: {asked:?}");
    }

    #[test]
    fn a_read_over_several_pages_is_looked_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = File::create_new(&path).unwrap();
        let page = page_size();
        file.set_len(200 * page).unwrap();
        let map = Mapping::new(&file, &path, 200 * page, false).unwrap();
        let read = || -> Vec<u64> {
            (0..200)
                .filter(|p| {
                    map.pages_read[(p / 64) as usize].load(Ordering::Relaxed) & (1 << (p % 64)) != 0
                })
                .collect()
        };
        let slow = || std::thread::sleep(DISK_WAIT * 2);
        // Within one page: one fault either way, not looked at.
        map.read_range(10, page - 10, slow);
        map.read_range(page, 0, slow);
        assert_eq!(read(), Vec::<u64>::new());
        assert!(!map.cold.load(Ordering::Relaxed));
        // A first read that waits marks the map cold, a fast one warm again.
        assert_eq!(map.read_range(page - 8, 16, || 7), 7);
        assert_eq!(read(), [0, 1]);
        map.read_range(3 * page - 8, 16, slow);
        assert!(map.cold.load(Ordering::Relaxed));
        map.read_range(3 * page - 8, 16, || ());
        assert!(
            map.cold.load(Ordering::Relaxed),
            "pages read before are not timed"
        );
        // Across a word of the bitmap.
        map.read_range(62 * page + 5, 4 * page, || ());
        assert!(!map.cold.load(Ordering::Relaxed));
        assert_eq!(read(), [0, 1, 2, 3, 62, 63, 64, 65, 66]);
        assert!(
            map.mark_read(62, 66),
            "read before: the next read is not looked at"
        );
        assert!(!map.mark_read(66, 67), "page 67 was not");
        assert!(map.mark_read(67, 67));
        // Long ranges are checked, not timed; past the end: nothing, and no panic.
        map.read_range(100 * page, 50 * page, slow);
        assert!(!map.cold.load(Ordering::Relaxed));
        map.read_range(199 * page, page + 1, || ());
        map.read_range(u64::MAX - 1, 2, || ());
        assert_eq!(read().len(), 10 + 50);
        let empty = Mapping::new(&file, &path, 0, false).unwrap();
        assert_eq!(empty.read_range(0, 100, || 1), 1);
    }
}
