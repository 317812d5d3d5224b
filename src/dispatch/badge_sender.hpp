// Where the dispatcher's badges go: APNs through a connection pool per customer and environment
// (ApnsBadgeSender); tests give the dispatcher scripted answers instead.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <string>

#include "apns/connection_pool.hpp"
#include "apns/credential.hpp"
#include "apns/request.hpp"

namespace mp::dispatch {

class BadgeSender {
 public:
  virtual ~BadgeSender() = default;
  // Sends one badge to a device of `customer` (public Customer ID) with the customer's
  // credential for the device's environment; always completes with a final result, retries
  // included. Called on the dispatcher's strand; the arguments outlive the call.
  virtual boost::asio::awaitable<apns::SendResult> send(
      const std::string& customer, const apns::ApnsCredential& credential,
      const apns::BadgeNotification& notification) = 0;
  // Lets the sends in flight finish and closes every connection (GOAWAY). Sends after it end at
  // once with retry_exhausted "PoolClosed".
  virtual boost::asio::awaitable<void> close() = 0;
};

}  // namespace mp::dispatch
