// What both suites of RegistrationService share (against the fake store and on MariaDB): a device
// token, the region secret, and a coroutine of the service run to completion.
#pragma once

#include <gtest/gtest.h>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <exception>
#include <optional>
#include <string>

#include "keys/region_secret.hpp"
#include "relay/registration_service.hpp"

namespace mp::relay::test {

inline const std::string kToken =
    "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";

// Runs one coroutine of the service to completion.
template <class T>
T run(boost::asio::awaitable<T> work) {
  boost::asio::io_context ioc;
  std::optional<T> out;
  boost::asio::co_spawn(ioc, std::move(work), [&out](std::exception_ptr e, T value) {
    if (e) std::rethrow_exception(e);
    out = std::move(value);
  });
  ioc.run();
  EXPECT_TRUE(out.has_value());
  return std::move(*out);
}
inline void run(boost::asio::awaitable<void> work) {
  boost::asio::io_context ioc;
  bool done = false;
  boost::asio::co_spawn(ioc, std::move(work), [&done](std::exception_ptr e) {
    if (e) std::rethrow_exception(e);
    done = true;
  });
  ioc.run();
  EXPECT_TRUE(done);
}

// A registration of kToken in production, as the app sends it.
inline RegisterRequest register_request(const std::string& customer_id, const std::string& key,
                                        const std::string& mailbox) {
  RegisterRequest r;
  r.customer_id = customer_id;
  r.registration_key = key;
  r.mailbox = mailbox;
  r.device_token = kToken;
  r.environment = "production";
  return r;
}

inline keys::RegionSecret make_secret() {
  auto s = keys::RegionSecret::from_text(
      "region-secret " + std::string("c2VjcmV0LWZvci10ZXN0cy1vbmx5LTAxMjM0NTY3ODk=") + "\n");
  EXPECT_TRUE(s.ok());
  return std::move(s).value();
}

}  // namespace mp::relay::test
