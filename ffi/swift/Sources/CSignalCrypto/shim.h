/* Copy or symlink ffi/include/signal_crypto.h next to this file before building. */
#include "signal_crypto.h"
