//! The agent's durable, bounded spool: one file per batch, written atomically (temp file, fsync,
//! rename), so a crash never leaves a half-written batch and a restart or a late pull loses nothing
//! that was written. When the spool exceeds its size bound the oldest batches are dropped first, and
//! the drop is counted and carried in the next batch's `loss` (and on /metrics).

use crate::transport::{Batch, Loss};
use anyhow::{Context, Result};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    instance: String,
    next_seq: u64,
    /// (seq, file size, records) of every batch on disk, oldest first.
    files: Vec<(u64, u64, u64)>,
    /// Drops not yet reported in a batch.
    pending_loss: Loss,
    pub total_dropped_batches: u64,
    pub total_dropped_records: u64,
}

fn batch_file(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.batch.json"))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path).with_context(|| format!("cannot rename {} into place", tmp.display()))?;
    Ok(())
}

impl Spool {
    /// Opens (creating) the spool directory and recovers its batches and sequence number.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self> {
        fs::create_dir_all(dir)
            .with_context(|| format!("cannot create spool directory {}", dir.display()))?;
        let instance_file = dir.join("instance");
        let instance = match fs::read_to_string(&instance_file) {
            Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
            _ => {
                let uuid = fs::read_to_string("/proc/sys/kernel/random/uuid")
                    .context("cannot read /proc/sys/kernel/random/uuid for a new spool instance id")?;
                let id: String = uuid.trim().chars().filter(|c| *c != '-').take(12).collect();
                write_atomically(&instance_file, id.as_bytes())?;
                id
            }
        };
        let mut files = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().to_string();
            if let Some(seq) = name.strip_suffix(".batch.json").and_then(|s| s.parse::<u64>().ok()) {
                let len = entry.metadata()?.len();
                // Record counts are only needed for drop accounting; read lazily as 0 for recovered files.
                files.push((seq, len, 0));
            } else if name.ends_with(".tmp") {
                // A write that crashed before its rename: never acknowledged as written.
                let _ = fs::remove_file(entry.path());
            }
        }
        files.sort();
        let saved_seq =
            fs::read_to_string(dir.join("next_seq")).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(1);
        let next_seq = files.last().map(|f| f.0 + 1).unwrap_or(1).max(saved_seq);
        Ok(Spool {
            dir: dir.to_path_buf(),
            max_bytes,
            instance,
            next_seq,
            files,
            pending_loss: Loss::default(),
            total_dropped_batches: 0,
            total_dropped_records: 0,
        })
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The size bound the oldest batches are dropped at.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.1).sum()
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Assigns the next sequence number and batch id, folds in unreported spool losses, writes the batch
    /// durably, then enforces the size bound. Returns the stored batch.
    pub fn append(&mut self, mut batch: Batch) -> Result<Batch> {
        batch.seq = self.next_seq;
        batch.batch_id = format!("{}-{}-{:012}", batch.node, self.instance, batch.seq);
        batch.loss.spool_dropped_batches += self.pending_loss.spool_dropped_batches;
        batch.loss.spool_dropped_records += self.pending_loss.spool_dropped_records;
        for r in &mut batch.records {
            r.batch_id = Some(batch.batch_id.clone());
        }
        let bytes = serde_json::to_vec(&batch)?;
        write_atomically(&batch_file(&self.dir, batch.seq), &bytes)?;
        self.next_seq += 1;
        write_atomically(&self.dir.join("next_seq"), self.next_seq.to_string().as_bytes())?;
        self.pending_loss = Loss::default();
        self.files.push((batch.seq, bytes.len() as u64, batch.records.len() as u64));
        self.enforce_bound()?;
        Ok(batch)
    }

    fn enforce_bound(&mut self) -> Result<()> {
        // The newest batch is always kept, even alone above the bound: dropping what was just captured
        // would lose the most useful data.
        while self.bytes() > self.max_bytes && self.files.len() > 1 {
            let (seq, _, records) = self.files.remove(0);
            let records = if records == 0 {
                self.read(seq).map(|b| b.records.len() as u64).unwrap_or(0)
            } else {
                records
            };
            fs::remove_file(batch_file(&self.dir, seq))?;
            self.pending_loss.spool_dropped_batches += 1;
            self.pending_loss.spool_dropped_records += records;
            self.total_dropped_batches += 1;
            self.total_dropped_records += records;
            tracing::warn!(seq, records, "spool full: dropped the oldest batch");
        }
        Ok(())
    }

    pub fn read(&self, seq: u64) -> Result<Batch> {
        let path = batch_file(&self.dir, seq);
        let bytes = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("{} is not a batch", path.display()))
    }

    /// Batches with sequence numbers after `after`, oldest first, at most `limit`; and whether more remain.
    pub fn after(&self, after: u64, limit: usize) -> Result<(Vec<Batch>, bool)> {
        let seqs: Vec<u64> = self.files.iter().map(|f| f.0).filter(|s| *s > after).collect();
        let more = seqs.len() > limit;
        let batches = seqs.into_iter().take(limit).map(|s| self.read(s)).collect::<Result<_>>()?;
        Ok((batches, more))
    }

    /// The client has stored everything up to `upto`: those files can go.
    pub fn ack(&mut self, upto: u64) -> Result<usize> {
        let (gone, keep): (Vec<_>, Vec<_>) = self.files.iter().partition(|f| f.0 <= upto);
        for (seq, _, _) in &gone {
            let _ = fs::remove_file(batch_file(&self.dir, *seq));
        }
        self.files = keep;
        Ok(gone.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Timestamp;

    fn batch(records: usize) -> Batch {
        let rec = crate::import::parse_jsonl_line(
            r#"{"window_start":"2026-11-20T10:00:00Z","window_end":"2026-11-20T10:00:10Z","node":"n1","local":{"ip":"10.0.0.1","port":1},"remote":{"ip":"10.0.0.2","port":2},"proto":"tcp","ip_version":4,"initiator":"local","bytes_out":1,"bytes_in":2,"packets_out":1,"packets_in":1}"#,
        )
        .unwrap();
        Batch {
            batch_id: String::new(),
            seq: 0,
            node: "n1".into(),
            created_at: Timestamp::from_secs(0),
            window_start: Timestamp::from_secs(0),
            window_end: Timestamp::from_secs(10),
            loss: Loss::default(),
            records: vec![rec; records],
        }
    }

    #[test]
    fn survives_restart_and_bounds_size() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        let b1 = s.append(batch(3)).unwrap();
        let b2 = s.append(batch(3)).unwrap();
        assert_eq!((b1.seq, b2.seq), (1, 2));
        assert!(b2.batch_id.starts_with("n1-") && b2.batch_id.ends_with("-000000000002"));
        let instance = s.instance().to_string();
        drop(s);
        // A restart recovers batches, instance and numbering.
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(s.instance(), instance);
        assert_eq!(s.len(), 2);
        assert_eq!(s.after(1, 10).unwrap().0[0], b2);
        assert_eq!(s.append(batch(1)).unwrap().seq, 3);
        // Acknowledged batches go; numbering continues after a restart with an empty spool.
        s.ack(3).unwrap();
        assert!(s.is_empty());
        drop(s);
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(s.append(batch(1)).unwrap().seq, 4);

        // Bound: the oldest go first, and the loss is reported in the next batch.
        let one = serde_json::to_vec(&batch(50)).unwrap().len() as u64;
        let small = tempfile::tempdir().unwrap();
        let mut s = Spool::open(small.path(), one * 2 + one / 2).unwrap();
        for _ in 0..3 {
            s.append(batch(50)).unwrap();
        }
        assert_eq!(s.len(), 2);
        assert_eq!(s.total_dropped_records, 50);
        let next = s.append(batch(1)).unwrap();
        assert_eq!(next.loss.spool_dropped_batches, 1);
        assert_eq!(next.loss.spool_dropped_records, 50);
    }
}
