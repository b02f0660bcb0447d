// Swift wrapper over the C ABI of libsignal_crypto_lib.
// NOT COMPILED: this machine has no Swift toolchain (see ../../README.md).
import CSignalCrypto
import Foundation

/// A failed call: the SignalErrorCode value and the library's message.
public struct SignalError: Error, CustomStringConvertible {
    public let code: Int32
    public let message: String
    public var description: String { "\(code): \(message)" }
}

@inline(__always)
func check(_ rc: SignalErrorCode) throws {
    guard rc != SIGNAL_OK else { return }
    let message = signal_last_error_message().map { String(cString: $0) } ?? "unknown error"
    throw SignalError(code: Int32(rc.rawValue), message: message)
}

/// Copies and frees a buffer returned by the library.
func take(_ buf: SignalBuffer) -> Data {
    defer { signal_buffer_free(buf) }
    guard let p = buf.data, buf.len > 0 else { return Data() }
    return Data(bytes: p, count: Int(buf.len))
}

public final class Identity {
    let handle: OpaquePointer

    init(handle: OpaquePointer) { self.handle = handle }

    public static func generate() throws -> Identity {
        var h: OpaquePointer?
        try check(signal_identity_generate(&h))
        return Identity(handle: h!)
    }

    public var publicKey: Data {
        get throws {
            var buf = SignalBuffer(data: nil, len: 0)
            try check(signal_identity_public_key(handle, &buf))
            return take(buf)
        }
    }

    deinit { signal_identity_free(handle) }
}

/// A protocol store; may be shared between threads.
public final class Store {
    let handle: OpaquePointer

    init(handle: OpaquePointer) { self.handle = handle }

    public static func inMemory(identity: Identity, registrationId: UInt32) throws -> Store {
        var h: OpaquePointer?
        try check(signal_store_new_in_memory(identity.handle, registrationId, &h))
        return Store(handle: h!)
    }

    public static func open(path: String, key: Data) throws -> Store {
        var h: OpaquePointer?
        try key.withUnsafeBytes { k in
            try check(signal_store_open_sqlcipher(path, k.bindMemory(to: UInt8.self).baseAddress, k.count, &h))
        }
        return Store(handle: h!)
    }

    public static func create(path: String, key: Data, identity: Identity, registrationId: UInt32) throws -> Store {
        var h: OpaquePointer?
        try key.withUnsafeBytes { k in
            try check(signal_store_create_sqlcipher(
                path, k.bindMemory(to: UInt8.self).baseAddress, k.count, identity.handle, registrationId, &h))
        }
        return Store(handle: h!)
    }

    public func generatePrekeys(signedId: UInt32, oneTimeId: UInt32, kemId: UInt32, now: UInt64) throws -> Data {
        var buf = SignalBuffer(data: nil, len: 0)
        try check(signal_store_generate_prekeys(handle, signedId, oneTimeId, kemId, now, &buf))
        return take(buf)
    }

    public func processBundle(user: String, device: UInt32, bundle: Data) throws {
        try bundle.withUnsafeBytes { b in
            try check(signal_session_process_bundle(handle, user, device, b.bindMemory(to: UInt8.self).baseAddress, b.count))
        }
    }

    public func encrypt(user: String, device: UInt32, plaintext: Data) throws -> Data {
        var buf = SignalBuffer(data: nil, len: 0)
        try plaintext.withUnsafeBytes { p in
            try check(signal_session_encrypt(handle, user, device, p.bindMemory(to: UInt8.self).baseAddress, p.count, &buf))
        }
        return take(buf)
    }

    public func decrypt(user: String, device: UInt32, ciphertext: Data) throws -> Data {
        var buf = SignalBuffer(data: nil, len: 0)
        try ciphertext.withUnsafeBytes { c in
            try check(signal_session_decrypt(handle, user, device, c.bindMemory(to: UInt8.self).baseAddress, c.count, &buf))
        }
        return take(buf)
    }

    deinit { signal_store_free(handle) }
}
