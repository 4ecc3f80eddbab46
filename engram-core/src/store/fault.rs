//! Fault injection: every write, fsync, file growth and map of the store passes through one
//! checkpoint, which a test can [`arm`] to fail the Nth call of one kind (with ENOSPC, EIO,
//! or a write that lands only its first half). Unarmed, a check is one relaxed atomic load.
//! Process-wide: arm it only in a test process that does nothing else at the same time.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::{Condvar, Mutex};

/// A kind of I/O call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IoOp {
    /// A write (pwrite) to a data, commit, head or compaction file.
    Write,
    /// An fsync/fdatasync of a file or directory.
    Sync,
    /// Growing a file (ftruncate to a larger size).
    Grow,
    /// Mapping (or remapping) a file.
    Map,
}

/// What an armed call fails with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// ENOSPC: the disk is full.
    NoSpace,
    /// EIO: the device failed.
    Io,
    /// For a write: only its first half reaches the file, then EIO. Other calls: EIO.
    ShortWrite,
}

struct Plan {
    op: IoOp,
    left: u64,
    fault: Fault,
}

static ARMED: AtomicBool = AtomicBool::new(false);
/// The plan, the calls seen by (kind, site), and the site the fault fired at.
type State = (
    Option<Plan>,
    BTreeMap<(IoOp, &'static str), u64>,
    Option<&'static str>,
);
static STATE: Mutex<State> = Mutex::new((None, BTreeMap::new(), None));

/// Fails the `nth` (1-based) call of kind `op` from now on with `fault`, and counts every
/// call by site until [`disarm`].
pub fn arm(op: IoOp, nth: u64, fault: Fault) {
    let mut s = STATE.lock();
    s.0 = Some(Plan {
        op,
        left: nth.max(1),
        fault,
    });
    s.1.clear();
    s.2 = None;
    ARMED.store(true, Ordering::Release);
}

/// Stops injecting; returns the calls seen since [`arm`] by (kind, site), and the site
/// the armed fault fired at (`None` if the workload never reached the Nth call).
pub fn disarm() -> (Vec<(IoOp, &'static str, u64)>, Option<&'static str>) {
    ARMED.store(false, Ordering::Release);
    let mut s = STATE.lock();
    s.0 = None;
    let seen = std::mem::take(&mut s.1)
        .into_iter()
        .map(|((op, site), n)| (op, site, n))
        .collect();
    (seen, s.2.take())
}

type SyncObserver = Box<dyn Fn(&std::path::Path) + Send + Sync>;
static OBSERVING: AtomicBool = AtomicBool::new(false);
static OBSERVER: Mutex<Option<SyncObserver>> = Mutex::new(None);

/// Calls `f` with the path of every file the store has just made durable (after its fsync
/// returned), until called again with `None`: what a power-loss simulation keeps.
pub fn on_sync(f: Option<SyncObserver>) {
    let mut o = OBSERVER.lock();
    OBSERVING.store(f.is_some(), Ordering::Release);
    *o = f;
}

/// Reports a completed fsync of `path` to the observer, if any.
pub(crate) fn synced(path: &std::path::Path) {
    if OBSERVING.load(Ordering::Relaxed)
        && let Some(f) = OBSERVER.lock().as_ref()
    {
        f(path);
    }
}

/// Where a held compaction stands.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Hold {
    Off,
    Armed,
    Holding,
    Released,
}

static HOLD: Mutex<Hold> = Mutex::new(Hold::Off);
static HOLD_MOVED: Condvar = Condvar::new();

/// Makes the next compaction stop once it has copied the live episodes and concepts, before
/// it takes the writer, until [`release_compaction`]. Returns at once; [`await_compaction`]
/// waits for the compaction to stop there. What commits then is what the compaction must
/// carry into its copy.
pub fn hold_compaction() {
    *HOLD.lock() = Hold::Armed;
}

/// Waits until the compaction [`hold_compaction`] armed for has stopped.
pub fn await_compaction() {
    let mut h = HOLD.lock();
    while *h != Hold::Holding {
        HOLD_MOVED.wait(&mut h);
    }
}

/// Lets the held compaction go on.
pub fn release_compaction() {
    *HOLD.lock() = Hold::Released;
    HOLD_MOVED.notify_all();
}

/// Called by a compaction between its copy and taking the writer: stops there if armed.
pub(crate) fn compaction_copied() {
    let mut h = HOLD.lock();
    if *h != Hold::Armed {
        return;
    }
    *h = Hold::Holding;
    HOLD_MOVED.notify_all();
    while *h != Hold::Released {
        HOLD_MOVED.wait(&mut h);
    }
    *h = Hold::Off;
}

/// An injected failure: the error to return, and for a short write, that the first half of
/// the bytes is to be written first.
pub(crate) struct Injected {
    pub error: std::io::Error,
    pub short: bool,
}

/// Counts the call and fails it if it is the armed one.
pub(crate) fn check(op: IoOp, site: &'static str) -> Result<(), Injected> {
    if !ARMED.load(Ordering::Relaxed) {
        return Ok(());
    }
    let mut s = STATE.lock();
    *s.1.entry((op, site)).or_default() += 1;
    let Some(plan) = s.0.as_mut().filter(|p| p.op == op) else {
        return Ok(());
    };
    plan.left -= 1;
    if plan.left > 0 {
        return Ok(());
    }
    let fault = plan.fault;
    s.0 = None;
    s.2 = Some(site);
    let errno = match fault {
        Fault::NoSpace => libc::ENOSPC,
        Fault::Io | Fault::ShortWrite => libc::EIO,
    };
    Err(Injected {
        error: std::io::Error::from_raw_os_error(errno),
        short: fault == Fault::ShortWrite && op == IoOp::Write,
    })
}

/// `check` for a call that has no partial form: the injected error, if any.
pub(crate) fn io(op: IoOp, site: &'static str) -> std::io::Result<()> {
    check(op, site).map_err(|i| i.error)
}

/// `write_all_at` through the injection point: an injected short write lands the first
/// half of `bytes`, then fails.
pub(crate) fn write_all_at(
    file: &std::fs::File,
    bytes: &[u8],
    off: u64,
    site: &'static str,
) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    if let Err(i) = check(IoOp::Write, site) {
        if i.short {
            file.write_all_at(&bytes[..bytes.len() / 2], off)?;
        }
        return Err(i.error);
    }
    file.write_all_at(bytes, off)
}
