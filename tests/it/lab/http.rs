//! The HTTP/1.1 the lab's servers read: a request's head and its body (fixed length or chunked),
//! and the reason phrase of a status. Written on tokio rather than with a framework: the servers
//! stream endless watch bodies and cut answers mid-way, which they write by hand.

use std::io;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::tcp::OwnedReadHalf;

/// A request line and its headers.
pub struct Head {
    /// The request line without its line end.
    pub line: String,
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// Names as sent.
    pub headers: Vec<(String, String)>,
    /// The head as it arrived, line ends included.
    pub raw: String,
}

impl Head {
    /// A header's value; names compare case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// The next request's head; `None` when the client closed the connection between requests.
pub async fn read_head(reader: &mut BufReader<OwnedReadHalf>) -> io::Result<Option<Head>> {
    let mut raw = String::new();
    if reader.read_line(&mut raw).await? == 0 {
        return Ok(None);
    }
    let line = raw.trim_end().to_string();
    let mut words = line.split_whitespace();
    let (Some(method), Some(target)) = (words.next(), words.next()) else {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("bad request line {line:?}")));
    };
    let (method, target) = (method.to_string(), target.to_string());
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        raw.push_str(&header);
        let header = header.trim_end();
        if header.is_empty() {
            return Ok(Some(Head { line, method, target, headers, raw }));
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
}

/// The body the head announces: `content-length` bytes, chunks, or none.
pub async fn read_body(reader: &mut BufReader<OwnedReadHalf>, head: &Head) -> io::Result<Vec<u8>> {
    if let Some(length) = head.header("content-length") {
        let length: usize =
            length.parse().map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad content-length"))?;
        let mut body = vec![0; length];
        reader.read_exact(&mut body).await?;
        return Ok(body);
    }
    if head.header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        return read_chunked(reader).await;
    }
    Ok(Vec::new())
}

async fn read_chunked(reader: &mut BufReader<OwnedReadHalf>) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).await?;
        let size = line.trim().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                line.clear();
                if reader.read_line(&mut line).await? == 0 || line.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..]).await?;
        line.clear();
        reader.read_line(&mut line).await?;
    }
}

pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        410 => "Gone",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        529 => "Overloaded",
        _ => "",
    }
}
