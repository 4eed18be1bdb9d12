//! What an idle shim keeps resident. Creating, starting, exec'ing and deleting run
//! through much of the runtime library's code; once the shim has been quiet for
//! [`QUIET`] after such work, it trims the heap and drops its page-table entries for
//! the clean, read-only file mappings (its executable's code and read-only data, and
//! shared libraries' when dynamically linked) with `madvise(MADV_DONTNEED)`.
//!
//! This is safe for exactly those mappings: they are private, not writable and hold no
//! anonymous (copied-on-write) page, so every page is still the file's and the next
//! access maps it again from the page cache (a minor fault; the binary is on a
//! read-only mount, see `berth_runtime::sealed_exe`). Mappings with any modified page
//! (relocated data, RELRO, `.data`) are never touched. The pages stay in the page
//! cache, shared by every shim; what goes is this process's claim on them, which is
//! what RSS counts: fault-around maps 64 KiB or more of code per first touch, so
//! after a container start the whole executable looks resident.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

/// How long the shim must be quiet after work before it releases.
pub const QUIET: Duration = Duration::from_secs(1);

/// Releases after each burst of work signalled on `activity`. Runs for the shim's life.
pub async fn run(activity: Arc<Notify>) {
    loop {
        activity.notified().await;
        while tokio::time::timeout(QUIET, activity.notified()).await.is_ok() {}
        release();
    }
}

/// Gives back freed heap and the read-only file pages (see the module header).
pub fn release() {
    // SAFETY: malloc_trim only walks glibc's own arenas.
    unsafe { libc::malloc_trim(0) };
    let ranges = match std::fs::read_to_string("/proc/self/smaps") {
        Ok(smaps) => clean_read_only_file_mappings(&smaps),
        Err(_) => return,
    };
    // Last, so that little code runs (and is mapped again) after it.
    for (start, end) in &ranges {
        // SAFETY: the range is a whole mapping that is private, read-only, file-backed
        // and has no anonymous page: dropping its entries loses nothing, the next
        // access faults the same file page back in.
        unsafe { libc::madvise(*start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
    }
}

/// One mapping's header line of `/proc/PID/smaps` and the fields that decide.
struct Mapping {
    start: usize,
    end: usize,
    candidate: bool,
    anonymous_kib: Option<u64>,
}

impl Mapping {
    /// `start-end perms offset dev inode [path]`: private, not writable, with an inode.
    fn parse(line: &str) -> Option<Mapping> {
        let mut fields = line.split_whitespace();
        let (start, end) = fields.next()?.split_once('-')?;
        let perms = fields.next()?;
        let inode = fields.nth(2)?;
        let candidate = perms.len() == 4 && perms.ends_with('p') && &perms[1..2] == "-" && inode != "0";
        let start = usize::from_str_radix(start, 16).ok()?;
        let end = usize::from_str_radix(end, 16).ok()?;
        Some(Mapping { start, end, candidate, anonymous_kib: None })
    }

    fn releasable(&self) -> Option<(usize, usize)> {
        (self.candidate && self.anonymous_kib == Some(0) && self.end > self.start).then_some((self.start, self.end))
    }
}

/// The ranges of `smaps` that [`release`] may drop.
fn clean_read_only_file_mappings(smaps: &str) -> Vec<(usize, usize)> {
    let mut ranges = Vec::new();
    let mut current: Option<Mapping> = None;
    for line in smaps.lines() {
        if let Some(kib) = line.strip_prefix("Anonymous:") {
            if let Some(mapping) = current.as_mut() {
                mapping.anonymous_kib = kib.trim().trim_end_matches("kB").trim().parse().ok();
            }
        } else if line.split_whitespace().next().is_some_and(|f| f.contains('-')) {
            if let Some(range) = current.take().and_then(|m| m.releasable()) {
                ranges.push(range);
            }
            current = Mapping::parse(line);
        }
    }
    ranges.extend(current.and_then(|m| m.releasable()));
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
00200000-00321000 r--p 00000000 fe:00 5353997                    /
Rss:                 448 kB
Anonymous:             0 kB
00321000-00562000 r-xp 00121000 fe:00 5353997                    /
Anonymous:             0 kB
00562000-00567000 r--p 00362000 fe:00 5353997                    /
Anonymous:             8 kB
00567000-0056b000 rw-p 00366000 fe:00 5353997                    /
Anonymous:             0 kB
1d303000-1d325000 rw-p 00000000 00:00 0                          [heap]
Anonymous:           128 kB
7f1ff7afc000-7f1ff7c52000 r-xp 00026000 fe:00 326279                     /usr/lib/x86_64-linux-gnu/libc.so.6
Anonymous:             0 kB
7fee8b148000-7fee8b14a000 r-xp 00000000 00:00 0                  [vdso]
Anonymous:             0 kB
7f1ff7c52000-7f1ff7ca5000 r--s 0017c000 fe:00 326279                     /shared
Anonymous:             0 kB
7f1ff7ca5000-7f1ff7ca9000 r--p 001cf000 fe:00 326279                     /no-anonymous-line
";

    #[test]
    fn only_clean_private_read_only_file_mappings() {
        let ranges = clean_read_only_file_mappings(SMAPS);
        assert_eq!(ranges, vec![(0x200000, 0x321000), (0x321000, 0x562000), (0x7f1ff7afc000, 0x7f1ff7c52000)]);
    }

    #[test]
    fn release_keeps_the_process_working() {
        let before = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
        assert!(!clean_read_only_file_mappings(&before).is_empty(), "the test binary has read-only file mappings");
        release();
        let text = format!("{:?}", (1..10).map(|i| i * 3).collect::<Vec<_>>());
        assert_eq!(text, "[3, 6, 9, 12, 15, 18, 21, 24, 27]");
    }
}
