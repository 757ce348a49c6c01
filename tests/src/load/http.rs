//! The smallest HTTP/1.1 client that can measure a server: one keep-alive
//! connection, one `GET` at a time, the response read to its last byte and
//! only its status kept. Written out rather than borrowed from a client crate
//! so that the load generator spends as little of the machine's CPU as it can:
//! on a 2-core machine every cycle it uses is one the measured services lose.

use std::io;
use std::net::SocketAddr;

use tokio::net::TcpStream;

/// Bytes read from the socket at once.
const READ_CHUNK: usize = 16 * 1024;
/// A response head larger than this is refused rather than buffered.
const MAX_HEAD: usize = 64 * 1024;

/// One keep-alive connection to the server under load.
pub struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
}

/// What one exchange answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// The server said `Connection: close`: open a new connection next time.
    pub closes: bool,
}

impl Connection {
    /// Connects with Nagle off: requests are small and latency is the figure.
    pub async fn open(address: SocketAddr) -> io::Result<Connection> {
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream,
            buffer: Vec::with_capacity(READ_CHUNK),
        })
    }

    /// Sends `request` (a complete HTTP/1.1 request) and reads one whole response.
    pub async fn exchange(&mut self, request: &[u8]) -> io::Result<Answer> {
        self.write_all(request).await?;
        loop {
            if let Some((length, answer)) = parse_response(&self.buffer)? {
                self.buffer.drain(..length);
                return Ok(answer);
            }
            if self.buffer.len() > MAX_HEAD && find_head_end(&self.buffer).is_none() {
                return Err(malformed("response head larger than 64 KiB"));
            }
            self.read_more().await?;
        }
    }

    async fn write_all(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            self.stream.writable().await?;
            match self.stream.try_write(bytes) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => bytes = &bytes[written..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn read_more(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; READ_CHUNK];
        loop {
            self.stream.readable().await?;
            match self.stream.try_read(&mut chunk) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(read) => {
                    self.buffer.extend_from_slice(&chunk[..read]);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// The bytes of `GET path` to `host`, with `extra` header lines (`name: value`).
pub fn get_request(host: &str, path: &str, extra: &[String]) -> Vec<u8> {
    let mut request = format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nuser-agent: keyhole-load\r\n");
    for header in extra {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    request.into_bytes()
}

fn malformed(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

fn find_head_end(buffer: &[u8]) -> Option<usize> {
    buffer.windows(4).position(|w| w == b"\r\n\r\n").map(|at| at + 4)
}

/// A whole response at the start of `buffer`: its length and what it answered;
/// `None` while more bytes are needed.
fn parse_response(buffer: &[u8]) -> io::Result<Option<(usize, Answer)>> {
    let Some(head_end) = find_head_end(buffer) else {
        return Ok(None);
    };
    let head =
        std::str::from_utf8(&buffer[..head_end]).map_err(|_| malformed("response head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| malformed("response does not start with an HTTP/1.x status line"))?;
    let mut content_length = None;
    let mut chunked = false;
    let mut closes = status_line.starts_with("HTTP/1.0");
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| malformed("bad content-length"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            closes = value.eq_ignore_ascii_case("close");
        }
    }
    let body_end = if chunked {
        match chunked_body_end(&buffer[head_end..])? {
            Some(length) => head_end + length,
            None => return Ok(None),
        }
    } else if let Some(length) = content_length {
        if buffer.len() < head_end + length {
            return Ok(None);
        }
        head_end + length
    } else if status == 204 || status == 304 || (100..200).contains(&status) {
        head_end
    } else {
        return Err(malformed(
            "response has neither content-length nor a chunked body",
        ));
    };
    Ok(Some((body_end, Answer { status, closes })))
}

/// The length of a complete chunked body at the start of `body`, trailers
/// included; `None` while incomplete.
fn chunked_body_end(body: &[u8]) -> io::Result<Option<usize>> {
    let mut at = 0;
    loop {
        let Some(line_end) = body[at..].windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let size_line =
            std::str::from_utf8(&body[at..at + line_end]).map_err(|_| malformed("bad chunk size"))?;
        let size_text = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| malformed("bad chunk size"))?;
        at += line_end + 2;
        if size == 0 {
            // Trailers, if any, end with an empty line.
            loop {
                let Some(end) = body[at..].windows(2).position(|w| w == b"\r\n") else {
                    return Ok(None);
                };
                at += end + 2;
                if end == 0 {
                    return Ok(Some(at));
                }
            }
        }
        if body.len() < at + size + 2 {
            return Ok(None);
        }
        at += size + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_with_a_length_is_complete_once_its_body_is_in() {
        let whole = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
        assert_eq!(parse_response(&whole[..whole.len() - 1]).unwrap(), None);
        let (length, answer) = parse_response(whole).unwrap().unwrap();
        assert_eq!(length, whole.len());
        assert_eq!(
            answer,
            Answer {
                status: 200,
                closes: false
            }
        );
    }

    #[test]
    fn pipelined_bytes_after_a_response_are_left_for_the_next() {
        let two = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 2\r\nConnection: close\r\n\r\nnoHTTP/1.1 200";
        let (length, answer) = parse_response(two).unwrap().unwrap();
        assert_eq!(&two[length..], b"HTTP/1.1 200");
        assert_eq!(answer.status, 502);
        assert!(answer.closes);
    }

    #[test]
    fn a_chunked_body_ends_at_its_empty_chunk() {
        let whole = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
        for cut in 1..whole.len() {
            assert_eq!(parse_response(&whole[..cut]).unwrap(), None, "cut at {cut}");
        }
        assert_eq!(parse_response(whole).unwrap().unwrap().0, whole.len());
    }

    #[test]
    fn garbage_is_an_error_not_a_hang() {
        assert!(parse_response(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
    }
}
