//! What an ICMP error says about a probe, decoded the same way whichever socket it came
//! on: from a raw socket's packet (the router's ICMP message quoting our echo), or from a
//! DGRAM ping socket's error queue (`IP_RECVERR`, read with `MSG_ERRQUEUE`), where the
//! kernel hands over a `sock_extended_err` with the ICMP type, code and `ee_info` (the
//! next-hop MTU of a "fragmentation needed"), the offender's address after it, and the
//! quoted echo header as the payload (read the way iputils `ping` does).

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, BorrowedFd};

use crate::messages::IcmpErrorKind;

/// `ICMP_DEST_UNREACH` and its code "fragmentation needed and DF set".
const DEST_UNREACH: u8 = 3;
const FRAG_NEEDED: u8 = 4;
const TIME_EXCEEDED: u8 = 11;
const ECHO_REQUEST: u8 = 8;

/// Returns the kind of an ICMP error from its type, code and the next-hop MTU it carries
/// (0 when it carries none).
pub fn error_kind(icmp_type: u8, code: u8, next_hop_mtu: u32) -> IcmpErrorKind {
    match (icmp_type, code) {
        (DEST_UNREACH, FRAG_NEEDED) => IcmpErrorKind::FragmentationNeeded { mtu: next_hop_mtu },
        (DEST_UNREACH, code) => IcmpErrorKind::Unreachable { code },
        (TIME_EXCEEDED, _) => IcmpErrorKind::TimeExceeded,
        (icmp_type, code) => IcmpErrorKind::Other { icmp_type, code },
    }
}

/// Returns the next-hop MTU of a raw IPv4 packet holding an ICMP "fragmentation needed"
/// (RFC 1191: the low 16 bits of the ICMP header's second word), or 0.
pub fn raw_next_hop_mtu(ip_packet: &[u8]) -> u32 {
    let Some(&first) = ip_packet.first() else {
        return 0;
    };
    let icmp = usize::from(first & 0x0f) * 4;
    match ip_packet.get(icmp..icmp + 8) {
        Some(h) if h[0] == DEST_UNREACH && h[1] == FRAG_NEEDED => {
            u32::from(u16::from_be_bytes([h[6], h[7]]))
        }
        _ => 0,
    }
}

/// One entry of a ping socket's error queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueuedError {
    /// A router's ICMP error quoting echo request `seq` to `target`.
    Remote {
        /// The probe's destination (from the quoted IP header).
        target: Ipv4Addr,
        /// The quoted echo's sequence number.
        seq: u16,
        /// The router that sent the error, when the kernel says.
        offender: Option<Ipv4Addr>,
        /// What kind of error.
        kind: IcmpErrorKind,
    },
    /// An error this host raised itself before sending, such as `EMSGSIZE` for a packet
    /// over the path MTU the kernel knows for `target` (`mtu`, 0 if none).
    Local {
        /// The destination of the send that failed.
        target: Ipv4Addr,
        /// The errno.
        errno: i32,
        /// The MTU the kernel knows (`ee_info`).
        mtu: u32,
    },
    /// Something else: an error for a packet that is not one of our echoes.
    Ignored,
}

const SO_EE_ORIGIN_LOCAL: u8 = 1;
const SO_EE_ORIGIN_ICMP: u8 = 2;
/// `struct sock_extended_err`: errno u32, origin, type, code, pad u8, info u32, data u32.
const EXTENDED_ERR_LEN: usize = 16;
/// A `sockaddr_in`: family u16, port u16, address, zero padding.
const SOCKADDR_IN_LEN: usize = 16;

/// The control-message header as the kernel lays it out: `cmsg_len` (a `size_t`), level
/// and type (`int`), then the data, each message padded to a `size_t` boundary.
const CMSG_HEADER: usize = std::mem::size_of::<usize>() + 8;

fn cmsg_align(len: usize) -> usize {
    let word = std::mem::size_of::<usize>();
    len.div_ceil(word) * word
}

/// Finds the `IP_RECVERR` message in a control buffer and decodes it with the entry's
/// payload (the quoted ICMP header) and address (the probe's destination).
pub fn parse_queued(control: &[u8], payload: &[u8], target: Ipv4Addr) -> QueuedError {
    let Some(err) = find_recverr(control) else {
        return QueuedError::Ignored;
    };
    let errno = u32::from_ne_bytes([err[0], err[1], err[2], err[3]]) as i32;
    let (origin, icmp_type, code) = (err[4], err[5], err[6]);
    let info = u32::from_ne_bytes([err[8], err[9], err[10], err[11]]);
    match origin {
        SO_EE_ORIGIN_LOCAL => QueuedError::Local {
            target,
            errno,
            mtu: info,
        },
        SO_EE_ORIGIN_ICMP => {
            // Only errors quoting one of our echo requests are ours.
            let Some(quoted) = payload.get(..8).filter(|q| q[0] == ECHO_REQUEST) else {
                return QueuedError::Ignored;
            };
            let offender = err
                .get(EXTENDED_ERR_LEN..EXTENDED_ERR_LEN + 8)
                .filter(|sa| u16::from_ne_bytes([sa[0], sa[1]]) == libc::AF_INET as u16)
                .map(|sa| Ipv4Addr::new(sa[4], sa[5], sa[6], sa[7]));
            QueuedError::Remote {
                target,
                seq: u16::from_be_bytes([quoted[6], quoted[7]]),
                offender,
                kind: error_kind(icmp_type, code, info),
            }
        }
        _ => QueuedError::Ignored,
    }
}

/// Returns the data of the first `SOL_IP`/`IP_RECVERR` control message, if whole.
fn find_recverr(control: &[u8]) -> Option<&[u8]> {
    let mut at = 0;
    while at + CMSG_HEADER <= control.len() {
        let word = std::mem::size_of::<usize>();
        let len = usize::from_ne_bytes(control[at..at + word].try_into().ok()?);
        let level = i32::from_ne_bytes(control[at + word..at + word + 4].try_into().ok()?);
        let kind = i32::from_ne_bytes(control[at + word + 4..at + word + 8].try_into().ok()?);
        if len < CMSG_HEADER || at + len > control.len() {
            return None;
        }
        let data = &control[at + CMSG_HEADER..at + len];
        if level == libc::SOL_IP && kind == libc::IP_RECVERR && data.len() >= EXTENDED_ERR_LEN {
            return Some(data);
        }
        at += cmsg_align(len);
    }
    None
}

/// Reads one entry of the socket's error queue without waiting; `WouldBlock` when empty.
pub fn recv_queued(fd: BorrowedFd<'_>) -> io::Result<QueuedError> {
    let (control, payload, target) = read_error_queue(fd)?;
    Ok(parse_queued(&control, &payload, target))
}

/// Returns the router and kind of an ICMP error in a control buffer, whatever packet it
/// quotes: a TCP socket's connect has one packet in flight, so there is nothing to match.
pub fn parse_icmp_origin(control: &[u8]) -> Option<(Option<Ipv4Addr>, IcmpErrorKind)> {
    let err = find_recverr(control)?;
    if err[4] != SO_EE_ORIGIN_ICMP {
        return None;
    }
    let info = u32::from_ne_bytes([err[8], err[9], err[10], err[11]]);
    let offender = err
        .get(EXTENDED_ERR_LEN..EXTENDED_ERR_LEN + 8)
        .filter(|sa| u16::from_ne_bytes([sa[0], sa[1]]) == libc::AF_INET as u16)
        .map(|sa| Ipv4Addr::new(sa[4], sa[5], sa[6], sa[7]));
    Some((offender, error_kind(err[5], err[6], info)))
}

/// Reads the ICMP error a failed TCP connect left in its socket's error queue
/// (`IP_RECVERR`), if one did.
pub fn recv_icmp_origin(fd: BorrowedFd<'_>) -> Option<(Option<Ipv4Addr>, IcmpErrorKind)> {
    let (control, _, _) = read_error_queue(fd).ok()?;
    parse_icmp_origin(&control)
}

/// Reads one entry of the error queue: its control messages, its payload and the
/// destination it names.
#[allow(unsafe_code)]
fn read_error_queue(fd: BorrowedFd<'_>) -> io::Result<(Vec<u8>, Vec<u8>, Ipv4Addr)> {
    // u64s keep the control buffer aligned for cmsghdr; room for the extended error, the
    // offender and a timestamp.
    let mut control = [0u64; 16];
    let mut payload = [0u8; 64];
    // SAFETY: sockaddr_in and msghdr are plain C structs for which all-zero is valid.
    let mut name: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec {
        iov_base: payload.as_mut_ptr().cast(),
        iov_len: payload.len(),
    };
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut name as *mut libc::sockaddr_in).cast();
    msg.msg_namelen = SOCKADDR_IN_LEN as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: every pointer in `msg` points at a live local of the length given, and they
    // all outlive the call; the descriptor is borrowed for it.
    let len = unsafe {
        libc::recvmsg(
            fd.as_raw_fd(),
            &mut msg,
            libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
        )
    };
    if len < 0 {
        return Err(io::Error::last_os_error());
    }
    let control_len = (msg.msg_controllen as usize).min(std::mem::size_of_val(&control));
    let control_bytes: Vec<u8> = control
        .iter()
        .flat_map(|w| w.to_ne_bytes())
        .take(control_len)
        .collect();
    let target = Ipv4Addr::from(u32::from_be(name.sin_addr.s_addr));
    let payload = payload[..(len as usize).min(payload.len())].to_vec();
    Ok((control_bytes, payload, target))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a control buffer holding one `IP_RECVERR` message as the kernel writes it.
    fn recverr_cmsg(
        errno: i32,
        origin: u8,
        icmp_type: u8,
        code: u8,
        info: u32,
        offender: Option<Ipv4Addr>,
    ) -> Vec<u8> {
        let mut data = Vec::new();
        data.extend_from_slice(&(errno as u32).to_ne_bytes());
        data.extend_from_slice(&[origin, icmp_type, code, 0]);
        data.extend_from_slice(&info.to_ne_bytes());
        data.extend_from_slice(&0u32.to_ne_bytes());
        let mut sa = [0u8; SOCKADDR_IN_LEN];
        if let Some(a) = offender {
            sa[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
            sa[4..8].copy_from_slice(&a.octets());
        }
        data.extend_from_slice(&sa);
        cmsg(libc::SOL_IP, libc::IP_RECVERR, &data)
    }

    fn cmsg(level: i32, kind: i32, data: &[u8]) -> Vec<u8> {
        let len = CMSG_HEADER + data.len();
        let mut out = Vec::new();
        out.extend_from_slice(&len.to_ne_bytes());
        out.extend_from_slice(&level.to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(data);
        out.resize(cmsg_align(len), 0);
        out
    }

    /// The quoted echo header: type 8, code 0, checksum, identifier, sequence.
    fn quoted_echo(seq: u16) -> Vec<u8> {
        let mut q = vec![8, 0, 0xab, 0xcd, 0x12, 0x34];
        q.extend_from_slice(&seq.to_be_bytes());
        q
    }

    const TARGET: Ipv4Addr = Ipv4Addr::new(172, 16, 1, 10);
    const ROUTER: Ipv4Addr = Ipv4Addr::new(10, 1, 1, 2);

    #[test]
    fn queued_icmp_errors_decode_to_the_kind_offender_and_quoted_sequence() {
        let icmp = SO_EE_ORIGIN_ICMP;
        let (unreach, prohibited) = (libc::EHOSTUNREACH, libc::EACCES);
        let cases = [
            // (errno, type, code, ee_info, what it is)
            (
                prohibited,
                3,
                13,
                0,
                IcmpErrorKind::Unreachable { code: 13 },
            ),
            (unreach, 3, 1, 0, IcmpErrorKind::Unreachable { code: 1 }),
            (unreach, 11, 0, 0, IcmpErrorKind::TimeExceeded),
            (
                libc::EMSGSIZE,
                3,
                4,
                1300,
                IcmpErrorKind::FragmentationNeeded { mtu: 1300 },
            ),
            (
                0,
                12,
                0,
                0,
                IcmpErrorKind::Other {
                    icmp_type: 12,
                    code: 0,
                },
            ),
        ];
        for (errno, icmp_type, code, info, kind) in cases {
            let control = recverr_cmsg(errno, icmp, icmp_type, code, info, Some(ROUTER));
            assert_eq!(
                parse_queued(&control, &quoted_echo(4242), TARGET),
                QueuedError::Remote {
                    target: TARGET,
                    seq: 4242,
                    offender: Some(ROUTER),
                    kind,
                },
                "type {icmp_type} code {code}"
            );
        }
    }

    #[test]
    fn the_recverr_message_is_found_after_other_control_messages() {
        let mut control = cmsg(libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS, &[7u8; 16]);
        control.extend(recverr_cmsg(
            libc::EHOSTUNREACH,
            SO_EE_ORIGIN_ICMP,
            11,
            0,
            0,
            None,
        ));
        assert_eq!(
            parse_queued(&control, &quoted_echo(1), TARGET),
            QueuedError::Remote {
                target: TARGET,
                seq: 1,
                offender: None,
                kind: IcmpErrorKind::TimeExceeded,
            }
        );
    }

    #[test]
    fn a_local_emsgsize_is_told_apart_from_a_router_saying_fragmentation_needed() {
        let control = recverr_cmsg(libc::EMSGSIZE, SO_EE_ORIGIN_LOCAL, 0, 0, 1400, None);
        assert_eq!(
            parse_queued(&control, &[], TARGET),
            QueuedError::Local {
                target: TARGET,
                errno: libc::EMSGSIZE,
                mtu: 1400
            }
        );
    }

    #[test]
    fn what_is_not_an_error_about_our_echo_is_ignored() {
        let control = recverr_cmsg(libc::EHOSTUNREACH, SO_EE_ORIGIN_ICMP, 3, 1, 0, None);
        // A quoted echo reply, a short payload, no payload.
        let mut reply = quoted_echo(3);
        reply[0] = 0;
        for payload in [reply, vec![8, 0, 0], vec![]] {
            assert_eq!(
                parse_queued(&control, &payload, TARGET),
                QueuedError::Ignored
            );
        }
        // No IP_RECVERR message at all, an unknown origin, a truncated buffer.
        let other = cmsg(libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS, &[0u8; 16]);
        assert_eq!(
            parse_queued(&other, &quoted_echo(3), TARGET),
            QueuedError::Ignored
        );
        let txstatus = recverr_cmsg(0, 4, 0, 0, 0, None);
        assert_eq!(
            parse_queued(&txstatus, &quoted_echo(3), TARGET),
            QueuedError::Ignored
        );
        assert_eq!(
            parse_queued(&control[..20], &quoted_echo(3), TARGET),
            QueuedError::Ignored
        );
    }

    #[test]
    fn a_tcp_connect_s_icmp_error_is_read_whatever_it_quotes() {
        let router = Ipv4Addr::new(10, 1, 1, 2);
        let prohibited = recverr_cmsg(
            libc::EHOSTUNREACH,
            SO_EE_ORIGIN_ICMP,
            3,
            13,
            0,
            Some(router),
        );
        assert_eq!(
            parse_icmp_origin(&prohibited),
            Some((Some(router), IcmpErrorKind::Unreachable { code: 13 }))
        );
        let local = recverr_cmsg(libc::EMSGSIZE, SO_EE_ORIGIN_LOCAL, 0, 0, 1300, None);
        assert_eq!(parse_icmp_origin(&local), None, "a local error is no ICMP");
        assert_eq!(parse_icmp_origin(&[]), None);
    }

    #[test]
    fn raw_frag_needed_packets_carry_the_next_hop_mtu() {
        // IPv4 header (IHL 5), then ICMP type 3 code 4, checksum, unused, MTU 1300.
        let mut packet = vec![0x45u8; 1];
        packet.resize(20, 0);
        packet.extend_from_slice(&[3, 4, 0, 0, 0, 0, 0x05, 0x14]);
        assert_eq!(raw_next_hop_mtu(&packet), 1300);
        packet[21] = 1;
        assert_eq!(
            raw_next_hop_mtu(&packet),
            0,
            "host unreachable carries none"
        );
        assert_eq!(raw_next_hop_mtu(&packet[..24]), 0, "truncated");
        assert_eq!(raw_next_hop_mtu(&[]), 0);
        assert_eq!(
            error_kind(3, 4, raw_next_hop_mtu(&packet)),
            IcmpErrorKind::FragmentationNeeded { mtu: 0 }
        );
    }
}
