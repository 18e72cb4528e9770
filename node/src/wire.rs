//! Bytes on the wire, by transport: `vecino_transport_wire_bytes_sent_total{transport}` and
//! `vecino_transport_wire_bytes_received_total{transport}`, beside the frame accounting of
//! [`crate::transport`] (vecino frames and their length prefixes only).
//!
//! Each transport is counted as low as this process can reach, and the two do not reach the
//! same depth:
//!
//! - **`tcp`: at the socket, plus modelled TCP/IP headers.** A counting wrapper sits between
//!   libp2p-tcp's stream and noise, so every byte the kernel took in a `write` or gave in a
//!   `read` is counted exactly: the noise handshake, noise framing (2-byte length and 16-byte
//!   tag per frame), yamux headers and window updates, multistream-select, identify, libp2p
//!   ping and the vecino frames. No socket call shows the segments those bytes travel in, so
//!   their headers are modelled ([`TcpHeaders`]): 52 B a segment over IPv4 (20 IP + 20 TCP +
//!   12 of the timestamp option, on by default on Linux), 72 B over IPv6; one segment per
//!   started [`TCP_MSS`] bytes of each write or read, and one acknowledgement per started two
//!   segments of each read (sent) or write (received). Not counted: the SYN and FIN
//!   exchanges (about 0.4 kB a connection), retransmissions, window probes, and link-layer
//!   framing (Ethernet's 38 B a frame: these are IP-layer bytes).
//! - **`quic`: at the streams only, so a lower bound.** libp2p-quic keeps its quinn endpoint,
//!   socket and connection statistics private (`libp2p_quic::Connection` exposes none, and its
//!   `Provider` cannot supply the quinn runtime that wraps the UDP socket), so the datagrams
//!   themselves cannot be counted here. What is counted is every byte written to or read from a
//!   QUIC stream (a counting wrapper around the connection's stream muxer): multistream-select,
//!   identify, ping and the vecino frames. Not counted: QUIC packet headers and frame headers,
//!   AEAD tags (16 B a packet), ACK frames, PING keep-alives (every 5 s of silence on a
//!   connection), the TLS handshake, MTU probes, and the 28 B (IPv4) or 48 B (IPv6) of UDP and
//!   IP header of every datagram. `figures mesh --nft` measures that gap on loopback.
//!
//! Checked against the kernel (nftables counters on `lo`, IP bytes by port) over the idle
//! minute of a 20-peer `figures mesh`, twice: the `tcp` series read 1.05 and 1.01 times what
//! nftables counted, the `quic` series 0.17 and 0.16 times (QUIC's own bytes are five times its
//! streams' when the streams carry small heartbeat frames).
//!
//! libp2p's own bandwidth accounting (`libp2p-metrics`, `SwarmBuilder::with_bandwidth_metrics`)
//! is not used: it wraps the muxer's substreams, after noise and yamux have been taken off, so
//! for TCP it counts what the `quic` series counts here for QUIC, and nothing below.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::io::{IoSlice, IoSliceMut};
use futures::{AsyncRead, AsyncWrite};
use libp2p::core::muxing::{StreamMuxer, StreamMuxerEvent};
use metrics::Counter;

/// The TCP maximum segment size the header model assumes: an Ethernet path with timestamps
/// (1500 − 20 − 20 − 12). On loopback the kernel sends larger segments, so for bulk transfers
/// there the model counts more headers than travel; for the small writes of an idle overlay
/// (one segment each) it makes no difference.
pub(crate) const TCP_MSS: u64 = 1448;

/// One direction's counters of one connection's bytes.
#[derive(Debug, Clone)]
struct Meter {
    sent: Counter,
    received: Counter,
}

impl Meter {
    fn new(transport: &'static str) -> Self {
        Meter {
            sent: metrics::counter!("vecino_transport_wire_bytes_sent_total", "transport" => transport),
            received: metrics::counter!(
                "vecino_transport_wire_bytes_received_total",
                "transport" => transport
            ),
        }
    }
}

/// The modelled TCP/IP header bytes of a connection's segments (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TcpHeaders {
    /// IP and TCP header bytes per segment.
    per_segment: u64,
}

impl TcpHeaders {
    /// Headers over IPv4 (`ipv6` false) or IPv6.
    pub(crate) fn new(ipv6: bool) -> Self {
        TcpHeaders { per_segment: if ipv6 { 40 + 20 + 12 } else { 20 + 20 + 12 } }
    }

    /// For `n` payload bytes handed over in one call: (header bytes of the segments that carry
    /// them, header bytes of the acknowledgements that answer them).
    pub(crate) fn of(self, n: u64) -> (u64, u64) {
        if n == 0 {
            return (0, 0);
        }
        let segments = n.div_ceil(TCP_MSS);
        let acks = segments.div_ceil(2);
        (segments * self.per_segment, acks * self.per_segment)
    }
}

/// A TCP stream whose socket bytes (and modelled headers) are counted, under noise.
#[derive(Debug)]
pub(crate) struct CountedTcp<S> {
    inner: S,
    meter: Meter,
    headers: TcpHeaders,
}

impl<S> CountedTcp<S> {
    /// Counts `inner`'s bytes under the `tcp` label; `ipv6` picks the header size.
    pub(crate) fn new(inner: S, ipv6: bool) -> Self {
        CountedTcp { inner, meter: Meter::new("tcp"), headers: TcpHeaders::new(ipv6) }
    }

    fn wrote(&self, n: usize) {
        let (segments, acks) = self.headers.of(n as u64);
        self.meter.sent.increment(n as u64 + segments);
        self.meter.received.increment(acks);
    }

    fn read(&self, n: usize) {
        let (segments, acks) = self.headers.of(n as u64);
        self.meter.received.increment(n as u64 + segments);
        self.meter.sent.increment(acks);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for CountedTcp<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.read(n);
        }
        r
    }

    fn poll_read_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_read_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            self.read(n);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CountedTcp<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.wrote(n);
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            self.wrote(n);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

/// A QUIC connection whose streams' bytes are counted (a lower bound of its wire bytes: see
/// the module docs).
#[derive(Debug)]
pub(crate) struct CountedQuic<M> {
    inner: M,
    meter: Meter,
}

impl<M> CountedQuic<M> {
    /// Counts the bytes of `inner`'s streams under the `quic` label.
    pub(crate) fn new(inner: M) -> Self {
        CountedQuic { inner, meter: Meter::new("quic") }
    }
}

impl<M> StreamMuxer for CountedQuic<M>
where
    M: StreamMuxer + Unpin,
    M::Substream: Unpin,
{
    type Substream = CountedStream<M::Substream>;
    type Error = M::Error;

    fn poll_inbound(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        let meter = self.meter.clone();
        Pin::new(&mut self.inner).poll_inbound(cx).map_ok(|inner| CountedStream { inner, meter })
    }

    fn poll_outbound(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        let meter = self.meter.clone();
        Pin::new(&mut self.inner).poll_outbound(cx).map_ok(|inner| CountedStream { inner, meter })
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<StreamMuxerEvent, Self::Error>> {
        Pin::new(&mut self.inner).poll(cx)
    }
}

/// One stream of a [`CountedQuic`] connection.
#[derive(Debug)]
pub(crate) struct CountedStream<S> {
    inner: S,
    meter: Meter,
}

impl<S: AsyncRead + Unpin> AsyncRead for CountedStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.meter.received.increment(n as u64);
        }
        r
    }

    fn poll_read_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_read_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            self.meter.received.increment(n as u64);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CountedStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.meter.sent.increment(n as u64);
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            self.meter.sent.increment(n as u64);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_headers_one_segment_per_mss_and_one_ack_per_two() {
        let v4 = TcpHeaders::new(false);
        assert_eq!(v4.of(0), (0, 0));
        assert_eq!(v4.of(1), (52, 52));
        assert_eq!(v4.of(TCP_MSS), (52, 52));
        assert_eq!(v4.of(TCP_MSS + 1), (104, 52));
        assert_eq!(v4.of(3 * TCP_MSS), (156, 104));
        assert_eq!(TcpHeaders::new(true).of(10), (72, 72));
    }
}
