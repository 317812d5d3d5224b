// The keys module's names for common/secret_bytes.hpp (one implementation for every module).
#pragma once

#include "common/secret_bytes.hpp"

namespace mp::keys {
using SecretBytes = mp::SecretBytes;
using Plaintext = mp::SecretBytes;  // what open() returns: opened material
}  // namespace mp::keys
