"""The same flows as ffi/tests/test_client.c, through the Python package."""

import ctypes
import os

import pytest

import signal_crypto as sc
from signal_crypto import Device, Identity, Store

NOW = 1_700_000_000
KEY = bytes(range(32))


def start_session(frm: Store, to: Store, to_name: str, prekey_id: int) -> None:
    frm.process_bundle(to_name, 1, to.generate_prekeys(prekey_id, prekey_id, prekey_id, NOW))


def send(frm, frm_name, to, to_name, text: bytes) -> None:
    assert to.decrypt(frm_name, 1, frm.encrypt(to_name, 1, text)) == text


def deliver(fanout, sender_name, stores):
    for (user, _device), _reg, ct in fanout.messages:
        store = stores[user]
        store.group_process_distribution(sender_name, 1, store.decrypt(sender_name, 1, ct))
    return len(fanout.messages)


@pytest.fixture
def parties(tmp_path):
    path = str(tmp_path / "alice.db")
    alice = Store.create(path, Identity.generate(), 1, key=KEY)
    bob = Store.in_memory(Identity.generate(), 2)
    carol = Store.in_memory(Identity.generate(), 3)
    start_session(alice, bob, "bob", 1)
    start_session(alice, carol, "carol", 1)
    start_session(bob, carol, "carol", 2)
    send(alice, "alice", bob, "bob", b"hello Bob")
    send(bob, "bob", alice, "alice", b"hi Alice")
    send(alice, "alice", carol, "carol", b"hello Carol")
    send(carol, "carol", alice, "alice", b"hi Alice")
    send(bob, "bob", carol, "carol", b"hello Carol")
    send(carol, "carol", bob, "bob", b"hi Bob")
    return path, {"alice": alice, "bob": bob, "carol": carol}


def test_versions():
    assert sc.abi_version() == sc.ABI_VERSION
    assert sc.library_version()


def test_identity_roundtrip():
    ident = Identity.generate()
    again = Identity.deserialize(ident.serialize())
    assert again.public_key == ident.public_key and len(ident.public_key) == 33


def test_sessions_groups_persistence(parties):
    path, s = parties
    members = [Device("alice", 1, 1), Device("bob", 1, 2), Device("carol", 1, 3)]
    gid = sc.generate_group_id()
    for name in ("alice", "bob", "carol"):
        assert deliver(s[name].group_distribute(gid, name, 1, members), name, s) == 2
    for sender in ("alice", "bob", "carol"):
        ct = s[sender].group_encrypt(gid, sender, 1, b"from " + sender.encode())
        for other in set(s) - {sender}:
            assert s[other].group_decrypt(gid, sender, 1, ct) == b"from " + sender.encode()

    # Persist, reopen (the wrong key is refused), continue.
    s["alice"].close()
    with pytest.raises(sc.WrongKeyError):
        Store.open(path, key=bytes(32))
    s["alice"] = Store.open(path, key=KEY)
    send(s["alice"], "alice", s["bob"], "bob", b"after reopening")
    send(s["bob"], "bob", s["alice"], "alice", b"welcome back")
    ct = s["alice"].group_encrypt(gid, "alice", 1, b"group after reopening")
    assert s["carol"].group_decrypt(gid, "alice", 1, ct) == b"group after reopening"
    ct = s["bob"].group_encrypt(gid, "bob", 1, b"bob to group")
    assert s["alice"].group_decrypt(gid, "bob", 1, ct) == b"bob to group"

    # Remove Carol.
    remaining = members[:2]
    assert deliver(s["alice"].group_remove_member(gid, "alice", 1, "carol", remaining), "alice", s) == 1
    assert deliver(s["bob"].group_remove_member(gid, "bob", 1, "carol", remaining), "bob", s) == 1
    ct = s["alice"].group_encrypt(gid, "alice", 1, b"without Carol")
    assert s["bob"].group_decrypt(gid, "alice", 1, ct) == b"without Carol"
    with pytest.raises(sc.NoSenderKeyError):
        s["carol"].group_decrypt(gid, "alice", 1, ct)
    for st in s.values():
        st.close()


def test_safety_numbers(parties):
    _, s = parties
    a_pub, b_pub = s["alice"].identity.public_key, s["bob"].identity.public_key
    assert s["alice"].remote_identity("bob", 1) == b_pub
    a_num, a_scan = sc.safety_number("alice", a_pub, "bob", b_pub)
    b_num, b_scan = sc.safety_number("bob", b_pub, "alice", a_pub)
    assert a_num == b_num and len(a_num) == 60 and a_num.isdigit()
    assert sc.verify_scanned("alice", a_pub, "bob", b_pub, b_scan)
    assert not sc.verify_scanned("alice", a_pub, "bob", b_pub, a_scan)
    with pytest.raises(sc.NotFoundError):
        s["alice"].remote_identity("dave", 1)


def test_fanout_multi_device(parties):
    _, s = parties
    bob2 = Store.in_memory(Identity.generate(), 22)
    bobs = [Device("bob", 1, 2), Device("bob", 2, 22)]
    out = s["alice"].fanout_encrypt("alice", 1, bobs, b"to all")
    assert [m[0] for m in out.messages] == [("bob", 1)] and out.missing == [("bob", 2)]
    s["alice"].process_bundle("bob", 2, bob2.generate_prekeys(5, 5, 5, NOW))
    out = s["alice"].fanout_encrypt("alice", 1, bobs, b"to all")
    targets = {1: s["bob"], 2: bob2}
    assert len(out.messages) == 2
    for (_user, device), reg, ct in out.messages:
        assert reg == (2 if device == 1 else 22)
        assert targets[device].decrypt("alice", 1, ct) == b"to all"


def test_maintenance(parties):
    _, s = parties
    r = s["alice"].run_maintenance(NOW, 0, 0)
    assert r.new_signed_prekey_id is not None and r.new_last_resort_kem_prekey_id is not None
    assert r.new_one_time_prekeys == 100 and r.new_kem_one_time_prekeys == 100
    r = s["alice"].run_maintenance(NOW, 100, 100)
    assert r.new_signed_prekey_id is None and r.new_one_time_prekeys == 0
    with pytest.raises(sc.NotFoundError):
        s["bob"].current_bundle()
    erin = Store.in_memory(Identity.generate(), 5)
    erin.process_bundle("alice", 1, s["alice"].current_bundle())
    send(erin, "erin", s["alice"], "alice", b"via last resort")
    send(s["alice"], "alice", erin, "erin", b"hello Erin")


def test_passphrase_store(tmp_path):
    path = str(tmp_path / "p.db")
    ident = Identity.generate()
    with Store.create(path, ident, 9, passphrase=b"correct horse") as st:
        assert st.registration_id == 9
    assert os.path.exists(path + ".salt")
    with Store.open(path, passphrase=b"correct horse") as st:
        assert st.identity.public_key == ident.public_key
    with pytest.raises(sc.WrongKeyError):
        Store.open(path, passphrase=b"wrong")


def test_bad_input(parties):
    _, s = parties
    alice, bob, carol = s["alice"], s["bob"], s["carol"]
    ct = alice.encrypt("bob", 1, b"payload")
    with pytest.raises(sc.DecodeError):
        bob.decrypt("alice", 1, b"")
    for cut in range(0, len(ct), 7):
        with pytest.raises((sc.DecodeError, sc.InvalidMessageError)):
            bob.decrypt("alice", 1, ct[:cut])
    tampered = ct[:-1] + bytes([ct[-1] ^ 1])
    with pytest.raises(sc.InvalidMessageError):
        bob.decrypt("alice", 1, tampered)
    assert bob.decrypt("alice", 1, ct) == b"payload"  # the rejection changed nothing
    with pytest.raises(sc.DuplicateMessageError):
        bob.decrypt("alice", 1, ct)
    # A null pointer with a non-zero length, straight through ctypes.
    buf = sc.SignalBuffer()
    assert sc.lib.signal_session_encrypt(alice._h, b"bob", 1, None, 5, ctypes.byref(buf)) == 1
    assert b"null" in sc.lib.signal_last_error_message()
    assert alice.encrypt("bob", 1, None)  # null with length 0 is an empty plaintext
    with pytest.raises(sc.NullPointerError):
        alice.encrypt(None, 1, b"x")
    with pytest.raises(sc.InvalidArgumentError):
        alice.encrypt("", 1, b"x")
    with pytest.raises(sc.NoSessionError):
        alice.encrypt("zed", 1, b"x")
    with pytest.raises(sc.InvalidArgumentError):
        Store.open("/nonexistent.db", key=b"short")
    with pytest.raises(sc.StoreError):
        Store.open("/nonexistent/x.db", key=KEY)
    with pytest.raises(sc.DecodeError):
        Identity.deserialize(b"junk")
    bundle = carol.generate_prekeys(9, 9, 9, NOW)
    with pytest.raises(sc.DecodeError):
        alice.process_bundle("eve", 1, bundle[:-1])
    with pytest.raises(sc.BadSignatureError):
        alice.process_bundle("eve", 1, bundle[:-1] + bytes([bundle[-1] ^ 1]))
    with pytest.raises(sc.UntrustedIdentityError):
        alice.process_bundle("bob", 1, bundle)
    gid = sc.generate_group_id()
    with pytest.raises(sc.InvalidArgumentError):
        alice.group_encrypt(gid[:31], "alice", 1, b"x")
    with pytest.raises(sc.NoSenderKeyError):
        alice.group_encrypt(gid, "alice", 1, b"x")
    with pytest.raises(sc.DecodeError):
        bob.group_decrypt(gid, "alice", 1, b"junk")
    with pytest.raises(sc.DecodeError):
        bob.group_process_distribution("alice", 1, b"junk")
    with pytest.raises(sc.DecodeError):
        sc.safety_number("a", b"short", "b", b"short")
    closed = Store.in_memory(Identity.generate(), 5)
    closed.close()
    with pytest.raises(sc.NullPointerError):
        closed.encrypt("bob", 1, b"x")


class FailingCommit(sc.KeyValueBackend):
    fail = False

    def commit(self):
        if self.fail:
            raise RuntimeError("disk full")
        super().commit()


def test_callback_store(parties):
    _, s = parties
    backend = FailingCommit()
    dave = Store.with_callbacks(backend, Identity.generate(), 4)
    s["alice"].process_bundle("dave", 1, dave.generate_prekeys(1, 1, 1, NOW))
    ct = s["alice"].encrypt("dave", 1, b"hi Dave")
    backend.fail = True
    before = dict(backend.data)
    with pytest.raises(sc.StoreError):
        dave.decrypt("alice", 1, ct)
    assert backend.data == before
    backend.fail = False
    assert dave.decrypt("alice", 1, ct) == b"hi Dave"
    send(dave, "dave", s["alice"], "alice", b"hi Alice")
    send(s["alice"], "alice", dave, "dave", b"again")
    gid = sc.generate_group_id()
    out = dave.group_distribute(gid, "dave", 1, [Device("alice", 1, 1)])
    assert deliver(out, "dave", s) == 1
    assert s["alice"].group_decrypt(gid, "dave", 1, dave.group_encrypt(gid, "dave", 1, b"g")) == b"g"
    dave.close()


def test_open_refuses_an_empty_file_and_leaves_it_empty(tmp_path):
    path = tmp_path / "empty.db"
    path.write_bytes(b"")
    with pytest.raises(sc.StoreError, match="not a session store"):
        Store.open(str(path), key=KEY)
    assert path.read_bytes() == b""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db"]


class ConcurrentConsumer(sc.KeyValueBackend):
    """Another process takes record ``steal`` just before the next transaction."""
    steal = None

    def begin(self):
        if self.steal is not None:
            self.data.pop(self.steal)
            self.steal = None
        super().begin()


def test_callback_store_one_time_prekey_consumed_concurrently(parties):
    _, s = parties
    backend = ConcurrentConsumer()
    frank = Store.with_callbacks(backend, Identity.generate(), 6)
    s["alice"].process_bundle("frank", 1, frank.generate_prekeys(1, 1, 1, NOW))
    ct = s["alice"].encrypt("frank", 1, b"hi Frank")
    backend.steal = next(k for k in backend.data if k[0] == 2)  # the one-time X25519 prekey
    expected = dict(backend.data)
    expected.pop(backend.steal)
    with pytest.raises(sc.ConflictError):
        frank.decrypt("alice", 1, ct)
    assert backend.data == expected
    frank.close()
