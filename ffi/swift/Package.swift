// swift-tools-version:5.9
// NOT COMPILED: this machine has no Swift toolchain. See README.md.
import PackageDescription

let package = Package(
    name: "SignalCrypto",
    platforms: [.iOS(.v15), .watchOS(.v8), .macOS(.v12)],
    products: [.library(name: "SignalCrypto", targets: ["SignalCrypto"])],
    targets: [
        // The C header of libsignal_crypto_lib; link the static library built with
        // `cargo build -p ffi --release --target <apple target>` (see README.md).
        .systemLibrary(name: "CSignalCrypto", path: "Sources/CSignalCrypto"),
        .target(name: "SignalCrypto", dependencies: ["CSignalCrypto"]),
    ]
)
