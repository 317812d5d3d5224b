// The certs module's name for common/secret_bytes.hpp (one implementation for every module).
#pragma once

#include "common/secret_bytes.hpp"

namespace mp::certs {
using SecretBytes = mp::SecretBytes;
}  // namespace mp::certs
