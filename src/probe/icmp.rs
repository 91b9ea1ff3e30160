//! ICMP sockets: opening DGRAM or RAW as configured (and saying which one the daemon
//! really got), sizing the receive buffer, one receive task per socket that hands each
//! reply to the probe waiting for it, and the [`Prober`] that pings one target.
//!
//! Round-trip times are measured the way `ping(8)` does: from just before the request is
//! sent to the kernel's receive timestamp of the reply (`SO_TIMESTAMPNS`), so that the
//! time the reply waits for the receive task is not counted. surge-ping decodes the
//! packets; its own client stamps the send after the send call returns and the reply in
//! user space, which on a fast path under-reads by the whole send path.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use surge_ping::Icmpv4Packet;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use tracing::{debug, info};

use crate::config::SocketKind;
use crate::messages::IcmpErrorKind;
use crate::probe::echo_packet::write_echo_request;
use crate::probe::icmp_error::{error_kind, raw_next_hop_mtu, recv_queued, QueuedError};
use crate::probe::pinger::{Echo, Prober};
use crate::probe::syscall::{recv_with_timestamp, set_int_option, Datagram};

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
    /// Whether the sockets send with DF set whatever path MTU the kernel has cached.
    pmtu_probe: bool,
    current: Mutex<SocketGeneration>,
}

struct SocketGeneration {
    number: u64,
    socket: Arc<EchoSocket>,
    opened: Instant,
}

/// The least time between two socket generations.
const MIN_GENERATION_AGE: Duration = Duration::from_secs(1);

impl IcmpSockets {
    /// Opens the first socket as `kind` asks, sized for `targets` targets. Must be called
    /// inside the tokio runtime (the socket's receive task is spawned on it).
    pub fn open(kind: SocketKind, targets: usize) -> Result<Arc<Self>, IcmpOpenError> {
        let wanted = match kind {
            SocketKind::Auto | SocketKind::Dgram => SocketType::Dgram,
            SocketKind::Raw => SocketType::Raw,
        };
        // Replies arrive spread over the interval, but a burst (a tunnel coming back) can
        // bring one per target at once; the kernel drops what does not fit the buffer.
        let receive_buffer = (targets * 2048).clamp(1 << 20, 16 << 20);
        let first = EchoSocket::open(wanted, receive_buffer, false)
            .or_else(|_| EchoSocket::open(wanted.other(), receive_buffer, false));
        let socket = first.map_err(|cause| IcmpOpenError::Unavailable {
            cause,
            gid: read_gid(),
            range: std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range")
                .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
                .unwrap_or_else(|_| "unreadable".into()),
        })?;
        let socket_type = socket.shared.socket_type;
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
        let effective = socket2::SockRef::from(&socket.shared.udp)
            .recv_buffer_size()
            .unwrap_or(0);
        info!(
            socket = %socket_type,
            requested = match kind {
                SocketKind::Auto => "auto",
                SocketKind::Dgram => "dgram",
                SocketKind::Raw => "raw",
            },
            receive_buffer_bytes = effective,
            kernel_timestamps = socket.shared.kernel_timestamps,
            "ICMP socket open"
        );
        Ok(Arc::new(Self {
            socket_type,
            receive_buffer: effective,
            pmtu_probe: false,
            current: Mutex::new(SocketGeneration {
                number: 0,
                socket,
                opened: Instant::now(),
            }),
        }))
    }

    /// Opens a pool of this type whose sockets send path-MTU probes: DF set, and sizes
    /// over the path MTU the kernel has cached still sent (`IP_PMTUDISC_PROBE`).
    pub fn open_path_mtu(&self) -> io::Result<Arc<Self>> {
        let socket = EchoSocket::open(self.socket_type, 1 << 20, true)?;
        Ok(Arc::new(Self {
            socket_type: self.socket_type,
            receive_buffer: 1 << 20,
            pmtu_probe: true,
            current: Mutex::new(SocketGeneration {
                number: 0,
                socket,
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

    fn current(&self) -> (u64, Arc<EchoSocket>) {
        let g = self.current.lock().expect("socket pool lock");
        (g.number, g.socket.clone())
    }

    /// Returns a socket newer than generation `have`, opening one if none is.
    fn newer_than(&self, have: u64) -> io::Result<(u64, Arc<EchoSocket>)> {
        let mut g = self.current.lock().expect("socket pool lock");
        if g.number > have || g.opened.elapsed() < MIN_GENERATION_AGE {
            return Ok((g.number, g.socket.clone()));
        }
        let socket = EchoSocket::open(self.socket_type, self.receive_buffer, self.pmtu_probe)?;
        *g = SocketGeneration {
            number: g.number + 1,
            socket,
            opened: Instant::now(),
        };
        Ok((g.number, g.socket.clone()))
    }

    /// Builds the prober for one target.
    pub fn prober(
        self: &Arc<Self>,
        address: Ipv4Addr,
        payload_bytes: u32,
        ident: u16,
    ) -> EchoProber {
        let (generation, socket) = self.current();
        EchoProber {
            sockets: Arc::clone(self),
            generation,
            socket,
            address,
            ident,
            request: vec![0u8; 8 + payload_bytes as usize],
            timed_out: VecDeque::new(),
            late: Vec::new(),
            local_limit: None,
        }
    }
}

impl SocketType {
    fn other(self) -> Self {
        match self {
            SocketType::Dgram => SocketType::Raw,
            SocketType::Raw => SocketType::Dgram,
        }
    }
}

/// Which request a packet answers: target, identifier (0 on DGRAM sockets, where the
/// kernel owns it and delivers only this socket's replies) and sequence number.
type Key = (Ipv4Addr, u16, u16);

/// What came back for a request: its echo reply, or a router's ICMP error quoting it.
enum Answer {
    Reply,
    Error {
        /// The router that sent the error.
        from: Ipv4Addr,
        kind: IcmpErrorKind,
    },
}

/// A reply or error as the receive task saw it.
struct Arrival {
    /// The sequence number it answers.
    seq: u16,
    answer: Answer,
    /// When the kernel received it (`SO_TIMESTAMPNS`, wall clock), if it said.
    kernel_time: Option<SystemTime>,
    /// When the receive task read it.
    read_at: Instant,
}

struct Waiter {
    id: u64,
    reply: oneshot::Sender<Arrival>,
}

/// What the socket and its receive task share.
struct ReceiveState {
    udp: UdpSocket,
    socket_type: SocketType,
    kernel_timestamps: bool,
    waiters: Mutex<HashMap<Key, Waiter>>,
    next_waiter: AtomicU64,
    /// The path MTU the kernel gave with its last local `EMSGSIZE` per target (DGRAM).
    local_mtu: Mutex<HashMap<Ipv4Addr, u32>>,
}

/// One ICMP socket and the task that reads it; the task stops when the socket goes.
pub struct EchoSocket {
    shared: Arc<ReceiveState>,
    receiver: tokio::task::JoinHandle<()>,
}

impl Drop for EchoSocket {
    fn drop(&mut self) {
        self.receiver.abort();
    }
}

impl EchoSocket {
    fn open(
        socket_type: SocketType,
        receive_buffer: usize,
        pmtu_probe: bool,
    ) -> io::Result<Arc<Self>> {
        let kind = match socket_type {
            SocketType::Dgram => socket2::Type::DGRAM,
            SocketType::Raw => socket2::Type::RAW,
        };
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, kind, Some(socket2::Protocol::ICMPV4))?;
        socket.set_nonblocking(true)?;
        // Past `net.core.rmem_max` (212 KiB by default) only with CAP_NET_ADMIN, through
        // SO_RCVBUFFORCE; without it the kernel caps the plain option, which is not fatal.
        let buffer = libc::c_int::try_from(receive_buffer).unwrap_or(libc::c_int::MAX);
        if set_int_option(
            socket.as_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            buffer,
        )
        .is_err()
        {
            let _ = socket.set_recv_buffer_size(receive_buffer);
        }
        let kernel_timestamps =
            set_int_option(socket.as_fd(), libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1).is_ok();
        // A ping socket hears of routers' ICMP errors only through its error queue, and
        // only with IP_RECVERR (net/ipv4/ping.c); a raw socket reads them as packets.
        if socket_type == SocketType::Dgram {
            set_int_option(socket.as_fd(), libc::SOL_IP, libc::IP_RECVERR, 1)?;
        }
        if pmtu_probe {
            let probe = libc::IP_PMTUDISC_PROBE;
            set_int_option(socket.as_fd(), libc::SOL_IP, libc::IP_MTU_DISCOVER, probe)?;
        }
        let udp = UdpSocket::from_std(std::net::UdpSocket::from(socket))?;
        let shared = Arc::new(ReceiveState {
            udp,
            socket_type,
            kernel_timestamps,
            waiters: Mutex::new(HashMap::new()),
            next_waiter: AtomicU64::new(0),
            local_mtu: Mutex::new(HashMap::new()),
        });
        let receiver = tokio::spawn(receive(Arc::clone(&shared)));
        Ok(Arc::new(Self { shared, receiver }))
    }

    fn key(&self, address: Ipv4Addr, ident: u16, seq: u16) -> Key {
        match self.shared.socket_type {
            SocketType::Dgram => (address, 0, seq),
            SocketType::Raw => (address, ident, seq),
        }
    }

    /// Waits for the packet answering `key`; the registration goes when the guard does.
    fn register(&self, key: Key) -> (Registration<'_>, oneshot::Receiver<Arrival>) {
        let (tx, rx) = oneshot::channel();
        let id = self.shared.next_waiter.fetch_add(1, Ordering::Relaxed);
        self.shared
            .waiters
            .lock()
            .expect("waiters lock")
            .insert(key, Waiter { id, reply: tx });
        let registration = Registration {
            shared: &self.shared,
            key,
            id,
            armed: true,
        };
        (registration, rx)
    }
}

impl ReceiveState {
    /// Removes waiter `id` of `key`, unless a later probe has registered under it since.
    fn unregister(&self, key: Key, id: u64) {
        let mut waiters = self.waiters.lock().expect("waiters lock");
        if waiters.get(&key).is_some_and(|w| w.id == id) {
            waiters.remove(&key);
        }
    }

    /// Hands an answer to the probe waiting for `key`.
    fn deliver(&self, key: Key, arrival: Arrival) {
        let waiter = self.waiters.lock().expect("waiters lock").remove(&key);
        match waiter {
            Some(waiter) => {
                let _ = waiter.reply.send(arrival);
            }
            None => debug!(?key, "ICMP packet nobody waits for"),
        }
    }

    /// Acts on one entry of the error queue read at `read_at`.
    fn handle_queued(&self, queued: QueuedError, read_at: Instant) {
        match queued {
            QueuedError::Remote {
                target,
                seq,
                offender,
                kind,
            } => {
                let arrival = Arrival {
                    seq,
                    answer: Answer::Error {
                        from: offender.unwrap_or(target),
                        kind,
                    },
                    kernel_time: None,
                    read_at,
                };
                self.deliver((target, 0, seq), arrival);
            }
            QueuedError::Local { target, errno, mtu } => {
                debug!(%target, errno, mtu, "local ICMP send error");
                if errno == libc::EMSGSIZE {
                    self.local_mtu
                        .lock()
                        .expect("local mtu lock")
                        .insert(target, mtu);
                }
            }
            QueuedError::Ignored => debug!("error queue entry for no echo of ours"),
        }
    }

    /// Reads the error queue until it is empty, without waiting.
    fn drain_queued(&self) {
        while let Ok(queued) = recv_queued(self.udp.as_fd()) {
            self.handle_queued(queued, Instant::now());
        }
    }
}

/// Removes its waiter when dropped (a failed send, a cancelled probe), unless kept.
struct Registration<'a> {
    shared: &'a ReceiveState,
    key: Key,
    id: u64,
    armed: bool,
}

impl Registration<'_> {
    /// Leaves the waiter in place (to catch a late reply); hands back what removes it.
    fn keep(mut self) -> (Key, u64) {
        self.armed = false;
        (self.key, self.id)
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.shared.unregister(self.key, self.id);
        }
    }
}

/// What one read of an ICMP socket gave.
enum Read {
    Datagram(Datagram),
    Queued(QueuedError),
}

/// Reads the socket for as long as it is open, handing each reply or error to its waiter.
async fn receive(shared: Arc<ReceiveState>) {
    let mut buf = vec![0u8; 2048];
    let dgram = shared.socket_type == SocketType::Dgram;
    loop {
        // A queued ICMP error wakes the socket as an error, not as readable.
        let read = shared
            .udp
            .async_io(Interest::READABLE | Interest::ERROR, || {
                if dgram {
                    match recv_queued(shared.udp.as_fd()) {
                        Ok(queued) => return Ok(Read::Queued(queued)),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e),
                    }
                }
                recv_with_timestamp(shared.udp.as_fd(), &mut buf).map(Read::Datagram)
            })
            .await;
        let read_at = Instant::now();
        let datagram = match read {
            Ok(Read::Datagram(datagram)) => datagram,
            Ok(Read::Queued(queued)) => {
                shared.handle_queued(queued, read_at);
                continue;
            }
            // The pending error of an ICMP error whose details wait in the error queue,
            // read on the next turn.
            Err(error) => {
                debug!(%error, "ICMP socket read error");
                continue;
            }
        };
        let kind = match shared.socket_type {
            SocketType::Dgram => socket2::Type::DGRAM,
            SocketType::Raw => socket2::Type::RAW,
        };
        // A RAW socket sees every ICMP packet for this host, the requests it sends to
        // loopback targets included: whatever does not decode as an answer is skipped.
        let bytes = &buf[..datagram.len];
        let Ok(packet) = Icmpv4Packet::decode(bytes, kind, datagram.from, Ipv4Addr::UNSPECIFIED)
        else {
            continue;
        };
        let ident = match shared.socket_type {
            SocketType::Dgram => 0,
            SocketType::Raw => packet.get_identifier().0,
        };
        let seq = packet.get_sequence().0;
        let answer = match packet.get_icmp_type().0 {
            0 => Answer::Reply,
            icmp_type => Answer::Error {
                from: packet.get_source(),
                kind: error_kind(icmp_type, packet.get_icmp_code().0, raw_next_hop_mtu(bytes)),
            },
        };
        let arrival = Arrival {
            seq,
            answer,
            kernel_time: datagram.kernel_time,
            read_at,
        };
        shared.deliver((packet.get_real_dest(), ident, seq), arrival);
    }
}

/// How much later than the monotonic clock's reading a kernel timestamp may put a reply
/// before it counts as a wall-clock step and the monotonic reading is used instead.
const CLOCK_SLACK: Duration = Duration::from_millis(1);

/// The round-trip time of a reply to a request sent at `sent` (monotonic) and `sent_wall`.
///
/// The kernel's receive timestamp is the wall clock; a step of the wall clock between send
/// and receive would show as a negative or inflated time, and then the time the receive
/// task read the reply is used, which is never shorter than the true round trip.
fn round_trip(
    sent: Instant,
    sent_wall: SystemTime,
    kernel_time: Option<SystemTime>,
    read_at: Instant,
) -> Duration {
    let monotonic = read_at.saturating_duration_since(sent);
    match kernel_time.and_then(|k| k.duration_since(sent_wall).ok()) {
        Some(kernel) if kernel <= monotonic + CLOCK_SLACK => kernel,
        _ => monotonic,
    }
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
pub struct EchoProber {
    sockets: Arc<IcmpSockets>,
    generation: u64,
    socket: Arc<EchoSocket>,
    address: Ipv4Addr,
    ident: u16,
    /// The echo request, rewritten in place for each sequence number.
    request: Vec<u8>,
    /// The waiters of the last requests that timed out, left in place: a reply that
    /// turns up meanwhile is a late one (an adaptive timeout gives up on a request well
    /// before the configured timeout, and confirmations follow at once).
    timed_out: VecDeque<TimedOut>,
    /// Late replies seen since [`Prober::late_answers`] was last asked.
    late: Vec<(u16, Duration)>,
    /// Set when the last send failed locally with `EMSGSIZE`: the path MTU this host
    /// knows, if the kernel said (DGRAM sockets).
    local_limit: Option<Option<u32>>,
}

/// A request given up as timed out whose waiter stays, to catch a late reply.
struct TimedOut {
    key: Key,
    id: u64,
    reply: oneshot::Receiver<Arrival>,
    sent: Instant,
    sent_wall: SystemTime,
}

/// How many timed-out requests per target keep their waiters: a burst of confirmations
/// and a few intervals' worth.
const KEPT_TIMED_OUT: usize = 8;

impl EchoProber {
    /// Collects the late replies of timed-out requests; retires those that got one and,
    /// beyond the newest `keep`, the oldest.
    fn retire_timed_out(&mut self, keep: usize) {
        let mut kept = VecDeque::with_capacity(self.timed_out.len());
        let excess = self.timed_out.len().saturating_sub(keep);
        for (i, mut waiter) in self.timed_out.drain(..).enumerate() {
            if let Ok(arrival) = waiter.reply.try_recv() {
                if matches!(arrival.answer, Answer::Reply) {
                    let rtt = round_trip(
                        waiter.sent,
                        waiter.sent_wall,
                        arrival.kernel_time,
                        arrival.read_at,
                    );
                    self.late.push((waiter.key.2, rtt));
                }
                continue;
            }
            if i < excess {
                self.socket.shared.unregister(waiter.key, waiter.id);
            } else {
                kept.push_back(waiter);
            }
        }
        self.timed_out = kept;
    }
}

impl EchoProber {
    /// Makes the following requests IP packets of `ip_bytes` bytes (header included).
    pub fn set_packet_bytes(&mut self, ip_bytes: u32) {
        self.request
            .resize((ip_bytes as usize).saturating_sub(20).max(8), 0);
    }

    /// Returns, once, whether the last send failed locally as over the path MTU this host
    /// knows, with that MTU if the kernel said.
    pub fn take_local_limit(&mut self) -> Option<Option<u32>> {
        self.local_limit.take()
    }

    /// Says why a send failed with `EMSGSIZE`: a local error, nothing left this host. The
    /// kernel queues the MTU it knows before the send returns.
    fn over_local_mtu(&mut self) -> String {
        let shared = &self.socket.shared;
        shared.drain_queued();
        let mtu = shared
            .local_mtu
            .lock()
            .expect("local mtu lock")
            .remove(&self.address);
        let bytes = self.request.len() + 20;
        self.local_limit = Some(mtu);
        match mtu {
            Some(mtu) => format!(
                "local error: a {bytes}-byte packet is over the path MTU of {mtu} bytes this \
                 host knows for {}",
                self.address
            ),
            None => format!(
                "local error: a {bytes}-byte packet is over the path MTU this host knows for {}",
                self.address
            ),
        }
    }
}

impl Drop for EchoProber {
    fn drop(&mut self) {
        self.retire_timed_out(0);
    }
}

impl Prober for EchoProber {
    async fn probe(&mut self, seq: u16, timeout: Duration) -> Echo {
        self.retire_timed_out(KEPT_TIMED_OUT - 1);
        let key = self.socket.key(self.address, self.ident, seq);
        let (registration, mut reply) = self.socket.register(key);
        write_echo_request(&mut self.request, self.ident, seq);
        let to = SocketAddr::new(IpAddr::V4(self.address), 0);
        let sent_wall = SystemTime::now();
        let sent = Instant::now();
        if let Err(error) = self.socket.shared.udp.send_to(&self.request, to).await {
            if error.raw_os_error() == Some(libc::EMSGSIZE) {
                drop(registration);
                return Echo::SendFailed(self.over_local_mtu());
            }
            return Echo::SendFailed(crate::messages::send_error_text(&error));
        }
        let arrival = match tokio::time::timeout(timeout, &mut reply).await {
            Ok(Ok(arrival)) => arrival,
            Ok(Err(_)) => return Echo::SendFailed("the ICMP socket closed".into()),
            Err(_) => {
                let (key, id) = registration.keep();
                self.timed_out.push_back(TimedOut {
                    key,
                    id,
                    reply,
                    sent,
                    sent_wall,
                });
                return Echo::Timeout;
            }
        };
        match arrival.answer {
            Answer::Reply => Echo::Reply {
                seq: arrival.seq,
                rtt: round_trip(sent, sent_wall, arrival.kernel_time, arrival.read_at),
            },
            Answer::Error { from, kind } => Echo::IcmpError {
                seq: arrival.seq,
                from: IpAddr::V4(from),
                kind,
            },
        }
    }

    fn late_answers(&mut self) -> Vec<(u16, Duration)> {
        self.retire_timed_out(KEPT_TIMED_OUT);
        std::mem::take(&mut self.late)
    }

    async fn reopen(&mut self) -> Result<(), String> {
        let (generation, socket) = self
            .sockets
            .newer_than(self.generation)
            .map_err(|e| e.to_string())?;
        if generation != self.generation {
            self.retire_timed_out(0);
            // A new identifier too: with RAW sockets the identifier is ours, and a flow
            // wedged in a firewall is keyed by it (with DGRAM the kernel picks a new one).
            self.ident = self
                .ident
                .wrapping_add(0x4000 | (generation as u16).wrapping_mul(7919));
            self.socket = socket;
            self.generation = generation;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
