//! The echo request as it goes on the wire: type, code, identifier, sequence and the
//! RFC 1071 checksum, written in place into a buffer sized for the probe.

/// Fills in an echo request: type 8, code 0, identifier, sequence, checksum. On DGRAM
/// sockets the kernel overwrites the identifier and checksum.
pub fn write_echo_request(packet: &mut [u8], ident: u16, seq: u16) {
    packet[0] = 8;
    packet[1] = 0;
    packet[2..4].copy_from_slice(&[0, 0]);
    packet[4..6].copy_from_slice(&ident.to_be_bytes());
    packet[6..8].copy_from_slice(&seq.to_be_bytes());
    let checksum = internet_checksum(packet);
    packet[2..4].copy_from_slice(&checksum.to_be_bytes());
}

/// The RFC 1071 checksum.
fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_requests_carry_a_valid_checksum() {
        let mut packet = vec![0u8; 8 + 56];
        packet[8..]
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = i as u8);
        write_echo_request(&mut packet, 0x1234, 7);
        assert_eq!(&packet[..2], &[8, 0]);
        assert_eq!(&packet[4..8], &[0x12, 0x34, 0, 7]);
        // A packet with its checksum in place sums to zero.
        assert_eq!(internet_checksum(&packet), 0);
        // Odd lengths pad with a zero byte (RFC 1071).
        assert_eq!(internet_checksum(&[0xff]), !0xff00);
    }
}
