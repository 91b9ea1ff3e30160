//! The TCP prober: one non-blocking connect per probe to `address:port`, waited for at
//! most the probe's timeout, then closed without a byte sent. A pinned TCP target rides
//! its tunnel as an ICMP one does, by the route the datacenter advertises for its address.
//!
//! Outcomes, as the pinger loop sees them ([`Echo`]) and what the service gets
//! ([`ServiceAnswer`], through [`Prober::take_service_answer`]):
//! - the handshake completes: a reply after the handshake time; the service is open, with
//!   the connection's `TCP_MAXSEG`;
//! - the host resets it (`ECONNREFUSED`): a reply too, since the host and the path
//!   answered; the service is refused;
//! - nothing within the timeout: a timeout, a loss as for ICMP;
//! - a router's ICMP error (`EHOSTUNREACH`, `ENETUNREACH`...: the socket has `IP_RECVERR`
//!   so the error queue says which router and which code): an ICMP error, a loss. A port
//!   unreachable from a router other than the target is that too, not a refusal.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::messages::{send_error_text, IcmpErrorKind, ServiceAnswer};
use crate::probe::icmp_error::recv_icmp_origin;
use crate::probe::pinger::{Echo, Prober};
use crate::probe::syscall::{get_int_option, set_int_option};

/// Probes one TCP service.
pub struct TcpProber {
    destination: SocketAddrV4,
    /// What the last probe found of the service, until the pinger takes it.
    answer: Option<ServiceAnswer>,
}

impl TcpProber {
    /// Probes `address:port`.
    pub fn new(address: Ipv4Addr, port: u16) -> Self {
        Self {
            destination: SocketAddrV4::new(address, port),
            answer: None,
        }
    }

    fn open(&self) -> io::Result<Socket> {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
        socket.set_nonblocking(true)?;
        // A router's ICMP error then lands in the error queue with its address and code.
        set_int_option(socket.as_fd(), libc::SOL_IP, libc::IP_RECVERR, 1)?;
        Ok(socket)
    }

    /// Connects and waits for the outcome; `Ok` when the handshake completed.
    async fn connect(
        &self,
        socket: Socket,
        timeout: Duration,
    ) -> (Option<TcpStream>, Result<(), io::Error>) {
        match socket.connect(&SocketAddr::V4(self.destination).into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return (None, Err(e)),
        }
        let stream = match TcpStream::from_std(std::net::TcpStream::from(socket)) {
            Ok(s) => s,
            Err(e) => return (None, Err(e)),
        };
        let waited = tokio::time::timeout(timeout, established(&stream)).await;
        match waited {
            Ok(result) => (Some(stream), result),
            Err(_) => (Some(stream), Err(io::ErrorKind::TimedOut.into())),
        }
    }

    /// Turns a failed connect into the probe's outcome.
    fn failed(
        &mut self,
        seq: u16,
        rtt: Duration,
        stream: Option<&TcpStream>,
        e: io::Error,
    ) -> Echo {
        if e.kind() == io::ErrorKind::TimedOut {
            return Echo::Timeout;
        }
        let icmp = stream.and_then(|s| recv_icmp_origin(s.as_fd()));
        let target = *self.destination.ip();
        match (e.raw_os_error(), icmp) {
            // A reset, or a port unreachable from the target itself: the host answered.
            (Some(libc::ECONNREFUSED), None) => self.refused(seq, rtt),
            (Some(libc::ECONNREFUSED), Some((from, _))) if from.is_none_or(|f| f == target) => {
                self.refused(seq, rtt)
            }
            (_, Some((from, kind))) => Echo::IcmpError {
                seq,
                from: from.unwrap_or(target).into(),
                kind,
            },
            (Some(errno @ (libc::EHOSTUNREACH | libc::ENETUNREACH)), None) if stream.is_some() => {
                // Asynchronous, yet no ICMP queued: the kernel's own (a neighbour that
                // never answered ARP), reported as an unreachable from the target.
                let code = if errno == libc::ENETUNREACH { 0 } else { 1 };
                Echo::IcmpError {
                    seq,
                    from: target.into(),
                    kind: IcmpErrorKind::Unreachable { code },
                }
            }
            (_, None) => Echo::SendFailed(send_error_text(&e)),
        }
    }

    fn refused(&mut self, seq: u16, rtt: Duration) -> Echo {
        self.answer = Some(ServiceAnswer::Refused);
        Echo::Reply { seq, rtt }
    }
}

/// Waits until the connect has an outcome: `Ok` once the peer address is known (the
/// handshake completed), the socket's error (`SO_ERROR`) if it failed.
async fn established(stream: &TcpStream) -> io::Result<()> {
    loop {
        stream.writable().await?;
        if let Some(e) = stream.take_error()? {
            return Err(e);
        }
        match stream.peer_addr() {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                // Woken before the outcome: clear the readiness and wait again.
                let _ = stream.try_io(Interest::WRITABLE, || {
                    Err::<(), _>(io::ErrorKind::WouldBlock.into())
                });
            }
            Err(e) => return Err(e),
        }
    }
}

impl Prober for TcpProber {
    async fn probe(&mut self, seq: u16, timeout: Duration) -> Echo {
        self.answer = None;
        let socket = match self.open() {
            Ok(s) => s,
            Err(e) => return Echo::SendFailed(send_error_text(&e)),
        };
        let started = Instant::now();
        let (stream, result) = self.connect(socket, timeout).await;
        let rtt = started.elapsed();
        match (result, stream) {
            (Ok(()), Some(stream)) => {
                let mss = get_int_option(stream.as_fd(), libc::IPPROTO_TCP, libc::TCP_MAXSEG)
                    .ok()
                    .and_then(|m| u32::try_from(m).ok());
                self.answer = Some(ServiceAnswer::Open { mss });
                // Dropped here: a close without payload (FIN), as a health check does.
                Echo::Reply { seq, rtt }
            }
            (Ok(()), None) => Echo::Reply { seq, rtt },
            (Err(e), stream) => self.failed(seq, rtt, stream.as_ref(), e),
        }
    }

    async fn reopen(&mut self) -> Result<(), String> {
        // Every probe has a socket of its own already.
        Ok(())
    }

    fn take_service_answer(&mut self) -> Option<ServiceAnswer> {
        self.answer.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_listener_answers_open_with_an_mss_and_a_closed_port_refused() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut open = TcpProber::new(Ipv4Addr::LOCALHOST, port);
        match open.probe(7, Duration::from_secs(1)).await {
            Echo::Reply { seq: 7, rtt } => assert!(rtt < Duration::from_millis(100), "{rtt:?}"),
            other => panic!("open port: {other:?}"),
        }
        match open.take_service_answer() {
            // Loopback's MTU is 65536: the MSS is far above Ethernet's 1460.
            Some(ServiceAnswer::Open { mss: Some(mss) }) => assert!(mss > 1000, "{mss}"),
            other => panic!("open port: {other:?}"),
        }
        assert_eq!(open.take_service_answer(), None, "taken once");

        drop(listener);
        let mut closed = TcpProber::new(Ipv4Addr::LOCALHOST, port);
        assert!(matches!(
            closed.probe(8, Duration::from_secs(1)).await,
            Echo::Reply { seq: 8, .. }
        ));
        assert_eq!(closed.take_service_answer(), Some(ServiceAnswer::Refused));
    }
}
