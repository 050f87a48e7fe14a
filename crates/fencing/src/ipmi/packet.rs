//! RMCP+ (IPMI v2.0 "lanplus") packet codec and session crypto, without IO.
//!
//! Only cipher suite 3 is spoken: RAKP-HMAC-SHA1 authentication, HMAC-SHA1-96 integrity,
//! AES-CBC-128 confidentiality. Decoders treat every datagram as hostile: lengths are checked
//! before slicing and integrity is verified (in constant time) before decryption.

use aes::Aes128;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit, block_padding::NoPadding};
use hmac::{Hmac, Mac};
use sha1::Sha1;

type HmacSha1 = Hmac<Sha1>;

/// RMCP header: version 1.0, reserved, sequence 0xff (no RMCP ack), class IPMI.
const RMCP_HEADER: [u8; 4] = [0x06, 0x00, 0xff, 0x07];
/// Authentication type/format byte of an RMCP+ session header.
const AUTH_RMCP_PLUS: u8 = 0x06;
const FLAG_ENCRYPTED: u8 = 0x80;
const FLAG_AUTHENTICATED: u8 = 0x40;
/// HMAC-SHA1-96 truncates to 12 bytes.
const AUTH_CODE_LEN: usize = 12;

/// RMCP+ payload types used here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PayloadType {
    Ipmi = 0x00,
    OpenSessionRequest = 0x10,
    OpenSessionResponse = 0x11,
    Rakp1 = 0x12,
    Rakp2 = 0x13,
    Rakp3 = 0x14,
    Rakp4 = 0x15,
}

impl PayloadType {
    fn from_u8(b: u8) -> Option<PayloadType> {
        Some(match b {
            0x00 => PayloadType::Ipmi,
            0x10 => PayloadType::OpenSessionRequest,
            0x11 => PayloadType::OpenSessionResponse,
            0x12 => PayloadType::Rakp1,
            0x13 => PayloadType::Rakp2,
            0x14 => PayloadType::Rakp3,
            0x15 => PayloadType::Rakp4,
            _ => return None,
        })
    }
}

/// Integrity and confidentiality keys of an established session.
#[derive(Clone)]
pub(crate) struct SessionKeys {
    k1: [u8; 20],
    k2: [u8; 16],
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKeys(***)")
    }
}

pub(crate) fn hmac_sha1(key: &[u8], parts: &[&[u8]]) -> [u8; 20] {
    let mut mac = HmacSha1::new_from_slice(key).expect("HMAC accepts any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

impl SessionKeys {
    /// K1 = HMAC(SIK, 0x01 × 20), K2 = HMAC(SIK, 0x02 × 20) truncated to 16 bytes.
    pub(crate) fn derive(sik: &[u8; 20]) -> SessionKeys {
        let k1 = hmac_sha1(sik, &[&[0x01; 20]]);
        let k2_full = hmac_sha1(sik, &[&[0x02; 20]]);
        let mut k2 = [0u8; 16];
        k2.copy_from_slice(&k2_full[..16]);
        SessionKeys { k1, k2 }
    }
}

/// A decoded datagram.
#[derive(Debug)]
pub(crate) struct Packet {
    pub(crate) payload_type: PayloadType,
    pub(crate) session_id: u32,
    pub(crate) payload: Vec<u8>,
}

/// Encodes a packet. With `keys`, the payload is encrypted (random IV from `iv`) and the packet
/// authenticated; without, it is a pre-session packet in the clear.
pub(crate) fn encode(
    payload_type: PayloadType,
    session_id: u32,
    seq: u32,
    payload: &[u8],
    keys: Option<(&SessionKeys, [u8; 16])>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + payload.len());
    out.extend_from_slice(&RMCP_HEADER);
    let session_start = out.len();
    let mut ptype = payload_type as u8;
    let body = match keys {
        Some((k, iv)) => {
            ptype |= FLAG_ENCRYPTED | FLAG_AUTHENTICATED;
            encrypt(&k.k2, iv, payload)
        }
        None => payload.to_vec(),
    };
    out.push(AUTH_RMCP_PLUS);
    out.push(ptype);
    out.extend_from_slice(&session_id.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    let len = u16::try_from(body.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&body);
    if let Some((k, _)) = keys {
        // Integrity pad: from the auth type byte through pad length and next header, a
        // multiple of four bytes.
        let covered = out.len() - session_start + 2;
        let pad = (4 - covered % 4) % 4;
        out.extend(std::iter::repeat_n(0xff, pad));
        out.push(u8::try_from(pad).unwrap_or(0));
        out.push(0x07);
        let code = hmac_sha1(&k.k1, &[&out[session_start..]]);
        out.extend_from_slice(&code[..AUTH_CODE_LEN]);
    }
    out
}

fn encrypt(k2: &[u8; 16], iv: [u8; 16], payload: &[u8]) -> Vec<u8> {
    // Confidentiality trailer: pad bytes 1, 2, 3, … then the pad length, to a whole block.
    let pad = (16 - (payload.len() + 1) % 16) % 16;
    let mut buf = payload.to_vec();
    buf.extend((1..=pad).map(|i| u8::try_from(i).unwrap_or(0)));
    buf.push(u8::try_from(pad).unwrap_or(0));
    let len = buf.len();
    let enc = cbc::Encryptor::<Aes128>::new(k2.into(), &iv.into());
    let ct = enc
        .encrypt_padded_mut::<NoPadding>(&mut buf, len)
        .expect("buffer is a whole number of blocks");
    let mut out = Vec::with_capacity(16 + ct.len());
    out.extend_from_slice(&iv);
    out.extend_from_slice(ct);
    out
}

fn decrypt(k2: &[u8; 16], data: &[u8]) -> Result<Vec<u8>, &'static str> {
    if data.len() < 32 || !data.len().is_multiple_of(16) {
        return Err("encrypted payload is not IV plus whole AES blocks");
    }
    let (iv, ct) = data.split_at(16);
    let mut iv_arr = [0u8; 16];
    iv_arr.copy_from_slice(iv);
    let mut buf = ct.to_vec();
    let dec = cbc::Decryptor::<Aes128>::new(k2.into(), &iv_arr.into());
    let pt = dec
        .decrypt_padded_mut::<NoPadding>(&mut buf)
        .map_err(|_| "AES-CBC decryption failed")?;
    let pad = usize::from(*pt.last().ok_or("empty plaintext")?);
    if pad >= 16 || pad + 1 > pt.len() {
        return Err("bad confidentiality pad length");
    }
    let body_len = pt.len() - pad - 1;
    for (i, b) in pt[body_len..body_len + pad].iter().enumerate() {
        if usize::from(*b) != i + 1 {
            return Err("bad confidentiality pad bytes");
        }
    }
    Ok(pt[..body_len].to_vec())
}

/// Decodes a datagram. Session packets must carry a valid integrity code under `keys` and
/// are decrypted; when `keys` is `None`, only clear pre-session packets are accepted.
pub(crate) fn decode(bytes: &[u8], keys: Option<&SessionKeys>) -> Result<Packet, &'static str> {
    if bytes.len() < 4 + 12 {
        return Err("datagram too short for RMCP+");
    }
    if bytes[0] != RMCP_HEADER[0] || bytes[3] != RMCP_HEADER[3] {
        return Err("not an RMCP IPMI datagram");
    }
    let s = &bytes[4..];
    if s[0] != AUTH_RMCP_PLUS {
        return Err("not an RMCP+ (IPMI v2.0) session header");
    }
    let ptype_byte = s[1];
    let payload_type = PayloadType::from_u8(ptype_byte & 0x3f).ok_or("unknown payload type")?;
    let session_id = u32::from_le_bytes([s[2], s[3], s[4], s[5]]);
    let len = usize::from(u16::from_le_bytes([s[10], s[11]]));
    if s.len() < 12 + len {
        return Err("payload length exceeds the datagram");
    }
    let raw = &s[12..12 + len];
    let authenticated = ptype_byte & FLAG_AUTHENTICATED != 0;
    let encrypted = ptype_byte & FLAG_ENCRYPTED != 0;
    match keys {
        None => {
            if authenticated || encrypted {
                return Err("session packet before the session exists");
            }
            Ok(Packet {
                payload_type,
                session_id,
                payload: raw.to_vec(),
            })
        }
        Some(k) => {
            if !authenticated || !encrypted {
                return Err("unauthenticated or unencrypted packet inside the session");
            }
            if s.len() < 12 + len + 2 + AUTH_CODE_LEN {
                return Err("session trailer missing");
            }
            let code_at = s.len() - AUTH_CODE_LEN;
            let next_header = s[code_at - 1];
            let pad_len = usize::from(s[code_at - 2]);
            if next_header != 0x07 || 12 + len + pad_len + 2 != code_at {
                return Err("malformed session trailer");
            }
            let mut mac = HmacSha1::new_from_slice(&k.k1).expect("any key length");
            mac.update(&s[..code_at]);
            mac.verify_truncated_left(&s[code_at..])
                .map_err(|_| "integrity check failed (wrong session keys or tampered packet)")?;
            let payload = decrypt(&k.k2, raw)?;
            Ok(Packet {
                payload_type,
                session_id,
                payload,
            })
        }
    }
}

/// Our software id as requester, and the BMC's slave address.
const REQUESTER_ADDR: u8 = 0x81;
const BMC_ADDR: u8 = 0x20;

fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)))
}

/// An IPMI request message (the payload of an IPMI payload-type packet).
pub(crate) fn ipmi_request(netfn: u8, cmd: u8, rq_seq: u8, data: &[u8]) -> Vec<u8> {
    let mut m = vec![BMC_ADDR, netfn << 2];
    m.push(checksum(&m));
    let start = m.len();
    m.extend_from_slice(&[REQUESTER_ADDR, (rq_seq & 0x3f) << 2, cmd]);
    m.extend_from_slice(data);
    let c = checksum(&m[start..]);
    m.push(c);
    m
}

/// A parsed IPMI response.
#[derive(Debug)]
pub(crate) struct IpmiResponse {
    pub(crate) completion: u8,
    pub(crate) data: Vec<u8>,
}

/// Parses a response to `(netfn, cmd, rq_seq)`; `None` for a well-formed response to another
/// request (a late answer to a retransmission), `Err` for garbage.
pub(crate) fn ipmi_response(
    msg: &[u8],
    netfn: u8,
    cmd: u8,
    rq_seq: u8,
) -> Result<Option<IpmiResponse>, &'static str> {
    if msg.len() < 8 {
        return Err("IPMI response shorter than its header");
    }
    if checksum(&msg[..2]) != msg[2] || checksum(&msg[3..msg.len() - 1]) != msg[msg.len() - 1] {
        return Err("IPMI response checksum mismatch");
    }
    if msg[1] >> 2 != netfn + 1 || msg[5] != cmd {
        return Ok(None);
    }
    if msg[4] >> 2 != rq_seq & 0x3f {
        return Ok(None);
    }
    Ok(Some(IpmiResponse {
        completion: msg[6],
        data: msg[7..msg.len() - 1].to_vec(),
    }))
}

/// The RMCP+ status codes of the session-setup messages, for error messages.
pub(crate) fn rmcp_status_name(code: u8) -> &'static str {
    match code {
        0x00 => "no errors",
        0x01 => "insufficient resources to create a session",
        0x02 => "invalid session id",
        0x03 => "invalid payload type",
        0x04 => "invalid authentication algorithm",
        0x05 => "invalid integrity algorithm",
        0x06 => "no matching authentication payload",
        0x07 => "no matching integrity payload",
        0x08 => "inactive session id",
        0x09 => "invalid role",
        0x0a => "unauthorized role or privilege level requested",
        0x0b => "insufficient resources to create a session at the requested role",
        0x0c => "invalid name length",
        0x0d => "unauthorized name",
        0x0e => "unauthorized GUID",
        0x0f => "invalid integrity check value",
        0x10 => "invalid confidentiality algorithm",
        0x11 => "no cipher suite match with proposed security algorithms",
        0x12 => "illegal or unrecognized parameter",
        _ => "unknown status",
    }
}

/// IPMI completion codes, for error messages.
pub(crate) fn completion_name(code: u8) -> &'static str {
    match code {
        0x00 => "success",
        0xc0 => "node busy",
        0xc1 => "invalid command",
        0xc3 => "timeout while processing",
        0xc7 => "request data length invalid",
        0xcc => "invalid data field in request",
        0xd4 => "insufficient privilege level",
        0xd5 => "command not supported in present state",
        0xff => "unspecified error",
        _ => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_packets_round_trip_and_reject_tampering() {
        let keys = SessionKeys::derive(&[7; 20]);
        for len in [0usize, 1, 7, 15, 16, 17, 40] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut bytes = encode(
                PayloadType::Ipmi,
                0x1234,
                9,
                &payload,
                Some((&keys, [3; 16])),
            );
            assert_eq!((bytes.len() - 4 - 12 - 12) % 4, 0, "integrity pad");
            let p = decode(&bytes, Some(&keys)).unwrap();
            assert_eq!((p.session_id, p.payload), (0x1234, payload));
            let n = bytes.len();
            bytes[n / 2] ^= 1;
            assert!(decode(&bytes, Some(&keys)).is_err());
        }
        let other = SessionKeys::derive(&[8; 20]);
        let bytes = encode(PayloadType::Ipmi, 1, 1, b"x", Some((&keys, [0; 16])));
        assert!(decode(&bytes, Some(&other)).is_err());
        assert!(decode(&bytes, None).is_err());
    }

    #[test]
    fn decoder_survives_arbitrary_garbage() {
        let keys = SessionKeys::derive(&[1; 20]);
        let mut x: u32 = 12345;
        for len in 0..200 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8
                })
                .collect();
            let _ = decode(&bytes, Some(&keys));
            let _ = decode(&bytes, None);
            let _ = ipmi_response(&bytes, 0, 1, 0);
        }
        let mut hdr = vec![
            0x06, 0, 0xff, 0x07, 0x06, 0xc0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff,
        ];
        hdr.extend_from_slice(&[0; 8]);
        assert!(decode(&hdr, Some(&keys)).is_err());
    }

    #[test]
    fn ipmi_messages_carry_valid_checksums() {
        let req = ipmi_request(0x00, 0x02, 5, &[0x00]);
        assert_eq!(req, vec![0x20, 0x00, 0xe0, 0x81, 0x14, 0x02, 0x00, 0x69]);
        let resp = [0x81, 0x04, 0x7b, 0x20, 0x14, 0x02, 0x00, 0xca];
        let r = ipmi_response(&resp, 0x00, 0x02, 5).unwrap().unwrap();
        assert_eq!(r.completion, 0);
        assert!(ipmi_response(&resp, 0x00, 0x02, 6).unwrap().is_none());
    }
}
