//! The monitor's memory once its CT runs. Starting a CT runs most of the
//! `cove` binary (argument parsing, TOML, the engine's create) and of libc;
//! watching it afterwards runs a poll loop. So once the CT is up the
//! monitor gives back what start needed: the free heap (malloc_trim) and
//! the pages of its read-only file mappings (code and constants of `cove`,
//! libc and the loader) with MADV_DONTNEED. Those pages are never written,
//! so the few the loop needs fault back in from the page cache, shared
//! with every other process. Its RSS then counts what the monitor really
//! uses, not the pages of a start long done. A read-only mapping that holds
//! written pages (RELRO: relocated by the loader, then made read-only) shows
//! them as Anonymous in smaps and is left alone, as is everything writable
//! but the main thread's stack below the current frame, which start's deep
//! calls wrote and nothing will read.

/// Gives back the heap and the clean read-only pages start used. Best
/// effort: any failure leaves the memory as it was.
pub fn after_start() {
    // SAFETY: malloc_trim only returns free heap memory to the kernel.
    unsafe { libc::malloc_trim(0) };
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    for (start, end) in clean_read_only(&smaps) {
        // SAFETY: a private read-only file mapping with no written
        // (anonymous) page: dropping its pages only makes the next access
        // read them again from the file's page cache.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
    }
    if let Some((start, end)) = dead_stack(&smaps, stack_pointer()) {
        // SAFETY: pages of the main thread's stack wholly below the
        // current frame (and a page of margin past the red zone): nothing
        // live is there, and a later call that reaches them gets zeroed
        // pages, as a stack that grows for the first time does.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
    }
}

/// About where the stack pointer is: the address of a local of a frame
/// that is not inlined into its caller.
#[inline(never)]
fn stack_pointer() -> usize {
    let here = 0u8;
    std::hint::black_box(&here) as *const u8 as usize
}

/// The part of the [stack] mapping that lies below `sp` by more than a
/// page (start's deep calls left it written; the monitor's loop needs a
/// few KiB), page-aligned; None if `sp` is not in it.
fn dead_stack(smaps: &str, sp: usize) -> Option<(usize, usize)> {
    const PAGE: usize = 4096;
    let line = smaps.lines().find(|l| l.ends_with("[stack]"))?;
    let (a, b) = line.split_whitespace().next()?.split_once('-')?;
    let (start, end) = (
        usize::from_str_radix(a, 16).ok()?,
        usize::from_str_radix(b, 16).ok()?,
    );
    if !(start..end).contains(&sp) {
        return None;
    }
    let top = (sp - PAGE) & !(PAGE - 1);
    (top > start).then_some((start, top))
}

/// The private, read-only file mappings without any anonymous (written)
/// page, from a /proc/PID/smaps text.
fn clean_read_only(smaps: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        let Some(first) = f.next() else { continue };
        if let Some((a, b)) = first.split_once('-') {
            // A mapping's header: range perms offset dev inode [path].
            let (Ok(start), Ok(end)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
            else {
                current = None;
                continue;
            };
            let perms = f.next().unwrap_or_default();
            let inode = f.nth(2).unwrap_or("0");
            let path = f.next().unwrap_or_default();
            let file_backed = inode != "0" && path.starts_with('/');
            current = (file_backed && (perms == "r-xp" || perms == "r--p") && end > start)
                .then_some((start, end));
        } else if first == "Anonymous:" {
            if let Some(range) = current.take() {
                if f.next() == Some("0") {
                    out.push(range);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_clean_read_only_file_mappings_are_picked() {
        let smaps = "\
5591a000-5591b000 r--p 00000000 fe:01 1234 /usr/bin/cove
Rss:                   4 kB
Anonymous:             0 kB
5591b000-5591f000 r-xp 00001000 fe:01 1234 /usr/bin/cove
Anonymous:             0 kB
5591f000-55920000 r--p 00005000 fe:01 1234 /usr/bin/cove
Anonymous:             4 kB
55920000-55921000 rw-p 00006000 fe:01 1234 /usr/bin/cove
Anonymous:             0 kB
55921000-55922000 rw-p 00000000 00:00 0 [heap]
Anonymous:             4 kB
7f00000-7f01000 r-xp 00000000 fe:01 99 /usr/lib/x86_64-linux-gnu/libc.so.6
Anonymous:             0 kB
7ffd000-7ffe000 r-xp 00000000 00:00 0 [vdso]
Anonymous:             0 kB
";
        assert_eq!(
            clean_read_only(smaps),
            [
                (0x5591a000, 0x5591b000),
                (0x5591b000, 0x5591f000),
                (0x7f00000, 0x7f01000)
            ]
        );
    }

    #[test]
    fn the_dead_stack_ends_a_page_below_the_stack_pointer() {
        let smaps = "\
7ffc0000-7ffc1000 rw-p 00000000 00:00 0 [heap]
Anonymous:             4 kB
7ffd0000-7ffe0000 rw-p 00000000 00:00 0                          [stack]
Anonymous:            64 kB
";
        assert_eq!(
            dead_stack(smaps, 0x7ffd8123),
            Some((0x7ffd0000, 0x7ffd7000))
        );
        assert_eq!(dead_stack(smaps, 0x7ffd0800), None);
        assert_eq!(dead_stack(smaps, 0x7ffe0800), None);
    }

    #[test]
    fn this_process_keeps_running_after_its_pages_are_dropped() {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        assert!(!clean_read_only(&smaps).is_empty());
        let data = vec![7u8; 1 << 20];
        after_start();
        // Code runs again (faulted back in) and data is intact.
        assert_eq!(data.iter().map(|b| u64::from(*b)).sum::<u64>(), 7 << 20);
        assert_eq!(format!("{}", 6 * 7), "42");
    }
}
