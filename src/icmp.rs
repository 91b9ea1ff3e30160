//! ICMP sockets through surge-ping: opening DGRAM or RAW as configured (and saying which
//! one the daemon really got), sizing the receive buffer, and the [`Prober`] that pings
//! one target over a shared socket.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use surge_ping::{Client, IcmpPacket, PingIdentifier, PingSequence, Pinger, SurgeError};
use tracing::info;

use crate::config::SocketKind;
use crate::health::IcmpErrorKind;
use crate::pinger::{Echo, Prober};

/// The ICMP socket type actually in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketType {
    /// Unprivileged ICMP (`SOCK_DGRAM`, `net.ipv4.ping_group_range`).
    Dgram,
    /// Raw ICMP (`CAP_NET_RAW`).
    Raw,
}

impl SocketType {
    /// Returns `dgram` or `raw`.
    pub fn label(self) -> &'static str {
        match self {
            SocketType::Dgram => "dgram",
            SocketType::Raw => "raw",
        }
    }
}

impl fmt::Display for SocketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Why no usable ICMP socket could be opened.
#[derive(Debug, thiserror::Error)]
pub enum IcmpOpenError {
    /// Neither socket type could be opened.
    #[error(
        "cannot open an ICMP socket: {cause}. To ping without root, either allow this \
         process's group (gid {gid}) unprivileged ICMP: \
         `sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"` (now \"{range}\"), or grant \
         CAP_NET_RAW (`setcap cap_net_raw+ep` on the binary, or AmbientCapabilities=CAP_NET_RAW \
         in the systemd unit)"
    )]
    Unavailable {
        /// What the OS said.
        cause: std::io::Error,
        /// This process's group.
        gid: String,
        /// The current `net.ipv4.ping_group_range`.
        range: String,
    },
    /// The configured type is not available, though the other one is.
    #[error("probe.socket = \"{wanted}\" but only {got} ICMP sockets can be opened here: {hint}")]
    WrongType {
        /// What the config asks for.
        wanted: &'static str,
        /// What could be opened.
        got: SocketType,
        /// What to change.
        hint: &'static str,
    },
}

/// The shared ICMP socket and its replacements.
///
/// All targets share one socket (one receive task). When a pinger asks for a fresh socket
/// after consecutive timeouts, the pool opens a new generation at most once per second;
/// pingers that ask within that second move to the same new socket, so an outage that
/// times out every target does not open a socket per target.
pub struct IcmpSockets {
    socket_type: SocketType,
    receive_buffer: usize,
    current: Mutex<Generation>,
}

struct Generation {
    number: u64,
    client: Client,
    opened: Instant,
}

/// The least time between two socket generations.
const MIN_GENERATION_AGE: Duration = Duration::from_secs(1);

impl IcmpSockets {
    /// Opens the first socket as `kind` asks, sized for `targets` targets. Must be called
    /// inside the tokio runtime (the socket's receive task is spawned on it).
    pub fn open(kind: SocketKind, targets: usize) -> Result<Arc<Self>, IcmpOpenError> {
        let hint = match kind {
            SocketKind::Auto | SocketKind::Dgram => socket2::Type::DGRAM,
            SocketKind::Raw => socket2::Type::RAW,
        };
        // Replies arrive spread over the interval, but a burst (a tunnel coming back) can
        // bring one per target at once; the kernel drops what does not fit the buffer.
        let receive_buffer = (targets * 2048).clamp(1 << 20, 16 << 20);
        let client =
            open_client(hint, receive_buffer).map_err(|cause| IcmpOpenError::Unavailable {
                cause,
                gid: read_gid(),
                range: std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range")
                    .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
                    .unwrap_or_else(|_| "unreadable".into()),
            })?;
        let socket_type = if client.get_socket().get_type() == socket2::Type::RAW {
            SocketType::Raw
        } else {
            SocketType::Dgram
        };
        match (kind, socket_type) {
            (SocketKind::Dgram, SocketType::Raw) => {
                return Err(IcmpOpenError::WrongType {
                    wanted: "dgram",
                    got: SocketType::Raw,
                    hint: "allow this group in net.ipv4.ping_group_range, or set socket = \"auto\"",
                })
            }
            (SocketKind::Raw, SocketType::Dgram) => {
                return Err(IcmpOpenError::WrongType {
                    wanted: "raw",
                    got: SocketType::Dgram,
                    hint: "grant CAP_NET_RAW, or set socket = \"auto\"",
                })
            }
            (SocketKind::Auto | SocketKind::Dgram | SocketKind::Raw, _) => {}
        }
        let effective = recv_buffer_size(&client).unwrap_or(0);
        info!(
            socket = %socket_type,
            requested = ?kind,
            receive_buffer_bytes = effective,
            "ICMP socket open"
        );
        Ok(Arc::new(Self {
            socket_type,
            receive_buffer: effective,
            current: Mutex::new(Generation {
                number: 0,
                client,
                opened: Instant::now(),
            }),
        }))
    }

    /// Returns the socket type in use.
    pub fn socket_type(&self) -> SocketType {
        self.socket_type
    }

    /// Returns the receive buffer the kernel granted, in bytes.
    pub fn receive_buffer(&self) -> usize {
        self.receive_buffer
    }

    fn current(&self) -> (u64, Client) {
        let g = self.current.lock().expect("socket pool lock");
        (g.number, g.client.clone())
    }

    /// Returns a socket newer than generation `have`, opening one if none is.
    fn newer_than(&self, have: u64) -> std::io::Result<(u64, Client)> {
        let mut g = self.current.lock().expect("socket pool lock");
        if g.number > have || g.opened.elapsed() < MIN_GENERATION_AGE {
            return Ok((g.number, g.client.clone()));
        }
        let hint = match self.socket_type {
            SocketType::Dgram => socket2::Type::DGRAM,
            SocketType::Raw => socket2::Type::RAW,
        };
        let client = open_client(hint, self.receive_buffer)?;
        *g = Generation {
            number: g.number + 1,
            client,
            opened: Instant::now(),
        };
        Ok((g.number, g.client.clone()))
    }

    /// Builds the prober for one target.
    pub fn prober(
        self: &Arc<Self>,
        address: Ipv4Addr,
        payload_bytes: u32,
        ident: u16,
    ) -> SurgeProber {
        let (generation, client) = self.current();
        let pinger = pinger(&client, address, ident);
        SurgeProber {
            sockets: Arc::clone(self),
            generation,
            client,
            pinger,
            address,
            ident,
            payload: vec![0u8; payload_bytes as usize],
        }
    }
}

fn pinger(client: &Client, address: Ipv4Addr, ident: u16) -> Pinger {
    // `Client::pinger` is async in signature only; it does no I/O.
    poll_ready_now(client.pinger(IpAddr::V4(address), PingIdentifier(ident)))
}

/// Polls a future that completes without waiting (surge-ping's `pinger` constructor).
fn poll_ready_now<F: std::future::Future>(fut: F) -> F::Output {
    use std::task::{Context, Poll, Waker};
    let mut fut = std::pin::pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => unreachable!("Client::pinger does not wait"),
    }
}

fn open_client(hint: socket2::Type, receive_buffer: usize) -> std::io::Result<Client> {
    let config = surge_ping::Config::builder().sock_type_hint(hint).build();
    let client = Client::new(&config)?;
    // A smaller buffer than asked for is not fatal: the kernel caps it at
    // net.core.rmem_max for processes without CAP_NET_ADMIN.
    let _ = set_recv_buffer_size(&client, receive_buffer);
    Ok(client)
}

/// Borrows the client's socket for socket2's option calls.
#[allow(unsafe_code)]
fn with_socket<R>(client: &Client, f: impl FnOnce(socket2::SockRef<'_>) -> R) -> R {
    use std::os::fd::BorrowedFd;
    let socket = client.get_socket();
    let fd = socket.get_native_sock();
    // SAFETY: `socket` holds the descriptor open for the whole borrow, which ends with `f`.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    f(socket2::SockRef::from(&borrowed))
}

/// Sets the receive buffer. Past `net.core.rmem_max` (212 KiB by default) only with
/// CAP_NET_ADMIN, through SO_RCVBUFFORCE; without it the kernel caps the plain option.
#[allow(unsafe_code)]
fn set_recv_buffer_size(client: &Client, bytes: usize) -> std::io::Result<()> {
    let socket = client.get_socket();
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: `socket` keeps the descriptor open for the call, and the option value is a
    // c_int that lives on the stack for its whole duration.
    let forced = unsafe {
        libc::setsockopt(
            socket.get_native_sock(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if forced == 0 {
        return Ok(());
    }
    with_socket(client, |s| s.set_recv_buffer_size(bytes))
}

fn recv_buffer_size(client: &Client) -> std::io::Result<usize> {
    with_socket(client, |s| s.recv_buffer_size())
}

fn read_gid() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Gid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Pings one target over the shared socket.
pub struct SurgeProber {
    sockets: Arc<IcmpSockets>,
    generation: u64,
    // surge-ping closes the socket when its last `Client` goes: this one keeps it open.
    #[allow(dead_code)]
    client: Client,
    pinger: Pinger,
    address: Ipv4Addr,
    ident: u16,
    payload: Vec<u8>,
}

impl Prober for SurgeProber {
    async fn probe(&mut self, seq: u16, timeout: Duration) -> Echo {
        self.pinger.timeout(timeout);
        match self.pinger.ping(PingSequence(seq), &self.payload).await {
            Ok((IcmpPacket::V4(packet), rtt)) => {
                let seq = packet.get_sequence().0;
                let icmp_type = packet.get_icmp_type().0;
                let code = packet.get_icmp_code().0;
                let kind = match icmp_type {
                    0 => return Echo::Reply { seq, rtt },
                    3 => IcmpErrorKind::Unreachable { code },
                    11 => IcmpErrorKind::TimeExceeded,
                    _ => IcmpErrorKind::Other { icmp_type, code },
                };
                Echo::IcmpError {
                    seq,
                    from: IpAddr::V4(packet.get_source()),
                    kind,
                }
            }
            Ok((IcmpPacket::V6(_), _)) => Echo::SendFailed("unexpected ICMPv6 packet".into()),
            Err(SurgeError::Timeout { .. }) => Echo::Timeout,
            Err(SurgeError::IOError(e)) => Echo::SendFailed(e.to_string()),
            Err(e) => Echo::SendFailed(e.to_string()),
        }
    }

    async fn reopen(&mut self) -> Result<(), String> {
        let (generation, client) = self
            .sockets
            .newer_than(self.generation)
            .map_err(|e| e.to_string())?;
        if generation != self.generation {
            // A new identifier too: with RAW sockets the identifier is ours, and a flow
            // wedged in a firewall is keyed by it (with DGRAM the kernel picks a new one).
            self.ident = self
                .ident
                .wrapping_add(0x4000 | (generation as u16).wrapping_mul(7919));
            self.pinger = pinger(&client, self.address, self.ident);
            self.client = client;
            self.generation = generation;
        }
        Ok(())
    }
}
