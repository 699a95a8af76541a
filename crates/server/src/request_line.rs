//! The first request line of a connection as some clients send it: curl passes
//! `?filter=name="x"` on unencoded. A URI may not hold `"` and a few other bytes as they are,
//! so hyper would answer such a line with a bare 400, before any service sees the call (no
//! request id, no JSON error). [`RequestLine`] percent-encodes those bytes of the request
//! target as they are read, so the call is served as if the client had encoded them. Only the
//! first line of a connection is touched; everything after it passes through unchanged.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Where the first line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Method,
    Target,
    Version,
    Done,
}

/// A connection whose first request line's target is percent-encoded where a URI needs it.
pub(crate) struct RequestLine<I> {
    inner: I,
    part: Part,
    /// Bytes read and rewritten, not yet handed on.
    pending: Vec<u8>,
    taken: usize,
}

impl<I> RequestLine<I> {
    pub(crate) fn new(inner: I) -> Self {
        Self {
            inner,
            part: Part::Method,
            pending: Vec::new(),
            taken: 0,
        }
    }

    /// Rewrites `bytes` as the line goes on.
    fn rewrite(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            match self.part {
                Part::Done => self.pending.push(byte),
                Part::Method => {
                    if byte == b' ' {
                        self.part = Part::Target;
                    }
                    self.pending.push(byte);
                }
                Part::Target => match byte {
                    b' ' | b'\r' => {
                        self.part = Part::Version;
                        self.pending.push(byte);
                    }
                    b'\n' => {
                        self.part = Part::Done;
                        self.pending.push(byte);
                    }
                    b'"' | b'<' | b'>' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}' | 0x80.. => {
                        const HEX: &[u8; 16] = b"0123456789ABCDEF";
                        self.pending.extend_from_slice(&[
                            b'%',
                            HEX[usize::from(byte >> 4)],
                            HEX[usize::from(byte & 0xf)],
                        ]);
                    }
                    _ => self.pending.push(byte),
                },
                Part::Version => {
                    if byte == b'\n' {
                        self.part = Part::Done;
                    }
                    self.pending.push(byte);
                }
            }
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for RequestLine<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.taken < this.pending.len() {
                let n = (this.pending.len() - this.taken).min(buf.remaining());
                buf.put_slice(&this.pending[this.taken..this.taken + n]);
                this.taken += n;
                if this.taken == this.pending.len() {
                    this.pending = Vec::new();
                    this.taken = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.part == Part::Done {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            let mut chunk = [0u8; 1024];
            let mut read = ReadBuf::new(&mut chunk);
            std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            let filled = read.filled().len();
            if filled == 0 {
                return Poll::Ready(Ok(()));
            }
            this.rewrite(&chunk[..filled]);
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for RequestLine<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt as _;

    use super::RequestLine;

    async fn read_all(input: &[u8], chunk: usize) -> Vec<u8> {
        let (mut client, server) = tokio::io::duplex(64);
        let input = input.to_vec();
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt as _;
            for piece in input.chunks(chunk) {
                let _ = client.write_all(piece).await;
            }
        });
        let mut out = Vec::new();
        let _ = RequestLine::new(server).read_to_end(&mut out).await;
        let _ = writer.await;
        out
    }

    /// The target of the first line is encoded where a URI needs it, however the bytes
    /// arrive; the rest of the line, the headers and what follows are as they came.
    #[tokio::test]
    async fn the_first_request_target_is_encoded_and_nothing_else() {
        let input = "GET /compute/v1/images?filter=name=\"x ü\"&a={b}|c HTTP/1.1\r\nX-Q: \"kept\"\r\n\r\nGET /?\"y\" HTTP/1.1\r\n";
        let input = input.replacen("x ü", "x\u{fc}", 1);
        for chunk in [1, 2, 3, 7, 64] {
            let out = read_all(input.as_bytes(), chunk).await;
            assert_eq!(
                String::from_utf8_lossy(&out),
                "GET /compute/v1/images?filter=name=%22x%C3%BC%22&a=%7Bb%7D%7Cc HTTP/1.1\r\nX-Q: \"kept\"\r\n\r\nGET /?\"y\" HTTP/1.1\r\n",
                "chunks of {chunk}"
            );
        }
        // HTTP/2's preface passes as it is.
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04";
        assert_eq!(read_all(preface, 5).await, preface);
    }
}
