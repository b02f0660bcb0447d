"""Pythonic bindings (ctypes, no compiler needed) over libsignal_crypto_lib.

Set ``SIGNAL_CRYPTO_LIB`` to the path of ``libsignal_crypto_lib.so`` before importing.

    >>> alice = Store.in_memory(Identity.generate(), registration_id=1)
    >>> bob = Store.in_memory(Identity.generate(), registration_id=2)
    >>> alice.process_bundle("bob", 1, bob.generate_prekeys(1, 1, 1, now=1_700_000_000))
    >>> bob.decrypt("alice", 1, alice.encrypt("bob", 1, b"hi"))
    b'hi'
"""

import ctypes
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

from . import _lib
from ._lib import SignalBuffer, SignalDevice, SignalMaintenanceReport, lib

__all__ = [
    "abi_version", "library_version", "SignalError", "NullPointerError", "InvalidArgumentError",
    "DecodeError", "BadSignatureError", "UntrustedIdentityError", "NoSessionError",
    "InvalidMessageError", "DuplicateMessageError", "TooFarAheadError", "UnknownPreKeyError",
    "NoSenderKeyError", "StoreError", "WrongKeyError", "ConflictError", "CryptoError",
    "ProtocolError", "NotFoundError", "InternalError", "Identity", "Store", "Device", "FanOut",
    "MaintenanceReport", "KeyValueBackend", "generate_group_id", "safety_number", "verify_scanned", "GROUP_ID_LEN",
]

ABI_VERSION = 1
GROUP_ID_LEN = 32


class SignalError(Exception):
    """A call into the library failed; ``code`` is the SignalErrorCode value."""

    code = -1

    def __init__(self, message: str, code: Optional[int] = None):
        super().__init__(message)
        if code is not None:
            self.code = code


def _err(name: str, code: int) -> type:
    return type(name, (SignalError,), {"code": code, "__doc__": f"SignalErrorCode {code}."})


NullPointerError = _err("NullPointerError", 1)
InvalidArgumentError = _err("InvalidArgumentError", 2)
DecodeError = _err("DecodeError", 3)
BadSignatureError = _err("BadSignatureError", 4)
UntrustedIdentityError = _err("UntrustedIdentityError", 5)
NoSessionError = _err("NoSessionError", 6)
InvalidMessageError = _err("InvalidMessageError", 7)
DuplicateMessageError = _err("DuplicateMessageError", 8)
TooFarAheadError = _err("TooFarAheadError", 9)
UnknownPreKeyError = _err("UnknownPreKeyError", 10)
NoSenderKeyError = _err("NoSenderKeyError", 11)
StoreError = _err("StoreError", 12)
WrongKeyError = _err("WrongKeyError", 13)
ConflictError = _err("ConflictError", 14)
CryptoError = _err("CryptoError", 15)
ProtocolError = _err("ProtocolError", 16)
NotFoundError = _err("NotFoundError", 17)
InternalError = _err("InternalError", 18)

_BY_CODE = {cls.code: cls for cls in (
    NullPointerError, InvalidArgumentError, DecodeError, BadSignatureError,
    UntrustedIdentityError, NoSessionError, InvalidMessageError, DuplicateMessageError,
    TooFarAheadError, UnknownPreKeyError, NoSenderKeyError, StoreError, WrongKeyError,
    ConflictError, CryptoError, ProtocolError, NotFoundError, InternalError)}


def _check(rc: int) -> None:
    if rc != 0:
        msg = lib.signal_last_error_message()
        text = msg.decode("utf-8", "replace") if msg else lib.signal_error_code_name(rc).decode()
        raise _BY_CODE.get(rc, SignalError)(text, rc)


def _in(data: Optional[bytes]):
    """(pointer, length) for bytes; None passes a null pointer (to test refusals)."""
    if data is None:
        return None, 0
    data = bytes(data)
    return (ctypes.c_uint8 * len(data)).from_buffer_copy(data), len(data)


def _take(buf: SignalBuffer) -> bytes:
    """Copies a library buffer into bytes and frees it."""
    try:
        return ctypes.string_at(buf.data, buf.len) if buf.len else b""
    finally:
        lib.signal_buffer_free(buf)


def _s(text: Optional[str]):
    return None if text is None else text.encode("utf-8")


def library_version() -> str:
    return lib.signal_library_version().decode()


def abi_version() -> int:
    return lib.signal_abi_version()


class Identity:
    """An identity key pair. ``serialize()`` includes the secret key."""

    def __init__(self, handle: int):
        self._h = ctypes.c_void_p(handle)

    @classmethod
    def generate(cls) -> "Identity":
        h = ctypes.c_void_p()
        _check(lib.signal_identity_generate(ctypes.byref(h)))
        return cls(h.value)

    @classmethod
    def deserialize(cls, data: bytes) -> "Identity":
        h = ctypes.c_void_p()
        p, n = _in(data)
        _check(lib.signal_identity_deserialize(p, n, ctypes.byref(h)))
        return cls(h.value)

    def serialize(self) -> bytes:
        buf = SignalBuffer()
        _check(lib.signal_identity_serialize(self._h, ctypes.byref(buf)))
        return _take(buf)

    @property
    def public_key(self) -> bytes:
        buf = SignalBuffer()
        _check(lib.signal_identity_public_key(self._h, ctypes.byref(buf)))
        return _take(buf)

    def close(self) -> None:
        if self._h:
            lib.signal_identity_free(self._h)
            self._h = ctypes.c_void_p()

    def __del__(self):
        self.close()


@dataclass(frozen=True)
class Device:
    """One device as the relay lists it."""

    user: str
    device: int
    registration_id: int


def _devices(devices: Sequence[Device]):
    users = [_s(d.user) for d in devices]  # keep the encoded strings alive
    arr = (SignalDevice * len(devices))(*[
        SignalDevice(u, d.device, d.registration_id) for u, d in zip(users, devices)])
    return arr, len(devices), users


@dataclass
class FanOut:
    """Per-device ciphertexts (address, registration id, bytes) and devices needing attention."""

    messages: List[Tuple[Tuple[str, int], int, bytes]] = field(default_factory=list)
    missing: List[Tuple[str, int]] = field(default_factory=list)
    stale: List[Tuple[str, int]] = field(default_factory=list)
    removed: List[Tuple[str, int]] = field(default_factory=list)
    failed: List[Tuple[str, int]] = field(default_factory=list)

    @classmethod
    def _take(cls, handle: ctypes.c_void_p) -> "FanOut":
        try:
            lists = []
            for which in range(5):
                n = ctypes.c_size_t()
                _check(lib.signal_fanout_count(handle, which, ctypes.byref(n)))
                entries = []
                for i in range(n.value):
                    user, dev = ctypes.c_char_p(), ctypes.c_uint32()
                    _check(lib.signal_fanout_address(handle, which, i, ctypes.byref(user), ctypes.byref(dev)))
                    entries.append((user.value.decode(), dev.value))
                lists.append(entries)
            messages = []
            for i, address in enumerate(lists[0]):
                reg, data, n = ctypes.c_uint32(), _lib.c_u8_p(), ctypes.c_size_t()
                _check(lib.signal_fanout_ciphertext(handle, i, ctypes.byref(reg), ctypes.byref(data), ctypes.byref(n)))
                messages.append((address, reg.value, ctypes.string_at(data, n.value)))
            return cls(messages, lists[1], lists[2], lists[3], lists[4])
        finally:
            lib.signal_fanout_free(handle)


@dataclass(frozen=True)
class MaintenanceReport:
    new_signed_prekey_id: Optional[int]
    new_last_resort_kem_prekey_id: Optional[int]
    deleted_signed_prekeys: int
    deleted_kem_prekeys: int
    new_one_time_prekeys: int
    new_kem_one_time_prekeys: int


class Store:
    """A protocol store (in memory or SQLCipher). Safe to share between threads."""

    def __init__(self, handle: int):
        self._h = ctypes.c_void_p(handle)

    @classmethod
    def _open(cls, fn, *args) -> "Store":
        h = ctypes.c_void_p()
        _check(fn(*args, ctypes.byref(h)))
        return cls(h.value)

    @classmethod
    def in_memory(cls, identity: Identity, registration_id: int) -> "Store":
        return cls._open(lib.signal_store_new_in_memory, identity._h, registration_id)

    @classmethod
    def create(cls, path: str, identity: Identity, registration_id: int, *, key: Optional[bytes] = None,
               passphrase: Optional[bytes] = None) -> "Store":
        """Creates a SQLCipher database encrypted under a 32-byte ``key`` or a ``passphrase``."""
        if (key is None) == (passphrase is None):
            raise ValueError("give exactly one of key= or passphrase=")
        fn = lib.signal_store_create_sqlcipher if key is not None else lib.signal_store_create_sqlcipher_passphrase
        p, n = _in(key if key is not None else passphrase)
        return cls._open(fn, _s(path), p, n, identity._h, registration_id)

    @classmethod
    def open(cls, path: str, *, key: Optional[bytes] = None, passphrase: Optional[bytes] = None) -> "Store":
        if (key is None) == (passphrase is None):
            raise ValueError("give exactly one of key= or passphrase=")
        fn = lib.signal_store_open_sqlcipher if key is not None else lib.signal_store_open_sqlcipher_passphrase
        p, n = _in(key if key is not None else passphrase)
        return cls._open(fn, _s(path), p, n)

    def close(self) -> None:
        if self._h:
            lib.signal_store_free(self._h)
            self._h = ctypes.c_void_p()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()

    @property
    def identity(self) -> Identity:
        h = ctypes.c_void_p()
        _check(lib.signal_store_local_identity(self._h, ctypes.byref(h)))
        return Identity(h.value)

    @property
    def registration_id(self) -> int:
        v = ctypes.c_uint32()
        _check(lib.signal_store_registration_id(self._h, ctypes.byref(v)))
        return v.value

    def _buf(self, fn, *args) -> bytes:
        buf = SignalBuffer()
        _check(fn(*args, ctypes.byref(buf)))
        return _take(buf)

    def generate_prekeys(self, signed_prekey_id: int, one_time_prekey_id: int, kem_prekey_id: int,
                         now: int) -> bytes:
        """Generates and stores prekeys; returns the encoded bundle to upload."""
        return self._buf(lib.signal_store_generate_prekeys, self._h, signed_prekey_id,
                         one_time_prekey_id, kem_prekey_id, now)

    def process_bundle(self, user: str, device: int, bundle: bytes) -> None:
        p, n = _in(bundle)
        _check(lib.signal_session_process_bundle(self._h, _s(user), device, p, n))

    def encrypt(self, user: str, device: int, plaintext: bytes) -> bytes:
        p, n = _in(plaintext)
        return self._buf(lib.signal_session_encrypt, self._h, _s(user), device, p, n)

    def decrypt(self, user: str, device: int, ciphertext: bytes) -> bytes:
        p, n = _in(ciphertext)
        return self._buf(lib.signal_session_decrypt, self._h, _s(user), device, p, n)

    def remote_identity(self, user: str, device: int) -> bytes:
        return self._buf(lib.signal_store_remote_identity, self._h, _s(user), device)

    def _fanout(self, fn, *args) -> FanOut:
        h = ctypes.c_void_p()
        _check(fn(*args, ctypes.byref(h)))
        return FanOut._take(h)

    def fanout_encrypt(self, own_user: str, own_device: int, devices: Sequence[Device],
                       plaintext: bytes) -> FanOut:
        arr, count, _keep = _devices(devices)
        p, n = _in(plaintext)
        return self._fanout(lib.signal_fanout_encrypt, self._h, _s(own_user), own_device, arr, count, p, n)

    def group_distribute(self, group_id: bytes, own_user: str, own_device: int,
                         devices: Sequence[Device]) -> FanOut:
        g, gn = _in(group_id)
        arr, count, _keep = _devices(devices)
        return self._fanout(lib.signal_group_distribute, self._h, g, gn, _s(own_user), own_device, arr, count)

    def group_process_distribution(self, sender_user: str, sender_device: int, distribution: bytes) -> None:
        p, n = _in(distribution)
        _check(lib.signal_group_process_distribution(self._h, _s(sender_user), sender_device, p, n))

    def group_encrypt(self, group_id: bytes, own_user: str, own_device: int, plaintext: bytes) -> bytes:
        g, gn = _in(group_id)
        p, n = _in(plaintext)
        return self._buf(lib.signal_group_encrypt, self._h, g, gn, _s(own_user), own_device, p, n)

    def group_decrypt(self, group_id: bytes, sender_user: str, sender_device: int, ciphertext: bytes) -> bytes:
        g, gn = _in(group_id)
        p, n = _in(ciphertext)
        return self._buf(lib.signal_group_decrypt, self._h, g, gn, _s(sender_user), sender_device, p, n)

    def group_remove_member(self, group_id: bytes, own_user: str, own_device: int, removed_user: str,
                            remaining: Sequence[Device]) -> FanOut:
        g, gn = _in(group_id)
        arr, count, _keep = _devices(remaining)
        return self._fanout(lib.signal_group_remove_member, self._h, g, gn, _s(own_user), own_device,
                            _s(removed_user), arr, count)

    @classmethod
    def with_callbacks(cls, backend: "KeyValueBackend", identity: Identity, registration_id: int) -> "Store":
        """A store whose records live in ``backend`` (the application's own storage)."""
        callbacks = backend._callbacks()
        store = cls._open(lib.signal_store_new_callbacks, ctypes.byref(callbacks), identity._h, registration_id)
        store._backend = (backend, callbacks)  # the C function pointers must outlive the store
        return store

    def current_bundle(self) -> bytes:
        """Bundle of the current signed and last-resort KEM prekeys (no one-time prekey)."""
        return self._buf(lib.signal_store_current_bundle, self._h)

    def run_maintenance(self, now: int, server_one_time_prekeys: int,
                        server_kem_one_time_prekeys: int) -> MaintenanceReport:
        r = SignalMaintenanceReport()
        _check(lib.signal_store_run_maintenance(self._h, now, server_one_time_prekeys,
                                                server_kem_one_time_prekeys, ctypes.byref(r)))
        return MaintenanceReport(
            r.new_signed_prekey_id if r.new_signed_prekey else None,
            r.new_last_resort_kem_prekey_id if r.new_last_resort_kem_prekey else None,
            r.deleted_signed_prekeys, r.deleted_kem_prekeys,
            r.new_one_time_prekeys, r.new_kem_one_time_prekeys)


def generate_group_id() -> bytes:
    out = (ctypes.c_uint8 * GROUP_ID_LEN)()
    _check(lib.signal_group_id_generate(out, GROUP_ID_LEN))
    return bytes(out)


def safety_number(local_user: str, local_identity: bytes, remote_user: str,
                  remote_identity: bytes) -> Tuple[str, bytes]:
    """(60-digit number, 65-byte scannable code)."""
    lp, ln = _in(local_identity)
    rp, rn = _in(remote_identity)
    num, scan = SignalBuffer(), SignalBuffer()
    _check(lib.signal_safety_number(_s(local_user), lp, ln, _s(remote_user), rp, rn,
                                    ctypes.byref(num), ctypes.byref(scan)))
    return _take(num).decode("ascii"), _take(scan)


def verify_scanned(local_user: str, local_identity: bytes, remote_user: str, remote_identity: bytes,
                   scanned: bytes) -> bool:
    lp, ln = _in(local_identity)
    rp, rn = _in(remote_identity)
    sp, sn = _in(scanned)
    out = ctypes.c_uint8()
    _check(lib.signal_safety_number_verify_scanned(_s(local_user), lp, ln, _s(remote_user), rp, rn,
                                                   sp, sn, ctypes.byref(out)))
    return bool(out.value)


class KeyValueBackend:
    """Storage for :meth:`Store.with_callbacks`. Subclass and override ``get``, ``put``,
    ``delete``, ``keys``, ``begin``, ``commit`` and ``rollback`` to use your own database;
    this default keeps records in a dict with snapshot transactions. An exception in a
    method becomes ``StoreError`` for the library's caller and nothing is committed."""

    def __init__(self):
        self.data = {}
        self._snapshot = None

    def get(self, kind: int, key: bytes) -> Optional[bytes]:
        return self.data.get((kind, key))

    def put(self, kind: int, key: bytes, value: bytes) -> None:
        self.data[(kind, key)] = value

    def delete(self, kind: int, key: bytes) -> bool:
        """Deletes the record; returns whether there was one. The answer must be exact
        inside a transaction: a session commit that consumes a one-time prekey which is
        already gone (another process used it) fails with ``ConflictError``."""
        return self.data.pop((kind, key), None) is not None

    def keys(self, kind: int) -> List[bytes]:
        return [k for (kd, k) in self.data if kd == kind]

    def begin(self) -> None:
        self._snapshot = dict(self.data)

    def commit(self) -> None:
        self._snapshot = None

    def rollback(self) -> None:
        if self._snapshot is not None:
            self.data, self._snapshot = self._snapshot, None

    def _callbacks(self) -> "_lib.SignalStoreCallbacks":
        def guarded(fn):
            def wrapper(*args):
                try:
                    return fn(*args)
                except Exception:  # never let a Python exception cross into C
                    return -1
            return wrapper

        @guarded
        def load(_ctx, kind, key, key_len, slot):
            value = self.get(kind, ctypes.string_at(key, key_len))
            if value is None:
                return 1
            p, n = _in(value)
            return lib.signal_slot_set(slot, p, n)

        @guarded
        def store(_ctx, kind, key, key_len, value, value_len):
            self.put(kind, ctypes.string_at(key, key_len), ctypes.string_at(value, value_len))
            return 0

        @guarded
        def remove(_ctx, kind, key, key_len):
            return 0 if self.delete(kind, ctypes.string_at(key, key_len)) else 1

        @guarded
        def list_keys(_ctx, kind, slot):
            for k in self.keys(kind):
                p, n = _in(k)
                if lib.signal_slot_push_key(slot, p, n) != 0:
                    return -1
            return 0

        def tx(method):
            @guarded
            def call(_ctx):
                method()
                return 0
            return call

        return _lib.SignalStoreCallbacks(
            None, _lib.LOAD_CB(load), _lib.STORE_CB(store), _lib.REMOVE_CB(remove),
            _lib.LIST_CB(list_keys), _lib.TX_CB(tx(self.begin)), _lib.TX_CB(tx(self.commit)),
            _lib.TX_CB(tx(self.rollback)))
