//! JSON lines: one flow record (docs/data-model.md) per line; blank lines are ignored.

use super::ImportError;
use crate::model::FlowRecord;
use anyhow::{Context, Result};
use std::io::BufRead;
use std::path::Path;

/// Parses every line and hands valid records to `sink`; the first bad line is an [`ImportError`].
pub fn read(
    file: &Path,
    mut lines: Box<dyn BufRead>,
    mut sink: impl FnMut(FlowRecord) -> Result<()>,
) -> Result<u64> {
    let mut buf = String::new();
    let mut line_no = 0u64;
    let mut n = 0u64;
    loop {
        buf.clear();
        let read = lines.read_line(&mut buf).with_context(|| {
            format!("{}:{}: cannot read (is it UTF-8 text?)", file.display(), line_no + 1)
        })?;
        if read == 0 {
            break;
        }
        line_no += 1;
        let text = buf.trim();
        if text.is_empty() {
            continue;
        }
        let record = parse_line(text).map_err(|(field, message)| ImportError {
            file: file.to_path_buf(),
            line: line_no,
            unit: "line",
            field,
            message,
        })?;
        sink(record)?;
        n += 1;
    }
    Ok(n)
}

/// One line -> a validated record, or (field at fault, what is wrong).
pub fn parse_line(text: &str) -> Result<FlowRecord, (Option<String>, String)> {
    let de = &mut serde_json::Deserializer::from_str(text);
    let record: FlowRecord = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        // serde_json appends "at line 1 column N"; the column is useful, the line is always 1.
        let msg = inner.to_string().replace(" at line 1 column", " at column");
        let field = if path == "." || path.is_empty() { None } else { Some(path) };
        (field, msg)
    })?;
    record.validate().map_err(|(f, m)| (Some(f.to_string()), m))?;
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"window_start":"2026-11-20T10:00:00Z","window_end":"2026-11-20T10:00:10Z","node":"n1","local":{"ip":"10.0.1.5","port":43120,"process":"curl"},"remote":{"ip":"52.216.8.1","port":443},"proto":"tcp","ip_version":4,"initiator":"local","bytes_out":1200,"bytes_in":50000,"packets_out":10,"packets_in":40}"#;

    #[test]
    fn parses_a_record() {
        let r = parse_line(GOOD).unwrap();
        assert_eq!(r.local.process.as_deref(), Some("curl"));
        assert_eq!(r.bytes_in, 50000);
        assert_eq!(r.connections_opened, 0);
    }

    #[test]
    fn names_the_nested_field_at_fault() {
        let bad = GOOD.replace(r#""port":443"#, r#""port":"https""#);
        let (field, msg) = parse_line(&bad).unwrap_err();
        assert_eq!(field.as_deref(), Some("remote.port"));
        assert!(msg.contains("expected u16"), "{msg}");
        let bad = GOOD.replace("bytes_in", "bytes_inn");
        let (field, msg) = parse_line(&bad).unwrap_err();
        assert!(msg.contains("unknown field `bytes_inn`"), "{field:?} {msg}");
        let bad = GOOD.replace(r#""10.0.1.5""#, r#""10.0.1.500""#);
        assert_eq!(parse_line(&bad).unwrap_err().0.as_deref(), Some("local.ip"));
        let bad = GOOD.replace(r#""ip_version":4"#, r#""ip_version":6"#);
        assert_eq!(parse_line(&bad).unwrap_err().0.as_deref(), Some("local.ip"));
    }
}
