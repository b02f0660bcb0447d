//! Structure-aware: a 1:1 conversation (Alice, Bob) and a group of three (Alice, Bob,
//! Carol) over an adversarial network that drops, duplicates, reorders, truncates,
//! flips bits and replays old messages. Invariants checked on every delivery:
//!
//! - nothing panics;
//! - a message that decrypts yields exactly the plaintext that was sent, and each sent
//!   message decrypts at most once (duplicates and replays are refused);
//! - the first delivery of an untampered message decrypts (within the documented
//!   limits: a 1:1 message from a sending chain at least `MAX_RECEIVER_CHAINS - 1`
//!   ratchet steps older than the receiver's newest is not required to);
//! - a refused message leaves the receiver's state byte for byte unchanged;
//! - a tampered group message is refused; a tampered 1:1 message is refused unless it
//!   is a retransmitted pre-key message for a session that already exists, whose
//!   enclosed message, base key, identity and registration id are intact: the other
//!   PQXDH fields (prekey ids, KEM ciphertext) only matter when a session is created,
//!   and are not looked at again (as in libsignal). Such a message still decrypts to
//!   the original plaintext, at most once.
#![no_main]

use std::collections::HashSet;
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use signal_core::group;
use signal_core::limits::MAX_RECEIVER_CHAINS;
use signal_core::store::{
    IdentityStore, InMemoryStore, KemPreKeyStore, PreKeyStore, SenderKeyStore, SessionStore,
};
use signal_core::wire::{MessageKind, PreKeyMessage, SignalMessage};
use signal_core::{Address, session};

/// Most operations run per input (keeps each input fast and far from the skipped-key
/// limits).
const MAX_OPS: usize = 96;

#[derive(Arbitrary, Debug)]
enum Op {
    /// Alice (false) or Bob (true) sends a 1:1 message of `len` bytes.
    Send { from_bob: bool, len: u8 },
    /// A member sends to the group (one copy per other member goes on the network).
    GroupSend { from: u8, len: u8 },
    /// Delivers the packet at `index` (any index: reordering).
    Deliver { index: u8 },
    /// Loses the packet at `index`.
    Drop { index: u8 },
    /// Puts a second copy of the packet at `index` on the network.
    Duplicate { index: u8 },
    /// Cuts the packet at `index` to `keep` bytes.
    Truncate { index: u8, keep: u16 },
    /// Flips one bit of the packet at `index`.
    FlipBit { index: u8, bit: u32 },
    /// Puts an already delivered (or refused) packet back on the network.
    Replay { index: u8 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    /// 1:1; `from` is 0 (Alice) or 1 (Bob).
    Direct { from: usize },
    /// Group member `from` to member `to`.
    Group { from: usize, to: usize },
}

#[derive(Clone, Debug)]
struct Packet {
    /// Identifies the sent message (shared by its duplicates).
    id: usize,
    route: Route,
    bytes: Vec<u8>,
    original: Vec<u8>,
    plaintext: Vec<u8>,
    /// For 1:1 messages: index of the sender's sending chain (ratchet key) in order of
    /// first use.
    epoch: usize,
}

struct World {
    direct: [InMemoryStore; 2],
    direct_addrs: [Address; 2],
    group: signal_fuzz::Group,
    network: Vec<Packet>,
    history: Vec<Packet>,
    delivered: HashSet<usize>,
    /// Group messages decrypted, by (message, receiver).
    group_delivered: HashSet<(usize, usize)>,
    next_id: usize,
    /// Per 1:1 direction: ratchet keys in order of first use.
    ratchet_keys: [Vec<Vec<u8>>; 2],
    /// Per 1:1 direction: the newest sending chain the receiver has decrypted from.
    newest_seen: [Option<usize>; 2],
}

static FIXTURE: OnceLock<(signal_fuzz::Pair, signal_fuzz::Group)> = OnceLock::new();

fn ratchet_key(bytes: &[u8]) -> Option<Vec<u8>> {
    match MessageKind::of(bytes).ok()? {
        MessageKind::Message => Some(
            SignalMessage::decode(bytes)
                .ok()?
                .ratchet_key
                .encode()
                .to_vec(),
        ),
        MessageKind::PreKey => Some(
            PreKeyMessage::decode(bytes)
                .ok()?
                .message
                .ratchet_key
                .encode()
                .to_vec(),
        ),
        _ => None,
    }
}

/// Everything of the receiver's state a delivery from `from` may change.
fn direct_snapshot(store: &InMemoryStore, from: &Address) -> Vec<Vec<u8>> {
    let mut v = vec![
        store
            .load_session(from)
            .expect("load")
            .map(|r| r.encode().to_vec())
            .unwrap_or_default(),
        store
            .remote_identity(from)
            .expect("identity")
            .map(|i| i.encode().to_vec())
            .unwrap_or_default(),
        store.prekey_count().expect("count").to_be_bytes().to_vec(),
    ];
    for id in store.kem_prekey_ids().expect("ids") {
        v.push(id.to_be_bytes().to_vec());
    }
    v
}

/// Whether `p` is a pre-key message whose only changes are in the fields a receiver
/// with an existing session for its base key does not read (see the crate docs).
fn only_unused_prekey_fields_changed(p: &Packet) -> bool {
    let (Ok(new), Ok(old)) = (
        PreKeyMessage::decode(&p.bytes),
        PreKeyMessage::decode(&p.original),
    ) else {
        return false;
    };
    new.base_key == old.base_key
        && new.identity == old.identity
        && new.registration_id == old.registration_id
        && new.message.encoded() == old.message.encoded()
}

fn group_snapshot(
    store: &InMemoryStore,
    g: &signal_core::group::GroupId,
    from: &Address,
) -> Vec<u8> {
    store
        .load_sender_key(g, from)
        .expect("load")
        .map(|r| r.encode().to_vec())
        .unwrap_or_default()
}

impl World {
    fn new() -> Self {
        let (pair, group) = FIXTURE.get_or_init(|| (signal_fuzz::pair(), signal_fuzz::group()));
        let pair = pair.clone();
        Self {
            direct: [pair.alice, pair.bob],
            direct_addrs: [pair.alice_addr, pair.bob_addr],
            group: group.clone(),
            network: Vec::new(),
            history: Vec::new(),
            delivered: HashSet::new(),
            group_delivered: HashSet::new(),
            next_id: 0,
            ratchet_keys: [Vec::new(), Vec::new()],
            newest_seen: [None, None],
        }
    }

    fn plaintext(&mut self, len: u8) -> (usize, Vec<u8>) {
        let id = self.next_id;
        self.next_id += 1;
        let mut pt = format!("message {id}:").into_bytes();
        pt.resize(pt.len() + usize::from(len), b'x');
        (id, pt)
    }

    fn send(&mut self, from: usize, len: u8) {
        let (id, plaintext) = self.plaintext(len);
        let to = 1 - from;
        let Ok(bytes) = session::encrypt(
            &mut self.direct[from],
            &self.direct_addrs[to].clone(),
            &plaintext,
        ) else {
            // Bob has no session before Alice's first message reaches him.
            return;
        };
        let key = ratchet_key(&bytes).expect("an encrypted message decodes");
        let keys = &mut self.ratchet_keys[from];
        let epoch = keys.iter().position(|k| *k == key).unwrap_or_else(|| {
            keys.push(key);
            keys.len() - 1
        });
        self.network.push(Packet {
            id,
            route: Route::Direct { from },
            original: bytes.clone(),
            bytes,
            plaintext,
            epoch,
        });
    }

    fn group_send(&mut self, from: usize, len: u8) {
        let (id, plaintext) = self.plaintext(len);
        let g = &mut self.group;
        let bytes = group::encrypt(&mut g.stores[from], &g.id, &g.addrs[from], &plaintext)
            .expect("a member with a chain can always send");
        for to in (0..3).filter(|&t| t != from) {
            self.network.push(Packet {
                id,
                route: Route::Group { from, to },
                original: bytes.clone(),
                bytes: bytes.clone(),
                plaintext: plaintext.clone(),
                epoch: 0,
            });
        }
    }

    fn deliver(&mut self, p: Packet) {
        let tampered = p.bytes != p.original;
        let first = !self.delivered.contains(&p.id);
        match p.route {
            Route::Direct { from } => {
                let to = 1 - from;
                let sender = self.direct_addrs[from].clone();
                let store = &mut self.direct[to];
                let before = direct_snapshot(store, &sender);
                match session::decrypt_and_commit(store, &sender, &p.bytes) {
                    Ok(pt) => {
                        assert_eq!(&pt[..], &p.plaintext[..], "decrypted to what was sent");
                        assert!(first, "message {} decrypted twice", p.id);
                        assert!(
                            !tampered
                                || (!before[0].is_empty() && only_unused_prekey_fields_changed(&p)),
                            "a tampered message was accepted: {p:?}"
                        );
                        self.delivered.insert(p.id);
                        let seen = &mut self.newest_seen[from];
                        *seen = Some(seen.map_or(p.epoch, |s| s.max(p.epoch)));
                    }
                    Err(e) => {
                        assert_eq!(
                            before,
                            direct_snapshot(store, &sender),
                            "a refused message changed state ({e:?})"
                        );
                        let in_limits = self.newest_seen[from]
                            .is_none_or(|s| s < p.epoch + MAX_RECEIVER_CHAINS - 1);
                        assert!(
                            tampered || !first || !in_limits,
                            "an untampered message was refused: {e:?} {p:?}"
                        );
                    }
                }
            }
            Route::Group { from, to } => {
                let g = &mut self.group;
                let sender = g.addrs[from].clone();
                let before = group_snapshot(&g.stores[to], &g.id, &sender);
                match group::decrypt_and_commit(&mut g.stores[to], &g.id, &sender, &p.bytes) {
                    Ok(pt) => {
                        assert_eq!(&pt[..], &p.plaintext[..], "decrypted to what was sent");
                        assert!(!tampered, "a tampered group message was accepted: {p:?}");
                        assert!(
                            self.group_delivered.insert((p.id, to)),
                            "group message {} decrypted twice by {to}",
                            p.id
                        );
                    }
                    Err(e) => {
                        assert_eq!(
                            before,
                            group_snapshot(&g.stores[to], &g.id, &sender),
                            "a refused group message changed state ({e:?})"
                        );
                        let first = !self.group_delivered.contains(&(p.id, to));
                        assert!(
                            tampered || !first,
                            "an untampered group message was refused: {e:?} {p:?}"
                        );
                    }
                }
            }
        }
        self.history.push(p);
    }

    fn pick(&self, index: u8) -> Option<usize> {
        (!self.network.is_empty()).then(|| usize::from(index) % self.network.len())
    }

    fn run(&mut self, op: Op) {
        match op {
            Op::Send { from_bob, len } => self.send(usize::from(from_bob), len),
            Op::GroupSend { from, len } => self.group_send(usize::from(from) % 3, len),
            Op::Deliver { index } => {
                if let Some(i) = self.pick(index) {
                    let p = self.network.remove(i);
                    self.deliver(p);
                }
            }
            Op::Drop { index } => {
                if let Some(i) = self.pick(index) {
                    self.network.remove(i);
                }
            }
            Op::Duplicate { index } => {
                if let Some(i) = self.pick(index) {
                    let p = self.network[i].clone();
                    self.network.push(p);
                }
            }
            Op::Truncate { index, keep } => {
                if let Some(i) = self.pick(index) {
                    self.network[i].bytes.truncate(usize::from(keep));
                }
            }
            Op::FlipBit { index, bit } => {
                if let Some(i) = self.pick(index) {
                    let b = &mut self.network[i].bytes;
                    if !b.is_empty() {
                        let bit = bit as usize % (b.len() * 8);
                        b[bit / 8] ^= 1 << (bit % 8);
                    }
                }
            }
            Op::Replay { index } => {
                if !self.history.is_empty() {
                    let p = self.history[usize::from(index) % self.history.len()].clone();
                    self.network.push(p);
                }
            }
        }
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let mut world = World::new();
    for op in ops.into_iter().take(MAX_OPS) {
        world.run(op);
    }
    // Finally the network delivers whatever is still in flight, in order.
    for p in std::mem::take(&mut world.network) {
        world.deliver(p);
    }
});
