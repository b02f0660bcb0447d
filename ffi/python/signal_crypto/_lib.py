"""ctypes declarations of every function of libsignal_crypto_lib (see signal_crypto.h).

The library is found through the SIGNAL_CRYPTO_LIB environment variable (a path to
the .so), else by the name ``signal_crypto_lib`` on the system's library path.
"""

import ctypes
import ctypes.util
import os

c_u8_p = ctypes.POINTER(ctypes.c_uint8)


class SignalBuffer(ctypes.Structure):
    _fields_ = [("data", c_u8_p), ("len", ctypes.c_size_t)]


class SignalDevice(ctypes.Structure):
    _fields_ = [
        ("user", ctypes.c_char_p),
        ("device", ctypes.c_uint32),
        ("registration_id", ctypes.c_uint32),
    ]


class SignalMaintenanceReport(ctypes.Structure):
    _fields_ = [
        ("new_signed_prekey", ctypes.c_uint8),
        ("new_signed_prekey_id", ctypes.c_uint32),
        ("new_last_resort_kem_prekey", ctypes.c_uint8),
        ("new_last_resort_kem_prekey_id", ctypes.c_uint32),
        ("deleted_signed_prekeys", ctypes.c_size_t),
        ("deleted_kem_prekeys", ctypes.c_size_t),
        ("new_one_time_prekeys", ctypes.c_size_t),
        ("new_kem_one_time_prekeys", ctypes.c_size_t),
    ]


LOAD_CB = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_uint32, c_u8_p, ctypes.c_size_t, ctypes.c_void_p)
STORE_CB = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_uint32, c_u8_p, ctypes.c_size_t, c_u8_p, ctypes.c_size_t)
REMOVE_CB = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_uint32, c_u8_p, ctypes.c_size_t)
LIST_CB = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_void_p)
TX_CB = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p)


class SignalStoreCallbacks(ctypes.Structure):
    _fields_ = [
        ("ctx", ctypes.c_void_p),
        ("load", LOAD_CB),
        ("store", STORE_CB),
        ("remove", REMOVE_CB),
        ("list", LIST_CB),
        ("begin", TX_CB),
        ("commit", TX_CB),
        ("rollback", TX_CB),
    ]


def _load():
    path = os.environ.get("SIGNAL_CRYPTO_LIB") or ctypes.util.find_library("signal_crypto_lib")
    if not path:
        raise OSError(
            "libsignal_crypto_lib not found: set SIGNAL_CRYPTO_LIB to the path of libsignal_crypto_lib.so"
        )
    return ctypes.CDLL(path)


lib = _load()

P = ctypes.c_void_p  # opaque handles
PP = ctypes.POINTER(ctypes.c_void_p)
BUF_P = ctypes.POINTER(SignalBuffer)
DEV_P = ctypes.POINTER(SignalDevice)
S = ctypes.c_char_p
U8 = ctypes.c_uint8
U32 = ctypes.c_uint32
U64 = ctypes.c_uint64
SZ = ctypes.c_size_t
RC = ctypes.c_int  # SignalErrorCode

_SIGNATURES = {
    # name: (restype, argtypes)
    "signal_library_version": (ctypes.c_char_p, []),
    "signal_abi_version": (U32, []),
    "signal_last_error_message": (ctypes.c_char_p, []),
    "signal_error_code_name": (ctypes.c_char_p, [ctypes.c_int32]),
    "signal_buffer_free": (None, [SignalBuffer]),
    "signal_identity_generate": (RC, [PP]),
    "signal_identity_serialize": (RC, [P, BUF_P]),
    "signal_identity_deserialize": (RC, [c_u8_p, SZ, PP]),
    "signal_identity_public_key": (RC, [P, BUF_P]),
    "signal_identity_free": (None, [P]),
    "signal_store_new_in_memory": (RC, [P, U32, PP]),
    "signal_store_create_sqlcipher": (RC, [S, c_u8_p, SZ, P, U32, PP]),
    "signal_store_open_sqlcipher": (RC, [S, c_u8_p, SZ, PP]),
    "signal_store_create_sqlcipher_passphrase": (RC, [S, c_u8_p, SZ, P, U32, PP]),
    "signal_store_open_sqlcipher_passphrase": (RC, [S, c_u8_p, SZ, PP]),
    "signal_store_local_identity": (RC, [P, PP]),
    "signal_store_registration_id": (RC, [P, ctypes.POINTER(U32)]),
    "signal_store_free": (None, [P]),
    "signal_store_generate_prekeys": (RC, [P, U32, U32, U32, U64, BUF_P]),
    "signal_session_process_bundle": (RC, [P, S, U32, c_u8_p, SZ]),
    "signal_session_encrypt": (RC, [P, S, U32, c_u8_p, SZ, BUF_P]),
    "signal_session_decrypt": (RC, [P, S, U32, c_u8_p, SZ, BUF_P]),
    "signal_store_remote_identity": (RC, [P, S, U32, BUF_P]),
    "signal_fanout_encrypt": (RC, [P, S, U32, DEV_P, SZ, c_u8_p, SZ, PP]),
    "signal_fanout_count": (RC, [P, U32, ctypes.POINTER(SZ)]),
    "signal_fanout_address": (RC, [P, U32, SZ, ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(U32)]),
    "signal_fanout_ciphertext": (RC, [P, SZ, ctypes.POINTER(U32), ctypes.POINTER(c_u8_p), ctypes.POINTER(SZ)]),
    "signal_fanout_free": (None, [P]),
    "signal_group_id_generate": (RC, [c_u8_p, SZ]),
    "signal_group_distribute": (RC, [P, c_u8_p, SZ, S, U32, DEV_P, SZ, PP]),
    "signal_group_process_distribution": (RC, [P, S, U32, c_u8_p, SZ]),
    "signal_group_encrypt": (RC, [P, c_u8_p, SZ, S, U32, c_u8_p, SZ, BUF_P]),
    "signal_group_decrypt": (RC, [P, c_u8_p, SZ, S, U32, c_u8_p, SZ, BUF_P]),
    "signal_group_remove_member": (RC, [P, c_u8_p, SZ, S, U32, S, DEV_P, SZ, PP]),
    "signal_safety_number": (RC, [S, c_u8_p, SZ, S, c_u8_p, SZ, BUF_P, BUF_P]),
    "signal_safety_number_verify_scanned": (RC, [S, c_u8_p, SZ, S, c_u8_p, SZ, c_u8_p, SZ, ctypes.POINTER(U8)]),
    "signal_store_new_callbacks": (RC, [ctypes.POINTER(SignalStoreCallbacks), P, U32, PP]),
    "signal_slot_set": (RC, [ctypes.c_void_p, c_u8_p, SZ]),
    "signal_slot_push_key": (RC, [ctypes.c_void_p, c_u8_p, SZ]),
    "signal_store_current_bundle": (RC, [P, BUF_P]),
    "signal_store_run_maintenance": (RC, [P, U64, SZ, SZ, ctypes.POINTER(SignalMaintenanceReport)]),
}

for _name, (_res, _args) in _SIGNATURES.items():
    _f = getattr(lib, _name)
    _f.restype = _res
    _f.argtypes = _args
