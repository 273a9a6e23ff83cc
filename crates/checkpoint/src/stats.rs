//! CRIU's statistics images (`stats-dump`, `stats-restore` in the image
//! directory): how long the tasks were frozen, how many pages were written.
//! An image file is two magic numbers, then entries of a little-endian u32
//! length and a protobuf message (criu/images/stats.proto).

use std::path::Path;

use crate::error::{Error, Result};
use crate::proto::{Fields, Value};

const IMG_SERVICE_MAGIC: u32 = 0x5510_5940;
const STATS_MAGIC: u32 = 0x5709_3306;

/// dump_stats_entry; times in microseconds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DumpStats {
    pub freezing_time_us: u64,
    pub frozen_time_us: u64,
    pub memdump_time_us: u64,
    pub memwrite_time_us: u64,
    pub pages_scanned: u64,
    pub pages_skipped_parent: u64,
    pub pages_written: u64,
}

/// restore_stats_entry; times in microseconds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RestoreStats {
    pub pages_compared: u64,
    pub forking_time_us: u64,
    pub restore_time_us: u64,
    pub pages_restored: u64,
}

/// The varint fields of the sub-message `which` of the first stats entry.
fn read(path: &Path, which: u32) -> Result<Vec<(u32, u64)>> {
    let bad = |why: &str| Error::Protocol(format!("{}: {why}", path.display()));
    let b = std::fs::read(path).map_err(|e| Error::io("read", path, e))?;
    let word =
        |i: usize| -> Option<u32> { Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?)) };
    if word(0) != Some(IMG_SERVICE_MAGIC) || word(4) != Some(STATS_MAGIC) {
        return Err(bad("not a CRIU stats image"));
    }
    let len = word(8).ok_or_else(|| bad("no entry"))? as usize;
    let entry = b.get(12..12 + len).ok_or_else(|| bad("short entry"))?;
    let mut out = Vec::new();
    for f in Fields::new(entry) {
        if let (n, Value::Bytes(inner)) = f.map_err(|_| bad("malformed entry"))? {
            if n != which {
                continue;
            }
            for f in Fields::new(inner) {
                if let (n, Value::Varint(v)) = f.map_err(|_| bad("malformed entry"))? {
                    out.push((n, v));
                }
            }
        }
    }
    Ok(out)
}

/// The statistics of the last dump or pre-dump written into `images_dir`.
pub fn dump_stats(images_dir: &Path) -> Result<DumpStats> {
    let mut s = DumpStats::default();
    for (n, v) in read(&images_dir.join("stats-dump"), 1)? {
        match n {
            1 => s.freezing_time_us = v,
            2 => s.frozen_time_us = v,
            3 => s.memdump_time_us = v,
            4 => s.memwrite_time_us = v,
            5 => s.pages_scanned = v,
            6 => s.pages_skipped_parent = v,
            7 => s.pages_written = v,
            _ => {}
        }
    }
    Ok(s)
}

/// The statistics of the restore from `images_dir`.
pub fn restore_stats(images_dir: &Path) -> Result<RestoreStats> {
    let mut s = RestoreStats::default();
    for (n, v) in read(&images_dir.join("stats-restore"), 2)? {
        match n {
            1 => s.pages_compared = v,
            3 => s.forking_time_us = v,
            4 => s.restore_time_us = v,
            5 => s.pages_restored = v,
            _ => {}
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Encoder;

    #[test]
    fn reads_frozen_time_from_a_stats_image() {
        let mut d = Encoder::new();
        d.uint(1, 10).uint(2, 1234).uint(7, 56);
        let mut e = Encoder::new();
        e.message(1, d);
        let entry = e.into_bytes();
        let mut img = Vec::new();
        img.extend_from_slice(&IMG_SERVICE_MAGIC.to_le_bytes());
        img.extend_from_slice(&STATS_MAGIC.to_le_bytes());
        img.extend_from_slice(&(entry.len() as u32).to_le_bytes());
        img.extend_from_slice(&entry);
        let dir = std::env::temp_dir().join(format!("cove-stats-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("stats-dump"), &img).unwrap();
        let s = dump_stats(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        let s = s.unwrap();
        assert_eq!(s.frozen_time_us, 1234);
        assert_eq!(s.freezing_time_us, 10);
        assert_eq!(s.pages_written, 56);
    }
}
